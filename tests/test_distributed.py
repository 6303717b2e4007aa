"""Two CPU processes (torchrun, gloo) against one: gradients, losses, weights, DDP syncs, evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from data import SpreadBatchSampler, index_texts, known_relevant, load_pairs
from helpers import ROOT, child_env, make_tiny_bert, random_texts

WORKER = str(ROOT / "tests" / "dist_worker.py")


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory) -> Path:
    """Dropout 0: one process and two cut the batch differently, so dropout masks would differ."""
    return make_tiny_bert(tmp_path_factory.mktemp("bert0"), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """40 rows with explicit negatives, repeated positives and a repeated question."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    questions, passages = random_texts(40, seed=1, max_words=8), random_texts(30, seed=2)
    questions[9] = questions[4]
    with open(path, "w") as f:
        for i, q in enumerate(questions):
            f.write(
                json.dumps({"anchor": q, "positive": passages[i % 30], "negative": passages[(7 * i + 3) % 30]}) + "\n"
            )
    return path


def launch(processes: int, *args: str, script: str = WORKER) -> None:
    env = child_env()
    if processes == 1:  # no launcher at all: the plain, non-distributed path
        command = [sys.executable, script, *args]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
            script,
            *args,
        ]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def assert_gloo_shut_down(run: Path) -> None:
    """No gloo thread outlives the entry point. One left for interpreter exit to tear down aborted
    about 1 run in 40 ("terminate called without an active exception"): it was kept alive by
    torch.distributed.nn.functional, whose defaults bind the world group when it is first imported."""
    for rank in (0, 1):
        threads = json.loads((run / f"threads.{rank}.json").read_text())
        assert threads and not [name for name in threads if "gloo" in name], threads


def train_args(model: Path, pairs: Path, out: Path, micro_batch: int, *extra: str) -> list[str]:
    """Two plain SGD steps at lr 1e-2: a gradient off by a factor of 2 would show in the weights."""
    return [
        "--model.name_or_path",
        str(model),
        "--data.train",
        str(pairs),
        "--train.global_batch",
        "16",
        "--train.micro_batch",
        str(micro_batch),
        "--loss.dims",
        "32,8",
        "--train.optimizer",
        "sgd",
        "--train.lr",
        "1e-2",
        "--train.warmup_ratio",
        "0",
        "--train.max_grad_norm",
        "null",
        "--eval.before",
        "false",
        "--eval.after",
        "false",
        "--output.dir",
        str(out),
        *extra,
    ]


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def qrels_dir(pairs) -> Path:
    """A BEIR directory whose qrels make passages relevant to questions that no row pairs them with,
    so the table-wide mask reaches candidates in the other process's share and in other batches."""
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    passages = list(dict.fromkeys([r["positive"] for r in rows] + [r["negative"] for r in rows]))
    root = pairs.parent / "beir"
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": p}) + "\n" for i, p in enumerate(passages))
    )
    questions = list(dict.fromkeys(r["anchor"] for r in rows))
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": q}) + "\n" for i, q in enumerate(questions))
    )
    (root / "qrels" / "train.tsv").write_text(
        "".join(f"q{i}\td{(5 * i + 2) % len(passages)}\t1\n" for i in range(len(questions)))
    )
    return root


