"""bench/soup.py: the averaged weights against a float64 mean of the ingredients' own safetensors
files (model directories and a training checkpoint), and the result json scored as a bench row."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file

from bench import soup
from model import Encoder, ModelConfig
from tests.helpers import make_tiny_bert, tiny_beir


def _perturbed(source, out, seed: int):
    """`source` with every float tensor shifted by seeded noise, saved as train.py saves a model."""
    encoder = Encoder.from_config(ModelConfig(str(source)))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in encoder.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))
    encoder.save(out)
    return encoder


@pytest.fixture(scope="module")
def ingredients(tmp_path_factory):
    root = tmp_path_factory.mktemp("soup")
    base = make_tiny_bert(root / "base")
    _perturbed(base, root / "a", 1)
    _perturbed(base, root / "b", 2)
    checkpoint = root / "run" / "checkpoints" / "step-00000002"
    checkpoint.mkdir(parents=True)
    state = _perturbed(base, root / "c", 3).state_dict()  # Accelerate saves the encoder's own keys
    save_file({key: value.contiguous() for key, value in state.items()}, str(checkpoint / "model.safetensors"))
    return root, checkpoint, tiny_beir(root / "beir", n_docs=30, n_queries=6)


def test_the_average_is_the_mixed_mean_of_every_tensor(ingredients):
    root, checkpoint, beir = ingredients
    mix = [0.5, 0.3, 0.2]
    out = root / "soup"
    argv = ["--models", f"{root / 'a'},{root / 'b'},{checkpoint}", "--mix", ",".join(map(str, mix))]
    assert soup.main([*argv, "--out", str(out), "--data", str(beir), "--no-score"]) == 0

    files = [load_numpy(str(root / name / "model.safetensors")) for name in ("a", "b")]
    files.append(
        {k.removeprefix("transformer."): v for k, v in load_numpy(str(checkpoint / "model.safetensors")).items()}
    )
    averaged = load_numpy(str(out / "model" / "model.safetensors"))
    assert set(averaged) == set(files[0])
    for key, value in averaged.items():
        expected = sum(w * f[key].astype(np.float64) for w, f in zip(mix, files))
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-6, err_msg=key)
    assert (out / "model" / "complete.json").is_file()  # saved as a model, manifest last
    assert not (out / "result.json").exists()


def test_a_zero_weight_leaves_the_first_model_and_the_result_is_a_bench_row(ingredients):
    pytest.importorskip("bm25s")
    from bench.pair_results import load
    from bench.quality import CROSS, Scorer, model_bench_parser

    root, checkpoint, beir = ingredients
    out = root / "only_a"
    common = ["--data", str(beir), "--dims", "32,8", "--resamples", "50"]
    assert soup.main(["--models", f"{root / 'a'},{checkpoint}", "--mix", "1,0", "--out", str(out), *common]) == 0
    result = load(out / "result.json")
    args = model_bench_parser("").parse_args(["--models", "x", *common])
    args.weight_split = CROSS
    direct = Scorer(args).model(root / "a")
    assert result["query_ids"] == [f"q{i}" for i in range(6)]
    for key in ("per_query", "fused", "weights"):
        assert result[key] == direct[key]


@pytest.mark.parametrize(
    "models, mix, message",
    [
        ("{a},{b}", "0.5,0.3,0.2", "3 weights for 2 models"),
        ("{a},{b}", "0.5,0.6", "sum to 1.1"),
    ],
)
def test_bad_mixes_are_refused_before_any_model_loads(ingredients, models, mix, message, capsys):
    root, _, beir = ingredients
    argv = ["--models", models.format(a=root / "a", b=root / "b"), "--mix", mix]
    with pytest.raises(SystemExit) as stop:
        soup.main([*argv, "--out", str(root / "bad"), "--data", str(beir)])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (root / "bad").exists()


def test_a_checkpoint_first_or_a_model_of_another_shape_is_refused(ingredients, tmp_path):
    root, checkpoint, beir = ingredients
    with pytest.raises(SystemExit, match="the first ingredient must be a model directory"):
        soup.main(["--models", f"{checkpoint},{root / 'a'}", "--out", str(tmp_path / "x"), "--data", str(beir)])
    wider = make_tiny_bert(tmp_path / "wider", intermediate_size=48)
    with pytest.raises(SystemExit, match=r"intermediate.dense.weight is shape \(48, 32\)"):
        soup.main(["--models", f"{root / 'a'},{wider}", "--out", str(tmp_path / "y"), "--data", str(beir)])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
