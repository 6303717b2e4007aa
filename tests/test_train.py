"""train.py: schedule, config, and tiny end-to-end runs (in-process, `python` and `accelerate launch`)."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import train
from helpers import ROOT, child_env, random_texts, reference_bm25
from model import ModelConfig
from training import gradcache
from training.config import Config, ConfigError, load_config
from training.distributed import resolve_precision
from training.schedule import lr_at

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


# ---------------------------------------------------------------- schedule


def test_lr_warms_up_then_follows_the_cosine_to_the_floor():
    total, peak, floor = 100, 2e-5, 0.1
    warmup = math.ceil(0.1 * total)
    lrs = [lr_at(step, total, peak, 0.1, floor) for step in range(total + 1)]
    assert lrs[0] == pytest.approx(peak / (warmup + 1))  # the first step already learns
    assert all(a < b for a, b in zip(lrs[:warmup], lrs[1 : warmup + 1]))
    assert lrs[warmup] == pytest.approx(peak)  # end of warm-up
    mid = warmup + (total - warmup) // 2
    assert lrs[mid] == pytest.approx((peak + peak * floor) / 2)  # cos(pi/2): half-way to the floor
    assert lrs[total] == pytest.approx(peak * floor)  # the floor
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1 :]))
    assert lr_at(0, 5, 1.0, 0.0) == 1.0  # no warm-up: the peak at once
    # ceil(0.07 * 100) in floats is 8 (0.07 * 100 = 7.000000000000001): the warm-up is 7 steps
    assert lr_at(6, 100, 1.0, 0.07) == pytest.approx(7 / 8) and lr_at(7, 100, 1.0, 0.07) == 1.0


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_loads_and_validates(path):
    config = load_config(["--config", str(path)])
    assert config.data.train and config.output.dir
    assert config.train.global_batch >= config.train.micro_batch
    assert config.loss.dims == sorted(config.loss.dims, reverse=True)


def test_the_configs_are_all_there():
    assert {p.stem for p in CONFIGS} >= {"bge", "arctic", "e5-instruct", "obliqa", "quickstart"}


def test_obliqa_config_is_the_reference_recipe():
    c = load_config(["--config", str(ROOT / "configs" / "obliqa.yaml")])
    assert (c.train.epochs, c.train.global_batch, c.train.micro_batch, c.model.max_length) == (1, 512, 32, 256)
    assert (c.train.lr, c.train.warmup_ratio, c.loss.temperature, c.train.weight_decay) == (2e-5, 0.1, 0.05, 0.0)
    assert (c.train.max_grad_norm, c.train.seed, c.loss.dims) == (1.0, 42, [384, 256, 128, 64, 32])


def test_overrides_parse_by_the_field_type(tmp_path):
    config = load_config(
        [
            "--config",
            str(ROOT / "configs" / "obliqa.yaml"),
            "--train.lr",
            "1e-5",
            "--loss.dims",
            "64,32",
            "--loss.weights",
            "1,0.5",
            "--train.max_grad_norm",
            "null",
            "--model.query_prompt",
            "query: ",
            "--train.drop_last=false",
            "--eval.dims",
            "[64]",
        ]
    )
    assert config.train.lr == 1e-5 and config.loss.dims == [64, 32] and config.train.max_grad_norm is None
    assert config.model.query_prompt == "query: " and config.train.drop_last is False and config.eval.dims == [64]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--train.lrr", "1"], "unknown key train.lrr"),
        (["--trian.lr", "1"], "unknown key trian"),
        (["--train.epochs", "two"], "train.epochs: expected int"),
        (["--train.lr", "fast"], "train.lr: expected float"),
        (["--loss.dims", "64,x"], r"loss.dims\[1\]: expected int"),
        (["--train", "1"], "train: is a section"),
        (["--train.mixed_precision", "fp16"], "train.mixed_precision"),
        (["--loss.weights", "1,1"], "loss.weights: 2 weights for 5 loss.dims"),
        (["--loss.weights", "-1,1,1,1,1"], "loss.weights: each must be >= 0, and one > 0"),
        (["--loss.weights", "0,0,0,0,0"], "loss.weights: each must be >= 0, and one > 0"),
        (["--train.seed", "-1"], r"train.seed: must be in \[0, 2\^32 - 1024\)"),
        (["--model.pooling", "foo"], "model.pooling: 'foo' is not one of cls, mean, lasttoken, max"),
        (["--model.max_length", "0"], "model.max_length: must be at least 1"),
        (["--train.micro_batch", "0"], "train.micro_batch: must be at least 1"),
        (["--train.epochs", "--5"], "train.epochs: expected int"),
        (["--train.epochs", "\u00b2"], "train.epochs: expected int"),
        (["--train.lr", "nan"], "train.lr: expected float"),
        (["--loss.temperature", "inf"], "loss.temperature: expected float"),
        (["--train.max_grad_norm", "-1"], "train.max_grad_norm: must be > 0, or null"),
        (["--train.max_grad_norm", "0"], "train.max_grad_norm: must be > 0, or null"),
        (["--train.adam_betas", "1.5,0.9"], r"train.adam_betas: expected two numbers in \[0, 1\)"),
        (["--train.weight_decay", "-1"], "train.weight_decay >= 0"),
        (["--eval.batch_size", "0"], "eval.batch_size: must be at least 1"),
        (["--loss.gte", "true", "--loss.symmetric", "true"], "loss.gte: not with loss.symmetric"),
        (["--loss.gte", "true", "--loss.distill", "0.5"], "loss.gte: not with loss.distill"),
        (["--data.batch_by", "topic"], "data.batch_by: 'topic' is not '' .spread. or document"),
        (["--data.batch_by", "document", "--data.qrels", "null"], "data.batch_by document: needs data.qrels"),
        (
            ["--data.batch_by", "document", "--data.qrels", "q", "--data.mix", '[{"path": "x.jsonl", "weight": 0.5}]'],
            "data.batch_by document: not with data.mix",
        ),
    ],
)
def test_bad_keys_and_values_are_named(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(["--config", str(ROOT / "configs" / "obliqa.yaml"), *argv])


def test_unknown_key_in_a_yaml_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  train: x.jsonl\ntrain:\n  lr: 1e-4\n  warmup: 3\n")
    with pytest.raises(ConfigError, match="unknown key train.warmup"):
        load_config(["--config", str(path)])
    path.write_text("data: [1, 2]\n")
    with pytest.raises(ConfigError, match="data: expected a mapping"):
        load_config(["--config", str(path)])
    path.write_text("data:\n  train: x.jsonl\ntrain: 5\n")
    with pytest.raises(ConfigError, match="train: expected a mapping"):
        load_config(["--config", str(path), "--train.lr", "1"])


def test_yaml_no_is_a_mixed_precision_value_not_a_boolean(tmp_path):
    """YAML 1.1 reads `no` as false; the README documents `mixed_precision: no`."""
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: x.jsonl\ntrain:\n  mixed_precision: no\ncheckpoint:\n  every: no\n")
    config = load_config(["--config", str(path)])
    assert config.train.mixed_precision == "no" and config.checkpoint.every == "no"
    path.write_text("data:\n  train: x.jsonl\ntrain:\n  mixed_precision: yes\n")
    with pytest.raises(ConfigError, match="train.mixed_precision: 'yes' is not auto, bf16 or no"):
        load_config(["--config", str(path)])


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--checkpoint.every", "0"], "checkpoint.every: '0' is not epoch, no or a number"),
        (["--checkpoint.keep", "0"], "checkpoint.keep: must be at least 1"),
        (["--report.report_to", "mlflow"], "report.report_to: 'mlflow' is not tensorboard or wandb"),
    ],
)
def test_bad_checkpoint_and_report_keys_are_named(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(["--config", str(ROOT / "configs" / "obliqa.yaml"), *argv])


def test_help_prints_the_usage_and_every_key_with_its_default():
    proc = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python train.py --config FILE")
    for line in (
        "train.lr = 2.0e-05",
        "loss.temperature = 0.05",
        "checkpoint.every = epoch",
        "data.hard_negatives.k = 0",
        "--resume [DIR]",
        "--dry-run",
        "README.md",
    ):
        assert line in proc.stdout, line


def test_accelerate_gradient_accumulation_from_the_environment_is_ignored(monkeypatch):
    """accelerator.backward divides by it: a launcher's ACCELERATE_GRADIENT_ACCUMULATION_STEPS
    would otherwise scale every gradient."""
    from training.distributed import make_accelerator

    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
    from accelerate import Accelerator

    assert Accelerator(cpu=True).gradient_accumulation_steps == 4  # the trap is real
    assert make_accelerator("no").gradient_accumulation_steps == 1


def test_flash_attention_only_with_bf16(tiny_bert, monkeypatch):
    """flash-attn runs bf16 only: without autocast, auto picks SDPA, and asking for it is an error.
    train.deterministic reaches flash-attn's backward through the variable transformers reads."""
    monkeypatch.delenv("FLASH_ATTENTION_DETERMINISTIC", raising=False)
    config = Config(model=ModelConfig(str(tiny_bert)))
    assert train.load_encoder(config, "no").transformer.config._attn_implementation == "sdpa"
    assert "FLASH_ATTENTION_DETERMINISTIC" not in os.environ
    config.train.deterministic = True
    train.load_encoder(config, "no")
    assert os.environ["FLASH_ATTENTION_DETERMINISTIC"] == "1"
    config.model.attn_implementation = "flash_attention_2"
    with pytest.raises(ConfigError, match="flash_attention_2 needs train.mixed_precision bf16"):
        train.load_encoder(config, "no")


