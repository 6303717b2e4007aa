"""Issue 9's quality bench: the base model, sentence-transformers' trainer twice, and ours addition by
addition, on ObliQA dev, 3 seeds a row, with paired statistics.

    python -m bench.quality                                   # every row; hours on a 2-core CPU
    python -m bench.quality --rows st-ours,ours-recipe --seeds 42
    python -m bench.quality --report-only                     # the table from what exists

The rows are ROWS below, in order; each training row runs once per seed, in its own subprocess (so
memory is freed and a crash costs only that run) with its output in <out>/<row>/seed<S>.log, and
leaves <out>/<row>/seed<S>.json (written atomically): the mean metrics and each dev question's
metrics at every dim, the question ids, the training seconds and steps. A run whose json exists is
skipped, so the bench resumes where it stopped. Ours is `train.py --config CONFIG` with the row's
overrides, the seed, `--eval.before false` and the bench's eval set; its per_query.json gives the
per-question metrics (the saved model is scored here when it lacks a dim). The sentence-transformers
rows are `python -m bench.st_train --no-eval`, scored here with our evaluate.py, as the base model is.

`st-ours` reads our recipe from CONFIG at run time (see st_recipe): epochs, batch, lr, warm-up,
cosine floor, weight decay, clipping, scale = 1 / temperature, dims and weights, the symmetric term,
max length, drop_last (with it ST's no-duplicates sampler yields rows // batch full batches, as ours
does, refilling from a reshuffle when duplicates leave it short), and when data.hard_negatives.k > 0
sentence-transformers' own mine_hard_negatives with the base model and the same window, margin and
k (range_min = rank_min - 1: it skips that many candidates after setting the positives aside;
relative_margin = 1 - max_relative; max_score; top or random). What does not carry over:
table-wide false-negative masking, qrels as known positives, mined-negative refresh, prompts, Adam
betas/eps (ST's defaults are ours), bf16 (st_train.py is fp32) and the choice of the best checkpoint
on dev (ST trains to the end); ST drops the rows it mined fewer than k negatives for, ours keeps them.

The report (printed and written to <out>/report.md): NDCG@10 per dim as mean ± sd over seeds; the
change against the row above on the seed-averaged per-question NDCG@10 with a 95% paired bootstrap
interval and a paired randomization p-value (retrieval/stats.py, 10,000 resamples); the `--headline` row
(default ours-recipe, CONFIG as it is) against every sentence-transformers row and the base model;
and the headline row at each dim against the base model at full size.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import: no hub access
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import argparse
import json
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402

from common.files import file_sha256, write_atomic  # noqa: E402
from retrieval.stats import paired_bootstrap, paired_randomization  # noqa: E402


class Row(NamedTuple):
    name: str
    description: str
    runner: str  # base (scored as is) | st (bench/st_train.py) | st-config (st_train.py + st_recipe(CONFIG)) | ours
    overrides: tuple[str, ...]  # appended flags: st_train.py's, or train.py's `--a.b value`


ST_STUDY = ("--epochs", "4", "--per-device-batch", "512", "--lr", "2e-5", "--scale", "20", "--warmup", "0.1")
ROWS = [
    Row("base", "the packaged model, not fine-tuned (no seeds)", "base", ()),
    Row(
        "st-study",
        "sentence-transformers trainer, the study's recipe: 4 epochs, batch 512, lr 2e-5, scale 20, "
        "10% warm-up, cosine",
        "st",
        ST_STUDY,
    ),
    Row(
        "st-ours",
        "sentence-transformers trainer with our recipe's settings from CONFIG, and its own "
        "mine_hard_negatives when CONFIG mines",
        "st-config",
        (),
    ),
    Row("ours-recipe", "ours, CONFIG as it is: in-batch negatives, table-wide masking", "ours", ()),
    Row(
        "ours+hardneg",
        "+ 1 mined hard negative per question (ranks 1-100, max_relative 0.95)",
        "ours",
        ("--data.hard_negatives.k", "1"),
    ),
    Row(
        "ours+select",
        "+ the best epoch on the reported split (optimistic: selected on what is measured)",
        "ours",
        ("--data.hard_negatives.k", "1", "--eval.select", "ndcg@10:mean"),
    ),
]
METRIC = "ndcg@10"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs/obliqa-best.yaml", help="our best recipe")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/obliqa", help="BEIR directory scored")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--dims", type=lambda s: [int(d) for d in s.split(",")], default=[384, 256, 128, 64, 32])
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[42, 43, 44])
    parser.add_argument("--rows", type=lambda s: s.split(","), help="comma-separated row names (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "runs/quality", help="bench directory")
    parser.add_argument("--report-only", action="store_true", help="print the report from the results that exist")
    parser.add_argument("--headline", default="ours-recipe", help="the row compared with base and every ST row")
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap and randomization resamples")
    parser.add_argument(
        "--st-args", type=shlex.split, default=[], help="appended to every st_train.py command (smoke tests)"
    )
    parser.add_argument("--train-args", type=shlex.split, default=[], help="appended to every train.py command")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.rows or []) - {row.name for row in ROWS})
    if unknown:
        parser.error(f"--rows: unknown {unknown}; the rows are {', '.join(row.name for row in ROWS)}")
    args.config, args.data, args.out = args.config.resolve(), args.data.resolve(), args.out.resolve()
    return args


# ---------------------------------------------------------------- the runs


def result_path(out: Path, row: Row, seed: int | None) -> Path:
    return out / row.name / ("result.json" if seed is None else f"seed{seed}.json")


def run_logged(command: list[str], log: Path) -> tuple[int, float]:
    """Run `command` from the repository root with stdout and stderr to `log`; (exit status, wall s)."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(shlex.join(command) + "\n\n")
        handle.flush()
        status = subprocess.run(
            command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        ).returncode
    return status, time.perf_counter() - start


