"""The re-ranker (retrieval/rerank.py, training/reranker.py, losses.listwise_rerank_loss) and its bench
(bench/rerank.py): the listwise loss against a float64 loop, the training groups and the re-ordering
on hand-made cases, the chunked cross-encoder against one pair at a time, and a tiny bench run end to
end whose fused rows are the quality bench's. The commands (train_reranker.py, evaluate.py --rerank)
are tested in tests/test_rerank_commands.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bench import rerank
from bench.quality import CROSS, Scorer, cross_halves, subset
from data import IRDataset
from losses import listwise_rerank_loss
from retrieval.fusion import Candidates
from retrieval.hybrid import choose_weight
from retrieval.rerank import CrossEncoder, reorder_top
from tests.helpers import make_tiny_bert, random_texts, tiny_beir
from training.reranker import RerankTraining, train_cross_encoder, training_groups


def test_listwise_loss_against_a_float64_loop():
    scores = torch.tensor([[2.0, 1.0, -0.5, 0.3], [0.1, 0.4, float("-inf"), float("-inf")], [-1.0, 3.0, 2.0, 0.0]])
    expected = 0.0
    for row in scores.tolist():
        kept = [s for s in row if s != float("-inf")]  # a short group's padding takes no probability
        expected += -(kept[0] - math.log(sum(math.exp(s) for s in kept)))
    assert listwise_rerank_loss(scores).item() == pytest.approx(expected / len(scores), rel=1e-6)
    scores.requires_grad_(True)
    listwise_rerank_loss(scores).backward()
    assert torch.isfinite(scores.grad).all() and (scores.grad[1, 2:] == 0).all()


def _data() -> IRDataset:
    texts = ["rule a", "rule b", "rule a", "rule c", "rule d", "rule e"]  # passage 2 has passage 0's text
    return IRDataset(
        corpus_ids=[f"c{i}" for i in range(6)],
        corpus_texts=texts,
        query_ids=["q0", "q1"],
        query_texts=["first?", "second?"],
        qrels={"q0": {"c0": 1, "c3": 1}, "q1": {"c5": 1}},
    )


def test_training_groups_never_take_a_relevant_passage_or_its_text():
    data = _data()
    ranking = np.array([[0, 2, 1, 3, 4, -1], [5, 4, 1, -1, -1, -1]])  # (Q, pool), -1 padding
    groups = training_groups(data, ranking, negatives=5, seed=0)
    # q0: one group per relevant passage (c0, c3); allowed negatives: c1, c4 only (c2 copies c0's text)
    assert [(q, p) for q, p, _ in groups] == [("first?", "rule a"), ("first?", "rule c"), ("second?", "rule e")]
    assert [sorted(n) for _, _, n in groups] == [["rule b", "rule d"], ["rule b", "rule d"], ["rule b", "rule d"]]
    only_relevant = np.array([[0, 2, 3, -1, -1, -1], [5, 4, 1, -1, -1, -1]])  # q0: nothing left to draw
    assert [q for q, _, _ in training_groups(data, only_relevant, 5, 0)] == ["second?"]
    drawn = training_groups(data, ranking, negatives=1, seed=3)
    assert all(len(n) == 1 and n[0] in ("rule b", "rule d") for _, _, n in drawn)
    assert drawn == training_groups(data, ranking, negatives=1, seed=3)  # seeded


def test_reorder_top_orders_the_top_by_the_new_score_and_keeps_the_rest():
    rows = np.array([[10, 11, 12, 13, 14], [20, 21, -1, -1, -1]])
    new = np.array([[0.1, 0.5, 0.5, -1.0], [0.0, 2.0, -np.inf, -np.inf]])  # depth 4; a tie keeps 11 before 12
    ranks, out = reorder_top(rows, new, depth=4)
    np.testing.assert_array_equal(out, [[11, 12, 10, 13, 14], [21, 20, -1, -1, -1]])
    np.testing.assert_array_equal(ranks, [[5, 4, 3, 2, 1], [5, 4, -np.inf, -np.inf, -np.inf]])


def test_chunked_logits_equal_one_pair_at_a_time(tmp_path):
    ce = CrossEncoder(make_tiny_bert(tmp_path / "m"), max_length=32)
    ce.model.eval()
    texts = random_texts(14, seed=2, max_words=30)
    pairs = list(zip(texts[:7], texts[7:]))
    with torch.no_grad():
        one_by_one = torch.cat([ce._logits([pair]) for pair in pairs])  # no padding at all
        chunked = ce.logits(pairs, chunk=3)
    torch.testing.assert_close(chunked, one_by_one, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ce.score(pairs, batch_size=4), one_by_one.numpy(), atol=1e-5)


def test_a_tiny_run_end_to_end(tmp_path, capsys):
    model, data = make_tiny_bert(tmp_path / "model"), tiny_beir(tmp_path / "beir", n_docs=60, n_queries=12)
    texts = [json.loads(line)["text"] for line in (data / "corpus.jsonl").read_text().splitlines()]
    with open(data / "queries.jsonl", "a") as queries:  # 12 train questions, on other passages than dev's
        queries.writelines(json.dumps({"_id": f"t{i}", "text": texts[i * 3 + 1][:25]}) + "\n" for i in range(12))
    (data / "qrels" / "train.tsv").write_text("".join(f"t{i}\tc{i * 3 + 1}\t1\n" for i in range(12)))
    out = tmp_path / "out"
    common = f"--models {model} --data {data} --dims 32,8 --resamples 50 --out {out} --depth 10".split()
    argv = [*common, *f"--init {model} --miner {model} --pool 10 --negatives 3 --max-length 64".split()]
    with pytest.raises(SystemExit, match="--train-split dev: it is the scored split"):
        rerank.main([*argv, "--train-split", "dev"])
    assert rerank.main(argv) == 0
    saved = json.loads((tmp_path / "out" / "rerank.json").read_text())
    assert saved["training"]["groups"] == 12 and saved["training"]["pairs"] == 12 * 4
    assert (tmp_path / "out" / "cross_encoder" / "model.safetensors").is_file()

    class Args:
        split, dims, eval_batch, weight_split = "dev", [32, 8], 64, CROSS

    Args.data = data
    expected = Scorer(Args).model(model)["fused"]
    for dim in ("32", "8"):
        lines = saved["rows"][f"{model}@{dim}"]["per_query"]
        assert set(lines) == {"BM25", "fused", "reranked", "reranked + fused"}
        np.testing.assert_allclose(lines["fused"]["ndcg@10"], expected[dim]["ndcg@10"], atol=1e-6)
    with pytest.raises(SystemExit, match="cross_encoder exists"):
        rerank.main(argv)
    assert rerank.main([*common, "--cross-encoder", str(tmp_path / "out" / "cross_encoder")]) == 0
    again = json.loads((tmp_path / "out" / "rerank.json").read_text())
    assert again["rows"] == saved["rows"]  # the saved cross-encoder scores as the trained one did


def test_training_moves_the_positive_up(tmp_path):
    """Two fixed groups, replayed: if the loss's gradient reaches the weights through the chunked,
    re-ordered logits, the positives come to outscore their negatives."""
    torch.manual_seed(0)  # the fresh head
    ce = CrossEncoder(make_tiny_bert(tmp_path / "m"), max_length=48)
    texts = random_texts(10, seed=5, max_words=12)
    groups = [(texts[0], texts[1], texts[2:5]), (texts[5], texts[6], texts[7:10])]
    pairs = [(q, p) for q, pos, negs in groups for p in (pos, *negs)]
    before = ce.score(pairs).reshape(2, 4)
    trained = train_cross_encoder(ce, groups, RerankTraining(epochs=40, batch=2, chunk=3, lr=5e-3, warmup=0.1))
    after = ce.score(pairs).reshape(2, 4)
    assert trained["steps"] == 40 and trained["pairs"] == 40 * 8
    assert trained["last_loss"] < 0.5 * math.log(4)
    assert np.abs(before[:, 0:1] - before[:, 1:]).max() < 0.1  # the fresh head barely separates them
    assert (after[:, 0:1] - after[:, 1:]).min() > 1.0


def _hand_candidates() -> tuple:
    """Four questions over six passages, every passage a candidate of each; the relevant passage
    (row q) has the lowest dense and lexical score of its question, so the fusion ranks it last."""
    rng = np.random.default_rng(0)
    dense, lexical = rng.uniform(0.5, 1.0, (4, 6)), rng.uniform(2.0, 9.0, (4, 6))
    for q in range(4):
        dense[q, q], lexical[q, q] = 0.1, 0.5
    rows = np.tile(np.arange(6), (4, 1))
    ranks = np.argsort(np.argsort(-dense, 1), 1) + 1, np.argsort(np.argsort(-lexical, 1), 1) + 1
    c = Candidates(rows, dense, lexical, *ranks)
    data = IRDataset(
        [f"c{i}" for i in range(6)],
        [f"p{i}" for i in range(6)],
        [f"q{i}" for i in range(4)],
        [f"question {i}" for i in range(4)],
        {f"q{i}": {f"c{i}": 1} for i in range(4)},
    )
    return c, data


def test_a_cross_encoder_that_tells_nothing_leaves_the_fusion():
    c, data = _hand_candidates()
    lines, weights = rerank.cross_fitted(c, data, lambda rows: np.zeros(rows.shape), depth=6)
    for label in ("reranked", "reranked + fused"):
        np.testing.assert_array_equal(lines[label]["ndcg@10"], lines["fused"]["ndcg@10"])
    assert weights["cross-encoder"] == [0.0, 0.0]  # every weight ties: the lower
    assert (lines["fused"]["ndcg@10"] < 1).all()  # the relevant passage is last: 1 / log2(7)
    np.testing.assert_allclose(lines["fused"]["ndcg@10"], 1 / np.log2(7))


def test_a_perfect_cross_encoder_puts_the_relevant_passage_first():
    """Oracle scores (1 on the relevant passage): re-ranked, every question is perfect; fused with
    the fusion's min-max score (0 for the relevant passage, 1 for the top one) it is first only
    when w > 1 - w, so each half takes 0.55, the lowest weight of the grid that does it."""
    c, data = _hand_candidates()
    oracle = lambda rows: (rows == np.arange(4)[:, None]).astype(float)  # noqa: E731
    lines, weights = rerank.cross_fitted(c, data, oracle, depth=6)
    np.testing.assert_array_equal(lines["reranked"]["ndcg@10"], np.ones(4))
    np.testing.assert_array_equal(lines["reranked + fused"]["ndcg@10"], np.ones(4))
    assert weights["cross-encoder"] == [0.55, 0.55]
    halves = cross_halves(4)
    for half_weight, other in zip(weights["fusion"], (halves[1], halves[0])):  # each from the other half
        assert half_weight == choose_weight(c.take(other), subset(data, other), "minmax")


def test_the_component_chooses_the_weight_worked_out_by_hand():
    """evaluate.py's path (retrieval/rerank.py) on the hand-made candidates: the oracle needs
    w > 1 - w, so 0.55, and then puts every relevant passage first; with the relevant passage
    below the re-ranked depth nothing helps (0, ties: the lower); a scorer that tells nothing
    chooses 0 and gives the fusion's own result."""
    from retrieval.rerank import choose_rerank_weight, rerank_result

    c, data = _hand_candidates()
    oracle = lambda rows: (rows == np.arange(4)[:, None]).astype(float)  # noqa: E731
    assert choose_rerank_weight(c, 0.5, "minmax", oracle, data, depth=6) == 0.55
    perfect = rerank_result(c, 0.5, "minmax", oracle, data, depth=6, weight=0.55)
    np.testing.assert_array_equal(perfect.per_query["ndcg@10"], np.ones(4))
    assert choose_rerank_weight(c, 0.5, "minmax", oracle, data, depth=3) == 0.0  # the relevant row is ranked 6th
    flat = lambda rows: np.zeros(rows.shape)  # noqa: E731
    assert choose_rerank_weight(c, 0.5, "minmax", flat, data, depth=6) == 0.0
    unchanged = rerank_result(c, 0.5, "minmax", flat, data, depth=6, weight=1.0)
    np.testing.assert_allclose(unchanged.per_query["ndcg@10"], 1 / np.log2(7))  # last of 6, as fused


