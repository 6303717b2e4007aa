"""Our retrieval metrics against trec_eval (pytrec-eval-terrier) on random rankings."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval

from retrieval.metrics import gains_at_ranks, per_query_metrics

TREC_MEASURES = {
    "ndcg_cut_10": "ndcg@10",
    "recall_10": "recall@10",
    "recall_100": "recall@100",
    "map_cut_10": "map@10",
    "map_cut_100": "map@100",
}


def random_case(seed: int, n_queries: int = 60, corpus: int = 400, graded: bool = True):
    rng = np.random.default_rng(seed)
    doc_ids = [f"doc{i}" for i in range(corpus)]
    qrels, runs = {}, {}
    for q in range(n_queries):
        judged = rng.choice(corpus, size=rng.integers(1, 12), replace=False)
        rels = rng.integers(0, 4 if graded else 2, size=judged.size)
        rels[0] = max(rels[0], 1)  # at least one relevant document
        qrels[f"q{q}"] = {doc_ids[d]: int(r) for d, r in zip(judged, rels)}
        depth = int(rng.choice([5, 37, 100]))  # short lists too: fewer than 10 or 100 retrieved
        # Bias rankings towards judged documents so hits land at all depths.
        pool = np.concatenate([judged, rng.choice(corpus, size=depth, replace=False)])
        ranked = list(dict.fromkeys(rng.permutation(pool).tolist()))[:depth]
        runs[f"q{q}"] = [doc_ids[d] for d in ranked]
    return qrels, runs


def trec_eval(qrels, runs, measures, cut=None):
    """Scores strictly decrease with rank, so trec_eval sees exactly our order."""
    run = {q: {d: float(len(ids) - r) for r, d in enumerate(ids[:cut])} for q, ids in runs.items()}
    return pytrec_eval.RelevanceEvaluator(qrels, set(measures)).evaluate(run)


@pytest.mark.parametrize("seed,graded", [(0, True), (1, True), (2, False), (3, False)])
def test_metrics_match_trec_eval(seed, graded):
    qrels, runs = random_case(seed, graded=graded)
    qids = list(qrels)
    ours = per_query_metrics(
        gains_at_ranks([runs[q] for q in qids], [qrels[q] for q in qids]), [qrels[q] for q in qids]
    )
    reference = trec_eval(qrels, runs, TREC_MEASURES)
    reference_rr = trec_eval(qrels, runs, {"recip_rank"}, cut=10)  # MRR@10: reciprocal rank on the top 10
    for row, qid in enumerate(qids):
        for trec_name, name in TREC_MEASURES.items():
            assert ours[name][row] == pytest.approx(reference[qid][trec_name], abs=1e-6), (qid, name)
        assert ours["mrr@10"][row] == pytest.approx(reference_rr[qid]["recip_rank"], abs=1e-6), qid
    # the cases must exercise both hits and misses
    assert 0 < ours["mrr@10"].mean() < 1 and 0 < ours["recall@100"].mean() < 1


def test_missing_results_never_count_as_hits():
    """A ranked list shorter than the cut-off (small corpus) scores only what it holds."""
    qrels = [{"a": 1, "b": 1}]
    ours = per_query_metrics(gains_at_ranks([["x", "a"]], qrels), qrels)
    assert ours["recall@10"][0] == 0.5 and ours["mrr@10"][0] == 0.5
    assert ours["map@100"][0] == pytest.approx(0.25)