@pytest.mark.parametrize(
    "micro_batch,loss,qrels,cache",
    [
        (64, "--loss.symmetric=false", False, "true"),
        (5, "--loss.symmetric=true", False, "true"),
        (5, "--loss.symmetric=true", True, "true"),
        (5, "--loss.symmetric=true", False, "false"),
        (5, "--loss.gte=true", True, "true"),
    ],
    ids=["whole-share", "gradcache-uneven", "table-wide-qrels", "no-cache-uneven-checkpointed", "gte-table-wide"],
)
def test_two_processes_train_exactly_like_one(
    no_dropout_bert, pairs, qrels_dir, tmp_path, micro_batch, loss, qrels, cache
):
    """Per process: 8 rows = 24 texts with negatives; micro-batch 5 leaves an uneven last chunk of 4.
    Without the cache, every micro-batch's graph meets the others' in one backward under DDP, and
    with activation checkpointing each layer's recomputation runs inside that one backward."""
    runs = {}
    extra = ["--data.qrels", str(qrels_dir)] if qrels else []
    extra += ["--train.gradient_cache", cache]
    extra += ["--train.gradient_checkpointing", "true"] if cache == "false" else []
    extra += loss.split("=")
    for processes in (1, 2):
        runs[processes] = tmp_path / f"p{processes}"
        launch(
            processes,
            "train",
            str(runs[processes]),
            str(processes),
            "--",
            *train_args(no_dropout_bert, pairs, runs[processes], micro_batch, *extra),
        )
    if qrels:  # the qrels really add masked candidates to the batches trained on
        relevant = known_relevant(load_pairs(pairs), qrels_dir, "train")
        table, plain = index_texts(load_pairs(pairs), relevant), index_texts(load_pairs(pairs))
        assert any((table.known_mask(b) & ~plain.known_mask(b)).any() for b in SpreadBatchSampler(table, 16, 42))
    one, two = (torch.load(runs[p] / "grads.pt") for p in (1, 2))
    assert one.keys() == two.keys()
    scale = max(g.abs().max() for g in one.values())
    for name in one:  # DDP's averaged gradients equal the one-process gradient
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-5 * scale)
    assert len(losses(runs[1])) == 2
    assert losses(runs[2]) == pytest.approx(losses(runs[1]), rel=1e-5)
    w1, w2 = (load_file(runs[p] / "model" / "model.safetensors") for p in (1, 2))
    moved = max((w1[k] - load_file(no_dropout_bert / "model.safetensors").get(k, w1[k])).abs().max() for k in w1)
    assert moved > 1e-4  # the steps really changed the weights
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-5)
    assert_gloo_shut_down(runs[2])
    if loss == "--loss.gte=true":  # and the option reached the loss: plain InfoNCE trains otherwise
        plain = tmp_path / "plain"
        launch(1, "train", str(plain), "1", "--", *train_args(no_dropout_bert, pairs, plain, micro_batch, *extra[:-2]))
        assert losses(plain)[0] != pytest.approx(losses(runs[1])[0], rel=1e-3)


def assert_each_bucket_once_per_step(records: list[dict]) -> None:
    """Every bucket exactly once in each of the two steps. DDP rebuilds its buckets after the first
    step (the first one is capped at 1 MB, later ones at bucket_cap_mb), so their number can change."""
    for step in (0, 1):
        indices = sorted(r["bucket"] for r in records if r["step"] == step)
        assert indices == list(range(len(indices))) and indices
    assert len({r["bucket"] for r in records if r["step"] == 1}) >= 2  # several buckets: calls != buckets
    assert {r["step"] for r in records} == {0, 1}


def test_ddp_syncs_each_bucket_once_per_step_in_the_last_micro_batch_and_ranks_take_their_share(
    no_dropout_bert, pairs, tmp_path
):
    run = tmp_path / "hook"
    launch(2, "train", str(run), "2", "--hook", "--", *train_args(no_dropout_bert, pairs, run, 5))
    for rank in (0, 1):
        records = json.loads((run / f"buckets.{rank}.json").read_text())
        assert records and all(r["of"] == 5 and r["chunk"] == 4 for r in records)  # only in the last of 5 replays
        assert_each_bucket_once_per_step(records)
    # The sampler's global batches, each rank its own contiguous half, and what it embedded is that half.
    table = index_texts(load_pairs(pairs))
    want = [b.tolist() for b in SpreadBatchSampler(table, 16, seed=42).global_batches(0)]
    seen = [json.loads((run / f"rows.{rank}.json").read_text()) for rank in (0, 1)]
    for rank in (0, 1):
        assert [s["global"] for s in seen[rank]] == want
        assert [s["mine"] for s in seen[rank]] == [b[8 * rank : 8 * (rank + 1)] for b in want]
        assert all(s["embeds_mine"] for s in seen[rank])


