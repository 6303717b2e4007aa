"""Pair two of the quality bench's result jsons: a recipe lever against the recipe, question by question.

    python -m bench.quality --rows ours --seeds 42 --train-args "--loss.temperature 0.02" \
        --out runs/lever_t002 --results runs/lever_t002
    python -m bench.pair_results bench/results/quality/ours/seed42.json runs/lever_t002/ours/seed42.json

Both files must score the same questions (bench/quality.py writes each question's metrics at every
dim, alone and fused, in `per_query` and `fused`); they are aligned by question id. Prints, per dim,
each file's mean NDCG@10 (or --metric) alone and fused, and the change of the second against the
first with its 95% paired bootstrap interval and paired randomization p (10,000 resamples, seed 0),
the same statistics as the bench's report. The first may be the bench's BM25 row
(bench/results/quality/bm25/result.json): each dim of the second, alone and fused, is then paired
against BM25's one score per question.

    python -m bench.pair_results bench/results/quality/bm25/result.json runs/lever_t002/ours/seed42.json

Either side may be several seeds of one setting, comma-separated: each question's metric is then
the mean over those files (the bench's own two-seed rows are paired the same way), so two seeds of
a lever are paired with two seeds of the recipe in one test:

    python -m bench.pair_results bench/results/quality/ours/seed42.json,bench/results/quality/ours/seed43.json \
        runs/lever_b64/ours/seed42.json,runs/lever_b64/ours/seed43.json

`--seen PAIRS --data BEIR` splits the questions as training runs' reports do (training.seen_report):
those with a relevant passage among PAIRS' positives (what the model trained on: memory) and the
others (passages it never saw: transfer), and pairs each group on its own beside all questions:

    python -m bench.pair_results bench/results/quality/base/result.json bench/results/quality/ours/seed42.json \
        --seen ../shared/data/obliqa/train_pairs.jsonl --data ../shared/data/obliqa

Several pair files, comma-separated (say nested subsets of the training questions, smallest first),
split the questions by the first file whose positives hold one of their passages, and the rest:
runs trained on less data paired with one trained on all show where the added questions' gain lands.

`--by-count PAIRS --data BEIR` splits them instead by how many distinct training questions of PAIRS ask
about their passage (the most over a question's relevant passages; training.seen_report.times_asked),
by default 0, 1, 2 and 3 or more (`--bins 1,2,3`: each group's least count after 0): whether a gain
needs a passage asked about once or several times.

    python -m bench.pair_results bench/results/quality/base/result.json bench/results/quality/ours/seed42.json \
        --by-count ../shared/data/obliqa/train_pairs.jsonl --data ../shared/data/obliqa
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from bench.quality import change, config_settings


def load(path: Path, lexical_allowed: bool = False) -> dict:
    try:
        run = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"error: {path}: {err}") from None
    if lexical_allowed and is_lexical(run):
        return run
    missing = [key for key in ("query_ids", "per_query", "fused") if key not in run]
    if missing:
        what = "model or BM25 result" if lexical_allowed else "model result"
        raise SystemExit(f"error: {path}: not a quality-bench {what} (no {', '.join(missing)})")
    return run


def load_seeds(paths: list[Path], lexical_allowed: bool = False) -> dict:
    """One result from one or more files of the same setting: each question's metric at each dim and
    kind the mean over the files, aligned by question id (BM25's row is one file, never averaged).
    The files must be different seeds of one setting: a seed given twice, or training settings that
    differ by more than the seed, is refused, as is a dim or metric one file lacks."""
    runs = [load(path, lexical_allowed) for path in paths]
    if len(runs) == 1:
        return runs[0]
    for path, run in zip(paths, runs):
        if is_lexical(run):
            raise SystemExit(f"error: {path}: BM25's row is one file; it is not averaged with others")
    same_setting(paths, runs)
    first = runs[0]
    mean = {"query_ids": first["query_ids"]}
    orders = [aligned(first, run, (paths[0], path)) for path, run in zip(paths, runs)]
    for key in ("per_query", "fused"):
        mean[key] = {}
        for dim, metrics in first[key].items():
            mean[key][dim] = {}
            for metric in metrics:
                stacked = []
                for path, run, order in zip(paths, runs, orders):
                    if metric not in run[key].get(dim, {}):
                        raise SystemExit(f"error: {path}: no {metric} at dim {dim} ({key}), which {paths[0]} has")
                    stacked.append(np.asarray(run[key][dim][metric], np.float64)[order])
                mean[key][dim][metric] = np.mean(stacked, axis=0).tolist()
    return mean


def same_setting(paths: list[Path], runs: list[dict]) -> None:
    """Refuse files that are not different seeds of one setting (where the jsons record it)."""
    seen: dict = {}
    for path, run in zip(paths, runs):
        seed = run.get("seed")
        if seed is not None and seed in seen:
            raise SystemExit(f"error: {path}: seed {seed} again (also {seen[seed]}); give each seed once")
        seen[seed] = path
    if all("train_config" in run for run in runs):
        settings = [
            {k: v for k, v in config_settings(run["train_config"]).items() if k != "train.seed"} for run in runs
        ]
        for path, other in zip(paths[1:], settings[1:]):
            keys = sorted(
                k for k in settings[0].keys() | other.keys() if not same_value(settings[0].get(k), other.get(k))
            )
            if keys:
                raise SystemExit(
                    f"error: {path}: trained with other settings than {paths[0]} ({', '.join(keys)}): "
                    "seeds averaged must be of one setting"
                )


def same_value(a: object, b: object) -> bool:
    """Equal settings; a path given relative in one run and absolute in another (the same file, run
    from another directory) counts as equal when the absolute one ends with the relative one."""
    if a == b:
        return True
    if not (isinstance(a, str) and isinstance(b, str)) or os.path.isabs(a) == os.path.isabs(b):
        return False
    absolute, relative = (a, b) if os.path.isabs(a) else (b, a)
    relative = os.path.normpath(relative)
    return not relative.startswith("..") and os.path.normpath(absolute).endswith(os.sep + relative)


def is_lexical(run: dict) -> bool:
    """The bench's BM25 row: one score per question, under per_query.bm25, and nothing fused."""
    return "query_ids" in run and "fused" not in run and set(run.get("per_query", {})) == {"bm25"}


def reference(first: dict, key: str, dim: int, metric: str) -> list[float]:
    """The first file's scores that the second's (key, dim) is paired against: BM25's one list at
    every dim and kind, or the same dim and kind of a model's result."""
    return first["per_query"]["bm25"][metric] if is_lexical(first) else first[key][str(dim)][metric]


def aligned(first: dict, second: dict, where: tuple[Path | str, Path | str]) -> list[int]:
    """The index into second's questions of each of first's."""
    if sorted(first["query_ids"]) != sorted(second["query_ids"]):
        raise SystemExit(f"error: {where[0]} and {where[1]} score different questions")
    position = {q: i for i, q in enumerate(second["query_ids"])}
    return [position[q] for q in first["query_ids"]]


def table(
    first: dict,
    second: dict,
    order: list[int],
    metric: str,
    resamples: int,
    groups: dict[str, np.ndarray] | None = None,
) -> list[str]:
    """groups: question masks in first's order, by name (default: all questions, unnamed)."""
    named = groups is not None
    groups = groups or {"all": np.ones(len(first["query_ids"]), dtype=bool)}
    head = "| dim | kind | questions " if named else "| dim | kind "
    out = [
        head + f"| first {metric} | second | change [95% CI] | p |",
        "|---:|---|" + ("---|" if named else "") + "---:|---:|---|---:|",
    ]
    shared = second["per_query"] if is_lexical(first) else first["per_query"]
    dims = sorted((int(d) for d in shared if d in second["per_query"]), reverse=True)
    for dim in dims:
        for kind, key in (("alone", "per_query"), ("fused", "fused")):
            a = np.asarray(reference(first, key, dim, metric), dtype=np.float64)
            b = np.asarray(second[key][str(dim)][metric], dtype=np.float64)[order]
            for name, mask in groups.items():
                if not mask.any():
                    continue
                diff, lo, hi, p = change(a[mask], b[mask], resamples)
                group = f"{name} ({int(mask.sum())}) | " if named else ""
                out.append(
                    f"| {dim} | {kind} | {group}{a[mask].mean():.4f} | {b[mask].mean():.4f} "
                    f"| {diff:+.4f} [{lo:+.4f}, {hi:+.4f}] | {p:.2g} |"
                )
    return out


def seen_groups(pairs: list[Path], data: Path, split: str, query_ids: list[str]) -> dict[str, np.ndarray]:
    """all / seen / unseen masks over query_ids: seen when a relevant passage of the question (in
    data's qrels of split) is a positive of the training pairs. Several pair files (say a quarter of
    the training questions, a half, all): a group for each file, of the questions first seen by it
    (seen by it and by none before it), then the questions none of them saw."""
    from data import DataError, load_ir, load_pairs
    from training.seen_report import seen_in_order, trained_passages

    try:
        ir = load_ir(data, split)
        seen = [seen_in_order(ir, trained_passages(load_pairs(path).positives), query_ids) for path in pairs]
    except (DataError, OSError, ValueError) as err:
        raise SystemExit(f"error: --seen: {err}") from None
    groups = {"all": np.ones(len(query_ids), dtype=bool)}
    if len(pairs) == 1:
        return groups | {"seen": seen[0], "unseen": ~seen[0]}
    before = np.zeros(len(query_ids), dtype=bool)
    for path, mask in zip(pairs, seen):
        groups[f"first seen by {path.name}"] = mask & ~before
        before |= mask
    return groups | {"unseen by all": ~before}


def count_groups(pairs: Path, data: Path, split: str, query_ids: list[str], edges: list[int]) -> dict[str, np.ndarray]:
    """all, then a mask over query_ids for each range of times asked that edges (increasing, each at
    least 1) mark off: [0, e1), [e1, e2), ..., [ek, inf), named by their counts (as training runs'
    reports name them: training.seen_report.count_groups)."""
    from data import DataError, load_ir, load_pairs
    from training.seen_report import count_groups as by_count
    from training.seen_report import times_asked

    try:
        ir = load_ir(data, split)
        training = load_pairs(pairs)
        asked = times_asked(ir, training.anchors, training.positives, query_ids)
    except (DataError, OSError, ValueError) as err:
        raise SystemExit(f"error: --by-count: {err}") from None
    return {"all": np.ones(len(query_ids), dtype=bool)} | by_count(asked, edges)


def count_edges(text: str) -> list[int]:
    from training.seen_report import check_edges

    try:
        edges = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not whole numbers: {text!r}") from None
    try:
        check_edges(edges)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: increasing whole numbers from 1, say 1,2,3") from None
    return edges


def seed_files(text: str) -> list[Path]:
    files = [Path(part) for part in text.split(",") if part.strip()]
    if not files:
        raise argparse.ArgumentTypeError("no result file")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "first", type=seed_files, help="the reference result json (say the recipe's); seeds comma-separated"
    )
    parser.add_argument(
        "second", type=seed_files, help="the result json compared with it (say a lever's); seeds comma-separated"
    )
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument(
        "--seen",
        type=seed_files,
        help="training pairs: also pair the questions on their positives and the others apart; several files "
        "comma-separated (nested subsets, smallest first): the questions each first saw, then the rest",
    )
    parser.add_argument(
        "--by-count",
        type=Path,
        help="training pairs (with --data): also pair the questions apart by how many training questions ask "
        "about their passage",
    )
    parser.add_argument(
        "--bins",
        type=count_edges,
        help="with --by-count: each group's least count after 0 (default 1,2,3: 0, 1, 2, 3 or more)",
    )
    parser.add_argument(
        "--data", type=Path, help="with --seen or --by-count: the BEIR set the results scored (its qrels)"
    )
    parser.add_argument("--split", default="dev", help="with --seen or --by-count: the qrels split the results scored")
    args = parser.parse_args(argv)
    if args.seen is not None and args.by_count is not None:
        parser.error("--seen and --by-count split the questions two ways: give one")
    if (args.seen is None and args.by_count is None) != (args.data is None):
        parser.error("--data goes with --seen or --by-count, and each of them needs it")
    if args.bins is not None and args.by_count is None:
        parser.error("--bins goes with --by-count")
    first, second = load_seeds(args.first, lexical_allowed=True), load_seeds(args.second)
    named = [",".join(map(str, side)) for side in (args.first, args.second)]
    order = aligned(first, second, (named[0], named[1]))
    for name, run in zip(named, (first, second)):
        for key in ("per_query", "fused") if "fused" in run else ("per_query",):
            for dim, metrics in run[key].items():
                if args.metric not in metrics:
                    raise SystemExit(f"error: {name}: no metric {args.metric!r} at dim {dim} ({key})")
    print(f"first: {named[0]}\nsecond: {named[1]}\n")
    groups = None
    if args.seen:
        groups = seen_groups(args.seen, args.data, args.split, first["query_ids"])
    elif args.by_count:
        from training.seen_report import EDGES

        groups = count_groups(args.by_count, args.data, args.split, first["query_ids"], args.bins or list(EDGES))
    print("\n".join(table(first, second, order, args.metric, args.resamples, groups)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