def test_a_bad_model_path_is_an_error_line_not_a_traceback(tiny_task, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--model.name_or_path",
            str(tmp_path / "nowhere"),
            "--data.train",
            str(tiny_task / "pairs.jsonl"),
            "--output.dir",
            str(tmp_path / "run"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: model.name_or_path '{tmp_path / 'nowhere'}'" in proc.stderr


def test_dry_run_checks_everything_and_trains_nothing(tiny_bert, tiny_task, tmp_path, capsys):
    found = train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "run", "--model.max_length", "8", "--dry-run"))
    printed = capsys.readouterr().out
    assert found == {"rows": 40, "steps_per_epoch": 2} and not (tmp_path / "run").exists()
    assert "40 rows: 40 distinct questions, 30 distinct passages" in printed
    # Independent count: passages of over 6 words are over 8 tokens with [CLS] and [SEP].
    passages = {json.loads(line)["positive"] for line in (tiny_task / "pairs.jsonl").read_text().splitlines()}
    passages |= {json.loads(line)["negative"] for line in (tiny_task / "pairs.jsonl").read_text().splitlines()}
    long = sum(len(p.split()) + 2 > 8 for p in passages)
    assert "passages: tokens p50" in printed and f"{long} of {len(passages)} truncated at max_length 8" in printed
    assert "2 steps per epoch" in printed and "eval set beir: " in printed


def test_a_bad_row_fails_the_dry_run_with_its_line(tiny_bert, tmp_path):
    (tmp_path / "pairs.jsonl").write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "a"}\n')
    with pytest.raises(SystemExit, match="pairs.jsonl:2"):
        train.main(["--model.name_or_path", str(tiny_bert), "--data.train", str(tmp_path / "pairs.jsonl"), "--dry-run"])


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory, tiny_bert) -> Path:
    """40 pairs with explicit negatives over 30 passages, and a BEIR dev set over the same passages."""
    root = tmp_path_factory.mktemp("task")
    questions, passages = random_texts(40, seed=1, max_words=8), random_texts(30, seed=2)
    with open(root / "pairs.jsonl", "w") as f:
        for i, q in enumerate(questions):
            f.write(
                json.dumps({"anchor": q, "positive": passages[i % 30], "negative": passages[(7 * i + 3) % 30]}) + "\n"
            )
    (root / "beir" / "qrels").mkdir(parents=True)
    with open(root / "beir" / "corpus.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"d{i}", "text": p}) + "\n" for i, p in enumerate(passages))
    with open(root / "beir" / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"q{i}", "text": q}) + "\n" for i, q in enumerate(questions))
    (root / "beir" / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i % 30}\t1\n" for i in range(40))
    )
    return root


def tiny_args(tiny_bert: Path, task: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model.name_or_path",
        str(tiny_bert),
        "--data.train",
        str(task / "pairs.jsonl"),
        "--data.eval",
        str(task / "beir"),
        "--train.global_batch",
        "16",
        "--train.micro_batch",
        "5",
        "--loss.dims",
        "32,16",
        "--train.lr",
        "1e-3",
        "--output.dir",
        str(out),
        *extra,
    ]


