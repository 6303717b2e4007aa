"""A second held-out set from the training questions: those a subset of the pairs did not train on.

    python -m bench.subset_pairs --pairs ../shared/data/obliqa/train_pairs.jsonl --fractions 0.5 --out runs/curve
    python -m bench.heldout_split --data ../shared/data/obliqa --pairs runs/curve/train_pairs-0.5.jsonl \
        --out runs/heldout_beir
    python -m bench.ensemble --models MODEL_TRAINED_ON_THE_HALF --data runs/heldout_beir --split heldout --out runs/x

A model trained on part of the training questions can be scored on the rest, a held-out set
larger than dev (on ObliQA, half of the 2,509 training questions against dev's 279) that no recipe
was tuned on. Writes a BEIR directory at --out: `corpus.jsonl` and `queries.jsonl` as links to
--data's, every qrels file of --data linked as well (so `--fusion-weight-from dev` still works),
and `qrels/heldout.tsv`: the rows of --split's qrels whose question is not a question of --pairs.
A question is matched by its text, whitespace collapsed (retrieval.memory.collapsed), so pairs
files without query ids match too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.files import output_problem, write_atomic
from data import DataError, load_ir, load_pairs
from retrieval.memory import collapsed


def heldout_rows(qrels_lines: list[str], query_text: dict[str, str], trained: set[str]) -> list[str]:
    """The qrels lines (a header line kept) whose question's collapsed text is not in trained."""
    header = qrels_lines[:1] if qrels_lines and qrels_lines[0].lower().startswith("query") else []
    return header + [
        line
        for line in qrels_lines[len(header) :]
        if line.strip() and collapsed(query_text[line.split("\t")[0]]) not in trained
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the BEIR directory the questions come from")
    parser.add_argument("--split", default="train", help="its qrels split the held-out questions are drawn from")
    parser.add_argument("--pairs", type=Path, required=True, help="the pairs the model trained on")
    parser.add_argument("--out", type=Path, required=True, help="a new BEIR directory")
    args = parser.parse_args(argv)
    if problem := output_problem(args.out, directory=True):
        sys.exit(f"error: --out {args.out}: {problem}")
    if not (args.data / "corpus.jsonl").is_file():
        sys.exit(f"error: --data {args.data}: not a BEIR directory (no corpus.jsonl)")
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"error: --out {args.out}: not empty; give a new directory")
    try:
        data = load_ir(args.data, args.split)  # checks the qrels against the corpus and the questions
        trained = {collapsed(anchor) for anchor in load_pairs(args.pairs).anchors}
    except (DataError, OSError) as err:
        sys.exit(f"error: {err}")
    query_text = dict(zip(data.query_ids, data.query_texts))
    qrels = args.data / "qrels" / f"{args.split}.tsv"
    rows = heldout_rows(qrels.read_text("utf-8").splitlines(), query_text, trained)
    questions = {line.split("\t")[0] for line in rows if not line.lower().startswith("query")}
    if not questions:
        sys.exit(f"error: --pairs {args.pairs}: every question of {qrels} is among its questions; nothing is held out")
    (args.out / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (args.out / name).symlink_to((args.data / name).resolve())
    for path in sorted((args.data / "qrels").glob("*.tsv")):
        (args.out / "qrels" / path.name).symlink_to(path.resolve())
    write_atomic(args.out / "qrels" / "heldout.tsv", "".join(line + "\n" for line in rows))
    summary = {"questions": len(questions), "of": len(data.query_ids), "trained_questions": len(trained)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
