"""The Matryoshka InfoNCE loss against a slow float64 loop, gradcheck, and float32 under bf16."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from data import TrainTable
from losses import LossSpec, false_negative_masks, infonce_per_dim, matryoshka_infonce


def unit_rows(x, dim):
    """The first `dim` features of each row, as float64 lists of norm 1 (a zero row stays zero)."""
    rows = [[float(v) for v in row[:dim]] for row in x.detach().double()]
    return [[v / math.sqrt(sum(u * u for u in row)) if any(row) else 0.0 for v in row] for row in rows]


def reference_loss(
    q,
    d,
    dims,
    weights,
    temperature,
    labels,
    text=None,
    question=None,
    relevant=None,
    symmetric=False,
    q_all=None,
    prior=None,
):
    """Plain Python loops in float64: per query row, a log-softmax over the unmasked candidates.

    text[j]: candidate j's text id (None: an empty slot); question[g]: row g's question id;
    relevant: question id -> the set of text ids known relevant to it (default: none);
    prior[g][j]: added to the logit of row g's query and candidate j (already scaled; default 0).
    """
    extra = (lambda g, j: float(prior[g][j])) if prior is not None else (lambda g, j: 0.0)
    q_all = q if q_all is None else q_all
    groups = q_all.shape[0]
    text = text if text is not None else list(range(d.shape[0]))  # no ids: all texts distinct
    question = question if question is not None else list(range(groups))
    relevant = relevant or {}

    def masked(i, j):  # candidate j leaves query i's softmax
        return j != labels[i] and (text[j] is None or text[j] in relevant.get(question[labels[i]], ()))

    def masked_query(i, g):  # query g leaves the softmax of query i's positive (symmetric term)
        return g != labels[i] and text[labels[i]] in relevant.get(question[g], ())

    total = 0.0
    for dim, weight in zip(dims, weights):
        qs, ds, qa = unit_rows(q, dim), unit_rows(d, dim), unit_rows(q_all, dim)
        score = lambda a, b: sum(x * y for x, y in zip(a, b)) / temperature  # noqa: E731
        forward = 0.0
        for i, qi in enumerate(qs):
            kept = [score(qi, dj) + extra(labels[i], j) for j, dj in enumerate(ds) if not masked(i, j)]
            own = score(qi, ds[labels[i]]) + extra(labels[i], labels[i])
            forward += -(own - math.log(sum(math.exp(s) for s in kept)))
        loss = forward / len(qs)
        if symmetric:
            backward = 0.0
            for i in range(len(qs)):
                p = ds[labels[i]]
                kept = [score(p, qg) + extra(g, labels[i]) for g, qg in enumerate(qa) if not masked_query(i, g)]
                own = score(p, qa[labels[i]]) + extra(labels[i], labels[i])
                backward += -(own - math.log(sum(math.exp(s) for s in kept)))
            loss = (loss + backward / len(qs)) / 2
        total += weight * loss
    return total


def known_from(text, question, relevant) -> torch.Tensor:
    """The (G, M) mask the trainer builds, through data.py's table (the code under test)."""
    table = TrainTable(
        np.array(question),
        np.array(text[: len(question)]),
        np.array([-1 if t is None else t for t in text[len(question) :]]).reshape(len(question), -1),
        [],
        list(range(1000)),
        np.array(sorted(q * 1000 + t for q, ts in relevant.items() for t in ts)),
    )
    return torch.from_numpy(table.known_mask(np.arange(len(question))))


CASES = {
    "in-batch": dict(batch=6, negatives=0, duplicates=False),
    "explicit negatives": dict(batch=5, negatives=2, duplicates=False),
    "duplicates and table-wide relevance": dict(batch=8, negatives=1, duplicates=True),
}


