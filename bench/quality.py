"""The quality bench: is fine-tuning worth it, against BM25 and against sentence-transformers?

    python -m bench.quality                                   # every row; hours on a 2-core CPU
    python -m bench.quality --rows bm25,base                  # the rows without training (minutes)
    python -m bench.quality --report-only                     # the table from what exists

The rows (ROWS below, in order): BM25 alone; a cross-encoder re-ranker (`train_reranker.py` on the
train split, one seed: no line of its own; `--reranker-args "--members 2"` makes it an ensemble of
two seeds); the packaged model untouched; sentence-transformers'
trainer with our recipe's settings (one seed: a fair peer); and ours, CONFIG as it is (two seeds).
Every model row is scored alone and fused with BM25 (the convex combination of per-query min-max
normalised scores, `retrieval/hybrid.py`), the dense weight chosen per dim by two-fold
cross-fitting (`--weight-split cross`): the reported questions are split in two seeded halves and
each half is fused with the weight chosen on the other, so no question is scored with a weight
chosen on itself, and no row's weight is chosen on questions it was trained on (the train
questions would favour the dense side of a model trained on them). Once the re-ranker exists, every
model row is also scored fused and re-ranked (`retrieval/rerank.py`: the fused top `depth` ordered
by the cross-encoder mixed with the fused score at the weight train_reranker.py chose on its
held-out train questions; nothing chosen on the reported split but the fusion weight, cross-fitted
as above): the retrieval system a user deploys with two fine-tuned models. A model row's json
from before the re-ranker gets its re-ranked scores added when its model is still on disk
(<out>/<row>/seed<S>/model, or the base model), without training again.

Each training run is its own subprocess (memory freed, a crash costs only that run), logged to
<out>/<row>/seed<S>.log, and leaves <results>/<row>/seed<S>.json (written atomically): each dev
question's metrics at every dim, alone and fused, the fusion weights, the question ids, the
training seconds and steps. A run whose json exists is skipped, so the bench resumes where it
stopped. <results> is --out unless `--results DIR` keeps the jsons and report.md apart from the
models and logs: the jsons under bench/results/quality are committed, so the bench resumes on a
machine without runs/. Ours is `train.py --config CONFIG` with the seed, `--eval.before false`
and the bench's eval set; every trained model is scored here, by the same code as the base model.
A lever measured with `--train-args` (say `--out runs/lever --train-args "--loss.temperature 0.02"`)
that is then written into CONFIG need not train again: `--adopt runs/lever` takes each of its ours
runs for a missing seed, scores its model here, and keeps where it came from, but only when the
train_config.yaml saved beside its model matches, on every setting that decides the weights
(`training_settings`: not where it writes, checkpoints, reports, or evaluation when eval.select is
last), the run this bench would train; otherwise it is an error naming the keys, before anything
runs (see NOT_TRAINING for what is compared and what is not: paths as written, and the precision
as resolved on this machine, which train_config.yaml records, but not the device's name or the
number of processes). `--adopt` names the lever's --results directory; the model stays where the
lever put it (the adopted json's `model_path`), so keep that directory. The report's warning about
runs that no longer stand for CONFIG judges them the same way, less the precision (a json from
before train_config was kept: by the config file's sha256). Ours runs share
<out>/mining_cache (`data.hard_negatives.cache`): the base model mines the same negatives for
every seed, so the second seed copies the first's instead of mining again.

`st-ours` reads our recipe from CONFIG at run time (see st_recipe): epochs, batch, lr, warm-up,
cosine floor, weight decay, clipping, scale = 1 / temperature, dims and weights, the symmetric term,
max length, drop_last (with it ST's no-duplicates sampler yields rows // batch full batches, as ours
does, refilling from a reshuffle when duplicates leave it short), and when data.hard_negatives.k > 0
sentence-transformers' own mine_hard_negatives with the base model and the same window, margin and
k (range_min = rank_min - 1; relative_margin = 1 - max_relative; max_score; top or random): ST
mines with the dense model only, whatever CONFIG's `source` (it has no BM25 or fused miner). What
does not carry over: table-wide false-negative masking, qrels as known positives, BM25 or hybrid
mining, mined-negative refresh, prompts, loss.gte, train.layer_decay, bf16 (st_train.py is fp32) and the choice of a
checkpoint on dev (ST trains to the end); ST drops the rows it mined fewer than k negatives for.

The report (printed and written to <out>/report.md): NDCG@10 per dim, Recall@10 and MAP@10 (the
shared task's metrics) at 384 and 64, as mean ± sd over seeds, for BM25, base, base + BM25,
st-ours, st-ours + BM25, ours, ours + BM25; then the paired changes that answer the question (on
the seed-averaged per-question NDCG@10: mean [95% bootstrap interval], randomization p; 10,000
resamples): ours + BM25 against BM25 and against base + BM25, ours alone against BM25, ours
against st-ours alone and fused; the issue's targets, met or not; what each model adds to
BM25 per question (the BM25 misses it finds, the questions it wins and loses, the best of the two);
and the main changes again on the questions about passages CONFIG's training data holds (seen) and
on the others (unseen), each group paired on its own (training/seen_report.py's split).
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
from typing import TYPE_CHECKING, NamedTuple

REPO = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402

from common.files import file_sha256, write_atomic  # noqa: E402
from retrieval.stats import paired_bootstrap, paired_randomization  # noqa: E402

if TYPE_CHECKING:
    from retrieval.memory import EncodedMemory


class Row(NamedTuple):
    name: str
    description: str
    runner: str  # bm25 | base (scored as is) | st-config (bench/st_train.py + st_recipe(CONFIG)) | ours
    overrides: tuple[str, ...]  # appended flags: st_train.py's, or train.py's `--a.b value`


ROWS = [
    Row(
        "bm25",
        "BM25 (bm25s lucene, k1 1.5, b 0.75, English stopwords, Snowball stemmer; title + text): no training",
        "bm25",
        (),
    ),
    Row(
        "reranker",
        "a cross-encoder re-ranker (train_reranker.py on the train split; one seed, or an ensemble with --members) "
        "over each model row's fused top 20, at the weight it chose on its held-out train questions",
        "reranker",
        (),
    ),
    Row("base", "the packaged model, not fine-tuned (no seeds)", "base", ()),
    Row(
        "st-ours",
        "sentence-transformers trainer with our recipe's settings from CONFIG, and its own "
        "(dense) mine_hard_negatives when CONFIG mines; one seed",
        "st-config",
        (),
    ),
    Row("ours", "ours, CONFIG as it is", "ours", ()),
]
METRIC = "ndcg@10"
CROSS = "cross"  # --weight-split: two-fold cross-fitting on the reported split
REPORTED = ("ndcg@10", "recall@10", "map@10")  # the shared task's metrics, with NDCG@10 first
TARGETS = {  # issue 19: what the fused model must beat, by how much, at the full size and at 64 dims
    "ours + BM25 − BM25": (0.05, 0.03),
    "ours + BM25 − base + BM25": (0.03, 0.03),
}
RERANKED = " + re-ranker"  # the label suffix of a model row fused and re-ranked
RERANKED_TARGETS = {  # the same margins for the system with the re-ranker (a second fine-tuned model)
    f"ours + BM25{RERANKED} − BM25": (0.05, 0.03),
    f"ours + BM25{RERANKED} − base + BM25": (0.03, 0.03),
}
REMEMBERED = " + memory"  # the label suffix of a model row fused with question memory (--memory)
REMEMBERED_TARGETS = {  # the same margins for the system with question memory (the training questions indexed)
    f"ours + BM25{REMEMBERED} − BM25": (0.05, 0.03),
    f"ours + BM25{REMEMBERED} − base + BM25": (0.03, 0.03),
}
ADDED = {"reranked": "reranker", "remembered": "memory"}  # scores a row's json gains later, and their notes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=REPO / "configs/obliqa-best.yaml", help="our best recipe")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/obliqa", help="BEIR directory scored")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--dims", type=lambda s: [int(d) for d in s.split(",")], default=[384, 256, 128, 64, 32])
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[42, 43])
    parser.add_argument(
        "--weight-split",
        default=CROSS,
        help="where the fusion weight is chosen: cross (default: each half of the reported split on the other "
        "half) or a split of the same corpus (the train questions favour a model trained on them)",
    )
    parser.add_argument("--rows", type=lambda s: s.split(","), help="comma-separated row names (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "runs/quality", help="bench directory: models and logs")
    parser.add_argument(
        "--results",
        type=Path,
        help="where each row's result json and report.md go (default: --out); a directory kept apart from the "
        "models, say under version control (bench/results/quality), lets the bench resume on another machine",
    )
    parser.add_argument(
        "--adopt",
        type=Path,
        help="another bench directory (its --results, say a lever measured with --train-args): a training row's "
        "missing seed is taken from there, scored here, without training again, when its model trained with "
        "the settings this bench would train with (CONFIG, the row's flags, --train-args, the seed); else an error",
    )
    parser.add_argument("--report-only", action="store_true", help="print the report from the results that exist")
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap and randomization resamples")
    parser.add_argument(
        "--st-args", type=shlex.split, default=[], help="appended to every st_train.py command (smoke tests)"
    )
    parser.add_argument("--train-args", type=shlex.split, default=[], help="appended to every train.py command")
    parser.add_argument(
        "--reranker-args", type=shlex.split, default=[], help="appended to the train_reranker.py command"
    )
    parser.add_argument(
        "--memory",
        type=Path,
        metavar="PAIRS",
        help="also score each model row fused with question memory (retrieval/memory.py): PAIRS' questions as "
        "extra keys of their passages, the weight found as the plain fusion's (lines '... + BM25 + memory'); a "
        "row scored before gets it added while its model is on disk",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.rows or []) - {row.name for row in ROWS})
    if unknown:
        parser.error(f"--rows: unknown {unknown}; the rows are {', '.join(row.name for row in ROWS)}")
    args.config, args.data, args.out = args.config.resolve(), args.data.resolve(), args.out.resolve()
    args.results = (args.results or args.out).resolve()
    args.adopt = args.adopt.resolve() if args.adopt else None
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


def st_flags(command: list[str]) -> list[str]:
    """An st_train.py command's flags, less the interpreter and the output directory."""
    flags = command[command.index("bench.st_train") + 1 :]
    at = flags.index("--out") if "--out" in flags else len(flags)
    return flags[:at] + flags[at + 2 :]


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
        "--data.hard_negatives.cache",  # the seeds mine the same negatives (the miner is the base model): once
        str(args.out / "mining_cache"),
        *args.train_args,
    ]