def test_two_steps_end_to_end(tiny_bert, tiny_task, tmp_path):
    """Before/after tables, the training log, and a model that sentence-transformers loads as ours."""
    from sentence_transformers import SentenceTransformer

    from model import Encoder, ModelConfig

    result = train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "run"))
    assert result["steps"] == 2  # 40 rows, batch 16, short batch dropped
    assert set(result["before"]) == set(result["after"]) == {32, 16}
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and set(log[0]["loss_by_dim"]) == {"32", "16"}
    assert log[0]["loss"] == pytest.approx(sum(log[0]["loss_by_dim"].values()), rel=1e-5)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["after"]["32"]["ndcg@10"] == pytest.approx(result["after"][32]["ndcg@10"])
    assert "| 32 |" in (tmp_path / "run" / "results.md").read_text()
    model_dir = tmp_path / "run" / "model"
    frontier = saved["frontier"]["after"]
    # eval.precisions' default, and the fused retriever stored at float32 and int8 (lexical.retriever bm25)
    assert set(frontier["32"]) == {"float32", "int8", "binary", "float32+bm25", "int8+bm25"}
    assert frontier["16"]["binary"]["bytes_per_vector"] == 2 and frontier["16"]["int8+bm25"]["bytes_per_vector"] == 16
    assert frontier["32"]["float32"]["ndcg@10"] == saved["after"]["32"]["ndcg@10"]
    for dim in ("32", "16"):  # float32 + BM25 is the fused result of the run's own report, to the bit
        assert frontier[dim]["float32+bm25"]["ndcg@10"] == saved["lexical"]["after"][dim]["convex"]["ndcg@10"]
    assert "## Storage and quality: every dim at every precision" in (tmp_path / "run" / "results.md").read_text()
    png = (tmp_path / "run" / "results.png").read_bytes()
    assert png.startswith(b"\x89PNG") and (model_dir / "results.png").read_bytes() == png
    card = (model_dir / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: sentence-transformers\n") and "| 32 |" in card and "results.png" in card
    events = list((tmp_path / "run").glob("tensorboard/**/events.out.tfevents.*"))
    assert events, list((tmp_path / "run").rglob("*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/loss_dim32", "eval/ndcg@10/dim16"} <= set(scalars)
    written = yaml.safe_load((model_dir / "train_config.yaml").read_text())
    assert written["train"]["lr"] == 0.001
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    precision = resolve_precision(written["train"]["mixed_precision"])  # "no" (fp32) on a CPU
    assert written["environment"] == {"precision": precision, "device": device, "num_processes": 1}
    texts = random_texts(5, seed=11)
    ours = Encoder.from_config(ModelConfig(str(model_dir))).encode(texts)
    theirs = SentenceTransformer(str(model_dir), device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(ours, theirs.cpu(), atol=1e-5, rtol=1e-4)
    original = load_file(tiny_bert / "model.safetensors")
    trained = load_file(model_dir / "model.safetensors")
    name = next(k for k in trained if "encoder.layer.0.attention" in k and k.endswith("weight"))
    assert not torch.equal(
        trained[name], original[name.removeprefix("bert.")] if name not in original else original[name]
    )


def test_batches_by_document_end_to_end(tiny_bert, tiny_task, tmp_path, caplog, monkeypatch):
    """data.batch_by document: the tiny task's passages get doc_ids (passage i in document i % 3,
    passage 29 in none) and the run trains, saying how many rows it grouped; a corpus without
    doc_ids is refused before anything is written (the batches themselves: tests/test_sampler.py)."""
    beir = tmp_path / "beir"
    shutil.copytree(tiny_task / "beir", beir)
    rows = [json.loads(line) for line in (beir / "corpus.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        if i != 29:
            row["doc_id"] = f"reg{i % 3}"
    (beir / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (beir / "qrels" / "train.tsv").write_text((beir / "qrels" / "dev.tsv").read_text())
    argv = tiny_args(tiny_bert, tiny_task, tmp_path / "run", "--data.batch_by", "document", "--data.qrels", str(beir))
    made = []

    def recording(table, *args, **kwargs):  # the sampler the run trains with, and the groups it was given
        made.append(real(table, *args, **kwargs))
        return made[-1]

    real = train.SpreadBatchSampler
    monkeypatch.setattr(train, "SpreadBatchSampler", recording)
    with caplog.at_level(logging.INFO, logger="train"):
        result = train.main([*argv, "--eval.before", "false", "--eval.after", "false"])
    assert result["steps"] == 2
    (sampler,) = made
    positive_passage = [i % 30 for i in range(40)]  # the task's rows, in order
    expected = [f"reg{p % 3}" if p != 29 else f"alone{i}" for i, p in enumerate(positive_passage)]
    assert len(set(sampler.groups.tolist())) == len(set(expected))
    for i in range(40):  # the same partition of the rows
        for j in range(40):
            assert (sampler.groups[i] == sampler.groups[j]) == (expected[i] == expected[j])
    # row i's positive is passage i % 30: row 29's passage 29 is in no document
    line = "data.batch_by document: 39 of 40 rows' positives in 3 documents; 1 in none (each a group of its own)"
    assert line in caplog.text
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": r["_id"], "text": r["text"]}) + "\n" for r in rows))
    with pytest.raises(SystemExit, match=r"^error: data.batch_by document: .*corpus.jsonl gives no passage a doc_id"):
        train.main([*argv, "--output.dir", str(tmp_path / "run2")])
    assert not (tmp_path / "run2").exists()
    other = [{**row, "text": f"another text {i}", "doc_id": "reg0"} for i, row in enumerate(rows)]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in other))
    with pytest.raises(SystemExit, match=r"^error: data.batch_by document: none of the 40 data.train positives"):
        train.main([*argv, "--output.dir", str(tmp_path / "run2"), "--dry-run"])


def test_frozen_parameters_stay_as_loaded_and_the_rest_trains(tiny_bert, tiny_task, tmp_path):
    """train.freeze [embeddings]: every embeddings tensor of the saved model equals the base model's
    to the bit; the layers above it train."""
    train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "run", "--eval.before", "false", "--eval.after", "false",
                         "--train.freeze", "[embeddings]"))  # fmt: skip
    original = {k.removeprefix("bert."): v for k, v in load_file(tiny_bert / "model.safetensors").items()}
    trained = {
        k.removeprefix("bert."): v for k, v in load_file(tmp_path / "run" / "model" / "model.safetensors").items()
    }
    frozen = [k for k in trained if k.startswith("embeddings.")]
    assert len(frozen) >= 3  # word, position, token-type embeddings and their LayerNorm
    assert all(torch.equal(trained[k], original[k]) for k in frozen)
    above = [k for k in trained if k.startswith("encoder.layer.") and k.endswith("weight")]
    assert above and all(not torch.equal(trained[k], original[k]) for k in above)


def test_layer_decay_scales_each_layers_step_by_its_depth(tiny_bert, tiny_task, tmp_path):
    """train.layer_decay 0.5 on the 2-layer BERT, one plain SGD step: each weight moves by the plain
    run's step times 0.5 ** (1 - N) in layer N (the last layer at the full rate) and 0.5 ** 2 in the
    embeddings (the same gradient: same start, batch and dropout). lr 1, so that each step is large
    beside float32's rounding."""
    steps = {}
    original = {k.removeprefix("bert."): v for k, v in load_file(tiny_bert / "model.safetensors").items()}
    for decay in ("1", "0.5"):
        out = tmp_path / decay
        result = train.main(tiny_args(tiny_bert, tiny_task, out, "--eval.before", "false", "--eval.after", "false",
                                      "--train.global_batch", "32", "--train.optimizer", "sgd",
                                      "--train.lr", "1", "--train.layer_decay", decay))  # fmt: skip
        assert result["steps"] == 1
        trained = {k.removeprefix("bert."): v for k, v in load_file(out / "model" / "model.safetensors").items()}
        steps[decay] = {k: trained[k].double() - original[k].double() for k in trained}
    checked = 0
    for name, plain in steps["1"].items():
        if name.startswith("embeddings."):
            scale = 0.5**2
        elif name.startswith("encoder.layer."):
            scale = 0.5 ** (1 - int(name.split(".")[2]))
        else:
            continue  # the pooler: never trained
        assert plain.abs().max() > 0
        # float32 weights: a step is known to about 1e-7 of the weight it changed
        torch.testing.assert_close(steps["0.5"][name], scale * plain, rtol=1e-3, atol=1e-6)
        checked += 1
    assert checked >= 30


def test_a_layer_decay_out_of_range_is_named(tiny_bert, tiny_task, tmp_path):
    with pytest.raises(SystemExit, match=r"^error: train.layer_decay: must be in \(0, 1\]"):
        train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "run", "--train.layer_decay", "1.5"))
    assert not (tmp_path / "run").exists()