def make_case(batch, negatives, duplicates, seed=0, dtype=torch.float32):
    """q (B, D), d (B·(1+k), D), candidate text ids (M,), question ids (B,), relevance map.

    The relevance map is the table's (every row of the whole table, not just this batch): each
    row's positive, and in the duplicates case texts relevant through rows outside the batch."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, 16, generator=g, dtype=dtype)
    d = torch.randn(batch * (1 + negatives), 16, generator=g, dtype=dtype)
    text: list = list(range(d.shape[0]))
    question = list(range(100, 100 + batch))
    if duplicates:
        d[3], text[3] = d[0], text[0]  # positive 3 repeats positive 0's text
        d[batch + 2], text[batch + 2] = d[1], text[1]  # a negative repeats positive 1's text
        q[5], question[5] = q[2], question[2]  # row 5 asks row 2's question, with another passage
        d[6], text[6] = d[5], text[5]  # and row 6 (another question) has row 5's passage
        d[batch + 4] = 0.0
        text[batch + 4] = None  # an empty slot: row 4 mined no negative
    relevant: dict = {}
    for k in range(batch):
        relevant.setdefault(question[k], set()).add(text[k])
    if duplicates:  # known only from rows in other batches
        relevant[question[0]].add(text[7])  # row 7's positive answers row 0's question
        relevant[question[4]].add(text[batch + 6])  # a negative of row 6 answers row 4's question
    return q, d, text, question, relevant


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("symmetric", [False, True])
def test_loss_matches_float64_loop(case, symmetric):
    q, d, text, question, relevant = make_case(**CASES[case])
    labels = list(range(q.shape[0]))
    dims, weights = [16, 8, 4], [1.0, 0.5, 0.25]
    known = known_from(text, question, relevant)
    ours = matryoshka_infonce(
        infonce_per_dim(q.double(), d.double(), LossSpec(dims, symmetric=symmetric), known=known), weights
    )
    want = reference_loss(q, d, dims, weights, 0.05, labels, text, question, relevant, symmetric)
    assert ours.item() == pytest.approx(want, abs=1e-6, rel=1e-9)
    if None not in text:  # no mask at all: plain InfoNCE
        plain = matryoshka_infonce(
            infonce_per_dim(q.double(), d.double(), LossSpec(dims, symmetric=symmetric)), weights
        )
        assert plain.item() == pytest.approx(
            reference_loss(q, d, dims, weights, 0.05, labels, symmetric=symmetric), abs=1e-6, rel=1e-9
        )


@pytest.mark.parametrize("symmetric", [False, True])
def test_one_share_of_the_batch_scores_against_the_whole_batch(symmetric):
    """What each of N processes computes: its B = G/N queries, labels offset, all G·(1+k) candidates."""
    q, d, text, question, relevant = make_case(batch=8, negatives=1, duplicates=True)
    dims, weights = [16, 4], [1.0, 1.0]
    known = known_from(text, question, relevant)
    whole = matryoshka_infonce(
        infonce_per_dim(q.double(), d.double(), LossSpec(dims, symmetric=symmetric), known=known), weights
    )
    shares = []
    for rows in (slice(0, 4), slice(4, 8)):
        labels = torch.arange(8)[rows]
        per_dim = infonce_per_dim(
            q[rows].double(),
            d.double(),
            LossSpec(dims, symmetric=symmetric),
            labels=labels,
            known=known,
            q_all=q.double() if symmetric else None,
        )
        shares.append(matryoshka_infonce(per_dim, weights))
        want = reference_loss(
            q[rows], d, dims, weights, 0.05, labels.tolist(), text, question, relevant, symmetric, q_all=q
        )
        assert shares[-1].item() == pytest.approx(want, abs=1e-6, rel=1e-9)
    assert ((shares[0] + shares[1]) / 2).item() == pytest.approx(whole.item(), rel=1e-12)


def test_each_kind_of_false_negative_changes_the_loss():
    q, d, text, question, relevant = make_case(**CASES["duplicates and table-wide relevance"])
    plain = infonce_per_dim(q, d, LossSpec([16]), known=torch.zeros(8, 16, dtype=torch.bool))
    table_wide = infonce_per_dim(q, d, LossSpec([16]), known=known_from(text, question, relevant))
    relevant[question[0]].discard(text[7])  # forget what only the rest of the table knew
    relevant[question[4]].discard(text[8 + 6])
    batch_only = infonce_per_dim(q, d, LossSpec([16]), known=known_from(text, question, relevant))
    assert not torch.allclose(batch_only, plain) and not torch.allclose(table_wide, batch_only)
    q, d, text, question, relevant = make_case(**CASES["explicit negatives"])  # all texts distinct
    torch.testing.assert_close(
        infonce_per_dim(q, d, LossSpec([16]), known=known_from(text, question, relevant)),
        infonce_per_dim(q, d, LossSpec([16])),
    )


def test_relevant_texts_are_masked_wherever_they_stand_but_negatives_stay():
    """Rows (Q7, P10), (Q8, P11), (Q7, P12), (Q9, P12), then a negative per row; the table also
    knows P21 answers Q8 (a row in another batch), and row 2 has an empty negative slot."""
    labels = torch.arange(4)
    text = [10, 11, 12, 12, 20, 21, None, 10]  # row 3's negative is P10, relevant to Q7
    relevant = {7: {10, 12}, 8: {11, 21}, 9: {12}}
    to_candidates, to_queries = false_negative_masks(labels, known_from(text, [7, 8, 7, 9], relevant))
    want = torch.zeros(4, 8, dtype=torch.bool)
    want[:, 6] = True  # the empty slot leaves every softmax
    want[0, [2, 3, 7]] = True  # Q7: P12 in both its slots, and P10 where it stands as a negative
    want[1, 5] = True  # Q8: P21, known from outside the batch
    want[2, [0, 3, 7]] = True
    want[3, 2] = True  # Q9: P12 in row 2's slot
    assert torch.equal(to_candidates, want)
    want = torch.zeros(4, 4, dtype=torch.bool)
    want[0, 2] = want[2, 0] = True  # P10 and P12 are both relevant to Q7, asked by rows 0 and 2
    want[2, 3] = True  # P12 is relevant to Q9
    want[3, [0, 2]] = True  # and to Q7
    assert torch.equal(to_queries, want)


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck(symmetric):
    q, d, text, question, relevant = make_case(batch=8, negatives=1, duplicates=True, dtype=torch.float64)
    known = known_from(text, question, relevant)
    q.requires_grad_(True)
    d.requires_grad_(True)

    def loss(q, d):
        per_dim = infonce_per_dim(q, d, LossSpec([16, 4], temperature=0.5, symmetric=symmetric), known=known)
        return matryoshka_infonce(per_dim, [1.0, 0.3])

    assert torch.autograd.gradcheck(loss, (q, d))


class CrossEntropyInputs(TorchFunctionMode):
    """Records the dtype of every logits tensor given to F.cross_entropy, through torch's own
    function-override protocol: nothing in losses.py is patched."""

    def __init__(self):
        super().__init__()
        self.dtypes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.cross_entropy:
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


def test_float32_logits_under_bf16_autocast():
    """Embeddings made in bf16 under autocast; the cross-entropy still sees float32 logits."""
    recorder = CrossEntropyInputs()
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 16)
    x, y = torch.randn(6, 16), torch.randn(12, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, d = layer(x), layer(y)
        assert q.dtype == torch.bfloat16
        with recorder:
            ours = matryoshka_infonce(infonce_per_dim(q, d, LossSpec([16, 8])), [1.0, 1.0])
    seen = recorder.dtypes
    assert seen and all(dtype == torch.float32 for dtype in seen)
    want = reference_loss(q.float(), d.float(), [16, 8], [1.0, 1.0], 0.05, list(range(6)))
    assert ours.item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("symmetric", [False, True])
def test_lexical_prior_matches_the_float64_loop_and_has_no_gradient(symmetric):
    """Training for the hybrid: each logit gains lexical_scale x the prior of its (question, candidate)."""
    q, d, text, question, relevant = make_case(batch=8, negatives=1, duplicates=True)
    known = known_from(text, question, relevant)
    prior = torch.rand(8, d.shape[0], generator=torch.Generator().manual_seed(5))  # (G, M) in [0, 1)
    spec = LossSpec([16, 4], [1.0, 0.5], symmetric=symmetric, lexical_scale=3.0)
    qd, dd = q.double().requires_grad_(True), d.double()
    ours = matryoshka_infonce(infonce_per_dim(qd, dd, spec, known=known, lexical=prior), [1.0, 0.5])
    want = reference_loss(
        q,
        d,
        [16, 4],
        [1.0, 0.5],
        0.05,
        list(range(8)),
        text,
        question,
        relevant,
        symmetric,
        prior=(3.0 * prior.double()).tolist(),
    )
    assert ours.item() == pytest.approx(want, abs=1e-6, rel=1e-9)
    without = matryoshka_infonce(
        infonce_per_dim(qd, dd, LossSpec([16, 4], symmetric=symmetric), known=known), [1.0, 0.5]
    )
    assert abs(ours.item() - without.item()) > 1e-3  # the prior changes the loss
    ours.backward()
    assert not prior.requires_grad and qd.grad is not None
    # a shared prior share by share sums to the whole, as on several processes
    rows = torch.arange(4, 8)
    share = infonce_per_dim(q[rows].double(), dd, spec, labels=rows, known=known, q_all=q.double(), lexical=prior)
    want_share = reference_loss(
        q[rows],
        d,
        [16, 4],
        [1.0, 1.0],
        0.05,
        rows.tolist(),
        text,
        question,
        relevant,
        symmetric,
        q_all=q,
        prior=(3.0 * prior.double()).tolist(),
    )
    assert share.sum().item() == pytest.approx(want_share, abs=1e-6, rel=1e-9)


def reference_kl(q, d, dim, temperature, teacher, distill_temperature, labels, masked) -> float:
    """Mean over queries of KL(softmax(teacher / tau_t) || softmax(cos / tau)), float64 loops over
    the candidates each query keeps (`masked[i]`: the candidates it leaves out)."""
    q, d, teacher = q.double().numpy(), d.double().numpy(), teacher.double().numpy()
    total = 0.0
    for i, label in enumerate(labels):
        keep = [j for j in range(d.shape[0]) if j not in masked[i]]
        qi = q[i, :dim] / np.linalg.norm(q[i, :dim])
        cos = [float(qi @ (d[j, :dim] / np.linalg.norm(d[j, :dim]))) / temperature for j in keep]
        t = [teacher[label, j] / distill_temperature for j in keep]
        log_p_model = np.array(cos) - math.log(sum(math.exp(c) for c in cos))
        log_p_teacher = np.array(t) - math.log(sum(math.exp(x) for x in t))
        total += float(np.sum(np.exp(log_p_teacher) * (log_p_teacher - log_p_model)))
    return total / len(labels)


def test_listwise_distillation_adds_lambda_times_the_kl_of_a_float64_loop():
    """loss.distill: each dim's loss is InfoNCE plus lambda x KL(teacher || model) over the same
    candidates, the masked ones left out of both; the teacher has no gradient."""
    q, d, text, question, relevant = make_case(batch=8, negatives=1, duplicates=True)
    known = known_from(text, question, relevant)
    teacher = torch.rand(8, d.shape[0], generator=torch.Generator().manual_seed(9))  # (G, M) in [0, 1)
    spec = LossSpec([16, 4], distill=0.7, distill_temperature=0.1)
    qd, dd = q.double().requires_grad_(True), d.double()
    ours = infonce_per_dim(qd, dd, spec, known=known, teacher=teacher)
    plain = infonce_per_dim(qd, dd, LossSpec([16, 4]), known=known)
    masks, _ = false_negative_masks(torch.arange(8), known)
    masked = [set(torch.nonzero(row).flatten().tolist()) for row in masks]
    assert any(masked)  # the case has false negatives to leave out
    for index, dim in enumerate([16, 4]):
        kl = reference_kl(q, d, dim, 0.05, teacher, 0.1, list(range(8)), masked)
        assert (ours[index] - plain[index]).item() == pytest.approx(0.7 * kl, abs=1e-9, rel=1e-9)
    ours.sum().backward()
    assert torch.isfinite(qd.grad).all() and not teacher.requires_grad
    # a teacher equal to the model's own logits (same temperature) adds nothing
    logits = F.normalize(q[:, :16], dim=-1) @ F.normalize(d[:, :16], dim=-1).T
    same = infonce_per_dim(q, d, LossSpec([16], distill=1.0), known=known, teacher=logits)
    assert same.item() == pytest.approx(infonce_per_dim(q, d, LossSpec([16]), known=known).item(), abs=1e-5)


def test_distillation_from_a_teacher_that_scored_only_some_candidates():
    """A re-ranker teacher scores only each question's own candidates (-inf elsewhere): the KL is
    over the scored ones, sum_j p_t(j) (log p_t(j) - log p_model(j)), the teacher's softmax over the
    scored candidates, the model's over every candidate it keeps (float64 loop); the gradient is finite."""
    q, d, text, question, relevant = make_case(batch=6, negatives=1, duplicates=False)
    known = known_from(text, question, relevant)
    generator = torch.Generator().manual_seed(4)
    teacher = torch.full((6, d.shape[0]), float("-inf"))
    for g in range(6):  # own positive g and own negative 6 + g (the layout: positives, then negatives)
        teacher[g, g], teacher[g, 6 + g] = torch.randn(2, generator=generator) * 3
    teacher[2, 8] = 0.5  # row 2 also scored candidate 8 (another question's negative)
    spec = LossSpec([16, 4], distill=0.4, distill_temperature=1.0)
    qd = q.double().requires_grad_(True)
    ours = infonce_per_dim(qd, d.double(), spec, known=known, teacher=teacher)
    plain = infonce_per_dim(qd, d.double(), LossSpec([16, 4]), known=known)
    masks, _ = false_negative_masks(torch.arange(6), known)
    qn, dn, tn = q.double().numpy(), d.double().numpy(), teacher.double().numpy()
    for index, dim in enumerate([16, 4]):
        total = 0.0
        for i in range(6):
            keep = [j for j in range(d.shape[0]) if not masks[i, j]]
            qi = qn[i, :dim] / np.linalg.norm(qn[i, :dim])
            cos = {j: float(qi @ (dn[j, :dim] / np.linalg.norm(dn[j, :dim]))) / 0.05 for j in keep}
            log_z = math.log(sum(math.exp(c) for c in cos.values()))
            scored = [j for j in keep if np.isfinite(tn[i, j])]
            t_log_z = math.log(sum(math.exp(tn[i, j]) for j in scored))
            total += sum(math.exp(tn[i, j] - t_log_z) * ((tn[i, j] - t_log_z) - (cos[j] - log_z)) for j in scored)
        assert (ours[index] - plain[index]).item() == pytest.approx(0.4 * total / 6, abs=1e-9, rel=1e-9)
    ours.sum().backward()
    assert torch.isfinite(qd.grad).all()


