"""Matryoshka InfoNCE: pure functions of tensors. No model, no logging, no ranks in here.

Layout (the same on one process and on N): the global batch has G rows (query, positive, k
explicit negatives). The candidates `d` are the G positives in row order, then all explicit
negatives: M = G·(1+k) rows of D features. A call scores B ≤ G queries (one process's share,
B = G/N) against all M candidates; `labels` holds the row of each query's positive in `d`
(offset by the process's position in the batch). With B = G, labels default to 0..G-1.

False negatives are masked out of the softmax with `known`: a (G, M) boolean table, True where
candidate j is a passage known to be relevant to row g's question (the caller builds it from the
whole training table, not from the batch: the sampler spreads a question's rows over different
batches, so a batch alone misses most of them) or an empty slot (a row mined fewer negatives than
the others). Such a candidate leaves the query's softmax wherever it stands, never the query's own
positive slot. In the symmetric term a query g leaves positive i's softmax when i's text is known
relevant to g's question.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossSpec:
    """What the loss is, travelling as one object: the Matryoshka dims (each trained by truncating
    the full embedding), one weight per dim (None: all 1), the temperature (logits are cosine /
    temperature) and whether the document-to-query term is averaged in."""

    dims: list[int]
    weights: list[float] | None = None
    temperature: float = 0.05
    symmetric: bool = False
    lexical_scale: float = 0.0  # beta: logits gain beta x the lexical prior (training for the hybrid); 0: off
    distill: float = 0.0  # lambda: + lambda x KL(teacher || model) over each question's candidates; 0: off
    distill_temperature: float = 0.05  # the teacher's distribution is softmax(teacher score / this)
    gte: bool = False  # GTE's improved contrastive loss: queries and passages of the batch join each softmax

    def dim_weights(self) -> list[float]:
        return list(self.weights) if self.weights else [1.0] * len(self.dims)


def false_negative_masks(labels: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M) and (B, G) masks, True where a candidate leaves query i's softmax and where query g
    leaves positive i's (the symmetric term).

    labels: (B,) each query's row (its positive's slot) in the global batch; known: (G, M) bool.
    """
    rows = torch.arange(labels.shape[0], device=labels.device)
    to_candidates = known[labels].clone()  # (B, M): my question's known passages
    to_queries = known[:, labels].T.clone()  # (B, G): g's question has my positive's text
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
    spec: LossSpec,
    labels: torch.Tensor | None = None,
    known: torch.Tensor | None = None,
    q_all: torch.Tensor | None = None,
    lexical: torch.Tensor | None = None,
    teacher: torch.Tensor | None = None,
) -> torch.Tensor:
    """(len(spec.dims),) InfoNCE loss of the B queries at each Matryoshka dim, float32 under any autocast.

    q: (B, D) queries scored here; d: (M, D) candidates in the module's layout; labels: (B,)
    (default 0..B-1); known: (G, M) bool, candidates masked out of row g's softmax (see the
    module docstring). spec.symmetric averages in the document->query term: each
    query's positive against all G queries `q_all` (default q, when B = G), the G queries being
    in positive-row order. Each dim slices the full embeddings: nothing is re-run per dim.

    spec.gte: GTE's improved contrastive loss (Li et al. 2023, "Towards General Text Embeddings
    with Multi-stage Contrastive Learning"): one softmax per query whose partition holds, beside the
    query's candidates, the other G queries (query against query), the G queries against the
    query's positive, and the positive against the other M candidates (passage against passage).
    The positive's own pair is counted once. Masked alike (`same_side_masks`): a query g leaves the
    query-query block where either question has the other's positive known relevant, and the
    query-positive block where the positive's text is known relevant to g's question (its own query,
    and any asking the same question); a candidate leaves the passage block where it is known
    relevant to the query's question (the positive itself, a copy of it, an empty slot). Needs
    `q_all` when B < G.

    lexical: (G, M) float32, a fixed prior per (row g's question, candidate) in [0, 1] (the
    question's BM25 score of the candidate over its best): with spec.lexical_scale beta > 0 every
    logit becomes cos / temperature + beta x prior, the softmax of a fused score in which only the
    cosine has a gradient, so the model is trained where BM25 is wrong (after CLEAR, Gao et al. 2021,
    which trains the dense model on the residual of the lexical score).

    teacher: (G, M) float32, a teacher's score per (row g's question, candidate) (the base model
    fused with BM25, or a re-ranker's logit: training/teacher.py): with spec.distill lambda > 0,
    each dim's loss adds lambda x KL(softmax(teacher / distill_temperature) || the model's softmax)
    over the same candidates, masked alike (a listwise distillation of the teacher's ranking). A
    -inf teacher score (a candidate the teacher did not score) takes no teacher probability.
    """
    labels = torch.arange(q.shape[0], device=q.device) if labels is None else labels
    q_all = q if q_all is None else q_all  # (G, D)
    losses = []
    with torch.autocast(q.device.type, enabled=False):  # logits, softmax and the masks in float32
        masks = false_negative_masks(labels, known) if known is not None else None
        same_side = same_side_masks(labels, known, q_all.shape[0], d.shape[0]) if spec.gte else None
        prior = None
        if lexical is not None and spec.lexical_scale:
            prior = spec.lexical_scale * lexical.float()  # (G, M), no gradient: a constant of the data
        for dim in spec.dims:
            logits = infonce_logits(q, d, dim, spec.temperature)  # (B, M)
            if prior is not None:
                logits = logits + prior[labels]
            if masks is not None:
                logits = logits.masked_fill(masks[0], float("-inf"))
            if spec.gte:
                logits = torch.cat(
                    [logits, *_same_side_logits(q, q_all, d, dim, spec.temperature, labels, same_side)], 1
                )
            loss = F.cross_entropy(logits, labels)
            if teacher is not None and spec.distill:
                target = teacher.to(logits.dtype)[labels] / spec.distill_temperature  # (B, M)
                loss = loss + spec.distill * _listwise_kl(logits, target, masks[0] if masks is not None else None)
            if spec.symmetric:
                mask = masks[1] if masks is not None else None
                to_queries = prior[:, labels].T if prior is not None else None  # (B, G)
                loss = (
                    loss + _document_to_query(q_all, d[labels], dim, spec.temperature, labels, mask, to_queries)
                ) / 2
            losses.append(loss)
    return torch.stack(losses)