def test_layer_depths_read_layer_numbers_from_names_and_a_model_without_them_is_refused():
    from training.optim import decay_groups, layer_depths

    class Stack(torch.nn.Module):  # names like most decoders': embed_tokens, layers.N., norm
        def __init__(self):
            super().__init__()
            self.embeddings = torch.nn.Embedding(5, 4)
            self.layers = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(3))
            self.norm = torch.nn.LayerNorm(4)

    depths, count = layer_depths(Stack())
    assert count == 3
    assert depths == {
        "embeddings.weight": 0,
        **{f"layers.{n}.{p}": n + 1 for n in range(3) for p in ("weight", "bias")},
        "norm.weight": 4,
        "norm.bias": 4,
    }
    scales: dict[float, int] = {}
    for group in decay_groups(Stack(), 0.01, 0.5):  # weights and biases in groups of their own
        scales[round(group["lr_scale"], 6)] = scales.get(round(group["lr_scale"], 6), 0) + len(group["params"])
    assert scales == {0.125: 1, 0.25: 2, 0.5: 2, 1.0: 4}  # embeddings, layers 0 and 1, layer 2 and the norm
    with pytest.raises(ValueError, match="no parameter name shows a layer number"):
        decay_groups(torch.nn.Sequential(torch.nn.Linear(2, 2)), 0.01, 0.8)


@pytest.mark.parametrize(
    "prefixes, message",
    [
        ("[embedding]", r"train.freeze: 'embedding' names no trainable parameter of the model \(its modules: "),
        ("[embeddings, encoder]", r"train.freeze: \['embeddings', 'encoder'\] leaves no parameter to train"),
    ],
)
def test_a_bad_freeze_prefix_is_named_before_training(tiny_bert, tiny_task, tmp_path, prefixes, message):
    with pytest.raises(SystemExit, match="^error: " + message):
        train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "run", "--train.freeze", prefixes))
    assert not (tmp_path / "run" / "model").exists()


def test_a_cpu_run_is_bitwise_reproducible(tiny_bert, tiny_task, tmp_path):
    for run in ("a", "b"):
        train.main(tiny_args(tiny_bert, tiny_task, tmp_path / run, "--eval.before", "false", "--eval.after", "false"))
    a, b = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "c", "--eval.before", "false", "--train.seed", "7"))
    assert c["steps"] == 2
    other = load_file(tmp_path / "c" / "model" / "model.safetensors")
    assert not all(torch.equal(a[k], other[k]) for k in a)


def test_non_finite_loss_stops_before_the_optimizer_step_and_saves_nothing(tiny_bert, tiny_task, tmp_path):
    def poison(model, optimizer):  # one NaN weight: every embedding, hence the loss, is NaN
        next(p for p in model.parameters() if p.requires_grad).data[0, 0] = float("nan")

    with pytest.raises(FloatingPointError, match=r"step 0 on rank\(s\) \[0\]"):
        train.main(
            tiny_args(tiny_bert, tiny_task, tmp_path / "run", "--eval.before", "false"), train.Hooks(prepared=poison)
        )
    assert not (tmp_path / "run" / "model").exists()
    assert not (tmp_path / "run" / "checkpoints").exists() or not list((tmp_path / "run" / "checkpoints").iterdir())


def test_an_unusable_mining_cache_is_refused_before_the_model_loads(tiny_task, tmp_path):
    """The model named does not exist: were the cache checked only after loading it, the error would be
    the model's."""
    (tmp_path / "blocker").write_text("")
    argv = ["--data.hard_negatives.k", "1", "--data.hard_negatives.cache", str(tmp_path / "blocker")]
    with pytest.raises(SystemExit, match=r"data.hard_negatives.cache .*blocker: exists and is not a directory"):
        train.main(tiny_args(tmp_path / "no_model", tiny_task, tmp_path / "run", *argv))


def test_a_mining_model_missing_or_damaged_is_named_before_the_model_loads(tiny_bert, tiny_task, tmp_path):
    """The model to train does not exist: were the mining model checked only after loading it, the
    error would be that model's."""
    from model import Encoder, ModelConfig

    saved = tmp_path / "saved"
    Encoder.from_config(ModelConfig(str(tiny_bert))).save(saved)  # with its manifest
    weights = next(saved.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8])
    for model, message in [(tmp_path / "nowhere", "no such directory"), (saved, "damaged or incomplete")]:
        argv = ["--data.hard_negatives.k", "1", "--data.hard_negatives.model", str(model)]
        with pytest.raises(SystemExit, match=f"^error: data.hard_negatives.model: .*{message}"):
            train.main(tiny_args(tmp_path / "no_model", tiny_task, tmp_path / "run", *argv))


def test_a_refused_overwrite_leaves_the_earlier_run_whole(tiny_bert, tiny_task, tmp_path):
    """output.overwrite with a setting refused only once the model is loaded (dims beyond its size):
    the earlier run's checkpoints, model and log are all still there, byte for byte."""
    run = tmp_path / "run"
    train.main(tiny_args(tiny_bert, tiny_task, run, "--checkpoint.every", "1", "--eval.before", "false"))
    before = {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    assert any(name.startswith("checkpoints/step-") for name in before)
    with pytest.raises(SystemExit, match="loss.dims"):
        train.main(tiny_args(tiny_bert, tiny_task, run, "--output.overwrite", "true", "--loss.dims", "1024"))
    after = {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    assert after == before


def test_the_card_names_the_dims_trained_and_how(tiny_bert, tiny_task, tmp_path):
    """loss.dims left empty trains the model's default dims (here its full 32): the card names them,
    and says gradient caching only when it was on."""
    no_cache = ("--train.gradient_cache", "false", "--eval.before", "false")
    argv = tiny_args(tiny_bert, tiny_task, tmp_path / "run", *no_cache)
    at = argv.index("--loss.dims")
    del argv[at : at + 2]
    train.main(argv)
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "any of the trained dims (32)" in card and "dims [32]" in card
    assert "gradient caching" not in card


def test_an_existing_model_is_not_overwritten(tiny_bert, tiny_task, tmp_path):
    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "train_log.jsonl").write_text('{"step": 1, "loss": 9.0}\n')  # an earlier run's
    with pytest.raises(SystemExit, match="output.overwrite"):
        train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "run"))
    train.main(
        tiny_args(
            tiny_bert,
            tiny_task,
            tmp_path / "run",
            "--output.overwrite",
            "true",
            "--eval.before",
            "false",
            "--eval.after",
            "false",
        )
    )
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and log[0]["loss"] != 9.0  # this run's steps only


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = child_env()
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cli_errors_name_the_key_and_exit_non_zero(tiny_bert, tiny_task, tmp_path):
    proc = run_cli(sys.executable, "train.py", "--config", "configs/obliqa.yaml", "--train.lrr", "1")
    assert proc.returncode != 0 and "unknown key train.lrr" in proc.stderr and "Traceback" not in proc.stderr
    bad = tiny_task / "bad.jsonl"
    bad.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "c"}\n')
    proc = run_cli(
        sys.executable, "train.py", *tiny_args(tiny_bert, tiny_task, tmp_path / "run"), "--data.train", str(bad)
    )
    assert proc.returncode != 0 and "bad.jsonl:2" in proc.stderr and "Traceback" not in proc.stderr


