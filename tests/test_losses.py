"""The Matryoshka InfoNCE loss against a slow float64 loop, gradcheck, and float32 under bf16."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import losses
from losses import infonce_per_dim, matryoshka_infonce


def reference_loss(q, d, dims, weights, temperature, labels, pos_ids=None, cand_ids=None, symmetric=False):
    """Plain Python loops in float64: per row, a log-softmax over the unmasked candidates."""
    total = 0.0
    for dim, weight in zip(dims, weights):
        qs = [[float(x) for x in row[:dim]] for row in q.detach().double()]
        ds = [[float(x) for x in row[:dim]] for row in d.detach().double()]
        qs = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in qs]
        ds = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in ds]
        score = lambda a, b: sum(x * y for x, y in zip(a, b)) / temperature  # noqa: E731

        def masked(i, j):
            return pos_ids is not None and j != labels[i] and cand_ids[j] == pos_ids[i]

        forward = 0.0
        for i, qi in enumerate(qs):
            kept = [score(qi, dj) for j, dj in enumerate(ds) if not masked(i, j)]
            forward += -(score(qi, ds[labels[i]]) - math.log(sum(math.exp(s) for s in kept)))
        loss = forward / len(qs)
        if symmetric:
            backward = 0.0
            for i in range(len(qs)):
                p = ds[labels[i]]
                kept = [score(p, qj) for j, qj in enumerate(qs)
                        if j == i or pos_ids is None or pos_ids[j] != pos_ids[i]]
                backward += -(score(p, qs[i]) - math.log(sum(math.exp(s) for s in kept)))
            loss = (loss + backward / len(qs)) / 2
        total += weight * loss
    return total


CASES = {
    "in-batch": dict(batch=6, negatives=0, duplicates=False),
    "explicit negatives": dict(batch=5, negatives=2, duplicates=False),
    "duplicates masked": dict(batch=8, negatives=1, duplicates=True),
}


def make_case(batch, negatives, duplicates, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, 16, generator=g, dtype=dtype)
    d = torch.randn(batch * (1 + negatives), 16, generator=g, dtype=dtype)
    cand_ids = torch.arange(d.shape[0])
    if duplicates:  # positive 3 repeats positive 0's text; a negative repeats positive 1's
        d[3], cand_ids[3] = d[0], cand_ids[0]
        d[batch + 2], cand_ids[batch + 2] = d[1], cand_ids[1]
    labels = torch.arange(batch)
    return q, d, labels, cand_ids[:batch].clone(), cand_ids


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("symmetric", [False, True])
def test_loss_matches_float64_loop(case, symmetric):
    q, d, labels, pos_ids, cand_ids = make_case(**CASES[case])
    dims, weights = [16, 8, 4], [1.0, 0.5, 0.25]
    ids = dict(query_positive_ids=pos_ids, candidate_ids=cand_ids) if CASES[case]["duplicates"] else {}
    ours = matryoshka_infonce(infonce_per_dim(q.double(), d.double(), dims, 0.05, symmetric=symmetric, **ids), weights)
    want = reference_loss(q, d, dims, weights, 0.05, labels.tolist(),
                          pos_ids.tolist() if ids else None, cand_ids.tolist() if ids else None, symmetric)
    assert ours.item() == pytest.approx(want, abs=1e-6, rel=1e-9)


def test_masking_changes_the_loss_only_when_duplicates_exist():
    q, d, _, pos_ids, cand_ids = make_case(**CASES["duplicates masked"])
    masked = infonce_per_dim(q, d, [16], query_positive_ids=pos_ids, candidate_ids=cand_ids)
    assert not torch.allclose(masked, infonce_per_dim(q, d, [16]))
    q, d, _, pos_ids, cand_ids = make_case(**CASES["explicit negatives"])
    torch.testing.assert_close(infonce_per_dim(q, d, [16], query_positive_ids=pos_ids, candidate_ids=cand_ids),
                               infonce_per_dim(q, d, [16]))


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck(symmetric):
    q, d, _, pos_ids, cand_ids = make_case(batch=4, negatives=1, duplicates=True, dtype=torch.float64)
    q.requires_grad_(True)
    d.requires_grad_(True)

    def loss(q, d):
        per_dim = infonce_per_dim(q, d, [16, 4], 0.5, pos_ids, cand_ids, symmetric=symmetric)
        return matryoshka_infonce(per_dim, [1.0, 0.3])

    assert torch.autograd.gradcheck(loss, (q, d))


def test_float32_logits_under_bf16_autocast(monkeypatch):
    """Embeddings made in bf16 under autocast; the cross-entropy still sees float32 logits."""
    seen = []
    cross_entropy = F.cross_entropy

    def recording_cross_entropy(logits, labels, **kwargs):
        seen.append(logits.dtype)
        return cross_entropy(logits, labels, **kwargs)

    monkeypatch.setattr(losses.F, "cross_entropy", recording_cross_entropy)
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 16)
    x, y = torch.randn(6, 16), torch.randn(12, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, d = layer(x), layer(y)
        assert q.dtype == torch.bfloat16
        ours = matryoshka_infonce(infonce_per_dim(q, d, [16, 8]), [1.0, 1.0])
    assert seen and all(dtype == torch.float32 for dtype in seen)
    want = reference_loss(q.float(), d.float(), [16, 8], [1.0, 1.0], 0.05, list(range(6)))
    assert ours.item() == pytest.approx(want, rel=1e-6)
