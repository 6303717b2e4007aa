"""Matryoshka InfoNCE: pure functions of tensors. No model, no logging, no ranks in here.

Layout (the same on one process and on N): the global batch has G rows (query, positive, k
explicit negatives). The candidates `d` are the G positives in row order, then all explicit
negatives: M = G·(1+k) rows of D features. A call scores B ≤ G queries (one process's share,
B = G/N) against all M candidates; `labels` holds the row of each query's positive in `d`
(offset by the process's position in the batch). With B = G, labels default to 0..G-1.

False negatives are masked out of the softmax using int64 text ids that the caller derives from
the texts (dropout makes the embeddings of equal texts differ, so ids cannot come from them). The
batch itself says which texts are relevant to a question: the positives of every row that asks it.
A candidate whose text is one of them leaves that question's softmax (a passage twice in the
batch; a question with several relevant passages), but never the query's own positive slot. An
explicit negative stays a negative unless its text is a positive of the same question elsewhere
in the batch. In the symmetric term a query leaves a positive's softmax when that positive's
text is relevant to the query's question.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def false_negative_masks(
    labels: torch.Tensor, groups: int, num_candidates: int, candidate_ids: torch.Tensor | None, anchor_ids: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(B, M) and (B, G) masks, True where a candidate leaves query i's softmax and where query g
    leaves positive i's (the symmetric term); None when no ids are given.

    labels: (B,) each query's positive row; groups: G, the rows of the global batch;
    candidate_ids: (M,) text id of each candidate (when None, every candidate is a distinct text);
    anchor_ids: (G,) question text id of each row (when None, every row asks a distinct question).
    """
    if candidate_ids is None and anchor_ids is None:
        return None
    device = labels.device
    rows = torch.arange(labels.shape[0], device=device)
    if anchor_ids is None:
        anchor_ids = torch.arange(groups, device=device)
    if candidate_ids is None:
        candidate_ids = torch.arange(num_candidates, device=device)
    same_question = (anchor_ids[:, None] == anchor_ids[None, :]).float()  # (G, G)
    same_text = (candidate_ids[:groups, None] == candidate_ids[None, :]).float()  # (G, M): positive k is text j
    # Counts of rows k that make the pair relevant; 0/1 products summed exactly in float32.
    to_candidates = same_question[labels] @ same_text > 0  # row k asks my question, its positive is text j
    to_queries = same_text[:, labels].T @ same_question > 0  # row k has my positive's text and asks g's question
    to_candidates[rows, labels] = False  # the positive itself always stays
    to_queries[rows, labels] = False  # and so does its own query
    return to_candidates, to_queries


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
    q_all = q if q_all is None else q_all  # (G, D)
    losses = []
    with torch.autocast(q.device.type, enabled=False):  # logits, softmax and the masks in float32
        groups = anchor_ids.shape[0] if anchor_ids is not None else q_all.shape[0]  # G
        masks = false_negative_masks(labels, groups, d.shape[0], candidate_ids, anchor_ids)
        for dim in dims:
            logits = infonce_logits(q, d, dim, temperature)  # (B, M)
            if masks is not None:
                logits = logits.masked_fill(masks[0], float("-inf"))
            loss = F.cross_entropy(logits, labels)
            if symmetric:
                mask = masks[1] if masks is not None else None
                loss = (loss + _document_to_query(q_all, d[labels], dim, temperature, labels, mask)) / 2
            losses.append(loss)
    return torch.stack(losses)


def _document_to_query(
    q_all: torch.Tensor, positives: torch.Tensor, dim: int, temperature: float, labels: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Each query's positive (B, D) against all G queries; the target is its own query, row labels[i].
    mask: (B, G), True where query g's question has positive i's text among its positives."""
    logits = infonce_logits(positives, q_all, dim, temperature)  # (B, G)
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, labels)


def matryoshka_infonce(per_dim: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Weighted sum of the per-dim losses (the caller logs `per_dim` itself)."""
    # An elementwise product, not a matmul, so autocast cannot round it to bf16.
    weights_t = torch.tensor(weights, dtype=per_dim.dtype).to(per_dim.device, non_blocking=True)  # no host sync
    return (per_dim * weights_t).sum()