def test_the_one_standard_error_rule_worked_out_by_hand():
    """Four questions. Weight 0.5 is best (mean 0.7). 0.25 trails by 0.025 on the paired
    differences (0.1, -0.2, 0, 0): their sd is sqrt(0.0475 / 3) = 0.126, the error 0.063, so it is
    within one error and is taken. Weight 0 trails by 0.2 with an error of sqrt(0.18 / 3) / 2 =
    0.122: it is not."""
    from retrieval.fusion import best_weight
    from retrieval.rerank import one_standard_error_weight

    curve = {
        0.0: np.array([0.5, 0.5, 0.5, 0.5]),
        0.25: np.array([0.9, 0.8, 0.5, 0.5]),
        0.5: np.array([0.8, 1.0, 0.5, 0.5]),
        0.75: np.array([0.8, 1.0, 0.5, 0.4]),
    }
    assert best_weight(curve) == 0.5 and one_standard_error_weight(curve) == 0.25
    # the same curve with weight 0 much lower everywhere: 0.25 is still the lowest within reach
    assert one_standard_error_weight({**curve, 0.0: np.zeros(4)}) == 0.25
    # 0.25 trailing on two questions (differences -0.1, 0, -0.1, 0: mean -0.05, error 0.029): out
    assert one_standard_error_weight({**curve, 0.25: np.array([0.7, 1.0, 0.4, 0.5])}) == 0.5
    # the best at the lowest weight, and ties of the best, take the lowest
    assert one_standard_error_weight({0.0: np.ones(4), 0.5: np.full(4, 0.5)}) == 0.0
    assert best_weight({0.0: np.full(2, 0.5), 0.3: np.ones(2), 0.6: np.ones(2)}) == 0.3


