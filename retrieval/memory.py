"""Question memory: the training questions as extra keys of the passages they were asked about.

A user who fine-tunes on (question, passage) pairs holds questions already answered. When a new
question resembles one of them, the passage that answered it is a good answer again. With a memory,
a passage's dense score for a question q is

    max(cos(q, passage), max over the training questions q' linked to it of cos(q, q'))

(one model encodes both; nothing is trained). A training question links to every corpus row whose
text, whitespace collapsed, is one of its positives; a passage no training question asked for keeps
its own cosine. A scored question is never its own memory: a training question with the same text
(whitespace collapsed) is left out of its score, so a split that overlaps the training questions
(one the fusion weight is chosen on, say) does not read its own answer.

Searching: the top k under that score is exact without scoring every passage (up to float32
rounding: the passage index picks its top k with FAISS's inner products, the candidates are then
ordered by numpy's, which may differ in the last bit). It is among the passage index's top k
(exact_search) and the memory's own top k over the linked passages: a passage
whose score is its own cosine and that is not in the cosine top k has k passages at or above it
(ties: earlier rows) under the cosine, so under the maximum too; the same holds for the memory
side. The question-to-question cosines are (B, M) per block of queries, M training questions.
The order is the project's tie rule: score descending, then corpus order.

Measured on ObliQA dev (BENCHMARKS.md, "Question memory"): fused with BM25, memory adds +0.016
NDCG@10 to the fine-tuned model, all of it on the questions whose passage was a training positive;
alone, the model with memory is no better (a question's cosine with a question and with a passage
are on different scales), so evaluate.py applies it to the fused retriever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.lexical import top_k
from retrieval.search import exact_search, truncate_normalize

BLOCK = 256  # queries at once: memory is BLOCK x training questions (and x linked passages) float32


def collapsed(text: str) -> str:
    """The text with every run of whitespace one space, ends stripped: how texts are matched."""
    return " ".join(text.split())


@dataclass
class QuestionMemory:
    """The distinct training questions and their links to corpus rows."""

    questions: list[str]  # M distinct questions, one per whitespace-collapsed text (its first spelling)
    question_of: np.ndarray  # (L,) int64: the question of each link, links sorted by (row, question)
    row_of: np.ndarray  # (L,) int64: the corpus row of each link
    source: str  # where the pairs came from

    @property
    def rows(self) -> np.ndarray:
        """(P,) the linked corpus rows, ascending."""
        return np.unique(self.row_of)

    def self_keys(self, query_texts: list[str]) -> np.ndarray:
        """(Q,) int64: each query's training question of the same text (whitespace collapsed), -1 for none."""
        index = {collapsed(q): m for m, q in enumerate(self.questions)}
        return np.array([index.get(collapsed(t), -1) for t in query_texts], dtype=np.int64)


def build_memory(anchors: list[str], positives: list[str], corpus_texts: list[str], source: str) -> QuestionMemory:
    """Link each distinct anchor to every corpus row whose text (whitespace collapsed) is one of its
    positives. Raises ValueError when no positive is a corpus passage: a memory of nothing."""
    rows_of: dict[str, list[int]] = {}
    for row, text in enumerate(corpus_texts):
        rows_of.setdefault(collapsed(text), []).append(row)
    questions: dict[str, int] = {}  # collapsed text -> key: spellings that differ in whitespace are one question
    first: list[str] = []  # each key's first spelling, the text encoded
    links = set()
    for anchor, positive in zip(anchors, positives):
        for row in rows_of.get(collapsed(positive), []):
            key = questions.setdefault(collapsed(anchor), len(questions))
            if key == len(first):
                first.append(anchor)
            links.add((row, key))
    if not links:
        raise ValueError(
            f"{source}: none of the {len(set(positives))} training positives is a passage of the corpus (texts "
            "compared with whitespace collapsed): the memory would be empty"
        )
    linked = np.array(sorted(links), dtype=np.int64)
    return QuestionMemory(first, linked[:, 1], linked[:, 0], source)


def load_memory(path: str | Path, corpus_texts: list[str]) -> QuestionMemory:
    """The memory of a pairs file (any format data.load_pairs reads). Raises data.DataError or
    ValueError naming the file."""
    from data import load_pairs  # core: imported here so retrieval's import stays light

    pairs = load_pairs(path)
    return build_memory(pairs.anchors, pairs.positives, corpus_texts, str(path))