def reranker_dir(args: argparse.Namespace) -> Path:
    return args.out / "reranker" / f"seed{args.seeds[0]}" / "reranker"


def reranker_command(seed: int, args: argparse.Namespace, config) -> list[str]:
    """train_reranker.py on the train split of the bench's data, its negatives drawn from CONFIG's
    base model fused with BM25, its weight chosen on its own held-out train questions."""
    return [
        sys.executable,
        "train_reranker.py",
        "--data",
        str(args.data),
        "--split",
        "train",
        "--first-stage",
        resolve_base(config),
        "--seed",
        str(seed),
        "--out",
        str(reranker_dir(args)),
        *args.reranker_args,
    ]


def reranker_run(seed: int, scorer: Scorer, args: argparse.Namespace, config) -> dict | None:
    """Train the re-ranker in a subprocess (or take the complete one already there), load it into
    `scorer`; its settings as the row's result. None if the subprocess failed."""
    from retrieval.rerank import saved_problem

    where, log = reranker_dir(args), args.out / "reranker" / f"seed{seed}.log"
    wall = 0.0
    if (problem := saved_problem(where)) is not None:
        if where.exists():  # damaged since (train_reranker.py moves it into place whole): kept aside, never deleted
            aside = where.with_name(f"{where.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
            os.replace(where, aside)
            print(f"reranker: {where}: {problem}; moved to {aside} (an ensemble's members are whole there)")
        where.parent.mkdir(parents=True, exist_ok=True)
        command = reranker_command(seed, args, config)
        print(f"reranker seed {seed}: {shlex.join(command[1:])}\n  log: {log}", flush=True)
        status, wall = run_logged(command, log)
        if status != 0:
            print(f"  FAILED (exit {status}) after {wall:.0f} s; see {log}", flush=True)
            return None
    scorer.load_reranker(where)
    settings = scorer.reranker.settings
    wanted = {"data_path": str(args.data), "split": "train", "first_stage": resolve_base(config), "seed": seed}
    found = {**{key: settings.get(key) for key in wanted}, "seed": settings.get("training", {}).get("seed")}
    if found != wanted:  # a re-ranker left there by another bench or by hand
        differ = ", ".join(
            f"{key} {found[key]!r} (the bench's: {wanted[key]!r})" for key in wanted if found[key] != wanted[key]
        )
        raise SystemExit(f"error: re-ranker {where} was trained otherwise: {differ}; move it away to train it again")
    return {
        "train_seconds": settings["trained"]["seconds"],
        "steps": settings["trained"]["steps"],
        "process_seconds": wall,
        "path": str(where),
        "settings": settings,
    }


class Scorer:
    """Scores every row the same way: the eval split and the split the fusion weight is chosen on
    (same corpus), and the BM25 index over that corpus, built once."""

    def __init__(self, args: argparse.Namespace):
        from data import load_ir
        from retrieval.hybrid import lexical_index
        from retrieval.settings import LexicalConfig

        self.args = args
        self.data = load_ir(args.data, args.split)
        self.weight_data = None if args.weight_split == CROSS else load_ir(args.data, args.weight_split)
        if self.weight_data is not None and self.weight_data.corpus_ids != self.data.corpus_ids:
            raise SystemExit(f"--weight-split {args.weight_split}: its corpus differs from {args.split}'s")
        self.index = lexical_index(self.data, LexicalConfig())
        self.memory = None  # --memory's questions linked to the corpus (QuestionMemory)
        self.memory_sha256 = None  # the file's, kept with every row scored with it
        if getattr(args, "memory", None) is not None:
            from retrieval.memory import load_memory

            try:
                self.memory = load_memory(args.memory, self.data.corpus_texts)
                self.memory_sha256 = file_sha256(args.memory)
            except (ValueError, OSError) as err:  # data.DataError is a ValueError
                raise SystemExit(f"error: --memory: {err}") from None
        self.reranker = None  # the bench's cross-encoder, once the reranker row has one
        self.reranker_note: dict = {}  # where it is, its depth and the weight it saved (each re-ranked row keeps it)

    def load_reranker(self, where: Path) -> None:
        from retrieval.rerank import first_stage_tokens, load_reranker, saved_weight

        ce = load_reranker(where)
        if (tokens := first_stage_tokens(ce.settings)) != "words":
            raise SystemExit(f"error: re-ranker {where}: trained over BM25 {tokens} tokens; the bench fuses BM25 words")
        saved = saved_weight(ce, ce.depth, "minmax", "words")
        if saved is None:
            raise SystemExit(f"re-ranker {where}: no weight chosen on held-out questions (train it with --holdout > 0)")
        self.reranker = ce
        self.reranker_note = {"path": str(where), "depth": ce.depth, "weight": saved[0], "weight_from": saved[1]}
        self.reranker_note["seeds"] = ce.settings.get("seeds", [ce.settings.get("training", {}).get("seed")])

    def bm25(self) -> dict:
        from retrieval.hybrid import evaluate_hybrid

        queries = np.zeros((len(self.data.query_ids), 1), dtype=np.float32)  # no dims: BM25 alone
        corpus = np.zeros((len(self.data.corpus_ids), 1), dtype=np.float32)
        return {"bm25": per_query_lists(evaluate_hybrid(queries, corpus, self.data, [], self.index).bm25)}

    def model(self, model_dir: Path | str, extras: tuple[str, ...] = tuple(ADDED)) -> dict:
        """Per-question metrics of the model alone and fused with BM25 at every dim, and the weights;
        of ADDED's scores, those in `extras` the bench has (re-ranked: a re-ranker; remembered: --memory)."""
        from retrieval.evaluation import encode_queries, evaluate_embeddings

        queries, corpus, encoder = encode_model(model_dir, self)
        dims = self.args.dims
        dense = evaluate_embeddings(queries, corpus, self.data, dims)
        rerank = "reranked" in extras
        if self.args.weight_split == CROSS:
            fused, weights, reranked = self.cross_fitted(queries, corpus, rerank=rerank)
        else:
            weight_queries = encode_queries(encoder, self.weight_data.query_texts, self.args.eval_batch, False)
            fused, weights, reranked = self.fused_with_weights_from(queries, corpus, weight_queries, rerank=rerank)
        out = {
            "per_query": {str(dim): per_query_lists(result) for dim, result in dense.items()},
            "fused": {str(dim): fused[dim] for dim in dims},
            "weights": {str(dim): weights[dim] for dim in dims},
        }
        if reranked is not None:
            out["reranked"] = {str(dim): reranked[dim] for dim in dims}
            out["reranker"] = self.reranker_note
        if self.memory is not None and "remembered" in extras:
            from retrieval.memory import EncodedMemory

            memory = EncodedMemory(
                self.memory, encode_queries(encoder, self.memory.questions, self.args.eval_batch, False)
            )
            if self.args.weight_split == CROSS:
                remembered, weights, _ = self.cross_fitted(queries, corpus, memory)
            else:
                remembered, weights, _ = self.fused_with_weights_from(queries, corpus, weight_queries, memory)
            out["remembered"] = {str(dim): remembered[dim] for dim in dims}
            out["memory"] = {
                "pairs": str(self.args.memory),
                "pairs_sha256": self.memory_sha256,
                "weights": {str(dim): weights[dim] for dim in dims},
            }
        return out

    def rerank(self, hybrid, data, weights: dict[int, float]) -> dict[int, dict[str, np.ndarray]] | None:
        """Each dim's fused ranking of `data` (hybrid's candidates at the fusion `weights`) re-ranked
        by the bench's cross-encoder at its saved weight; None without one."""
        from retrieval.rerank import Fused, evaluate_reranked

        if self.reranker is None:
            return None
        fused = Fused(data, hybrid.candidates, weights, "minmax")
        weight = self.reranker_note["weight"]
        results = evaluate_reranked(
            self.reranker, fused, self.reranker.depth, {dim: weight for dim in hybrid.candidates}
        )
        return {dim: result.per_query for dim, result in results.items()}

    def fused_with_weights_from(
        self, queries, corpus, weight_queries, memory: EncodedMemory | None = None, rerank: bool = True
    ) -> tuple[dict, dict, dict | None]:
        """Fused with the weight chosen on --weight-split, and re-ranked when the bench has a re-ranker
        and `rerank`; with `memory` (EncodedMemory), remembering (never re-ranked)."""
        from retrieval.hybrid import chosen_weights, evaluate_hybrid

        dims = self.args.dims
        weights = chosen_weights(weight_queries, corpus, self.weight_data, dims, self.index, memory)
        hybrid = evaluate_hybrid(queries, corpus, self.data, dims, self.index, weights, self.args.weight_split, memory)
        reranked = self.rerank(hybrid, self.data, weights) if memory is None and rerank else None
        fused = {dim: per_query_lists(hybrid.fused[dim]["convex"]) for dim in dims}
        return fused, weights, (None if reranked is None else as_lists(reranked))

    def cross_fitted(
        self, queries: np.ndarray, corpus: np.ndarray, memory: EncodedMemory | None = None, rerank: bool = True
    ) -> tuple[dict, dict, dict | None]:
        """Two-fold: the questions split in two seeded halves, each half fused with the weight chosen
        on the other, so no question is scored with a weight chosen on itself and no row's weight
        depends on what it was trained on. Returns per-question metrics in the split's order (fused,
        and fused and re-ranked when the bench has a re-ranker, else None), and the two halves'
        weights per dim. With `memory` (EncodedMemory), the fusion remembers; re-ranked only without
        memory and with `rerank`."""
        from retrieval.hybrid import chosen_weights, evaluate_hybrid

        dims, n = self.args.dims, len(self.data.query_ids)
        halves = cross_halves(n)
        fused = {dim: {} for dim in dims}
        reranked = None if self.reranker is None or memory is not None or not rerank else {dim: {} for dim in dims}
        weights = {dim: [] for dim in dims}
        for half, other in (halves, halves[::-1]):
            chosen = chosen_weights(queries[other], corpus, subset(self.data, other), dims, self.index, memory)
            part = subset(self.data, half)
            hybrid = evaluate_hybrid(queries[half], corpus, part, dims, self.index, chosen, CROSS, memory)
            ordered = self.rerank(hybrid, part, chosen) if memory is None and rerank else None
            for dim in dims:
                weights[dim].append(chosen[dim])
                for metric, values in hybrid.fused[dim]["convex"].per_query.items():
                    fused[dim].setdefault(metric, np.zeros(n))[half] = values
                if ordered is not None:
                    for metric, values in ordered[dim].items():
                        reranked[dim].setdefault(metric, np.zeros(n))[half] = values
        return as_lists(fused), weights, (None if reranked is None else as_lists(reranked))


def model_bench_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of a bench that scores --models as this bench scores a row."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", type=lambda s: s.split(","), required=True, help="directories or packaged ids")
    parser.add_argument("--data", type=Path, required=True, help="BEIR directory scored")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--dims", type=lambda s: [int(d) for d in s.split(",")], default=[384, 64])
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    return parser


