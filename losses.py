"""Matryoshka InfoNCE: pure functions of tensors. No model, no logging, no ranks in here.

Layout (the same on one process and on N): the global batch has G rows (query, positive, k
explicit negatives). The candidates `d` are the G positives in row order, then all explicit
negatives: M = G·(1+k) rows of D features. A call scores B ≤ G queries (one process's share,
B = G/N) against all M candidates; `labels` holds the row of each query's positive in `d`
(offset by the process's position in the batch). With B = G, labels default to 0..G-1.

False negatives are masked out of the softmax using int64 text ids that the caller derives from
the texts (dropout makes the embeddings of equal texts differ, so ids cannot come from them):
- a candidate with the same text as the query's positive (a passage twice in the batch);
- another positive of the same question (a question with several relevant passages),
but never the query's own positive slot, and never an explicit negative for its question text.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def false_negative_mask(
    labels: torch.Tensor, num_candidates: int, candidate_ids: torch.Tensor | None, anchor_ids: torch.Tensor | None
) -> torch.Tensor | None:
    """(B, M) True where a candidate must leave query i's softmax; None when no ids are given.

    labels: (B,) each query's positive row; candidate_ids: (M,) text id of each candidate;
    anchor_ids: (G,) text id of the question of each of the G positive rows.
    """
    if candidate_ids is None and anchor_ids is None:
        return None
    rows = torch.arange(labels.shape[0], device=labels.device)
    mask = torch.zeros(labels.shape[0], num_candidates, dtype=torch.bool, device=labels.device)
    if candidate_ids is not None:
        mask |= candidate_ids[None, :] == candidate_ids[labels][:, None]  # same text as my positive
    if anchor_ids is not None:
        groups = anchor_ids.shape[0]
        mask[:, :groups] |= anchor_ids[None, :] == anchor_ids[labels][:, None]  # my question's other positives
    mask[rows, labels] = False  # the positive itself always stays
    return mask


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # float64 stays (gradcheck)


def _normalized(x: torch.Tensor, dim: int) -> torch.Tensor:
    return F.normalize(_at_least_float32(x[:, :dim]), dim=-1)


def infonce_logits(q: torch.Tensor, d: torch.Tensor, dim: int, temperature: float) -> torch.Tensor:
    """(B, D), (M, D) -> (B, M) float32 cosine logits / temperature over the first `dim` features."""
    return _normalized(q, dim) @ _normalized(d, dim).T / temperature  # (B, M)


def infonce_per_dim(
    q: torch.Tensor,
    d: torch.Tensor,
    dims: list[int],
    temperature: float = 0.05,
    labels: torch.Tensor | None = None,
    candidate_ids: torch.Tensor | None = None,
    anchor_ids: torch.Tensor | None = None,
    symmetric: bool = False,
    q_all: torch.Tensor | None = None,
) -> torch.Tensor:
    """(len(dims),) InfoNCE loss of the B queries at each Matryoshka dim, float32 under any autocast.

    q: (B, D) queries scored here; d: (M, D) candidates in the module's layout; labels: (B,)
    (default 0..B-1); candidate_ids: (M,) and anchor_ids: (G,) int64 text ids for masking false
    negatives (see the module docstring). symmetric averages in the document->query term: each
    query's positive against all G queries `q_all` (default q, when B = G), the G queries being
    in positive-row order. Each dim slices the full embeddings: nothing is re-run per dim.
    """
    labels = torch.arange(q.shape[0], device=q.device) if labels is None else labels
    mask = false_negative_mask(labels, d.shape[0], candidate_ids, anchor_ids)  # (B, M) or None
    q_all = q if q_all is None else q_all  # (G, D)
    losses = []
    with torch.autocast(q.device.type, enabled=False):  # logits and softmax in float32
        for dim in dims:
            logits = infonce_logits(q, d, dim, temperature)  # (B, M)
            if mask is not None:
                logits = logits.masked_fill(mask, float("-inf"))
            loss = F.cross_entropy(logits, labels)
            if symmetric:
                loss = (loss + _document_to_query(q_all, d[labels], dim, temperature, labels, mask)) / 2
            losses.append(loss)
    return torch.stack(losses)


def _document_to_query(
    q_all: torch.Tensor, positives: torch.Tensor, dim: int, temperature: float, labels: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Each query's positive (B, D) against all G queries; the target is its own query, row labels[i].

    Query g is a false negative for positive i exactly when candidate g is one for query i
    (same positive text, or same question), so the first G columns of the mask apply as they are.
    """
    logits = infonce_logits(positives, q_all, dim, temperature)  # (B, G)
    if mask is not None:
        logits = logits.masked_fill(mask[:, : q_all.shape[0]], float("-inf"))
    return F.cross_entropy(logits, labels)


def matryoshka_infonce(per_dim: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Weighted sum of the per-dim losses (the caller logs `per_dim` itself)."""
    # An elementwise product, not a matmul, so autocast cannot round it to bf16.
    return (per_dim * torch.tensor(weights, dtype=per_dim.dtype, device=per_dim.device)).sum()