def test_accelerate_launch_one_cpu_process(tiny_bert, tiny_task, tmp_path):
    proc = run_cli(
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--cpu",
        "train.py",
        *tiny_args(tiny_bert, tiny_task, tmp_path / "run", "--eval.before", "false"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 2
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_evaluates_during_training_and_keeps_the_best_checkpoint(tiny_bert, tiny_task, tmp_path):
    """eval.every 1 on 4 steps: a curve of 4 points, the step with the best mean NDCG@10 kept, and the
    saved model scores what the curve says that step scored (so that step's weights were restored)."""
    from data import load_ir
    from model import Encoder, ModelConfig
    from retrieval.evaluation import evaluate

    run = tmp_path / "run"
    result = train.main(
        tiny_args(
            tiny_bert,
            tiny_task,
            run,
            "--train.epochs",
            "2",
            "--eval.every",
            "1",
            "--eval.before",
            "false",
            "--train.lr",
            "5e-2",
        )
    )
    curve = result["curve"]
    assert [point["step"] for point in curve] == [1, 2, 3, 4] and [point["epoch"] for point in curve] == [1, 1, 2, 2]
    means = [(point["metrics"]["32"]["ndcg@10"] + point["metrics"]["16"]["ndcg@10"]) / 2 for point in curve]
    assert len(set(means)) > 1  # the steps really differ
    best = curve[means.index(max(means))]["step"]
    assert result["selected_step"] == best
    assert (
        best != curve[-1]["step"]
    )  # at this lr the curve peaks early: the restore is exercised (CPU runs are bitwise reproducible)
    saved = json.loads((run / "results.json").read_text())
    assert saved["selected_step"] == best and saved["after"]["32"] == curve[best - 1]["metrics"]["32"]
    rescored = evaluate(
        Encoder.from_config(ModelConfig(str(run / "model"))), load_ir(tiny_task / "beir", "dev"), [32, 16]
    )
    for dim in (32, 16):
        assert rescored[dim].metrics["ndcg@10"] == pytest.approx(
            curve[best - 1]["metrics"][str(dim)]["ndcg@10"], abs=1e-6
        )
    assert f"step {best}'s" in (run / "results.md").read_text()
    last = train.main(
        tiny_args(
            tiny_bert,
            tiny_task,
            tmp_path / "last",
            "--train.epochs",
            "2",
            "--eval.every",
            "epoch",
            "--eval.before",
            "false",
            "--train.lr",
            "3e-3",
            "--eval.select",
            "last",
        )
    )
    assert [point["step"] for point in last["curve"]] == [2, 4] and last["selected_step"] == 4


def test_evaluating_during_training_leaves_the_trained_weights_bitwise_the_same(tiny_bert, tiny_task, tmp_path):
    """With eval.select last, evaluation (before training and after every step) draws no random number
    and touches no weight the training uses: the model ends bitwise as a run that evaluates only at
    the end. bench/quality.py --adopt relies on it (a lever run with eval.every end stands for a
    config that evaluates every epoch). Dropout is on, so a stolen random draw would show."""
    from safetensors.torch import load_file

    common = ["--train.epochs", "2", "--train.lr", "5e-2", "--eval.select", "last"]
    busy = train.main(
        tiny_args(tiny_bert, tiny_task, tmp_path / "busy", *common, "--eval.every", "1", "--eval.before", "true")
    )
    quiet = train.main(
        tiny_args(tiny_bert, tiny_task, tmp_path / "quiet", *common, "--eval.every", "end", "--eval.before", "false")
    )
    assert [point["step"] for point in busy["curve"]] == [1, 2, 3, 4] and len(quiet["curve"]) <= 1
    trained, again = (load_file(tmp_path / run / "model" / "model.safetensors") for run in ("busy", "quiet"))
    start = load_file(tiny_bert / "model.safetensors")
    assert trained.keys() == again.keys()
    assert all(torch.equal(trained[key], again[key]) for key in trained)
    moved = [key for key in trained if key in start and not torch.equal(trained[key], start[key])]
    assert len(moved) > len(trained) // 2  # it did train


def test_a_selected_dim_that_is_not_evaluated_is_named(tiny_bert, tiny_task, tmp_path):
    with pytest.raises(SystemExit, match=r"eval.select: dim 8 is not among the eval dims \[32, 16\]"):
        train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "run", "--eval.select", "ndcg@10:8"))