def test_without_the_cache_ddp_syncs_each_bucket_once_per_step(no_dropout_bert, pairs, tmp_path):
    """Five forwards, the first four under no_sync (they skip the reducer's set-up), one backward:
    each bucket all-reduced once a step."""
    run = tmp_path / "hook"
    args = train_args(no_dropout_bert, pairs, run, 5, "--train.gradient_cache", "false")
    launch(2, "train", str(run), "2", "--hook", "--", *args)
    for rank in (0, 1):
        records = json.loads((run / f"buckets.{rank}.json").read_text())
        assert records and all(r["chunk"] == -1 for r in records)  # no replay happened
        synced = json.loads((run / f"forwards.{rank}.json").read_text())  # per forward: did it arm the reducer
        assert synced == [False, False, False, False, True] * 2  # two steps of five micro-batches
        assert_each_bucket_once_per_step(records)


def test_sharded_evaluation_encodes_each_text_once_and_matches_one_process(tiny_bert, tmp_path):
    for processes in (1, 2):
        launch(processes, "eval", str(tmp_path / f"p{processes}"), str(processes), str(tiny_bert))
    one = json.loads((tmp_path / "p1" / "metrics.json").read_text())
    two = json.loads((tmp_path / "p2" / "metrics.json").read_text())
    for dim in one:
        for metric, value in one[dim].items():
            assert two[dim][metric] == pytest.approx(value, abs=1e-6)
    encoded = [json.loads((tmp_path / "p2" / f"encoded.{r}.json").read_text()) for r in (0, 1)]
    assert encoded[0] and encoded[1]  # both processes did work
    assert Counter(encoded[0] + encoded[1]) == Counter(json.loads((tmp_path / "p1" / "encoded.0.json").read_text()))
    assert_gloo_shut_down(tmp_path / "p2")


def test_evaluate_cli_under_torchrun_matches_one_process(tiny_bert, tmp_path):
    """The user's entry point: `torchrun --nproc_per_node 2 evaluate.py ...` exits 0 and writes the
    one-process metrics."""
    args = [
        "--model",
        str(tiny_bert),
        "--data",
        str(ROOT / "samples" / "quickstart"),
        "--split",
        "dev",
        "--dims",
        "32,8",
        "--batch-size",
        "1",
    ]  # each text alone: the same arithmetic however the texts are sharded
    for processes in (1, 2):
        launch(processes, *args, "--out", str(tmp_path / f"p{processes}.json"), script=str(ROOT / "evaluate.py"))
    one, two = (json.loads((tmp_path / f"p{p}.json").read_text()) for p in (1, 2))
    assert one["meta"]["corpus"] == two["meta"]["corpus"] == 298
    for dim in ("32", "8"):
        assert one[dim].keys() == two[dim].keys()
        for metric, value in one[dim].items():
            assert two[dim][metric] == pytest.approx(value, abs=1e-6), (dim, metric)


def test_a_batch_that_does_not_divide_over_the_processes_is_refused_before_the_model_loads(pairs, tmp_path):
    """Two processes, global batch 7, and a model that does not exist: the batch is what is named
    (it used to be found only after the model had loaded and the negatives been mined)."""
    argv = ["--model.name_or_path", str(tmp_path / "no_model"), "--data.train", str(pairs)]
    argv += ["--train.global_batch", "7", "--output.dir", str(tmp_path / "run"), "--report.report_to", "[]"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(ROOT / "train.py"), *argv]
    proc = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert "error: train.global_batch 7 does not divide over 2 processes" in proc.stderr, proc.stderr[-3000:]
