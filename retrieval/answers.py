"""A user's questions answered by the fused retriever, ranked as the evaluation ranks it: the model
and BM25 pooled and fused (retrieval/fusion.py, retrieval/hybrid.py), question memory
(retrieval/memory.py) and the cross-encoder's re-ranking (retrieval/rerank.py) when given."""

from __future__ import annotations

import numpy as np

from data import IRDataset
from retrieval.fusion import convex, ranked
from retrieval.hybrid import candidates_by_dim, lexical_index
from retrieval.memory import EncodedMemory
from retrieval.rerank import Reranker, cached_scorer, reranked_rankings
from retrieval.settings import LexicalConfig


def fused_hits(
    data: IRDataset,
    query_emb: np.ndarray,  # (Q, D) full size
    corpus_emb: np.ndarray,  # (N, D) full size
    dim: int,
    weight: float,
    config: LexicalConfig,
    k: int,
    memory: EncodedMemory | None = None,
    rerank: tuple[Reranker, int, float] | None = None,
) -> list[list[dict]]:
    """Each question's top k of the fused retriever: rank, passage id, fused score, dense score (the
    cosine; with memory, the best of it and its training questions' cosines), BM25 score, text. A
    question asked in training finds its own key in the memory: answered before, answered again.
    `rerank` (cross-encoder, depth, weight): the fused top `depth` re-ordered as the evaluation
    re-orders it (retrieval/rerank.py), each of those hits with its logit (`rerank`)."""
    index = lexical_index(data, config)
    candidates, _ = candidates_by_dim(query_emb, corpus_emb, data, [dim], index, memory=memory, leave_own_out=False)
    c = candidates[dim]
    fused = convex(c, weight, config.fusion_norm)  # (Q, C)
    if rerank is None:
        rows = ranked(c, fused, k)[1]  # (Q, k), -1 past a short pool
        logits, depth = {}, 0
    else:
        ce, depth, ce_weight = rerank
        scorer = cached_scorer(ce, data, progress=None)
        ((_, rows),) = reranked_rankings(c, weight, config.fusion_norm, scorer, depth, (ce_weight,)).values()
        logits = ce.logit_cache  # (question, passage) -> logit of every pair the fused top depth held
        rows = rows[:, :k]
    hits = []
    for q in range(len(data.query_ids)):
        column = {int(row): j for j, row in enumerate(c.rows[q]) if row >= 0}
        question = data.query_texts[q]
        hits.append(
            [
                {
                    "rank": rank,
                    "id": data.corpus_ids[row],
                    "score": float(fused[q, column[row]]),
                    "dense": float(c.dense[q, column[row]]),
                    "bm25": float(c.lexical[q, column[row]]),
                    **(
                        {"rerank": logits[question, data.corpus_texts[row]] if rank <= depth else None}
                        if rerank
                        else {}
                    ),
                    "text": data.corpus_texts[row],
                }
                for rank, row in enumerate(rows[q].tolist(), start=1)
                if row >= 0
            ]
        )
    return hits
