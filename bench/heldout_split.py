"""A second held-out set from the training questions: those a subset of the pairs did not train on.

    python -m bench.subset_pairs --pairs ../shared/data/obliqa/train_pairs.jsonl --fractions 0.5 --out runs/curve
    python -m bench.heldout_split --data ../shared/data/obliqa --pairs runs/curve/train_pairs-0.5.jsonl \
        --out runs/heldout_beir
    python -m bench.ensemble --models MODEL_TRAINED_ON_THE_HALF --data runs/heldout_beir --split heldout --out runs/x

A model trained on part of the training questions can be scored on the rest, a held-out set
larger than dev (on ObliQA, half of the 2,509 training questions against dev's 279) that no recipe
was tuned on. Writes a BEIR directory at --out: `corpus.jsonl` and `queries.jsonl` as links to
--data's, every qrels file of --data linked as well (so `--fusion-weight-from dev` still works),
and `qrels/heldout.tsv`: the judgements of --split's questions (those with a relevant passage)
that are not questions of --pairs, as the loader read them. A question is matched by its text,
whitespace collapsed (retrieval.memory.collapsed), so pairs files without query ids match too; a
pairs file none of whose questions is in the split is refused, and the summary says how many of
its questions the split holds. The directory is built aside and moved into place whole.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from common.files import output_problem, replace_directory, write_atomic
from data import DataError, IRDataset, load_ir, load_pairs
from retrieval.memory import collapsed


def heldout_questions(data: IRDataset, trained: set[str]) -> list[str]:
    """The ids of data's questions (those with a relevant passage) whose collapsed text is not in
    trained, in data's order."""
    return [q for q, text in zip(data.query_ids, data.query_texts) if collapsed(text) not in trained]


def qrels_lines(data: IRDataset, query_ids: list[str]) -> list[str]:
    """A BEIR qrels file of those questions: a header, then each judgement as data holds it."""
    rows = [f"{q}\t{doc}\t{grade}\n" for q in query_ids for doc, grade in data.qrels[q].items()]
    return ["query-id\tcorpus-id\tscore\n", *rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the BEIR directory the questions come from")
    parser.add_argument("--split", default="train", help="its qrels split the held-out questions are drawn from")
    parser.add_argument("--pairs", type=Path, required=True, help="the pairs the model trained on")
    parser.add_argument("--out", type=Path, required=True, help="a new BEIR directory")
    args = parser.parse_args(argv)
    if not (args.data / "corpus.jsonl").is_file():
        sys.exit(f"error: --data {args.data}: not a BEIR directory (no corpus.jsonl)")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        sys.exit(f"error: --out {args.out}: exists and is not an empty directory; give a new one")
    if problem := output_problem(args.out.parent, directory=True):
        sys.exit(f"error: --out {args.out}: {problem}")
    try:
        data = load_ir(args.data, args.split)  # the qrels checked against the corpus and the questions
        trained = {collapsed(anchor) for anchor in load_pairs(args.pairs).anchors}
    except (DataError, OSError) as err:
        sys.exit(f"error: {err}")
    matched = trained & {collapsed(text) for text in data.query_texts}
    if not matched:
        sys.exit(
            f"error: --pairs {args.pairs}: none of its {len(trained)} questions is a question of "
            f"{args.data}'s {args.split} split (matched by text): nothing would be held out of it"
        )
    kept = heldout_questions(data, trained)
    if not kept:
        sys.exit(
            f"error: --pairs {args.pairs}: every question of {args.data}'s {args.split} split is among its questions"
        )
    partial = args.out.with_name(f".{args.out.name}.partial-{os.getpid()}")
    try:
        (partial / "qrels").mkdir(parents=True)
        for name in ("corpus.jsonl", "queries.jsonl"):
            (partial / name).symlink_to((args.data / name).resolve())
        for path in sorted((args.data / "qrels").glob("*.tsv")):
            (partial / "qrels" / path.name).symlink_to(path.resolve())
        write_atomic(partial / "qrels" / "heldout.tsv", qrels_lines(data, kept))
        replace_directory(partial, args.out)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        sys.exit(f"error: --out {args.out}: {err}")
    summary = {
        "questions": len(kept),
        "of": len(data.query_ids),
        "trained_questions_matched": len(matched),
        "trained_questions_not_in_split": len(trained - matched),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