def test_a_question_with_fewer_candidates_than_the_depth():
    """Padding (-1) inside the re-ranked top: never scored, never ranked, and the real candidates
    ordered by the scorer alone at weight 1. Question 0 has 3 candidates, question 1 has 2."""
    from retrieval.rerank import rerank_result

    rows = np.array([[0, 1, 2, -1], [3, 4, -1, -1]])
    dense = np.array([[0.9, 0.5, 0.1, 0.0], [0.8, 0.2, 0.0, 0.0]])
    lexical = np.array([[9.0, 5.0, 1.0, 0.0], [8.0, 2.0, 0.0, 0.0]])
    ranks = np.array([[1, 2, 3, 0], [1, 2, 0, 0]])
    c = Candidates(rows, dense, lexical, ranks, ranks)
    data = IRDataset(
        [f"c{i}" for i in range(5)],
        [f"p{i}" for i in range(5)],
        ["q0", "q1"],
        ["a?", "b?"],
        {"q0": {"c2": 1}, "q1": {"c4": 1}},
    )
    seen = []

    def last_first(top: np.ndarray) -> np.ndarray:  # (Q, depth) rows -> scores: the fusion's last passage first
        seen.append(top.copy())
        return np.where(top >= 0, top.astype(float), 0.0)  # row id as the score: c2 > c1 > c0, c4 > c3

    result = rerank_result(c, 0.5, "minmax", last_first, data, depth=10, weight=1.0)
    assert (seen[0][:, 3:] == -1).all() and (seen[0][0, :3] >= 0).all()  # padding is passed as -1, never a row
    assert result.ranked_ids == [["c2", "c1", "c0"], ["c4", "c3"]]
    np.testing.assert_array_equal(result.per_query["mrr@10"], [1.0, 1.0])
