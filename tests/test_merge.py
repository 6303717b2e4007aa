"""bench/merge.py: weight averaging against a float64 loop, and each merged model scored as the
quality bench scores the model it equals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertModel

from bench import merge
from bench.quality import CROSS, Scorer
from tests.helpers import make_tiny_bert, tiny_beir


def _two_models(tmp_path):
    first = make_tiny_bert(tmp_path / "first")
    second = make_tiny_bert(tmp_path / "second")
    model = BertModel.from_pretrained(second)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    model.save_pretrained(second)
    return first, second


def test_merged_state_is_the_weighted_sum_key_by_key(tmp_path):
    first, second = _two_models(tmp_path)
    states = [BertModel.from_pretrained(p).state_dict() for p in (first, second)]
    merged = merge.merged_state(states, [0.3, 0.7])
    assert merged.keys() == states[0].keys()
    for key, value in merged.items():
        a, b = states[0][key], states[1][key]
        if not a.is_floating_point():
            assert torch.equal(value, a)  # position ids: taken whole
            continue
        expected = a.double().numpy() * 0.3 + b.double().numpy() * 0.7
        np.testing.assert_allclose(value.double().numpy(), expected, rtol=0, atol=1e-6)
    assert not torch.equal(merged["pooler.dense.weight"], states[1]["pooler.dense.weight"])


def test_other_architectures_are_refused(tmp_path):
    first = BertModel.from_pretrained(make_tiny_bert(tmp_path / "a")).state_dict()
    other = BertModel.from_pretrained(make_tiny_bert(tmp_path / "b", num_hidden_layers=1)).state_dict()
    with pytest.raises(SystemExit, match="do not share one architecture"):
        merge.merged_state([first, other], [0.5, 0.5])


def test_alpha_0_and_1_score_as_the_two_models(tmp_path, capsys):
    first, second = _two_models(tmp_path)
    data = tiny_beir(tmp_path / "beir")
    argv = ["--models", f"{first},{second}", "--alphas", "1,0", "--data", str(data), "--dims", "32,8"]
    argv += ["--resamples", "100"]
    assert merge.main(argv) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| alpha")]
    assert [r.split(" | ")[0] for r in rows] == ["| alpha 1", "| alpha 0"]

    class Args:
        split, dims, eval_batch, weight_split = "dev", [32, 8], 64, CROSS

    Args.data = data
    scorer = Scorer(Args)
    for row, model in zip(rows, (second, first)):
        result = scorer.model(model)
        cells = row.split(" | ")[1:5]
        expected = [np.mean(result["per_query"][d]["ndcg@10"]) for d in ("32", "8")]
        expected += [np.mean(result["fused"][d]["ndcg@10"]) for d in ("32", "8")]
        assert [float(c) for c in cells] == pytest.approx(expected, abs=6e-5)
    assert rows[0].split(" | ")[1:5] != rows[1].split(" | ")[1:5]  # two different models, told apart
    assert " | +0.0000 [+0.0000, +0.0000] | " in rows[0]  # the first row against itself