def st_recipe(config) -> list[str]:
    """st_train.py flags for our recipe: every setting of `config` sentence-transformers can express."""
    t, loss, hn = config.train, config.loss, config.data.hard_negatives
    flags = [
        "--epochs",
        str(t.epochs),
        "--per-device-batch",
        str(t.global_batch),
        "--mini-batch-size",
        str(t.micro_batch),
        "--lr",
        repr(t.lr),
        "--warmup",
        repr(t.warmup_ratio),
        "--min-lr-ratio",
        repr(t.min_lr_ratio),
        "--weight-decay",
        repr(t.weight_decay),
        "--max-grad-norm",
        repr(t.max_grad_norm),
        "--scale",
        repr(1.0 / loss.temperature),
    ]
    if loss.dims:
        flags += ["--dims", ",".join(map(str, loss.dims))]
    if loss.weights:
        flags += ["--weights", ",".join(map(repr, loss.weights))]
    flags += ["--symmetric"] if loss.symmetric else []
    flags += ["--drop-last"] if t.drop_last else []
    flags += ["--max-length", str(config.model.max_length)] if config.model.max_length else []
    if hn.k:
        flags += [
            "--hard-negatives",
            str(hn.k),
            "--hn-range-min",
            str(hn.rank_min - 1),
            "--hn-range-max",
            str(hn.rank_max),
            "--hn-relative-margin",
            "none" if hn.max_relative is None else repr(round(1.0 - hn.max_relative, 12)),
            "--hn-max-score",
            repr(hn.max_score),
            "--hn-sampling",
            hn.sample,
        ]
        flags += ["--hn-corpus", hn.corpus] if hn.corpus else []
        flags += ["--hn-model", hn.model] if hn.model else []
    return flags


def st_command(row: Row, seed: int, run_dir: Path, args: argparse.Namespace, config) -> list[str]:
    recipe = st_recipe(config) if row.runner == "st-config" else []
    data = ["--train", config.data.train] + (
        ["--train-split", config.data.train_split] if config.data.train_split else []
    )
    return [
        sys.executable,
        "-m",
        "bench.st_train",
        "--model",
        config.model.name_or_path,
        *data,
        *recipe,
        *row.overrides,
        "--seed",
        str(seed),
        "--out",
        str(run_dir),
        "--no-eval",
        *args.st_args,
    ]


