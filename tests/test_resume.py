"""Exact resume: a run killed with SIGKILL mid-epoch and resumed (twice) ends bitwise equal to an
uninterrupted one, on one process and on two; a damaged checkpoint is skipped or refused."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train
from common.files import file_sha256
from helpers import ROOT, child_env, random_texts
from training.checkpoint import verify

WORKER = str(ROOT / "tests" / "dist_worker.py")


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    """40 pairs (batch 8: 5 steps an epoch; a repeated question) and a BEIR dev set."""
    root = tmp_path_factory.mktemp("resume_task")
    questions, passages = random_texts(40, seed=11, max_words=8), random_texts(30, seed=12)
    questions[9] = questions[4]
    with open(root / "pairs.jsonl", "w") as f:
        f.writelines(json.dumps({"anchor": q, "positive": passages[i % 30]}) + "\n" for i, q in enumerate(questions))
    (root / "beir" / "qrels").mkdir(parents=True)
    with open(root / "beir" / "corpus.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"d{i}", "text": p}) + "\n" for i, p in enumerate(passages))
    with open(root / "beir" / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"q{i}", "text": q}) + "\n" for i, q in enumerate(questions[:12]))
    (root / "beir" / "qrels" / "dev.tsv").write_text("".join(f"q{i}\td{i % 30}\t1\n" for i in range(12)))
    return root


def run_args(model: Path, task: Path, out: Path, *extra: str) -> list[str]:
    """Dropout on (the tiny BERT's 0.1), gradient caching on (micro-batch 3 of 8 rows: 16 texts),
    10 steps over 2 epochs, a checkpoint every 2 steps, dev evaluated each epoch, the best kept."""
    return [
        "--model.name_or_path",
        str(model),
        "--data.train",
        str(task / "pairs.jsonl"),
        "--data.eval",
        str(task / "beir"),
        "--eval.every",
        "epoch",
        "--eval.select",
        "ndcg@10:mean",
        "--train.global_batch",
        "8",
        "--train.micro_batch",
        "3",
        "--train.epochs",
        "2",
        "--loss.dims",
        "32,16",
        "--train.lr",
        "1e-3",
        "--checkpoint.every",
        "2",
        "--checkpoint.keep",
        "2",
        "--report.report_to",
        "[]",
        "--output.dir",
        str(out),
        *extra,
    ]


def launch(processes: int, out: Path, args: list[str], kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = child_env()
    flags = ["--kill-at", str(kill_at)] if kill_at else []
    worker = [WORKER, "train", str(out / "worker"), str(processes), *flags, "--", *args]
    if processes == 1:
        command = [sys.executable, *worker]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
            *worker,
        ]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def log_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def assert_same_run(resumed: Path, straight: Path) -> None:
    """Weights, optimiser state and learning rate torch.equal; the same loss at every step."""
    last = "checkpoints/step-00000010"
    for name in ("model/model.safetensors", f"{last}/model.safetensors"):
        a, b = load_file(resumed / name), load_file(straight / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    opt_a = torch.load(resumed / last / "optimizer.bin", weights_only=True)
    opt_b = torch.load(straight / last / "optimizer.bin", weights_only=True)
    assert [g["lr"] for g in opt_a["param_groups"]] == [g["lr"] for g in opt_b["param_groups"]]
    for key, state in opt_b["state"].items():
        assert all(torch.equal(state[n], opt_a["state"][key][n]) for n in state), key
    log_a, log_b = log_of(resumed), log_of(straight)
    assert [r["step"] for r in log_a] == list(range(1, 11))
    assert [(r["loss"], r["lr"], r["grad_norm"], r["loss_by_dim"]) for r in log_a] == [
        (r["loss"], r["lr"], r["grad_norm"], r["loss_by_dim"]) for r in log_b
    ]
    results_a, results_b = (json.loads((run / "results.json").read_text()) for run in (resumed, straight))
    assert results_a["curve"] == results_b["curve"] and results_a["selected_step"] == results_b["selected_step"]
    assert results_a["before"] == results_b["before"]


@pytest.mark.parametrize("processes", [1, 2])
def test_sigkill_mid_epoch_then_resume_twice_equals_an_uninterrupted_run(tiny_bert, task, tmp_path, processes):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proc = launch(processes, straight, run_args(tiny_bert, task, straight))
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = launch(processes, resumed, run_args(tiny_bert, task, resumed), kill_at=7)  # epoch 2, its 2nd step
    assert killed.returncode != 0 and not (resumed / "model").exists()
    assert [r["step"] for r in log_of(resumed)] == list(range(1, 8))  # line-buffered: every step is there
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["step-00000004", "step-00000006"]

    again = launch(processes, resumed, run_args(tiny_bert, task, resumed, "--resume"), kill_at=9)
    assert again.returncode != 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr and "step 6" in again.stderr
    last = launch(processes, resumed, run_args(tiny_bert, task, resumed, "--resume"))
    assert last.returncode == 0, last.stderr[-3000:]
    assert "step 8" in last.stderr
    assert_same_run(resumed, straight)


def test_a_resume_at_an_epoch_boundary_with_a_refresh_and_layer_decay_equals_an_uninterrupted_run(
    tiny_bert, task, tmp_path
):
    """Checkpoints at each epoch's end (step 5: the sampler at the boundary), negatives mined again
    with the model at each epoch's start (refresh 1), and the lr split by depth (layer decay): killed in
    epoch 2 and resumed from step 5, the run is the one never stopped, bit for bit."""
    extra = ["--checkpoint.every", "epoch", "--data.hard_negatives.k", "1", "--data.hard_negatives.refresh", "1"]
    extra += ["--train.layer_decay", "0.8"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proc = launch(1, straight, run_args(tiny_bert, task, straight, *extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (straight / "hard_negatives" / "epoch1" / "triplets.jsonl").is_file()
    killed = launch(1, resumed, run_args(tiny_bert, task, resumed, *extra), kill_at=7)
    assert killed.returncode != 0 and sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["step-00000005"]
    last = launch(1, resumed, run_args(tiny_bert, task, resumed, *extra, "--resume"))
    assert last.returncode == 0, last.stderr[-3000:]
    assert "step 5" in last.stderr
    assert_same_run(resumed, straight)
    for name in ("start", "epoch1"):
        assert (resumed / "hard_negatives" / name / "triplets.jsonl").read_bytes() == (
            straight / "hard_negatives" / name / "triplets.jsonl"
        ).read_bytes()


@pytest.fixture(scope="module")
def finished(tiny_bert, task, tmp_path_factory) -> Path:
    """An uninterrupted in-process run, keeping every checkpoint (2, 4, 6, 8, 10)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train.main(run_args(tiny_bert, task, out, "--checkpoint.keep", "5"))
    return out


def copy_until(finished: Path, target: Path, step: int) -> None:
    """The run directory as a crash after `step`'s checkpoint would leave it."""
    shutil.copytree(finished, target, ignore=shutil.ignore_patterns("model", "results.*", "per_query.json"))
    for path in (target / "checkpoints").iterdir():
        if int(path.name[5:]) > step:
            shutil.rmtree(path)


@pytest.mark.parametrize("damage", ["missing_rng", "truncated_weights", "no_manifest"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    tiny_bert, task, finished, tmp_path, damage, caplog
):
    caplog.set_level(logging.INFO, logger="train")
    run = tmp_path / "run"
    copy_until(finished, run, 8)
    newest = run / "checkpoints" / "step-00000008"
    if damage == "missing_rng":
        (newest / "rng_0.json").unlink()
    elif damage == "truncated_weights":
        data = (newest / "model.safetensors").read_bytes()
        (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    else:
        (newest / "complete.json").unlink()
    train.main(run_args(tiny_bert, task, run, "--checkpoint.keep", "5", "--resume"))
    assert "skipping" in caplog.text and "step-00000008" in caplog.text and "resumed from" in caplog.text
    assert "step 6" in caplog.text
    a, b = load_file(run / "model" / "model.safetensors"), load_file(finished / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # steps 7-10 re-run from step 6: the same model


def test_a_damaged_checkpoint_named_explicitly_fails_loudly(tiny_bert, task, finished, tmp_path):
    run = tmp_path / "run"
    copy_until(finished, run, 6)
    (run / "checkpoints" / "step-00000006" / "rng_0.json").unlink()
    with pytest.raises(SystemExit, match="not a complete checkpoint: rng_0.json is missing"):
        train.main(run_args(tiny_bert, task, run, "--resume", str(run / "checkpoints" / "step-00000006")))


def test_an_interrupted_save_leaves_the_previous_checkpoint_and_model_loadable(tiny_bert, task, finished, tmp_path):
    """A crash while writing step 8 leaves step-00000008.tmp with some of its files: it is never
    taken for a checkpoint, the previous one resumes, and the next save replaces the partial one."""
    run = tmp_path / "run"
    copy_until(finished, run, 6)
    partial = run / "checkpoints" / "step-00000008.tmp"
    shutil.copytree(finished / "checkpoints" / "step-00000008", partial)
    (partial / "complete.json").unlink()
    (partial / "optimizer.bin").write_bytes(b"\0" * 100)
    assert train.find_checkpoint(run, "latest").name == "step-00000006"
    train.main(run_args(tiny_bert, task, run, "--checkpoint.keep", "5", "--resume"))
    assert not partial.exists()
    a, b = load_file(run / "model" / "model.safetensors"), load_file(finished / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "change, reason",
    [
        (["--train.lr", "2e-3"], "train.lr: 0.001 in the checkpoint, 0.002 now"),
        (["--loss.dims", "32,8"], "loss.dims"),
    ],
)
def test_a_checkpoint_of_another_config_is_refused(tiny_bert, task, finished, tmp_path, change, reason):
    run = tmp_path / "run"
    copy_until(finished, run, 6)
    with pytest.raises(SystemExit, match=reason):
        train.main(run_args(tiny_bert, task, run, "--resume", *change))


def test_a_checkpoint_of_other_data_is_refused(tiny_bert, task, tmp_path):
    """The same path, other contents: the table's digest differs."""
    shutil.copytree(task, tmp_path / "task")
    run = tmp_path / "run"
    train.main(
        run_args(tiny_bert, tmp_path / "task", run, "--train.epochs", "1", "--data.eval", "null", "--eval.every", "end")
    )
    rows = (tmp_path / "task" / "pairs.jsonl").read_text().splitlines()
    (tmp_path / "task" / "pairs.jsonl").write_text("\n".join(rows[:-1] + [rows[0]]) + "\n")  # one row changed
    with pytest.raises(SystemExit, match="the training data differ"):
        train.main(
            run_args(
                tiny_bert,
                tmp_path / "task",
                run,
                "--train.epochs",
                "1",
                "--data.eval",
                "null",
                "--eval.every",
                "end",
                "--resume",
            )
        )


def test_resume_without_a_checkpoint_says_so(tiny_bert, task, tmp_path):
    with pytest.raises(SystemExit, match="no complete checkpoint under"):
        train.main(run_args(tiny_bert, task, tmp_path / "run", "--resume"))


def test_a_sigkill_is_a_crash_not_a_clean_exit(tiny_bert, task, tmp_path):
    """The kill hook really kills (the resume tests rely on it): exit by signal 9, no results."""
    proc = launch(1, tmp_path, run_args(tiny_bert, task, tmp_path / "run", "--checkpoint.every", "no"), kill_at=3)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "results.json").exists()


def test_a_fresh_run_never_mixes_with_an_earlier_runs_checkpoints(tiny_bert, task, finished, tmp_path):
    run = tmp_path / "run"
    copy_until(finished, run, 6)
    with pytest.raises(SystemExit, match="holds an earlier run's checkpoints; add --resume"):
        train.main(run_args(tiny_bert, task, run))
    train.main(run_args(tiny_bert, task, run, "--train.epochs", "1", "--output.overwrite", "true"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004", "step-00000005"]


def test_resuming_an_older_checkpoint_sets_the_newer_ones_aside(tiny_bert, task, finished, tmp_path):
    """Resuming step 4 while 6 and 8 exist (an abandoned continuation): 6 and 8 must not be pruned
    in favour of, or resumed instead of, this run's own checkpoints. A torn last log line (a
    crash mid-write) is dropped, not a reason to fail."""
    run = tmp_path / "run"
    copy_until(finished, run, 8)
    with open(run / "train_log.jsonl", "a") as log:
        log.write('{"step": 9, "lo')
    train.main(
        run_args(tiny_bert, task, run, "--checkpoint.keep", "5", "--resume", str(run / "checkpoints" / "step-00000004"))
    )
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "step-00000006.abandoned" in names and "step-00000008.abandoned" in names
    assert [r["step"] for r in log_of(run)] == list(range(1, 11))
    a, b = load_file(run / "model" / "model.safetensors"), load_file(finished / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


class Payload:
    """Unpickling this runs a shell command that leaves a marker file: what a hostile checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def rewrite_manifest(checkpoint: Path, **fields) -> None:
    """The manifest a forger would write: every file's true size and sha256, so it verifies."""
    manifest = json.loads((checkpoint / "complete.json").read_text())
    manifest.update(fields)
    manifest["files"] = {
        p.relative_to(checkpoint).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(checkpoint.rglob("*"))
        if p.is_file() and p.name != "complete.json"
    }
    (checkpoint / "complete.json").write_text(json.dumps(manifest))


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_and_nothing_runs(tiny_bert, task, finished, tmp_path):
    """The payload in optimizer.bin (the one file in pickle format), with a manifest that verifies:
    resume refuses it with a message, and the command never runs."""
    run, marker = tmp_path / "run", tmp_path / "pwned"
    copy_until(finished, run, 6)
    checkpoint = run / "checkpoints" / "step-00000006"
    torch.save({"state": Payload(marker), "param_groups": []}, checkpoint / "optimizer.bin")
    rewrite_manifest(checkpoint)
    assert train.find_checkpoint(run, "latest") == checkpoint  # it verifies: the manifest cannot tell
    with pytest.raises(SystemExit, match="optimizer.bin holds something other than tensors and numbers"):
        train.main(run_args(tiny_bert, task, run, "--resume"))
    assert not marker.exists()


def test_an_older_pickled_run_state_is_never_loaded(tiny_bert, task, finished, tmp_path):
    """An old-format checkpoint (run_state.pt, here carrying a payload) is refused by name, before
    anything is read from it."""
    run, marker = tmp_path / "run", tmp_path / "pwned"
    copy_until(finished, run, 6)
    checkpoint = run / "checkpoints" / "step-00000006"
    (checkpoint / "run_state.json").unlink()
    (checkpoint / "run_state.safetensors").unlink()
    torch.save({"step": 6, "payload": Payload(marker)}, checkpoint / "run_state.pt")
    rewrite_manifest(checkpoint, format=1)
    with pytest.raises(SystemExit, match="written by an older train.py, whose run state is a pickle"):
        train.main(run_args(tiny_bert, task, run, "--resume", str(checkpoint)))
    assert not marker.exists()


@pytest.mark.parametrize(
    "damage, reason",
    [
        ({"files": ["model.safetensors"]}, "complete.json is malformed"),
        ({"files": {"../outside": {"size": 1, "sha256": "0"}}}, "outside the directory"),
        ({"world_size": "two"}, "complete.json is malformed"),
    ],
)
def test_a_malformed_manifest_is_a_damaged_checkpoint(tiny_bert, task, finished, tmp_path, damage, reason):
    run = tmp_path / "run"
    copy_until(finished, run, 6)
    checkpoint = run / "checkpoints" / "step-00000006"
    manifest = json.loads((checkpoint / "complete.json").read_text())
    manifest.update(damage)
    (checkpoint / "complete.json").write_text(json.dumps(manifest))
    assert reason in verify(checkpoint)
    with pytest.raises(SystemExit, match=reason):
        train.main(run_args(tiny_bert, task, run, "--resume", str(checkpoint)))


def test_an_unreadable_rng_state_fails_the_resume(tiny_bert, task, finished, tmp_path):
    """Accelerate only logs that it could not load random states; ours stops the resume."""
    run = tmp_path / "run"
    copy_until(finished, run, 6)
    checkpoint = run / "checkpoints" / "step-00000006"
    (checkpoint / "rng_0.json").write_text(json.dumps({"python": [3, [1, 2], None]}))
    rewrite_manifest(checkpoint)
    with pytest.raises(SystemExit, match="rng_0.json is not a readable RNG state"):
        train.main(run_args(tiny_bert, task, run, "--resume"))


def test_a_checkpoint_holds_no_pickle_but_the_optimiser(finished):
    """Every file of a checkpoint is JSON, safetensors, or the optimiser (read with weights_only)."""
    for checkpoint in (finished / "checkpoints").iterdir():
        names = {p.name for p in checkpoint.iterdir()} - {"best.safetensors"}  # once an evaluation has run
        assert names == {
            "complete.json",
            "model.safetensors",
            "optimizer.bin",
            "rng_0.json",
            "run_state.json",
            "run_state.safetensors",
        }, names


@pytest.mark.parametrize(
    "change, reason",
    [
        (("base_model", "files", "config.json"), "the base model differs (files config.json changed"),
        (("precision",), "precision: 'bf16' in the checkpoint, 'no' now"),
        (("device",), "device: 'NVIDIA H100 80GB HBM3' in the checkpoint, 'cpu' now"),
        (("eval_data",), "eval data: "),
        (("versions", "torch"), None),  # a warning only
    ],
)
def test_resume_checks_what_the_run_depends_on(tiny_bert, task, finished, tmp_path, change, reason, caplog):
    """The base model's files, the precision, the device and the eval data recorded at the start
    are compared on resume; another library version only warns."""
    run = tmp_path / "run"
    copy_until(finished, run, 6)
    checkpoint = run / "checkpoints" / "step-00000006"
    state = json.loads((checkpoint / "run_state.json").read_text())
    environment = state["environment"]
    assert environment["precision"] == "no" and environment["device"] == "cpu"
    assert "config.json" in environment["base_model"]["files"] and environment["eval_data"]
    values = {"precision": "bf16", "device": "NVIDIA H100 80GB HBM3", "eval_data": "0" * 64}
    target = environment
    for key in change[:-1]:
        target = target[key]
    target[change[-1]] = values.get(change[-1], "0.0.1")
    (checkpoint / "run_state.json").write_text(json.dumps(state))
    rewrite_manifest(checkpoint)
    if reason is None:
        caplog.set_level(logging.WARNING, logger="train")
        train.main(run_args(tiny_bert, task, run, "--checkpoint.keep", "5", "--resume"))
        assert "torch" in caplog.text and "0.0.1 when the checkpoint was written" in caplog.text
        return
    with pytest.raises(SystemExit, match="would not continue the same run: " + re.escape(reason)):
        train.main(run_args(tiny_bert, task, run, "--resume"))


def test_the_eval_batch_size_is_part_of_the_run(tiny_bert, task, finished, tmp_path):
    run = tmp_path / "run"
    copy_until(finished, run, 6)
    with pytest.raises(SystemExit, match="eval.batch_size: 64 in the checkpoint, 32 now"):
        train.main(run_args(tiny_bert, task, run, "--resume", "--eval.batch_size", "32"))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda state: state.pop("sampler"), "run_state.json is unreadable (no sampler)"),
        (lambda state: state.update(step="six"), "run_state.json is unreadable (config is not a mapping or step"),
        (lambda state: state.update(environment=[]), "does not say what the run depends on"),
        (lambda state: state.update(selection={"curve": []}), "run_state.json is unreadable (KeyError"),
    ],
)
def test_a_forged_run_state_is_one_error_line(tiny_bert, task, finished, tmp_path, damage, reason):
    run = tmp_path / "run"
    copy_until(finished, run, 6)
    checkpoint = run / "checkpoints" / "step-00000006"
    state = json.loads((checkpoint / "run_state.json").read_text())
    damage(state)
    (checkpoint / "run_state.json").write_text(json.dumps(state))
    rewrite_manifest(checkpoint)
    with pytest.raises(SystemExit, match=re.escape(reason)):
        train.main(run_args(tiny_bert, task, run, "--resume"))


def test_a_checkpoint_written_before_the_newer_keys_resumes(tiny_bert, task, finished, tmp_path):
    """A checkpoint of the version before data.mix, data.eval sets, eval.select_set and report.map
    existed (its config lacks those keys, its run state has no before_sets) resumes when the run
    leaves them at their defaults, and ends as the uninterrupted run did."""
    run = tmp_path / "run"
    copy_until(finished, run, 6)
    checkpoint = run / "checkpoints" / "step-00000006"
    state = json.loads((checkpoint / "run_state.json").read_text())
    del state["config"]["data"]["mix"], state["config"]["eval"]["select_set"], state["config"]["report"]["map"]
    del state["before_sets"]
    (checkpoint / "run_state.json").write_text(json.dumps(state))
    rewrite_manifest(checkpoint)
    train.main(run_args(tiny_bert, task, run, "--resume"))
    a, b = load_file(run / "model" / "model.safetensors"), load_file(finished / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in b)
    other = tmp_path / "other"
    copy_until(finished, other, 6)
    checkpoint = other / "checkpoints" / "step-00000006"
    state["config"]["train"]["lr"] = 0.5  # a key that exists in both still counts
    (checkpoint / "run_state.json").write_text(json.dumps(state))
    rewrite_manifest(checkpoint)
    with pytest.raises(SystemExit, match="train.lr: 0.5 in the checkpoint"):
        train.main(run_args(tiny_bert, task, other, "--resume"))