def reference_gte(q, d, dims, weights, temperature, labels, text, question, relevant, q_all=None):
    """GTE's improved contrastive loss in float64 loops, from its definition: for query i and its
    positive p, Z = Σ_j e^{s(q_i, d_j)} + Σ_g e^{s(q_i, q_g)} + Σ_g e^{s(q_g, d_p)} + Σ_j e^{s(d_p, d_j)}
    with the positive pair once, i's own query out of the query sums, p itself out of the passage sum,
    and the masks: a candidate known relevant to i's question (or empty) out of both passage sums; a
    query g whose question p is known relevant to out of both query sums, and out of the first also
    a query g whose positive (candidate g) is known relevant to i's question."""
    q_all = q if q_all is None else q_all
    relevant = relevant or {}

    def known(question_id, j):
        return text[j] is None or text[j] in relevant.get(question_id, ())

    total = 0.0
    for dim, weight in zip(dims, weights):
        qs, ds, qa = unit_rows(q, dim), unit_rows(d, dim), unit_rows(q_all, dim)
        score = lambda a, b: sum(x * y for x, y in zip(a, b)) / temperature  # noqa: E731
        loss = 0.0
        for i, qi in enumerate(qs):
            p = labels[i]
            asked = question[p]
            own = score(qi, ds[p])
            terms = [own]
            terms += [score(qi, dj) for j, dj in enumerate(ds) if j != p and not known(asked, j)]
            other_queries = [g for g in range(len(qa)) if g != p and text[p] not in relevant.get(question[g], ())]
            terms += [score(qi, qa[g]) for g in other_queries if not known(asked, g)]
            terms += [score(qa[g], ds[p]) for g in other_queries]
            terms += [score(ds[p], dj) for j, dj in enumerate(ds) if j != p and not known(asked, j)]
            loss += -(own - math.log(sum(math.exp(t) for t in terms)))
        total += weight * loss / len(qs)
    return total