def ours_command(row: Row, seed: int, run_dir: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "train.py",
        "--config",
        str(args.config),
        "--data.eval",
        str(args.data),
        "--data.eval_split",
        args.split,
        "--eval.before",
        "false",
        "--output.overwrite",
        "true",
        *row.overrides,
        "--train.seed",
        str(seed),
        "--output.dir",
        str(run_dir),
        *args.train_args,
    ]


def score_model(model_dir: Path | str, data, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """{dim: {metric: per-question values}} of the model in `model_dir`, scored with our evaluate.py."""
    import torch

    from model import Encoder, ModelConfig
    from retrieval.evaluation import evaluate

    encoder = Encoder.from_config(ModelConfig(str(model_dir))).to("cuda" if torch.cuda.is_available() else "cpu")
    results = evaluate(encoder, data, args.dims, batch_size=args.eval_batch)
    return {
        str(dim): {metric: values.tolist() for metric, values in result.per_query.items()}
        for dim, result in results.items()
    }


def ours_per_query(run_dir: Path, data, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """The after-training per-question metrics train.py wrote, reordered to the bench's question
    order; the saved model scored here when the file is missing or lacks a dim."""
    path = run_dir / "per_query.json"
    if path.is_file():
        written = json.loads(path.read_text(encoding="utf-8"))
        after = written.get("after") or {}
        if all(str(dim) in after for dim in args.dims) and sorted(written["query_ids"]) == sorted(data.query_ids):
            order = (
                [written["query_ids"].index(qid) for qid in data.query_ids]
                if written["query_ids"] != data.query_ids
                else None
            )
            return {
                str(dim): {m: v if order is None else [v[i] for i in order] for m, v in after[str(dim)].items()}
                for dim in args.dims
            }
    print(f"  {path} missing or incomplete: scoring {run_dir / 'model'} here", flush=True)
    return score_model(run_dir / "model", data, args)


def train_run(row: Row, seed: int, data, args: argparse.Namespace, config) -> dict | None:
    """Train one (row, seed) in a subprocess and score it; None if the subprocess failed."""
    run_dir, log = args.out / row.name / f"seed{seed}", args.out / row.name / f"seed{seed}.log"
    st = row.runner.startswith("st")
    command = st_command(row, seed, run_dir, args, config) if st else ours_command(row, seed, run_dir, args)
    print(f"{row.name} seed {seed}: {shlex.join(command[1:])}\n  log: {log}", flush=True)
    status, wall = run_logged(command, log)
    if status != 0:
        print(f"  FAILED (exit {status}) after {wall:.0f} s; see {log}", flush=True)
        return None
    trained = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    per_query = score_model(run_dir / "model", data, args) if st else ours_per_query(run_dir, data, args)
    return {
        "train_seconds": trained["train_seconds"],
        "steps": trained["steps"],
        "process_seconds": wall,
        "command": command,
        "log": str(log),
        "per_query": per_query,
    }


def run_row(row: Row, data, args: argparse.Namespace, config) -> None:
    """Every missing seed of `row`; a failed seed is reported and left for the next invocation."""
    for seed in [None] if row.runner == "base" else args.seeds:
        path = result_path(args.out, row, seed)
        if path.is_file():
            print(f"{row.name}{'' if seed is None else f' seed {seed}'}: done ({path})", flush=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if row.runner == "base":
                start = time.perf_counter()
                result = {
                    "train_seconds": 0.0,
                    "steps": 0,
                    "model": config.model.name_or_path,
                    "per_query": score_model(resolve_base(config), data, args),
                }
                result["process_seconds"] = time.perf_counter() - start
            else:
                result = train_run(row, seed, data, args, config)
        except Exception:  # a row's scoring error must not stop the rows after it
            traceback.print_exc()
            result = None
        if result is None:
            continue
        means = {
            dim: {m: float(np.mean(v)) for m, v in by_metric.items()} for dim, by_metric in result["per_query"].items()
        }
        result = {
            "row": row.name,
            "description": row.description,
            "seed": seed,
            "data": f"{args.data} ({args.split})",
            "config_sha256": config_sha256(args.config),
            "query_ids": data.query_ids,
            "metrics": means,
            **result,
        }
        write_atomic(path, json.dumps(result) + "\n")
        print(f"  {METRIC}: " + "  ".join(f"{dim} {means[str(dim)][METRIC]:.4f}" for dim in args.dims), flush=True)


def resolve_base(config) -> str:
    from model import resolve_model_dir

    return str(resolve_model_dir(config.model.name_or_path, config.model.revision))


def config_sha256(path: Path) -> str | None:
    return file_sha256(path) if path.is_file() else None


# ---------------------------------------------------------------- the report


class RowResults(NamedTuple):
    row: Row
    runs: list[dict]  # one per seed present
    ndcg: dict[int, np.ndarray]  # dim -> (Q,) seed-averaged per-question NDCG@10, in the bench's question order


def collect(args: argparse.Namespace, rows: list[Row]) -> list[RowResults]:
    """The results present for each row (the seeds asked for), aligned on one question order."""
    collected, query_ids = [], None
    for row in rows:
        paths = [result_path(args.out, row, seed) for seed in ([None] if row.runner == "base" else args.seeds)]
        runs = [json.loads(path.read_text(encoding="utf-8")) for path in paths if path.is_file()]
        if not runs:
            continue
        query_ids = query_ids or runs[0]["query_ids"]
        per_seed = []
        for run in runs:
            if sorted(run["query_ids"]) != sorted(query_ids):
                raise SystemExit(f"{row.name} seed {run['seed']}: scored on other questions than {rows[0].name}")
            order = [run["query_ids"].index(qid) for qid in query_ids] if run["query_ids"] != query_ids else None
            per_seed.append(
                {
                    dim: np.asarray(run["per_query"][str(dim)][METRIC])[order if order else slice(None)]
                    for dim in args.dims
                }
            )
        ndcg = {dim: np.mean([values[dim] for values in per_seed], axis=0) for dim in args.dims}
        collected.append(RowResults(row, runs, ndcg))
    return collected


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def change(base: np.ndarray, new: np.ndarray, resamples: int) -> str:
    """new - base per question: mean change [95% paired bootstrap interval] and randomization p."""
    diff, lo, hi = paired_bootstrap(base, new, resamples=resamples, seed=0)
    p = paired_randomization(base, new, resamples=resamples, seed=0)
    return f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}] p={p:.3g}"


def summary_table(results: list[RowResults], dims: list[int], seeds: int) -> list[str]:
    lines = [
        f"| row | seeds | {' | '.join(map(str, dims))} | train s | process s | steps |",
        "|---|---:|" + "---:|" * (len(dims) + 3),
    ]
    for r in results:
        runs, of = r.runs, "" if r.row.runner == "base" else f"/{seeds}"
        cells = [mean_sd([run["metrics"][str(d)][METRIC] for run in runs]) for d in dims]
        means = [np.mean([run[key] for run in runs]) for key in ("train_seconds", "process_seconds", "steps")]
        lines.append(
            f"| {r.row.name} | {len(runs)}{of} | " + " | ".join(cells) + "".join(f" | {m:.0f}" for m in means) + " |"
        )
    return lines


def change_table(pairs: list[tuple[RowResults, RowResults]], dims: list[int], resamples: int) -> list[str]:
    """One line per (baseline, new) pair: the change at every dim."""
    lines = [f"| row | against | {' | '.join(map(str, dims))} |", "|---|---|" + "---|" * len(dims)]
    for base, new in pairs:
        lines.append(
            f"| {new.row.name} | {base.row.name} | "
            + " | ".join(change(base.ndcg[d], new.ndcg[d], resamples) for d in dims)
            + " |"
        )
    return lines


def against_full_size(last: RowResults, base: RowResults, dims: list[int], resamples: int) -> list[str]:
    """`last` truncated to each dim against the base model at full size."""
    full = max(dims)
    lines = [f"| {last.row.name} dim | {last.row.name} | base@{full} | change |", "|---:|---:|---:|---|"]
    return lines + [
        f"| {d} | {last.ndcg[d].mean():.4f} | {base.ndcg[full].mean():.4f} | "
        f"{change(base.ndcg[full], last.ndcg[d], resamples)} |"
        for d in dims
    ]


def notes(results: list[RowResults], rows: list[Row], args: argparse.Namespace) -> list[str]:
    """Runs that are missing, and runs trained from another version of the config."""
    done, lines = {r.row.name: len(r.runs) for r in results}, []
    wanted = {row.name: 1 if row.runner == "base" else len(args.seeds) for row in rows}
    missing = [f"{name} ({done.get(name, 0)} of {n})" for name, n in wanted.items() if done.get(name, 0) < n]
    if missing:
        lines += ["", f"Missing runs (failed, or not run yet): {', '.join(missing)}."]
    current = config_sha256(args.config)
    stale = [
        f"{r.row.name} seed {run['seed']}"
        for r in results
        for run in r.runs
        if current and r.row.runner != "base" and run["config_sha256"] != current
    ]
    if stale:
        lines += ["", f"Warning: trained with another version of {args.config}: {', '.join(stale)}."]
    return lines


def report(args: argparse.Namespace, rows: list[Row]) -> str:
    results = collect(args, rows)
    if not results:
        return f"no results under {args.out}"
    dims = args.dims
    last = next((r for r in results if r.row.name == args.headline), results[-1])  # the recipe we recommend
    lines = [
        f"# Quality bench: {last.runs[0]['data']}, {len(last.ndcg[dims[0]])} questions",
        "",
        f"Config: {args.config}. Seeds: {', '.join(map(str, args.seeds))}.",
        "",
    ]
    lines += [f"- `{r.row.name}`: {r.row.description}" for r in results]
    lines += [
        "",
        "## NDCG@10, mean ± sd over seeds",
        "",
        *summary_table(results, dims, len(args.seeds)),
        "",
        "train s: the training loop alone, mining excluded (for ours it includes the evaluations that "
        "eval.every asks for); process s: the whole training command.",
        "",
        "## Change in NDCG@10 against the row above",
        "",
        "On the seed-averaged per-question NDCG@10: mean change [95% paired bootstrap interval], "
        "paired randomization p.",
        "",
        *change_table(list(zip(results, results[1:])), dims, args.resamples),
    ]
    baselines = [r for r in results if r.row.runner != "ours"]
    if baselines:
        lines += [
            "",
            f"## {last.row.name} against the base model and each sentence-transformers row",
            "",
            *change_table([(b, last) for b in baselines], dims, args.resamples),
        ]
    base = next((r for r in results if r.row.runner == "base"), None)
    if base is not None and last is not base:
        lines += [
            "",
            f"## {last.row.name} at each dim against the base model at {max(dims)}",
            "",
            *against_full_size(last, base, dims, args.resamples),
        ]
    return "\n".join(lines + notes(results, rows, args)) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = [row for row in ROWS if not args.rows or row.name in args.rows]
    if not args.report_only:
        from data import load_ir
        from training.config import ConfigError, load_config

        try:
            config = load_config(["--config", str(args.config)])  # read now: it may be newer than this script
        except ConfigError as err:
            sys.exit(f"error: {err}")
        data = load_ir(args.data, args.split)
        args.out.mkdir(parents=True, exist_ok=True)
        for row in rows:
            run_row(row, data, args, config)
    text = report(args, rows)
    print("\n" + text)
    if args.out.is_dir():
        write_atomic(args.out / "report.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