def test_results_show_the_paired_change(tiny_bert, tiny_task, tmp_path):
    train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "run", "--train.lr", "3e-3"))
    per_query = json.loads((tmp_path / "run" / "per_query.json").read_text())
    assert len(per_query["query_ids"]) == len(per_query["after"]["32"]["ndcg@10"]) == 40
    text = (tmp_path / "run" / "results.md").read_text()
    assert "95% CI" in text and "paired" in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--eval.every", "0"], "eval.every"),
        (["--eval.every", "often"], "eval.every"),
        (["--eval.every", "\u00b2"], "eval.every"),
        (["--eval.select", "ndcg@11:mean"], "eval.select"),
        (["--eval.select", "ndcg@10:x"], "eval.select"),
        (["--eval.every", "epoch", "--eval.after", "false"], "eval.every: 'epoch' needs data.eval and eval.after"),
        (["--data.hard_negatives.refresh", "1"], "refresh: re-mining needs data.hard_negatives.k > 0"),
        (["--data.hard_negatives.k", "1", "--data.hard_negatives.rank_max", "0"], "data.hard_negatives.rank_max"),
    ],
)
def test_bad_eval_schedule_is_named(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(["--config", str(ROOT / "configs" / "obliqa.yaml"), *argv])


def test_mine_then_train_in_one_command(tiny_bert, tiny_task, tmp_path, monkeypatch):
    """data.hard_negatives: mined with the model being trained before step 1, appended to each row's own
    negative, never a passage known relevant to the row's question; re-mined each epoch with refresh 1;
    a second run over the same output reuses the complete mined file, and a run in another folder
    copies it from data.hard_negatives.cache (which keeps the start's set, not the refresh's)."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    mining = [
        "--data.hard_negatives.cache",
        str(cache),
        "--data.hard_negatives.k",
        "2",
        "--data.hard_negatives.corpus",
        str(tiny_task / "beir"),
        "--data.hard_negatives.rank_max",
        "8",
        "--data.hard_negatives.max_relative",
        "null",
        "--eval.before",
        "false",
    ]
    result = train.main(
        tiny_args(tiny_bert, tiny_task, run, *mining, "--train.epochs", "2", "--data.hard_negatives.refresh", "1")
    )
    assert result["steps"] == 4
    rows = [json.loads(line) for line in (tiny_task / "pairs.jsonl").read_text().splitlines()]
    relevant: dict[str, set[str]] = {}
    for row in rows:
        relevant.setdefault(row["anchor"], set()).add(row["positive"])
    for directory in ("start", "epoch1"):
        mined = [
            json.loads(line)
            for line in (run / "hard_negatives" / directory / "triplets.jsonl").read_text().splitlines()
        ]
        assert [m["anchor"] for m in mined] == [r["anchor"] for r in rows]
        assert sum(len(m["negatives"]) for m in mined) > 0
        assert all(not set(m["negatives"]) & relevant[m["anchor"]] for m in mined)
    triplets = run / "hard_negatives" / "start" / "triplets.jsonl"
    stamp = triplets.stat().st_mtime_ns
    train.main(tiny_args(tiny_bert, tiny_task, run, *mining, "--output.overwrite", "true"))
    assert triplets.stat().st_mtime_ns == stamp  # reused, not rewritten
    (entry,) = cache.iterdir()
    assert (entry / "triplets.jsonl").read_bytes() == triplets.read_bytes()

    def no_encoding(*args, **kwargs):
        raise AssertionError("mined again: the cache was not used")

    monkeypatch.setattr("retrieval.mining.embed_all", no_encoding)
    elsewhere = tmp_path / "elsewhere"
    train.main(tiny_args(tiny_bert, tiny_task, elsewhere, *mining))
    assert (elsewhere / "hard_negatives" / "start" / "triplets.jsonl").read_bytes() == triplets.read_bytes()


def test_missing_negative_slots_are_masked_and_add_no_gradient(tiny_bert):
    """A row with no mined negative trains with what it has: its empty slot is masked out of every
    softmax, so the loss is the loss of the batch without that slot."""
    import numpy as np

    from data import PairsData, index_texts
    from losses import LossSpec, infonce_per_dim

    encoder = train.load_encoder(Config(model=ModelConfig(str(tiny_bert))), "no").eval()
    anchors, positives = random_texts(4, seed=3, max_words=6), random_texts(4, seed=4)
    negatives = [[t] for t in random_texts(4, seed=5)]
    negatives[2] = []  # row 2 mined none
    table = index_texts(PairsData(anchors, positives, negatives, "t"))
    batch = gradcache.make_step_batch(table, train.tokenize_table(encoder, table), np.arange(4), 0, 1)
    with torch.no_grad():
        reps = encoder(**encoder.pad(batch.token_ids))
    reps.requires_grad_(True)
    ours = infonce_per_dim(reps[:4], reps[4:], LossSpec([32]), labels=batch.labels, known=batch.known)
    keep = [j for j in range(8) if j != 4 + 2]  # the candidates without the empty slot
    want = infonce_per_dim(reps[:4], reps[4:][keep], LossSpec([32]), labels=batch.labels)
    torch.testing.assert_close(ours, want)
    (grad,) = torch.autograd.grad(ours.sum(), reps)  # rows: 4 anchors, 4 positives, 4 negative slots
    assert torch.all(grad[8 + 2] == 0) and all(grad[8 + i].abs().sum() > 0 for i in (0, 1, 3))


def test_every_run_reports_bm25_and_the_fused_model(tiny_bert, tiny_task, tmp_path):
    """results.json's lexical section: BM25 as computed directly on the eval set, the base and the
    fine-tuned model fused at every dim with their weights, and the paired changes; the card says it."""
    from data import load_ir
    from retrieval.lexical import build_index, lexical_search
    from retrieval.metrics import score_ranking
    from retrieval.settings import LexicalConfig

    run = tmp_path / "run"
    lexical_args = ("--lexical.stemmer", "null", "--lexical.tokens", "references")
    train.main(tiny_args(tiny_bert, tiny_task, run, "--train.lr", "3e-3", *lexical_args))
    lexical = json.loads((run / "results.json").read_text())["lexical"]
    assert lexical["settings"]["tokens"] == "references"
    data = load_ir(tiny_task / "beir", "dev")
    index = build_index(data.corpus_texts, LexicalConfig(stemmer=None, tokens="references"))
    want = score_ranking(*lexical_search(index, data.query_texts, 100), data, [data.qrels[q] for q in data.query_ids])
    assert lexical["bm25"] == pytest.approx(want.metrics)
    assert set(lexical["before"]) == set(lexical["after"]) == {"32", "16"}
    assert 0 <= lexical["after"]["32"]["convex"]["weight"] <= 1 and "rrf" in lexical["after"]["16"]
    assert set(lexical["changes"]) == {
        "after_vs_bm25",
        "after_fused_vs_bm25",
        "after_fused_vs_before_fused",
        "before_fused_vs_bm25",
    }
    change = lexical["changes"]["after_fused_vs_before_fused"]["32"]["ndcg@10"]
    assert change["new"] == pytest.approx(lexical["after"]["32"]["convex"]["ndcg@10"])
    assert change["base"] == pytest.approx(lexical["before"]["32"]["convex"]["ndcg@10"])
    per_query = json.loads((run / "per_query.json").read_text())  # for paired comparisons between runs
    assert np.mean(per_query["after_fused"]["32"]["ndcg@10"]) == pytest.approx(
        lexical["after"]["32"]["convex"]["ndcg@10"]
    )
    assert np.mean(per_query["bm25"]["ndcg@10"]) == pytest.approx(want.metrics["ndcg@10"])
    assert "## Against BM25, the baseline you already have" in (run / "results.md").read_text()
    assert "BM25 (rule numbers such as 3.2.1 kept as tokens): NDCG@10" in (run / "results.md").read_text()
    assert "## Against BM25" in (run / "model" / "README.md").read_text()
    quiet = train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "none", "--lexical.retriever", "none"))
    assert json.loads((tmp_path / "none" / "results.json").read_text())["lexical"] is None and quiet["steps"] == 2


def test_a_run_reranks_the_fused_model_with_eval_rerank(tiny_bert, tiny_task, tmp_path):
    """eval.rerank: results.json, results.md and the card carry the fused top k re-ranked; at the
    saved weight 0 it is the fusion itself, and a weight chosen on the eval set is never below it."""
    from retrieval.rerank import CrossEncoder

    zero, chosen = tmp_path / "rr_zero", tmp_path / "rr_chosen"
    CrossEncoder(tiny_bert, max_length=32).save(zero, {"depth": 5, "held_out": {"weight": 0.0, "weight_from": "x"}})
    CrossEncoder(tiny_bert, max_length=32).save(chosen, {"depth": 5})
    run = tmp_path / "run"
    train.main(tiny_args(tiny_bert, tiny_task, run, "--eval.rerank", str(zero)))
    lexical = json.loads((run / "results.json").read_text())["lexical"]
    for label in ("before", "after"):
        for dim in ("32", "16"):
            point = lexical[label][dim]
            assert point["reranked"]["weight"] == 0.0
            assert point["reranked"]["ndcg@10"] == pytest.approx(point["convex"]["ndcg@10"], abs=1e-12)
    assert {"after_reranked_vs_bm25", "after_reranked_vs_after_fused", "after_reranked_vs_before_reranked"} <= set(
        lexical["changes"]
    )
    assert lexical["changes"]["after_reranked_vs_after_fused"]["32"]["ndcg@10"]["diff"] == pytest.approx(0, abs=1e-12)
    assert "fine-tuned + BM25, re-ranked (w)" in (run / "results.md").read_text()
    assert "Fused and re-ranked by the cross-encoder (weight 0.00)" in (run / "model" / "README.md").read_text()

    train.main(
        tiny_args(tiny_bert, tiny_task, tmp_path / "run2", "--eval.rerank", str(chosen), "--eval.before", "false")
    )
    point = json.loads((tmp_path / "run2" / "results.json").read_text())["lexical"]["after"]["32"]
    assert point["reranked"]["ndcg@10"] >= point["convex"]["ndcg@10"] - 1e-12
    with pytest.raises(SystemExit, match="eval.rerank: .*no such directory"):
        train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "run3", "--eval.rerank", str(tmp_path / "missing")))
    with pytest.raises(SystemExit, match="eval.rerank: re-ranks the model fused with BM25"):
        train.main(
            tiny_args(
                tiny_bert, tiny_task, tmp_path / "run3", "--eval.rerank", str(zero), "--lexical.retriever", "none"
            )
        )
    leaky = tmp_path / "rr_dev"
    trained_on_dev = {"depth": 5, "data_path": str((tiny_task / "beir").resolve()), "split": "dev"}
    CrossEncoder(tiny_bert, max_length=32).save(leaky, trained_on_dev)
    with pytest.raises(SystemExit, match="eval.rerank: .* was trained on dev of .*, the set evaluated"):
        train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "run3", "--eval.rerank", str(leaky)))
    assert not (tmp_path / "run3").exists()


def test_a_run_fuses_with_question_memory_with_eval_memory(tiny_bert, tiny_task, tmp_path):
    """eval.memory: results.json, results.md, per_query.json and the card carry the fusion that
    remembers the training questions, before and after, and after it is what evaluate.py --memory
    gives for the saved model at the same weight; lexical off, or no training positive among the
    eval passages, is one error line."""
    import evaluate

    run = tmp_path / "run"
    train.main(tiny_args(tiny_bert, tiny_task, run, "--eval.memory", "true", "--lexical.fusion_weight", "0.5"))
    results = json.loads((run / "results.json").read_text())
    lexical = results["lexical"]
    for label in ("before", "after"):
        for dim in ("32", "16"):
            assert lexical[label][dim]["remembered"]["weight"] == 0.5
    assert {"after_remembered_vs_bm25", "after_remembered_vs_after_fused", "after_remembered_vs_before_remembered"} <= (
        set(lexical["changes"])
    )
    per_query = json.loads((run / "per_query.json").read_text())
    assert np.mean(per_query["after_remembered"]["32"]["ndcg@10"]) == pytest.approx(
        lexical["after"]["32"]["remembered"]["ndcg@10"]
    )
    assert "after_remembered_vs_after_fused" in results["seen"]["changes"]["seen"]  # every dev question is seen
    assert "fine-tuned + BM25 + memory (w)" in (run / "results.md").read_text()
    assert "Fused with question memory" in (run / "model" / "README.md").read_text()
    theirs = evaluate.main(
        f"--model {run / 'model'} --data {tiny_task / 'beir'} --split dev --dims 32,16 --resamples 50 "
        f"--fusion-weight 0.5 --memory {tiny_task / 'pairs.jsonl'}".split()
    )["lexical"]["memory"]
    for dim in ("32", "16"):
        assert lexical["after"][dim]["remembered"]["ndcg@10"] == pytest.approx(
            theirs["fused"][dim]["convex"]["ndcg@10"], abs=1e-6
        )

    with pytest.raises(SystemExit, match="eval.memory: remembers in the model fused with BM25"):
        train.main(
            tiny_args(tiny_bert, tiny_task, tmp_path / "r2", "--eval.memory", "true", "--lexical.retriever", "none")
        )
    other = tmp_path / "other"
    (other / "qrels").mkdir(parents=True)
    (other / "corpus.jsonl").write_text(json.dumps({"_id": "x", "text": "no training passage"}) + "\n")
    (other / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "a question"}) + "\n")
    (other / "qrels" / "dev.tsv").write_text("q\tx\t1\n")
    with pytest.raises(
        SystemExit, match="error: eval.memory: eval set .*: none of the .* training positives is a passage"
    ):
        train.main(
            [*tiny_args(tiny_bert, tiny_task, tmp_path / "r3", "--eval.memory", "true"), "--data.eval", str(other)]
        )


def test_selection_on_the_fused_metric(tiny_bert, tiny_task, tmp_path):
    run = tmp_path / "run"
    args = ["--train.epochs", "2", "--eval.every", "1", "--eval.before", "false", "--train.lr", "5e-2"]
    result = train.main(tiny_args(tiny_bert, tiny_task, run, *args, "--eval.select", "ndcg@10:hybrid:16"))
    fused = [point["hybrid"]["16"]["ndcg@10"] for point in result["curve"]]
    assert [point["score"] for point in result["curve"]] == fused
    assert result["selected_step"] == result["curve"][fused.index(max(fused))]["step"]
    with pytest.raises(SystemExit, match="needs lexical.retriever bm25"):
        train.main(
            tiny_args(tiny_bert, tiny_task, run, "--eval.select", "ndcg@10:hybrid:16", "--lexical.retriever", "none")
        )


def test_mine_from_bm25_then_train(tiny_bert, tiny_task, tmp_path):
    """data.hard_negatives.source bm25 end to end: mined without the model, never a known relevant passage."""
    run = tmp_path / "run"
    result = train.main(
        tiny_args(
            tiny_bert,
            tiny_task,
            run,
            "--data.hard_negatives.k",
            "1",
            "--data.hard_negatives.source",
            "bm25",
            "--data.hard_negatives.corpus",
            str(tiny_task / "beir"),
            "--eval.before",
            "false",
        )
    )
    assert result["steps"] == 2
    mined = [
        json.loads(line) for line in (run / "hard_negatives" / "start" / "triplets.jsonl").read_text().splitlines()
    ]
    rows = [json.loads(line) for line in (tiny_task / "pairs.jsonl").read_text().splitlines()]
    relevant: dict[str, set[str]] = {}
    for row in rows:
        relevant.setdefault(row["anchor"], set()).add(row["positive"])
    assert sum(len(m["negatives"]) for m in mined) > 0
    assert all(not set(m["negatives"]) & relevant[m["anchor"]] for m in mined)
    meta = json.loads((run / "hard_negatives" / "start" / "meta.json").read_text())
    assert meta["settings"]["source"] == "bm25" and "lexical" in meta["fingerprint_extra"]


def test_training_for_the_hybrid_feeds_the_bm25_prior_to_the_loss(tiny_bert, tiny_task, tmp_path):
    """loss.lexical_scale > 0: each step's batch carries, for row g's question and candidate j (the G
    positives, then the negatives), BM25 from its definition over the table's passages, divided by the
    question's best; the run trains (a different loss from the same start)."""
    from helpers import reference_bm25

    seen = []

    def step_batch(batch, global_rows, table, tokens):
        candidates = [*table.positive_ids[global_rows].tolist(), *table.negative_ids[global_rows].reshape(-1).tolist()]
        want = np.zeros(tuple(batch.lexical.shape), dtype=np.float64)
        for g, row in enumerate(global_rows.tolist()):
            question = table.anchor_texts[table.anchor_ids[row]]
            scores = reference_bm25(table.passage_texts, question, 1.5, 0.75, False, set())
            for j, passage in enumerate(candidates):
                want[g, j] = scores[passage] / max(scores) if passage >= 0 and max(scores) > 0 else 0.0
        seen.append(np.allclose(batch.lexical.numpy(), want, rtol=1e-5, atol=1e-6))

    extra = (
        "--lexical.stemmer",
        "null",
        "--lexical.stopwords",
        "null",
        "--eval.before",
        "false",
        "--lexical.retriever",
        "none",
    )
    hybrid = train.main(
        tiny_args(tiny_bert, tiny_task, tmp_path / "h", "--loss.lexical_scale", "4", *extra),
        hooks=train.Hooks(step_batch=step_batch),
    )
    plain = train.main(tiny_args(tiny_bert, tiny_task, tmp_path / "p", *extra))
    assert seen == [True, True] and hybrid["steps"] == plain["steps"] == 2
    logs = [json.loads((tmp_path / r / "train_log.jsonl").read_text().splitlines()[0])["loss"] for r in ("h", "p")]
    assert logs[0] != logs[1]


def test_the_distillation_teacher_is_the_base_model_fused_with_bm25(tiny_bert, tiny_task):
    """FusedTeacher.scores against a direct computation: per question, the base model's cosine
    and bm25s's score, each min-max normalised over the candidates, mixed by the weight."""
    import bm25s

    from data import index_texts, load_pairs
    from model import Encoder
    from retrieval.lexical import LexicalPrior
    from retrieval.settings import LexicalConfig
    from training.teacher import FusedTeacher

    table = index_texts(load_pairs(tiny_task / "pairs.jsonl"))
    encoder = Encoder.from_config(ModelConfig(str(tiny_bert)))
    prior = LexicalPrior(table.anchor_texts, table.passage_texts, LexicalConfig())
    teacher = FusedTeacher.from_model(encoder, table, prior, 0.3, batch_size=8)
    rows = np.arange(6)
    candidates = np.concatenate([table.positive_ids[rows], table.negative_ids[rows].reshape(-1)])
    got = teacher.scores(table.anchor_ids[rows], candidates)
    questions = torch.nn.functional.normalize(encoder.encode(table.anchor_texts), dim=-1).numpy().astype(np.float64)
    passages = torch.nn.functional.normalize(encoder.encode(table.passage_texts), dim=-1).numpy().astype(np.float64)
    stopwords = set(bm25s.stopwords.STOPWORDS_EN)

    def scaled(x):
        return (x - x.min()) / (x.max() - x.min()) if x.max() > x.min() else np.zeros_like(x)

    for g, question in enumerate(table.anchor_ids[rows]):
        dense = np.array([questions[question] @ passages[c] for c in candidates])
        bm25 = reference_bm25(table.passage_texts, table.anchor_texts[question], 1.5, 0.75, True, stopwords)
        lexical = np.array(bm25)[candidates]
        np.testing.assert_allclose(got[g], 0.3 * scaled(dense) + 0.7 * scaled(lexical), atol=1e-5)


def test_a_run_with_distillation_trains_on_the_teachers_scores(tiny_bert, tiny_task, tmp_path):
    """loss.distill reaches the loss: the first step's loss is the plain run's plus lambda x a
    positive KL (the same seed, batch and weights up to it), and every later loss is finite."""

    def run(distill: str) -> list[dict]:
        out = tmp_path / f"run{distill}"
        args = ["--model.name_or_path", str(tiny_bert), "--data.train", str(tiny_task / "pairs.jsonl")]
        args += ["--train.global_batch", "8", "--loss.distill", distill, "--report.report_to", "[]"]
        train.main([*args, "--output.dir", str(out)])
        return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]

    plain, distilled = run("0"), run("1.0")
    assert len(plain) == len(distilled) and all(math.isfinite(r["loss"]) for r in distilled)
    assert distilled[0]["loss"] > plain[0]["loss"] + 1e-3  # KL(teacher || model) > 0 is added