def encode_model(name: str | Path, scorer: Scorer):
    """(Q, D) questions and (N, D) passages of the scorer's split, encoded full size by `name` (a
    directory or a packaged id), and the encoder."""
    import torch

    from model import Encoder, ModelConfig
    from retrieval.evaluation import encode_ir

    encoder = Encoder.from_config(ModelConfig(str(name))).to("cuda" if torch.cuda.is_available() else "cpu")
    queries, corpus, _ = encode_ir(encoder, scorer.data, scorer.args.eval_batch, show_progress=False)
    return queries, corpus, encoder


def cross_halves(n: int) -> list[np.ndarray]:
    """The two seeded halves of n questions that every cross-fitted figure uses (sorted rows)."""
    order = np.random.default_rng(0).permutation(n)
    return [np.sort(order[: n // 2]), np.sort(order[n // 2 :])]


def subset(data, rows: np.ndarray):
    """The questions `rows` of `data`, over the same corpus."""
    from data import question_subset

    return question_subset(data, rows, "a half")


def per_query_lists(result) -> dict[str, list[float]]:
    return {metric: values.tolist() for metric, values in result.per_query.items()}


def as_lists(by_dim: dict[int, dict[str, np.ndarray]]) -> dict[int, dict[str, list[float]]]:
    return {dim: {metric: values.tolist() for metric, values in by_metric.items()} for dim, by_metric in by_dim.items()}


def train_run(row: Row, seed: int, scorer: Scorer, args: argparse.Namespace, config) -> dict | None:
    """Train one (row, seed) in a subprocess and score it; None if the subprocess failed."""
    run_dir, log = args.out / row.name / f"seed{seed}", args.out / row.name / f"seed{seed}.log"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    st = row.runner.startswith("st")
    command = st_command(row, seed, run_dir, args, config) if st else ours_command(row, seed, run_dir, args)
    print(f"{row.name} seed {seed}: {shlex.join(command[1:])}\n  log: {log}", flush=True)
    status, wall = run_logged(command, log)
    if status != 0:
        print(f"  FAILED (exit {status}) after {wall:.0f} s; see {log}", flush=True)
        return None
    trained = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    settings = {} if st else {"train_config": saved_settings(run_dir / "model")}
    return {
        "train_seconds": trained["train_seconds"],
        "steps": trained["steps"],
        "process_seconds": wall,
        "command": command,
        "log": str(log),
        "model_path": str(run_dir / "model"),
        **settings,
        **scorer.model(run_dir / "model"),
    }


# What decides the weights a train.py run ends with; the rest (where it writes, checkpoints, reports,
# library versions, the mining cache's place) does not, nor does evaluation when eval.select is last
# (tests/test_train.py: evaluating before training and at every step leaves the weights bitwise the same),
# except eval.batch_size, which the distillation teachers encode the training table with. Paths are
# compared as written (data.eval too, though training reads it only to select), not by their contents.
# The precision a run resolved (train_config.yaml's environment) is compared for --adopt, not for the
# report's staleness warning: a run trained in bf16 on a GPU still stands for a config that says auto.
# The device's name and the process count are not compared.
NOT_TRAINING = (
    "output.",
    "checkpoint.",
    "report.",
    "versions",
    "data.hard_negatives.cache",
    "environment.device",  # the precision decides the numbers; the device's name and
    "environment.num_processes",  # the process count do not (2 processes train as 1 does)
)
RECORDED_SINCE = ("environment.precision",)  # absent from models saved before it was recorded
EVAL_READ_IN_TRAINING = ("eval.select", "eval.batch_size")


def training_settings(config: dict) -> dict:
    """The dotted keys of a resolved train.py config (its train_config.yaml, or asdict(load_config))
    that decide the trained weights, as plain data."""
    from training.config import flatten

    flat = flatten(json.loads(json.dumps(config)))  # tuples to lists, as yaml reads them back
    last = flat.get("eval.select") == "last"
    return {
        key: value
        for key, value in flat.items()
        if not key.startswith(NOT_TRAINING)
        and not (last and key.startswith("eval.") and key not in EVAL_READ_IN_TRAINING)
    }


def saved_settings(model: Path) -> dict:
    """training_settings of the train_config.yaml train.py saved beside a model."""
    import yaml

    return training_settings(yaml.safe_load((model / "train_config.yaml").read_text("utf-8")))


def bench_settings(row: Row, seed: int, args: argparse.Namespace) -> dict:
    """training_settings of the run this bench would train for (row, seed): CONFIG as it is now."""
    from dataclasses import asdict

    from training.config import load_config
    from training.distributed import resolve_precision

    command = ours_command(row, seed, args.out / row.name / f"seed{seed}", args)
    config = load_config(command[2:])
    precision = resolve_precision(config.train.mixed_precision)
    return {**training_settings(asdict(config)), "environment.precision": precision}


def config_settings(settings: dict) -> dict:
    """Training settings without what the machine resolved (environment.*): what the config decides."""
    return {key: value for key, value in settings.items() if not key.startswith("environment.")}


def unrecorded(theirs: dict, ours: dict) -> tuple[dict, list[str]]:
    """ours without the keys a model saved before they were recorded lacks (RECORDED_SINCE), and those keys."""
    missing = [key for key in RECORDED_SINCE if key not in theirs]
    return {key: value for key, value in ours.items() if key not in missing}, missing


def differences(theirs: dict, ours: dict) -> list[str]:
    """Each key the two settings differ on (a key one lacks differs, even from a null)."""
    absent = "(absent)"
    return [
        f"{key} {theirs.get(key, absent)!r} (the bench's: {ours.get(key, absent)!r})"
        for key in sorted(set(theirs) | set(ours))
        if key not in theirs or key not in ours or theirs[key] != ours[key]
    ]


def adoptable(row: Row, seed: int, args: argparse.Namespace) -> tuple[Path, dict, Path, dict, list[str]] | None:
    """(row, seed)'s run in the --adopt directory: (its json, the json, its model, the model's
    training settings, the RECORDED_SINCE keys it lacks); None if it has none. An error if the model
    is gone or trained otherwise than this bench would train it."""
    source = args.adopt / row.name / f"seed{seed}.json"
    if not source.is_file():
        return None
    kept = json.loads(source.read_text("utf-8"))
    command = kept.get("command") or []
    if "--output.dir" not in command:
        raise SystemExit(f"error: --adopt {source}: no train.py command in it, so no model to take")
    model = Path(command[command.index("--output.dir") + 1]) / "model"
    if not (model / "train_config.yaml").is_file():
        raise SystemExit(f"error: --adopt {source}: its model {model} is gone (or has no train_config.yaml)")
    theirs = saved_settings(model)
    ours, missing = unrecorded(theirs, bench_settings(row, seed, args))
    differ = differences(theirs, ours)
    if differ:
        raise SystemExit(
            f"error: --adopt {source}: its model trained otherwise than this bench would: {'; '.join(differ)}"
        )
    return source, kept, model, theirs, missing


def check_adoptions(rows: list[Row], args: argparse.Namespace) -> None:
    """Every run --adopt would take, checked before the bench scores or trains anything."""
    from training.config import ConfigError

    for row in rows:
        if row.runner == "ours":
            for seed in seeds_of(row, args):
                if not result_path(args.results, row, seed).is_file():
                    try:
                        adoptable(row, seed, args)
                    except ConfigError as err:  # say a bad --train-args flag
                        raise SystemExit(f"error: {err}") from None


def adopt_run(row: Row, seed: int, scorer: Scorer, args: argparse.Namespace) -> dict | None:
    """(row, seed) from the --adopt directory, scored here by this bench; None if it has no such run."""
    found = adoptable(row, seed, args)
    if found is None:
        return None
    source, kept, model, theirs, missing = found
    if missing:
        print(f"note: --adopt {source}: its model does not record {', '.join(missing)}; not compared")
    print(f"{row.name} seed {seed}: adopted from {source} (the same training settings); scoring {model}", flush=True)
    return {
        "train_seconds": kept["train_seconds"],
        "steps": kept["steps"],
        "process_seconds": kept.get("process_seconds"),
        "command": kept["command"],
        "log": kept.get("log"),
        "model_path": str(model),
        "adopted": {"from": str(source), "config_sha256": kept.get("config_sha256")},
        "train_config": theirs,
        **scorer.model(model),
    }


def seeds_of(row: Row, args: argparse.Namespace) -> list[int | None]:
    if row.runner in ("bm25", "base"):
        return [None]
    return args.seeds[:1] if row.runner.startswith("st") or row.runner == "reranker" else args.seeds


def model_dir(row: Row, seed: int | None, args: argparse.Namespace, config) -> Path | str:
    """Where a model row's model is: the base model, or the run's saved model under --out."""
    return resolve_base(config) if row.runner == "base" else args.out / row.name / f"seed{seed}" / "model"


def missing_scores(result: dict, scorer: Scorer) -> list[str]:
    """The scores (ADDED's keys) the bench now gives a model row that its json lacks, or holds from
    another memory file (by its sha256): lines of two memories are never pooled."""
    wanted = {"reranked": scorer.reranker is not None, "remembered": scorer.memory is not None}
    missing = [key for key, on in wanted.items() if on and key not in result]
    if "remembered" in result and scorer.memory is not None:
        if result.get("memory", {}).get("pairs_sha256") != scorer.memory_sha256:
            missing.append("remembered")
    return missing


def add_scores(
    path: Path, row: Row, seed: int | None, scorer: Scorer, args: argparse.Namespace, config, keys: list[str]
) -> None:
    """A model row's json from before the bench had its re-ranker or its memory: those scores
    (`keys`, with their notes) added, the model scored again from disk for them alone (the rest of
    the json is kept as it was), if the model is still there."""
    name = f"{row.name}{'' if seed is None else f' seed {seed}'}"
    result = json.loads(path.read_text("utf-8"))
    where = result["model_path"] if "adopted" in result else model_dir(row, seed, args, config)
    what = " and ".join(keys)
    if row.runner != "base" and not Path(where).is_dir():
        print(f"{name}: not {what}, and its model {where} is gone (delete {path} to train it again)", flush=True)
        return
    print(f"{name}: scoring it {what} ({where})", flush=True)
    scored = scorer.model(where, tuple(keys))
    result.update({key: scored[key] for key in keys} | {ADDED[key]: scored[ADDED[key]] for key in keys})
    write_atomic(path, json.dumps(result) + "\n")


def load_kept_reranker(path: Path, scorer: Scorer) -> None:
    """The re-ranker a kept reranker json names, into `scorer`, if it is still on disk."""
    from retrieval.rerank import saved_problem

    where = Path(json.loads(path.read_text("utf-8"))["path"])
    problem = saved_problem(where)
    if problem:
        print(f"reranker: {where}: {problem}; no row is re-ranked (delete {path} to train it again)", flush=True)
        return
    scorer.load_reranker(where)


def run_row(row: Row, scorer: Scorer, args: argparse.Namespace, config) -> None:
    """Every missing seed of `row`; a failed seed is reported and left for the next invocation."""
    for seed in seeds_of(row, args):
        path = result_path(args.results, row, seed)
        if path.is_file():
            print(f"{row.name}{'' if seed is None else f' seed {seed}'}: done ({path})", flush=True)
            if row.runner == "reranker" and scorer.reranker is None:
                load_kept_reranker(path, scorer)
            elif row.runner not in ("bm25", "reranker"):
                if missing := missing_scores(json.loads(path.read_text("utf-8")), scorer):
                    add_scores(path, row, seed, scorer, args, config, missing)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            if row.runner == "bm25":
                result = {"train_seconds": 0.0, "steps": 0, "per_query": scorer.bm25()}
            elif row.runner == "reranker":
                result = reranker_run(seed, scorer, args, config)
            elif row.runner == "base":
                model = config.model.name_or_path
                result = {"train_seconds": 0.0, "steps": 0, "model": model, **scorer.model(resolve_base(config))}
            else:
                adopted = adopt_run(row, seed, scorer, args) if args.adopt and row.runner == "ours" else None
                result = adopted or train_run(row, seed, scorer, args, config)
        except Exception:  # a row's scoring error must not stop the rows after it
            traceback.print_exc()
            result = None
        if result is None:
            continue
        result.setdefault("process_seconds", time.perf_counter() - start)
        result = {
            "row": row.name,
            "description": row.description,
            "seed": seed,
            "data": f"{args.data} ({args.split})",
            "weight_split": args.weight_split,
            "config_sha256": config_sha256(args.config),
            "query_ids": scorer.data.query_ids,
            **result,
        }
        write_atomic(path, json.dumps(result) + "\n")
        if "per_query" in result:
            first = next(iter(result["per_query"].values()))[METRIC]
            print(f"  {row.name}: {METRIC} {np.mean(first):.4f} (first dim)", flush=True)


def resolve_base(config) -> str:
    from model import resolve_model_dir

    return str(resolve_model_dir(config.model.name_or_path, config.model.revision))


def config_sha256(path: Path) -> str | None:
    return file_sha256(path) if path.is_file() else None


# ---------------------------------------------------------------- the report


class Line(NamedTuple):
    """One line of the report: a row alone or fused, with each seed's per-question metrics."""

    label: str
    row: Row
    runs: list[dict]  # the row's result files present (one per seed)
    values: list[dict[int, dict[str, np.ndarray]]]  # per seed: dim -> metric -> (Q,) in the bench's question order

    def mean(self, dim: int, metric: str = METRIC) -> np.ndarray:
        """(Q,) seed-averaged per-question values."""
        return np.mean([seed[dim][metric] for seed in self.values], axis=0)


def collect(args: argparse.Namespace, rows: list[Row]) -> dict[str, Line]:
    """The report's lines (bm25, base, base + BM25, ...) from the results present, aligned on one
    question order."""
    lines, query_ids = {}, None
    for row in rows:
        if row.runner == "reranker":  # no line of its own: the model rows' re-ranked lines
            continue
        paths = [result_path(args.results, row, seed) for seed in seeds_of(row, args)]
        runs = [json.loads(path.read_text("utf-8")) for path in paths if path.is_file()]
        if not runs:
            continue
        query_ids = query_ids or runs[0]["query_ids"]
        for run in runs:
            if sorted(run["query_ids"]) != sorted(query_ids):
                raise SystemExit(f"{row.name} seed {run['seed']}: scored on other questions than the rows before")
        kinds = [("per_query", row.name)]
        if row.runner != "bm25":
            kinds += [("fused", f"{row.name} + BM25"), ("reranked", f"{row.name} + BM25{RERANKED}")]
            kinds += [("remembered", f"{row.name} + BM25{REMEMBERED}")]
        for key, label in kinds:
            per_seed, present = [], [run for run in runs if key in run]
            if not present:
                continue
            for run in present:
                order = [run["query_ids"].index(q) for q in query_ids] if run["query_ids"] != query_ids else None
                by_dim = {}
                for dim in args.dims:
                    source = run[key]["bm25"] if row.runner == "bm25" else run[key][str(dim)]
                    by_dim[dim] = {m: np.asarray(v)[order if order else slice(None)] for m, v in source.items()}
                per_seed.append(by_dim)
            lines[label] = Line(label, row, present, per_seed)
    return lines


def mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def change(base: np.ndarray, new: np.ndarray, resamples: int) -> tuple[float, float, float, float]:
    """new - base per question: mean change, its 95% paired bootstrap interval, randomization p."""
    diff, lo, hi = paired_bootstrap(base, new, resamples=resamples, seed=0)
    return diff, lo, hi, paired_randomization(base, new, resamples=resamples, seed=0)


def metric_table(lines: dict[str, Line], dims: list[int]) -> list[str]:
    table = [f"| retriever | seeds | {' | '.join(map(str, dims))} | train s | steps |"]
    table.append("|---|---:|" + "---:|" * (len(dims) + 2))
    for line in lines.values():
        cells = [mean_sd([float(seed[d][METRIC].mean()) for seed in line.values]) for d in dims]
        train_s, steps = (np.mean([run[key] for run in line.runs]) for key in ("train_seconds", "steps"))
        table.append(f"| {line.label} | {len(line.runs)} | {' | '.join(cells)} | {train_s:.0f} | {steps:.0f} |")
    return table


def shared_task_table(lines: dict[str, Line], dims: list[int]) -> list[str]:
    shown = [d for d in (max(dims), 64) if d in dims]
    heads = [f"{m} @{d}" for d in shown for m in REPORTED]
    table = [f"| retriever | {' | '.join(heads)} |", "|---|" + "---:|" * len(heads)]
    for line in lines.values():
        cells = [mean_sd([float(seed[d][m].mean()) for seed in line.values]) for d in shown for m in REPORTED]
        table.append(f"| {line.label} | " + " | ".join(cells) + " |")
    return table


COMPARISONS = [  # (new, against): the questions the bench answers
    ("ours + BM25", "bm25"),
    ("ours + BM25", "base + BM25"),
    ("ours", "bm25"),
    ("ours", "base"),
    ("ours", "st-ours"),
    ("ours + BM25", "st-ours + BM25"),
    ("base + BM25", "bm25"),
    # with the re-ranker: against BM25, against the untouched model fused (with and without it), and
    # what the re-ranker adds to each fusion
    (f"ours + BM25{RERANKED}", "bm25"),
    (f"ours + BM25{RERANKED}", "base + BM25"),
    (f"ours + BM25{RERANKED}", f"base + BM25{RERANKED}"),
    (f"ours + BM25{RERANKED}", "ours + BM25"),
    (f"base + BM25{RERANKED}", "base + BM25"),
    # with question memory: the same, and what memory adds to each fusion
    (f"ours + BM25{REMEMBERED}", "bm25"),
    (f"ours + BM25{REMEMBERED}", "base + BM25"),
    (f"ours + BM25{REMEMBERED}", f"base + BM25{REMEMBERED}"),
    (f"ours + BM25{REMEMBERED}", "ours + BM25"),
    (f"base + BM25{REMEMBERED}", "base + BM25"),
]


def comparison_table(lines: dict[str, Line], dims: list[int], resamples: int) -> tuple[list[str], dict]:
    table = [f"| change | {' | '.join(map(str, dims))} |", "|---|" + "---|" * len(dims)]
    found = {}
    for new, against in COMPARISONS:
        if new not in lines or against not in lines:
            continue
        cells = []
        for d in dims:
            found[(new, against, d)] = c = change(lines[against].mean(d), lines[new].mean(d), resamples)
            cells.append(f"{c[0]:+.4f} [{c[1]:+.4f}, {c[2]:+.4f}] p={c[3]:.2g}")
        table.append(f"| {new} − {against} | " + " | ".join(cells) + " |")
    return table, found


def complement_table(lines: dict[str, Line], dims: list[int]) -> list[str]:
    """What each model adds to BM25, per question (on the seed-averaged NDCG@10): of the questions
    BM25 misses (no relevant passage in its top 10), how many the model alone finds; on how many the
    model alone is above or below BM25; and the best of the two per question (the NDCG@10 of always
    following the better of the two lists), beside the fused figure. A fusion can pass that best
    (both lists holding a passage low can put it high), but a model that finds little of what BM25
    misses leaves the fusion little to gain, however good it is alone."""
    if "bm25" not in lines:
        return []
    table = [
        "| model | dim | BM25 misses it finds | above BM25 | below BM25 | best of the two | fused "
        "| fused − best of the two |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, line in lines.items():
        fused = lines.get(f"{label} + BM25")
        if line.row.runner == "bm25" or fused is None or label.endswith("+ BM25"):
            continue
        for d in [d for d in (max(dims), 64) if d in dims]:
            bm25, alone, mixed = lines["bm25"].mean(d), line.mean(d), fused.mean(d)
            misses, best = bm25 == 0, np.maximum(bm25, alone)
            table.append(
                f"| {label} | {d} | {int((misses & (alone > 0)).sum())} of {int(misses.sum())} | "
                f"{int((alone > bm25).sum())} | {int((alone < bm25).sum())} | {best.mean():.4f} | "
                f"{mixed.mean():.4f} | {mixed.mean() - best.mean():+.4f} |"
            )
    return table if len(table) > 2 else []


SEEN_COMPARISONS = [  # (new, against): the value of fine-tuning, on each group of questions
    ("ours + BM25", "base + BM25"),
    ("ours + BM25", "bm25"),
    ("ours", "base"),
    ("ours", "bm25"),
    (f"ours + BM25{RERANKED}", "base + BM25"),
    (f"ours + BM25{REMEMBERED}", "base + BM25"),
    (f"ours + BM25{REMEMBERED}", "ours + BM25"),
]


def seen_questions(args: argparse.Namespace, query_ids: list[str]) -> np.ndarray | None:
    """Each reported question (query_ids' order): is a relevant passage a training positive of
    CONFIG's data with --train-args (data.train and data.mix)? None, with a note, when they cannot be
    read here."""
    from data import DataError, load_ir, load_pairs
    from training.config import ConfigError, load_config
    from training.seen_report import seen_in_order, table_positives, trained_passages
    from training.table import mixed_table, relevance_map

    ours = next(row for row in ROWS if row.runner == "ours")
    try:  # the settings the bench trains ours with: CONFIG and --train-args (a lever's data.mix, say)
        config = load_config(ours_command(ours, args.seeds[0], args.out / ours.name, args)[2:])
        pairs = load_pairs(config.data.train, config.data.train_split)
        trained = trained_passages(table_positives(mixed_table(config, pairs, relevance_map(config, pairs))))
        return seen_in_order(load_ir(args.data, args.split), trained, query_ids)
    except (ConfigError, DataError, OSError, ValueError) as err:
        print(f"note: the seen/unseen split is left out: {err}")
        return None


def seen_table(lines: dict[str, Line], dims: list[int], seen: np.ndarray, resamples: int) -> list[str]:
    """The paired changes of SEEN_COMPARISONS on the questions about passages the model trained on,
    and on the others, at the full size and 64 dims."""
    shown = [d for d in (max(dims), 64) if d in dims]
    groups = [(mask, name) for mask, name in ((seen, "seen"), (~seen, "unseen")) if mask.any()]
    heads = [f"{d} {name} ({int(mask.sum())})" for d in shown for mask, name in groups]
    table = [f"| change | {' | '.join(heads)} |", "|---|" + "---|" * len(heads)]
    for new, against in SEEN_COMPARISONS:
        if new not in lines or against not in lines:
            continue
        cells = []
        for d in shown:
            for mask, _ in groups:
                c = change(lines[against].mean(d)[mask], lines[new].mean(d)[mask], resamples)
                cells.append(f"{c[0]:+.4f} [{c[1]:+.4f}, {c[2]:+.4f}]")
        table.append(f"| {new} − {against} | " + " | ".join(cells) + " |")
    return table if len(table) > 2 else []


def targets(found: dict, dims: list[int]) -> list[str]:
    """The issue's targets: each fused margin at 384 and 64 dims (mean and lower interval bound),
    and ours alone above BM25 at 384."""
    out = margins_met(found, dims, TARGETS)
    c = found.get(("ours", "bm25", max(dims)))
    if c is not None:
        verdict = "met" if c[1] > 0 else "NOT met"
        out.append(f"- ours alone above BM25 at {max(dims)} dims: {c[0]:+.4f} [{c[1]:+.4f}, {c[2]:+.4f}]: {verdict}")
    reranked = margins_met(found, dims, RERANKED_TARGETS)
    if reranked:
        out += ["", "The same margins for the system with the re-ranker (a second fine-tuned model):", "", *reranked]
    remembered = margins_met(found, dims, REMEMBERED_TARGETS)
    if remembered:
        out += [
            "",
            "The same margins for the system with question memory (the training questions indexed beside the "
            "passages; no second model):",
            "",
            *remembered,
        ]
    return out


def margins_met(found: dict, dims: list[int], margins_by_name: dict[str, tuple[float, float]]) -> list[str]:
    """Each margin at the full size and 64 dims: met when the mean change reaches it and the lower
    end of its interval is above 0."""
    out = []
    for name, margins in margins_by_name.items():
        new, against = (part.strip() for part in name.split("−"))
        against = "bm25" if against == "BM25" else against
        for d, margin in zip((max(dims), 64), margins):
            c = found.get((new, against, d))
            if c is None:
                continue
            verdict = "met" if c[0] >= margin and c[1] > 0 else "NOT met"
            out.append(f"- {name} at {d} dims ≥ {margin}: {c[0]:+.4f} [{c[1]:+.4f}, {c[2]:+.4f}]: {verdict}")
    return out


def notes(lines: dict[str, Line], rows: list[Row], args: argparse.Namespace) -> list[str]:
    """Runs that are missing, and runs trained from another version of the config."""
    alone = [line for line in lines.values() if line.label == line.row.name]  # every run of a row
    done = {line.row.name: len(line.runs) for line in alone}
    reranker = [row for row in rows if row.runner == "reranker"]
    if reranker and result_path(args.results, reranker[0], args.seeds[0]).is_file():
        done[reranker[0].name] = 1
    wanted = {row.name: len(seeds_of(row, args)) for row in rows}
    missing = [f"{name} ({done.get(name, 0)} of {n})" for name, n in wanted.items() if done.get(name, 0) < n]
    out = ["", f"Missing runs (failed, or not run yet): {', '.join(missing)}."] if missing else []
    lacking = {  # key: (when the bench gives it, what the note says)
        "reranked": (bool(reranker) and reranker[0].name in done, "Not re-ranked (scored before the re-ranker"),
        "remembered": (args.memory is not None, "Not scored with memory (scored before --memory"),
    }
    for key, (expected, note) in lacking.items():
        runs = [
            f"{line.row.name}" + ("" if run.get("seed") is None else f" seed {run['seed']}")
            for line in alone
            if line.row.runner != "bm25"
            for run in line.runs
            if key not in run
        ]
        if expected and runs:
            out += ["", f"{note}, models gone): {', '.join(runs)}."]
    stale = sorted(
        {f"{line.row.name} seed {run['seed']}" for line in alone for run in line.runs if is_stale(line.row, run, args)}
    )
    if stale:
        out += [
            "",
            f"Warning: trained with other settings than the bench would train now ({args.config.name}"
            f"{' with --train-args' if args.train_args else ''}): {', '.join(stale)}.",
        ]
    return out


def is_stale(row: Row, run: dict, args: argparse.Namespace) -> bool:
    """Whether a training row's run no longer stands for CONFIG: by its training settings where the
    json keeps them, less what the machine resolved (an edited comment is not a change, nor is bf16
    on a GPU under `auto`; a run adopted from a lever is judged by what it trained with); the
    sentence-transformers peer by the st_train.py flags it ran with against those CONFIG gives now;
    else by the config file's sha256."""
    if row.runner not in ("ours", "st-config"):
        return False
    from training.config import ConfigError, load_config

    try:
        if row.runner == "st-config" and "command" in run:
            now = st_command(row, run["seed"], Path("."), args, load_config(["--config", str(args.config)]))
            return st_flags(run["command"]) != st_flags(now)  # the output directory aside
        if "train_config" in run:
            return config_settings(run["train_config"]) != config_settings(bench_settings(row, run["seed"], args))
    except (ConfigError, OSError) as err:  # CONFIG unreadable here: judged by the file instead
        print(f"note: {args.config}: {err}; {row.name} seed {run['seed']} judged by the config's sha256")
    current = config_sha256(args.config)
    return bool(current) and run["config_sha256"] != current


def reranker_lines(lines: dict[str, Line]) -> list[str]:
    """Which re-ranker the re-ranked lines used: its path, seeds (several: an ensemble), weight."""
    notes = {
        json.dumps(run["reranker"], sort_keys=True) for line in lines.values() for run in line.runs if "reranker" in run
    }
    out = []
    for note in map(json.loads, sorted(notes)):
        seeds = note.get("seeds")
        members = (
            f"seeds {', '.join(map(str, seeds))}, their logits averaged" if seeds and len(seeds) > 1 else "one seed"
        )
        out.append(f"- re-ranked by {note['path']} ({members}; depth {note['depth']}, weight {note['weight']})")
    return out


def memory_lines(lines: dict[str, Line]) -> list[str]:
    """Which training questions the lines with memory remembered."""
    pairs = sorted({run["memory"]["pairs"] for line in lines.values() for run in line.runs if "memory" in run})
    return [
        f"- `+ memory`: the questions of {where} as extra keys of their passages (retrieval/memory.py: a "
        "passage's dense score the best of its own cosine and its training questions'), the fusion weight "
        "found as the plain fusion's"
        for where in pairs
    ]


def report(args: argparse.Namespace, rows: list[Row]) -> str:
    lines = collect(args, rows)
    if not lines:
        return f"no results under {args.results}"
    dims, first = args.dims, next(iter(lines.values()))
    questions = len(first.values[0][dims[0]][METRIC])
    comparisons, found = comparison_table(lines, dims, args.resamples)
    cross = args.weight_split == CROSS
    text = [
        f"# Quality bench: {first.runs[0]['data']}, {questions} questions",
        "",
        f"Config: {args.config}. Seeds: {', '.join(map(str, args.seeds))} (st-ours: the first). "
        "Fused: convex combination, the dense weight chosen per dim "
        + ("by two-fold cross-fitting on the reported questions." if cross else f"on {args.weight_split}."),
        "",
        *[f"- `{row.name}`: {row.description}" for row in rows if any(line.row is row for line in lines.values())],
        *reranker_lines(lines),
        *memory_lines(lines),
        "",
        "## NDCG@10, mean ± sd over seeds",
        "",
        *metric_table(lines, dims),
        "",
        "## The shared task's metrics",
        "",
        *shared_task_table(lines, dims),
        "",
        "## Paired changes in NDCG@10",
        "",
        "On the seed-averaged per-question NDCG@10: mean change [95% paired bootstrap interval], "
        "paired randomization p.",
        "",
        *comparisons,
        "",
        "## The targets",
        "",
        *(targets(found, dims) or ["- not measured yet"]),
    ]
    complement = complement_table(lines, dims)
    if complement:
        text += [
            "",
            "## What each model adds to BM25",
            "",
            f"Per question, on the seed-averaged NDCG@10 ({questions} questions): a miss is a question with no "
            "relevant passage in BM25's top 10; the best of the two follows, on each question, whichever of BM25 "
            "and the model alone scores higher (a reference for fusion, not a bound).",
            "",
            *complement,
        ]
    seen = seen_questions(args, first.runs[0]["query_ids"])
    split = seen_table(lines, dims, seen, args.resamples) if seen is not None else []
    if split:
        text += [
            "",
            "## Memory or transfer",
            "",
            f"{int(seen.sum())} of the {questions} questions have a relevant passage among the training positives "
            "(seen: there a gain is partly memory of those passages); the others ask about passages that are no "
            "training row's positive (unseen). Each group paired on its own, seed-averaged NDCG@10, "
            "change [95% interval]:",
            "",
            *split,
        ]
    return "\n".join(text + notes(lines, rows, args)) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = [row for row in ROWS if not args.rows or row.name in args.rows]
    if not args.report_only:
        from training.config import ConfigError, load_config

        try:
            config = load_config(["--config", str(args.config)])  # read now: it may be newer than this script
        except ConfigError as err:
            sys.exit(f"error: {err}")
        if args.adopt:
            check_adoptions(rows, args)
        if any(a.split("=")[0] == "--bm25-tokens" for a in args.reranker_args):
            sys.exit("error: --reranker-args: no --bm25-tokens; the bench fuses BM25 over its default words")
        scorer = Scorer(args)
        args.out.mkdir(parents=True, exist_ok=True)
        for row in rows:
            run_row(row, scorer, args, config)
    text = report(args, rows)
    print("\n" + text)
    if args.results.is_dir():
        write_atomic(args.results / "report.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
