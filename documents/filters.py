"""Filters for synthetic questions: keep only questions a retriever can learn from.

`filter_questions` drops empty questions, duplicates, and near-verbatim ones: a question is
near-verbatim when it shares a run of NEAR_VERBATIM_RUN (8) consecutive word tokens (case-folded,
punctuation ignored) with its own passage: copying a sentence teaches the retriever to match
strings, not meaning. `round_trip_filter` is the consistency filter of Promptagator and GPL: a
question stays only if an exact search over all passages with the chosen embedding model ranks
its own passage in the top k.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)

NEAR_VERBATIM_RUN = 8  # word tokens in a row shared with the passage that make a question near-verbatim


def _check_known(questions: dict[str, list[str]], passages: dict[str, str]) -> None:
    unknown = [pid for pid in questions if pid not in passages]
    if unknown:
        raise ValueError(f"questions for passages that are not in `passages`: {', '.join(map(str, unknown[:5]))}")


def normalize_question(question: str) -> str:
    """Case-folded words with punctuation and spacing removed: the form duplicates are compared in."""
    return " ".join(re.findall(r"\w+", question.casefold()))


def near_verbatim(question: str, passage: str, run: int = NEAR_VERBATIM_RUN) -> bool:
    """True when `run` consecutive word tokens of the question (case-folded, punctuation ignored)
    also appear consecutively in the passage."""

    def runs(text: str) -> set[tuple[str, ...]]:
        tokens = re.findall(r"\w+", text.casefold())
        return {tuple(tokens[i : i + run]) for i in range(len(tokens) - run + 1)}

    return not runs(question).isdisjoint(runs(passage))


def filter_questions(
    questions: dict[str, list[str]], passages: dict[str, str]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Drop, in this order and counting each: empty questions; repeats of a question for the same
    passage (one is kept); questions asked of two or more passages (ambiguous: every copy goes);
    near-verbatim ones (see `near_verbatim`). Passages left with no question are left out."""
    _check_known(questions, passages)
    counts = dict.fromkeys(("empty", "repeated", "ambiguous", "near_verbatim", "kept"), 0)
    asked_of: dict[str, set[str]] = {}  # normalised question -> ids of the passages it was asked of
    for pid, asked in questions.items():
        for question in asked:
            asked_of.setdefault(normalize_question(question), set()).add(pid)
    kept: dict[str, list[str]] = {}
    for pid, asked in questions.items():
        seen: set[str] = set()
        for question in asked:
            norm = normalize_question(question)
            reason = (
                "empty"
                if not norm
                else "repeated"
                if norm in seen
                else "ambiguous"
                if len(asked_of[norm]) > 1
                else "near_verbatim"
                if near_verbatim(question, passages[pid])
                else "kept"
            )
            seen.add(norm)
            counts[reason] += 1
            if reason == "kept":
                kept.setdefault(pid, []).append(question.strip())
    if counts["ambiguous"]:
        shared = sorted(norm for norm, ids in asked_of.items() if norm and len(ids) > 1)
        logger.warning(
            "dropped %d copies of %d questions asked of more than one passage (ambiguous), e.g. %r",
            counts["ambiguous"],
            len(shared),
            shared[0],
        )
    return kept, counts


def round_trip_filter(
    questions: dict[str, list[str]],
    passages: dict[str, str],
    encode: Callable[[list[str]], np.ndarray],
    top_k: int,
    encode_passages: Callable[[list[str]], np.ndarray] | None = None,
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Keep a question only if an exact search over all `passages` ranks its own passage in the top_k.

    `encode` maps texts to (N, D) L2-normalised float32 embeddings; `encode_passages` (default:
    `encode`) embeds the passages, for models that prompt queries and documents differently. Ties
    in score rank passages in `passages` order (the project's exact search). Passages left with no
    question are left out.
    """
    # imported here: faiss and torch load only when this filter runs, never for generation
    from retrieval.search import exact_search

    if top_k < 1:
        raise ValueError(f"top_k = {top_k}: must be >= 1")
    _check_known(questions, passages)
    asked = [(pid, question) for pid, listed in questions.items() for question in listed]
    counts = {"not_in_top_k": 0, "kept": 0}
    if not asked:
        return {}, counts
    passage_ids = list(passages)
    row_of = {pid: row for row, pid in enumerate(passage_ids)}
    d_reps = np.asarray((encode_passages or encode)([passages[pid] for pid in passage_ids]), dtype=np.float32)  # (P, D)
    q_reps = np.asarray(encode([question for _, question in asked]), dtype=np.float32)  # (Q, D)
    _, top_rows = exact_search(q_reps, d_reps, min(top_k, len(passage_ids)))  # (Q, k) passage rows
    kept: dict[str, list[str]] = {}
    for (pid, question), rows in zip(asked, top_rows):
        found = row_of[pid] in rows
        counts["kept" if found else "not_in_top_k"] += 1
        if found:
            kept.setdefault(pid, []).append(question)
    return kept, counts