def same_side_masks(
    labels: torch.Tensor, known: torch.Tensor | None, groups: int, candidates: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GTE's masks, True where a pair leaves query i's softmax: (B, G) query i against query g, where
    g is i's own row or either question has the other's positive known relevant (asking the same
    question included); (B, G) query g against i's positive, where g is i's own row or the positive
    is known relevant to g's question; (B, M) i's positive against candidate j, where j is the
    positive itself or known relevant to i's question (a copy of it, another of its passages) or
    an empty slot. known: (G, M) as in `false_negative_masks`, or None (no table: only the self pairs)."""
    rows = torch.arange(labels.shape[0], device=labels.device)
    if known is None:
        to_queries = torch.zeros(labels.shape[0], groups, dtype=torch.bool, device=labels.device)
        to_candidates = torch.zeros(labels.shape[0], candidates, dtype=torch.bool, device=labels.device)
    else:
        to_queries = known[:, labels].T.clone()  # (B, G): g's question has my positive's text
        to_candidates = known[labels].clone()  # (B, M): my question's known passages
    to_queries[rows, labels] = True
    to_candidates[rows, labels] = True
    query_query = to_queries | to_candidates[:, :groups]  # and my question has g's positive (column g)
    return query_query, to_queries, to_candidates


def _same_side_logits(
    q: torch.Tensor,
    q_all: torch.Tensor,
    d: torch.Tensor,
    dim: int,
    temperature: float,
    labels: torch.Tensor,
    masks: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> list[torch.Tensor]:
    """GTE's three extra blocks of each query's softmax (`same_side_masks`' order): (B, G) query i
    against query g, (B, G) query g against query i's positive, (B, M) that positive against
    candidate j; -inf where masked."""
    positives = d[labels]  # (B, D)
    blocks = (
        infonce_logits(q, q_all, dim, temperature),
        infonce_logits(positives, q_all, dim, temperature),
        infonce_logits(positives, d, dim, temperature),
    )
    return [logits.masked_fill(mask, float("-inf")) for logits, mask in zip(blocks, masks)]


def _listwise_kl(logits: torch.Tensor, target_logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over rows of KL(softmax(target_logits) || softmax(logits)), masked candidates left out
    of both distributions. The target carries no gradient."""
    target_logits = target_logits.detach()
    if mask is not None:
        target_logits = target_logits.masked_fill(mask, float("-inf"))
    log_target = F.log_softmax(target_logits, dim=-1)
    log_model = F.log_softmax(logits, dim=-1)
    inside = torch.isfinite(log_target)  # masked candidates: probability 0 in both, no term
    terms = torch.where(inside, log_target.exp() * (log_target - log_model), torch.zeros_like(log_model))
    return terms.sum(-1).mean()


def _document_to_query(
    q_all: torch.Tensor,
    positives: torch.Tensor,
    dim: int,
    temperature: float,
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each query's positive (B, D) against all G queries; the target is its own query, row labels[i].
    mask: (B, G), True where positive i's text is known relevant to query g's question; prior: (B, G)
    added to the logits (the lexical prior of query g and positive i)."""
    logits = infonce_logits(positives, q_all, dim, temperature)  # (B, G)
    if prior is not None:
        logits = logits + prior
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, labels)


def matryoshka_infonce(per_dim: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Weighted sum of the per-dim losses (the caller logs `per_dim` itself)."""
    # An elementwise product, not a matmul, so autocast cannot round it to bf16.
    weights_t = torch.tensor(weights, dtype=per_dim.dtype).to(per_dim.device, non_blocking=True)  # no host sync
    return (per_dim * weights_t).sum()


def listwise_rerank_loss(scores: torch.Tensor) -> torch.Tensor:
    """The cross-encoder re-ranker's loss. scores: (G, 1 + n) logits of each group's positive (first)
    and its n negatives, -inf in a short group's empty slots (they take no probability).
    Mean over groups of −log softmax(row)[0]."""
    return F.cross_entropy(scores.float(), torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))