@pytest.mark.parametrize("case", list(CASES))
def test_gte_loss_matches_float64_loop(case):
    q, d, text, question, relevant = make_case(**CASES[case])
    dims, weights = [16, 8, 4], [1.0, 0.5, 0.25]
    known = known_from(text, question, relevant)
    spec = LossSpec(dims, temperature=0.1, gte=True)
    ours = matryoshka_infonce(infonce_per_dim(q.double(), d.double(), spec, known=known), weights)
    want = reference_gte(q, d, dims, weights, 0.1, list(range(q.shape[0])), text, question, relevant)
    assert ours.item() == pytest.approx(want, abs=1e-6, rel=1e-9)
    if None not in text:  # no table at all: only the self pairs leave the softmax
        unmasked = matryoshka_infonce(infonce_per_dim(q.double(), d.double(), spec), weights)
        distinct = list(range(d.shape[0]))
        want = reference_gte(q, d, dims, weights, 0.1, list(range(q.shape[0])), distinct, list(range(q.shape[0])), {})
        assert unmasked.item() == pytest.approx(want, abs=1e-6, rel=1e-9)
    plain = matryoshka_infonce(infonce_per_dim(q.double(), d.double(), LossSpec(dims, temperature=0.1)), weights)
    assert abs(plain.item() - ours.item()) > 1e-3  # the extra blocks change the loss