def test_the_reranker_teacher_scores_each_rows_own_candidates_as_sentence_transformers_does(tiny_bert, tiny_task):
    """RerankerTeacher.scores: a (question, own positive or negative) cell holds the cross-encoder's
    logit, sentence-transformers' CrossEncoder.predict of the same saved directory; every other
    cell (another question's candidate, an empty slot) is -inf."""
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from data import index_texts, load_pairs
    from retrieval.rerank import CrossEncoder
    from training.teacher import RerankerTeacher

    saved = tiny_task.parent / "teacher_reranker"
    if not saved.exists():
        CrossEncoder(tiny_bert, max_length=32).save(saved, {"depth": 5})
    table = index_texts(load_pairs(tiny_task / "pairs.jsonl"))
    table.negative_ids[3, 0] = -1  # an empty slot
    teacher = RerankerTeacher.from_reranker(CrossEncoder.load(saved, device="cpu"), table, batch_size=7)
    rows = np.arange(8)
    candidates = np.concatenate([table.positive_ids[rows], table.negative_ids[rows].reshape(-1)])
    got = teacher.scores(table.anchor_ids[rows], candidates)  # (8, 16)
    theirs = STCrossEncoder(str(saved), device="cpu")
    for g, row in enumerate(rows):
        own = {int(table.positive_ids[row]), *(int(n) for n in table.negative_ids[row] if n >= 0)}
        for m, passage in enumerate(candidates):
            if passage >= 0 and int(passage) in own:
                pair = (table.anchor_texts[table.anchor_ids[row]], table.passage_texts[passage])
                assert got[g, m] == pytest.approx(float(theirs.predict([pair])[0]), abs=1e-5)
            elif not any(  # the same question in another row shares its candidates
                table.anchor_ids[r] == table.anchor_ids[row]
                and passage in {int(table.positive_ids[r]), *map(int, table.negative_ids[r])}
                for r in range(len(table))
            ):
                assert got[g, m] == -np.inf
    assert np.isneginf(got[:, 8 + 3]).all()  # row 3's empty negative slot