@dataclass
class EncodedMemory:
    """A memory and its questions encoded by the model scored (full size, as the corpus is)."""

    memory: QuestionMemory
    keys: np.ndarray  # (M, D)

    def at(self, dim: int) -> MemoryAtDim:
        return MemoryAtDim(self.memory, truncate_normalize(self.keys, dim))


@dataclass
class MemoryAtDim:
    """A memory's questions at one dim, and the search and scores that remember them."""

    memory: QuestionMemory
    keys: np.ndarray  # (M, dim) unit vectors
    rows: np.ndarray = field(init=False, repr=False)  # (P,) the linked corpus rows, ascending
    starts: np.ndarray = field(init=False, repr=False)  # (P,) where each row's links start (links sorted by row)
    column: np.ndarray = field(init=False, repr=False)  # (N,) corpus row -> its column of linked_scores, or -1

    def __post_init__(self):
        self.rows = self.memory.rows
        self.starts = np.flatnonzero(np.r_[True, self.memory.row_of[1:] != self.memory.row_of[:-1]])
        self.column = np.empty(0, dtype=np.int64)  # sized to the corpus at the first scores_at

    def linked_scores(self, queries: np.ndarray, self_keys: np.ndarray | None) -> np.ndarray:
        """(B, P): each query's best cosine with the training questions linked to each of the
        memory's rows (QuestionMemory.rows order); -inf where every one is the query itself.
        self_keys: (B,) each query's own training question (QuestionMemory.self_keys), or None to
        leave none out (a deployed retriever answering a question asked before)."""
        similarity = queries @ self.keys.T  # (B, M)
        if self_keys is not None:
            own = self_keys >= 0
            similarity[np.flatnonzero(own), self_keys[own]] = -np.inf
        return np.maximum.reduceat(similarity[:, self.memory.question_of], self.starts, axis=1)

    def scores_at(
        self,
        queries: np.ndarray,
        docs: np.ndarray,
        rows: np.ndarray,
        self_keys: np.ndarray | None,
        linked: np.ndarray | None = None,
    ) -> np.ndarray:
        """(B, C) the remembered score of each query's candidate rows (-1: padding, scored 0).
        `linked`: the block's linked_scores, if already computed."""
        if linked is None:
            linked = self.linked_scores(queries, self_keys)
        safe = np.maximum(rows, 0)
        cosine = np.einsum("bcd,bd->bc", docs[safe], queries)
        if len(self.column) != len(docs):  # made once per corpus size
            self.column = np.full(len(docs), -1, dtype=np.int64)
            self.column[self.rows] = np.arange(len(self.rows))
        held = self.column[safe]
        remembered = np.where(held >= 0, np.take_along_axis(linked, np.maximum(held, 0), 1), -np.inf)
        return np.where(rows >= 0, np.maximum(cosine, remembered), 0.0).astype(np.float32)

    def search(
        self, queries: np.ndarray, docs: np.ndarray, k: int, self_keys: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k under the remembered score: (Q, k) scores and corpus rows (see the module).
        queries (Q, dim), docs (N, dim): unit vectors at this dim (search.truncate_normalize)."""
        k = min(k, len(docs))
        _, plain_rows = exact_search(queries, docs, k)
        top_scores = np.empty((len(queries), k), dtype=np.float32)
        top_rows = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), BLOCK):
            block = slice(start, start + BLOCK)
            own = None if self_keys is None else self_keys[block]
            linked = self.linked_scores(queries[block], own)  # (B, P)
            from_memory = self.rows[top_k(linked, min(k, linked.shape[1]))[1]]
            candidates = np.concatenate([plain_rows[block], from_memory], axis=1)
            scores = self.scores_at(queries[block], docs, candidates, own, linked)
            for i, (row_ids, row_scores) in enumerate(zip(candidates, scores)):
                row_ids, first = np.unique(row_ids, return_index=True)  # a row found both ways, once
                order = np.lexsort((row_ids, -row_scores[first]))[:k]
                top_rows[start + i], top_scores[start + i] = row_ids[order], row_scores[first][order]
        return top_scores, top_rows
