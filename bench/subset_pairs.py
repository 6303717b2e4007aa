"""Nested random subsets of a pairs file, by question: the learning curve of BENCHMARKS.md, "How
many training questions".

    python -m bench.subset_pairs --pairs ../shared/data/obliqa/train_pairs.jsonl --fractions 0.25,0.5 --out runs/curve

A question is its `query_id` when every row has one, else its anchor text; every pair of a kept
question is kept, in the file's order. The questions (sorted) are permuted once (numpy, --seed) and
each fraction keeps the first round(fraction × questions) of that order, so a smaller subset lies
inside every larger one. Writes `<stem>-<fraction>.jsonl` into --out, each line as the file had it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from common.files import write_atomic


def question_of(rows: list[dict]) -> list[str]:
    """Each row's question: its query_id when every row has one, else its anchor text."""
    key = "query_id" if all("query_id" in row for row in rows) else "anchor"
    return [str(row[key]) for row in rows]


def nested_subsets(questions: list[str], fractions: list[float], seed: int) -> dict[float, set[str]]:
    """The kept questions of each fraction: the first round(fraction × n) of one seeded permutation."""
    distinct = sorted(set(questions))
    order = np.random.default_rng(seed).permutation(len(distinct))
    return {f: {distinct[i] for i in order[: round(f * len(distinct))]} for f in fractions}


def main(argv: list[str] | None = None) -> dict[float, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, required=True, help="a JSONL pairs file (anchor, positive, ...)")
    parser.add_argument("--fractions", required=True, help="comma-separated, each in (0, 1], e.g. 0.25,0.5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="the directory the subsets are written to")
    args = parser.parse_args(argv)
    try:
        fractions = [float(part) for part in args.fractions.split(",") if part.strip()]
    except ValueError:
        sys.exit(f"error: --fractions {args.fractions}: give numbers, e.g. 0.25,0.5")
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        sys.exit(f"error: --fractions {args.fractions}: each must be in (0, 1]")
    try:
        lines = [line for line in args.pairs.read_text("utf-8").splitlines() if line.strip()]
        rows = [json.loads(line) for line in lines]
        questions = question_of(rows)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        sys.exit(f"error: --pairs {args.pairs}: {err!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    written = {}
    for fraction, kept in nested_subsets(questions, fractions, args.seed).items():
        path = args.out / f"{args.pairs.stem}-{fraction:g}.jsonl"
        write_atomic(path, "".join(line + "\n" for line, q in zip(lines, questions) if q in kept))
        print(f"{path}: {len(kept)} questions, {sum(q in kept for q in questions)} rows")
        written[fraction] = path
    return written


if __name__ == "__main__":
    main()