def test_a_run_distils_a_reranker(tiny_bert, tiny_task, tmp_path):
    """loss.distill_teacher reranker reaches the loss: the first step's loss is the plain run's plus
    lambda x a positive KL; a missing re-ranker or one without distillation stops with one line."""
    from retrieval.rerank import CrossEncoder

    saved = tmp_path / "rr"
    CrossEncoder(tiny_bert, max_length=32).save(saved, {"depth": 5})

    def run(name: str, *extra: str) -> list[dict]:
        argv = tiny_args(tiny_bert, tiny_task, tmp_path / name, "--eval.before", "false", *extra)
        train.main([*argv, "--report.report_to", "[]"])
        return [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]

    plain = run("plain")
    with pytest.raises(SystemExit, match="loss.distill_teacher reranker: needs loss.distill_reranker"):
        run("bad", "--loss.distill", "1.0", "--loss.distill_teacher", "reranker")
    with pytest.raises(SystemExit, match="loss.distill_reranker: .*missing: no such directory"):
        run("bad", "--loss.distill", "1", "--loss.distill_teacher", "reranker", "--loss.distill_reranker", "missing")
    with pytest.raises(SystemExit, match=r"distillation is off \(loss.distill 0\)"):
        run("bad", "--loss.distill_teacher", "reranker", "--loss.distill_reranker", str(saved))
    assert not (tmp_path / "bad").exists()  # refused before anything is written
    distilled = run(
        "ce", "--loss.distill", "1.0", "--loss.distill_teacher", "reranker", "--loss.distill_reranker", str(saved)
    )
    assert len(plain) == len(distilled) and all(math.isfinite(r["loss"]) for r in distilled)
    assert distilled[0]["loss"] > plain[0]["loss"] + 1e-3
