"""How many known-relevant passages sit in a question's softmax as negatives, per mask rule.

    python -m bench.mask_count --train ../shared/data/obliqa/train_pairs.jsonl --batch 512 --seed 42

Walks one epoch of the trainer's sampler and counts, for every query of every global batch, the
candidate slots (other rows' positives) whose text the whole training table marks relevant to the
query's question, and which of them each rule masks: the batch-local rule (only rows of the same
question inside the batch say what is relevant; the loss before issue 9) and the table-wide one
(`TrainTable.known_mask`, the loss now). Prints both counts; no model is loaded.
"""

from __future__ import annotations

import argparse

import numpy as np

from data import SpreadBatchSampler, index_texts, known_relevant, load_pairs


def batch_local_mask(anchor_ids: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
    """(G, M): row g's question has, inside this batch, a row whose positive is candidate j's text."""
    groups = len(anchor_ids)
    same_question = anchor_ids[:, None] == anchor_ids[None, :]  # (G, G)
    same_text = candidate_ids[:groups, None] == candidate_ids[None, :]  # (G, M)
    return (same_question.astype(np.int64) @ same_text.astype(np.int64)) > 0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default="../shared/data/obliqa/train_pairs.jsonl")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    pairs = load_pairs(args.train)
    relevant = known_relevant(pairs)
    table = index_texts(pairs, relevant)
    counts = {
        "queries": 0,
        "queries_exposed": 0,
        "other_slots": 0,
        "other_batch_local": 0,
        "other_table_wide": 0,
        "copy_slots": 0,
        "copy_batch_local": 0,
        "copy_table_wide": 0,
    }
    for rows in SpreadBatchSampler(table, args.batch, args.seed):
        candidates = np.concatenate([table.positive_ids[rows], table.negative_ids[rows].reshape(-1)])
        truth = np.array(
            [
                [table.passage_texts[c] in relevant[table.anchor_texts[a]] for c in candidates]
                for a in table.anchor_ids[rows]
            ]
        )  # (G, M) by text, independently of the masks
        np.fill_diagonal(truth[:, : len(rows)], False)  # a query's own positive is its label, not a negative
        copy = table.positive_ids[rows][:, None] == candidates[None, :]  # another slot holding my positive's text
        local, wide = batch_local_mask(table.anchor_ids[rows], candidates), table.known_mask(rows)
        counts["queries"] += len(rows)
        counts["queries_exposed"] += int((truth & ~copy).any(1).sum())
        for kind, slots in (("other", truth & ~copy), ("copy", truth & copy)):
            counts[f"{kind}_slots"] += int(slots.sum())
            counts[f"{kind}_batch_local"] += int((slots & local).sum())
            counts[f"{kind}_table_wide"] += int((slots & wide).sum())
    print(
        f"{counts['queries']} queries. {counts['queries_exposed']} have another passage known relevant to their "
        f"question among their candidates: {counts['other_slots']} slots, masked by the batch-local rule "
        f"{counts['other_batch_local']}, by the table-wide rule {counts['other_table_wide']}. Copies of a query's own "
        f"positive in another slot: {counts['copy_slots']}, "
        f"masked by the batch-local rule {counts['copy_batch_local']}, "
        f"by the table-wide rule {counts['copy_table_wide']}."
    )
    return counts


if __name__ == "__main__":
    main()
