"""Inverse-cloze pairs from a corpus alone: training pairs with no question and no label.

    python -m bench.ict_pairs --corpus ../shared/data/obliqa/corpus.jsonl --out runs/crop/ict_pairs.jsonl
    python -m bench.quality --rows ours --seeds 42 --out runs/lever_ict --results runs/lever_ict \\
        --train-args '--data.mix "[{path: runs/crop/ict_pairs.jsonl, weight: 0.2}]" --eval.every end'

The inverse cloze task (Lee et al., "Latent retrieval for weakly supervised open domain question
answering", ACL 2019), for passages as short as regulatory clauses: from every passage of at least
`--min-words` words whose text no other passage shares, a contiguous span of 30-50% of its words
(at least 8, at most 30: question length) is the query, and the passage with that span cut out
the positive; one time in ten the passage is kept whole (so the model also learns to match the
words themselves, as in ICT). A user has their corpus before they have questions, so these pairs
are free; whether they help on top of real questions is what `data.mix` measures
(BENCHMARKS.md, "Inverse-cloze pairs from the corpus"). `prepare.py --questions structure`
(documents/structure.py) makes a sentence-level inverse cloze from the source documents, beside
heading and first-sentence pairs; this one needs only a BEIR corpus.jsonl and cuts a span of words,
so it works where passages are a sentence or two. Each pair is a `data.train` row (`query_id`,
`anchor`, `positive`); the spans are seeded by `--seed`.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
from pathlib import Path

from common.files import jsonl_lines, write_atomic
from data import DataError, read_id_text

SPAN = (0.3, 0.5)  # the query's share of the passage's words
SPAN_WORDS = (8, 30)  # bounds on the query's length, in words
KEEP_WHOLE = 0.1  # ICT's share of positives that keep the query's words
MIN_REST = 8  # a positive shorter than this keeps the passage whole


def ict_pairs(corpus: dict[str, str], min_words: int, seed: int) -> list[dict]:
    """One pair for each passage of at least `min_words` words whose text is unique, in corpus order."""
    if min_words < SPAN_WORDS[0]:
        raise ValueError(f"min_words must be at least {SPAN_WORDS[0]} (the shortest query), got {min_words}")
    rng = random.Random(seed)
    # texts compared as they are (the measured run's pairs): 2 ObliQA passages that differ from
    # another only in spacing still give a pair
    count = collections.Counter(corpus.values())
    pairs = []
    for doc_id, text in corpus.items():
        words = text.split()
        if len(words) < min_words or count[text] > 1:  # a shared text would be a false negative of itself
            continue
        length = max(SPAN_WORDS[0], min(SPAN_WORDS[1], round(len(words) * rng.uniform(*SPAN))))
        start = rng.randrange(0, len(words) - length + 1)
        rest = words[:start] + words[start + length :]
        whole = rng.random() < KEEP_WHOLE or len(rest) < MIN_REST
        pairs.append(
            {
                "query_id": f"ict-{doc_id}",
                "anchor": " ".join(words[start : start + length]),
                "positive": text if whole else " ".join(rest),
            }
        )
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a BEIR corpus.jsonl")
    parser.add_argument("--out", type=Path, required=True, help="the pairs, as jsonl")
    parser.add_argument("--min-words", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.min_words < SPAN_WORDS[0]:
        raise SystemExit(f"error: --min-words must be at least {SPAN_WORDS[0]} (the shortest query)")  # before reading
    try:
        corpus = read_id_text(args.corpus, title=True)
    except (DataError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    pairs = ict_pairs(corpus, args.min_words, args.seed)
    if not pairs:
        raise SystemExit(f"error: {args.corpus}: no passage of at least {args.min_words} words with a unique text")
    write_atomic(args.out, jsonl_lines(pairs))
    print(f"{len(pairs)} pairs from {len(corpus)} passages: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
