"""Matryoshka InfoNCE: pure functions of tensors. No model, no logging, no ranks in here.

Shapes: B queries, M candidate documents (the B positives first, then any explicit negatives,
e.g. M = B·(1+k)), D the full embedding size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def duplicate_mask(query_positive_ids: torch.Tensor, candidate_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, M) True where a candidate is the query's own positive text but not the positive slot itself.

    Such a candidate (the same passage twice in the batch) is no negative: pushing it away would
    push the positive away too, so it leaves the softmax.
    """
    same_text = query_positive_ids[:, None] == candidate_ids[None, :]  # (B, M)
    own_slot = torch.zeros_like(same_text)
    own_slot[torch.arange(labels.shape[0], device=labels.device), labels] = True
    return same_text & ~own_slot


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # float64 stays (gradcheck)


def infonce_logits(q: torch.Tensor, d: torch.Tensor, dim: int, temperature: float) -> torch.Tensor:
    """(B, D), (M, D) -> (B, M) float32 cosine logits / temperature over the first `dim` features."""
    q_dim = F.normalize(_at_least_float32(q[:, :dim]), dim=-1)  # (B, dim)
    d_dim = F.normalize(_at_least_float32(d[:, :dim]), dim=-1)  # (M, dim)
    return q_dim @ d_dim.T / temperature  # (B, M)


def infonce_per_dim(
    q: torch.Tensor,
    d: torch.Tensor,
    dims: list[int],
    temperature: float = 0.05,
    query_positive_ids: torch.Tensor | None = None,
    candidate_ids: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    symmetric: bool = False,
) -> torch.Tensor:
    """(len(dims),) InfoNCE loss at each Matryoshka dim, in float32 whatever autocast is active.

    q: (B, D) query embeddings; d: (M, D) candidates; labels: (B,) row of each query's positive
    in d (default: row i). query_positive_ids: (B,) int64 text id of each query's positive;
    candidate_ids: (M,) int64 text id of each candidate: candidates with the query's positive
    text, other than the positive itself, are masked out. symmetric adds the document->query
    term over the positives (averaged with the query->document term).
    """
    batch = q.shape[0]
    labels = torch.arange(batch, device=q.device) if labels is None else labels
    mask = None
    if query_positive_ids is not None and candidate_ids is not None:
        mask = duplicate_mask(query_positive_ids, candidate_ids, labels)  # (B, M)
    losses = []
    with torch.autocast(q.device.type, enabled=False):  # logits and softmax in float32
        for dim in dims:
            logits = infonce_logits(q, d, dim, temperature)  # (B, M)
            if mask is not None:
                logits = logits.masked_fill(mask, float("-inf"))
            loss = F.cross_entropy(logits, labels)
            if symmetric:
                loss = (loss + _document_to_query(logits, labels, query_positive_ids)) / 2
            losses.append(loss)
    return torch.stack(losses)


def _document_to_query(logits: torch.Tensor, labels: torch.Tensor, query_positive_ids: torch.Tensor | None) -> torch.Tensor:
    """Each positive against all queries: (B, B) from the positive columns of the (B, M) logits.

    Queries that share the positive's text are masked, as they are its positives too.
    """
    by_positive = logits[:, labels].T  # (B positives, B queries)
    if query_positive_ids is not None:
        shared = query_positive_ids[:, None] == query_positive_ids[None, :]
        shared.fill_diagonal_(False)
        by_positive = by_positive.masked_fill(shared, float("-inf"))
    return F.cross_entropy(by_positive, torch.arange(labels.shape[0], device=labels.device))


def matryoshka_infonce(per_dim: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Weighted sum of the per-dim losses (the caller logs `per_dim` itself)."""
    # An elementwise product, not a matmul, so autocast cannot round it to bf16.
    return (per_dim * torch.tensor(weights, dtype=per_dim.dtype, device=per_dim.device)).sum()