def test_gte_one_share_scores_against_the_whole_batch_and_has_exact_gradients():
    """Each of N processes: its B = G/N queries against all G queries and all candidates; gradcheck."""
    q, d, text, question, relevant = make_case(batch=8, negatives=1, duplicates=True, dtype=torch.float64)
    known = known_from(text, question, relevant)
    spec = LossSpec([16, 4], temperature=0.5, gte=True)
    whole = matryoshka_infonce(infonce_per_dim(q, d, spec, known=known), [1.0, 0.3])
    shares = []
    for rows in (slice(0, 4), slice(4, 8)):
        labels = torch.arange(8)[rows]
        per_dim = infonce_per_dim(q[rows], d, spec, labels=labels, known=known, q_all=q)
        shares.append(matryoshka_infonce(per_dim, [1.0, 0.3]))
        want = reference_gte(q[rows], d, [16, 4], [1.0, 0.3], 0.5, labels.tolist(), text, question, relevant, q_all=q)
        assert shares[-1].item() == pytest.approx(want, abs=1e-9, rel=1e-9)
    assert ((shares[0] + shares[1]) / 2).item() == pytest.approx(whole.item(), rel=1e-12)
    q.requires_grad_(True)
    d.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda q, d: matryoshka_infonce(infonce_per_dim(q, d, spec, known=known), [1.0, 0.3]), (q, d)
    )
