"""BM25, the baseline a user of regulatory search already has: bm25s (sparse-matrix BM25) with
PyStemmer's Snowball stemmer and bm25s's stopword list, each passage indexed as the evaluation
embeds it ('title text').

Scores follow bm25s's definition for the chosen method; for `lucene` (the default), a query q and a
passage d of |d| tokens score sum over q's tokens t of
    idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),  idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)),
where tokens are lower-cased words of two or more characters (with lexical.tokens references, also
rule numbers such as 3.2.1 whole and single digits: retrieval/settings.py), stopwords removed, then stemmed.
A query token the corpus never holds adds nothing. A passage that holds none of the query's tokens
is not retrieved at all: BM25's ranked list holds only the passages that match (so a query with no
known token retrieves nothing), and fusion and mining never take a non-matching passage from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import bm25s
import numpy as np
import Stemmer

from retrieval.settings import TOKEN_PATTERNS, LexicalConfig

BLOCK = 256  # queries scored at once: memory is BLOCK x corpus float32


def tokens_of(texts: list[str], config: LexicalConfig) -> list[list[str]]:
    """bm25s's tokenizer as configured: lower-cased tokens of config.tokens' pattern, stopwords dropped, stemmed."""
    stemmer = Stemmer.Stemmer(config.stemmer) if config.stemmer else None
    return bm25s.tokenize(
        texts,
        stopwords=config.stopwords or [],
        stemmer=stemmer,
        token_pattern=TOKEN_PATTERNS[config.tokens],
        return_ids=False,
        show_progress=False,
    )


@dataclass
class LexicalIndex:
    """A BM25 index over one corpus (rows in corpus order) and the settings it was built with."""

    retriever: bm25s.BM25
    config: LexicalConfig
    size: int  # passages

    def scores(self, query_texts: list[str]) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """(rows of the queries, (B, N) float32 BM25 scores of every passage, (B, N) bool: the passage
        holds at least one of the query's tokens), a block of queries at a time."""
        index = self.retriever.scores  # bm25s's token-major sparse matrix: indptr by token, doc indices
        for start in range(0, len(query_texts), BLOCK):
            block = tokens_of(query_texts[start : start + BLOCK], self.config)
            scores = np.zeros((len(block), self.size), dtype=np.float32)
            matched = np.zeros((len(block), self.size), dtype=bool)
            for row, tokens in enumerate(block):
                ids = self.retriever.get_tokens_ids(tokens)
                if ids:
                    scores[row] = self.retriever.get_scores_from_ids(ids)
                    for token in ids:
                        matched[row, index["indices"][index["indptr"][token] : index["indptr"][token + 1]]] = True
            yield slice(start, start + len(block)), scores, matched


def build_index(corpus_texts: list[str], config: LexicalConfig) -> LexicalIndex:
    """Index `corpus_texts` (N passages) with BM25 as `config` says."""
    retriever = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
    retriever.index(tokens_of(corpus_texts, config), show_progress=False)
    return LexicalIndex(retriever, config, len(corpus_texts))


def lexical_search(index: LexicalIndex, query_texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by BM25: (Q, k) scores and corpus rows under the project's tie rule (score descending,
    then corpus order), of the passages that match the query; -1 (score -inf) past them."""
    k = min(k, index.size)
    top_scores = np.empty((len(query_texts), k), dtype=np.float32)
    top_rows = np.empty((len(query_texts), k), dtype=np.int64)
    for rows, scores, matched in index.scores(query_texts):
        top_scores[rows], top_rows[rows] = matched_top_k(scores, matched, k)
    return top_scores, top_rows


def matched_top_k(scores: np.ndarray, matched: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """top_k over the matching passages only: (B, k) scores and rows, -inf and -1 past the matches."""
    top_scores, top_rows = top_k(np.where(matched, scores, -np.inf), k)
    return top_scores, np.where(np.isfinite(top_scores), top_rows, -1)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, N) -> the top k of each row, (B, k) scores and column ids, score descending then id ascending."""
    kth = np.partition(scores, scores.shape[1] - k, axis=1)[:, -k][:, None]  # (B, 1): the k-th largest
    rows_out = np.empty((scores.shape[0], k), dtype=np.int64)
    for row in range(scores.shape[0]):
        above = np.flatnonzero(scores[row] > kth[row])
        tied = np.flatnonzero(scores[row] == kth[row])[: k - above.size]  # ascending ids
        chosen = np.concatenate([above, tied])
        order = np.lexsort((chosen, -scores[row, chosen]))
        rows_out[row] = chosen[order]
    return np.take_along_axis(scores, rows_out, 1), rows_out


class LexicalPrior:
    """Each training question's BM25 score of each training passage, over its best (in [0, 1]):
    the fixed prior a loss trained for the hybrid adds to its logits. Computed per step for the
    questions of the global batch only, so memory stays at (G, passages)."""

    def __init__(self, questions: list[str], passages: list[str], config: LexicalConfig):
        self.index = build_index(passages, config)
        self.question_tokens = [self.index.retriever.get_tokens_ids(t) for t in tokens_of(questions, config)]

    def scores(self, question_ids: np.ndarray, passage_ids: np.ndarray) -> np.ndarray:
        """(G, M) float32: question question_ids[g] against passage passage_ids[m] (0 where it is -1)."""
        out = np.zeros((len(question_ids), len(passage_ids)), dtype=np.float32)
        valid = passage_ids >= 0
        for row, question in enumerate(question_ids.tolist()):
            ids = self.question_tokens[question]
            if not ids:
                continue
            full = self.index.retriever.get_scores_from_ids(ids)  # (P,)
            best = full.max()
            if best > 0:
                out[row, valid] = full[passage_ids[valid]] / best
        return out
