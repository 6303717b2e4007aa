"""BM25 against a direct float64 computation of bm25s's formula, fusion against direct per-query
computations on hand-made runs with ties, and the ObliQA dev BM25 baseline (skipped without ../shared)."""

from __future__ import annotations

import numpy as np
import pytest

from data import IRDataset, load_beir
from helpers import reference_bm25
from retrieval.fusion import WEIGHT_GRID, Candidates, convex, normalized, pool, ranked, reciprocal_rank
from retrieval.hybrid import chosen_weights, evaluate_hybrid
from retrieval.lexical import build_index, lexical_search, tokens_of, top_k
from retrieval.metrics import score_ranking
from retrieval.settings import LexicalConfig

CORPUS = [
    "The firm must keep records of client money for five years.",
    "Client money is held on trust by the firm.",
    "An issuer must disclose inside information promptly.",
    "Records, records and more records: the regulator inspects records.",
    "Nothing here matches.",
    "The the the of of",  # stopwords only
]
QUERIES = ["client money records", "disclose information", "regulators inspecting", "zebra"]


@pytest.mark.parametrize("stem,stopwords", [(False, None), (True, "en")])
@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (0.9, 0.4)])
def test_bm25_scores_match_the_formula(stem, stopwords, k1, b):
    import bm25s.stopwords

    config = LexicalConfig(k1=k1, b=b, stemmer="english" if stem else None, stopwords=stopwords)
    index = build_index(CORPUS, config)
    ((_, scores, matched),) = list(index.scores(QUERIES))
    words = set(bm25s.stopwords.STOPWORDS_EN) if stopwords else set()
    for row, query in enumerate(QUERIES):
        want = reference_bm25(CORPUS, query, k1, b, stem, words)
        np.testing.assert_allclose(scores[row], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(matched[row], np.array(want) > 0)  # lucene: a match scores above 0
    assert scores[0].max() > 0 and not scores[3].any()  # a hit somewhere; an unknown word scores nothing


# Rule numbers, written out by hand as lexical.tokens references should cut them (lower-cased, before
# stopwords and stemming): a dotted reference is one token, a single digit is kept, a single letter
# ("a", the "d" of "(d)") and a sentence's full stop are not.
REFERENCE_TOKENS = {
    "under rule 3.2.1 a fund must file accounts within 5 days.": [
        "under", "rule", "3.2.1", "fund", "must", "file", "accounts", "within", "5", "days",
    ],
    "under rule 3.2.2 a fund must file accounts within 10 days.": [
        "under", "rule", "3.2.2", "fund", "must", "file", "accounts", "within", "10", "days",
    ],
    "rules a4.3.6 to a4.3.29 set the exposure value.": [
        "rules", "a4.3.6", "to", "a4.3.29", "set", "the", "exposure", "value",
    ],
    "see section 14.2.12(d). the firm reconciles.": ["see", "section", "14.2.12", "the", "firm", "reconciles"],
    "what does rule 3.2.1 require?": ["what", "does", "rule", "3.2.1", "require"],
    "exposure under a4.3.6": ["exposure", "under", "a4.3.6"],
    "reconcile within 5 days under 14.2.12": ["reconcile", "within", "5", "days", "under", "14.2.12"],
}  # fmt: skip


def test_reference_tokens_keep_rule_numbers_whole():
    import bm25s

    texts = list(REFERENCE_TOKENS)
    bare = dict(stemmer=None, stopwords=None)
    assert tokens_of([t.title() for t in texts], LexicalConfig(tokens="references", **bare)) == list(
        REFERENCE_TOKENS.values()
    )
    # words, the default, is bm25s's own tokenizer: the rule numbers are lost ("3.2.1" leaves nothing)
    words = tokens_of(texts, LexicalConfig(**bare))
    assert words == bm25s.tokenize(texts, stopwords=[], return_ids=False, show_progress=False)
    assert words[0] == ["under", "rule", "fund", "must", "file", "accounts", "within", "days"]
    edges = tokens_of(["See e.g. Rule 3.2.1. It costs 1,000 (i) units."], LexicalConfig(tokens="references", **bare))
    assert edges == [["see", "e.g", "rule", "3.2.1", "it", "costs", "1", "000", "units"]]


@pytest.mark.parametrize("stem,stopwords", [(False, None), (True, "en")])
def test_bm25_with_reference_tokens_matches_the_formula(stem, stopwords):
    import bm25s.stopwords

    corpus, queries = list(REFERENCE_TOKENS)[:4], list(REFERENCE_TOKENS)[4:]
    config = LexicalConfig(tokens="references", stemmer="english" if stem else None, stopwords=stopwords)
    ((_, scores, matched),) = list(build_index(corpus, config).scores(queries))
    words = set(bm25s.stopwords.STOPWORDS_EN) if stopwords else set()
    for row, query in enumerate(queries):
        want = reference_bm25(corpus, query, 1.5, 0.75, stem, words, split=REFERENCE_TOKENS.__getitem__)
        np.testing.assert_allclose(scores[row], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(matched[row], np.array(want) > 0)
    assert scores[0, 0] > scores[0, 1]  # the passage of Rule 3.2.1 above its neighbour 3.2.2


def test_lexical_search_breaks_ties_by_corpus_order():
    index = build_index(["alpha beta", "gamma", "alpha beta", "alpha beta", "delta"], LexicalConfig(stemmer=None))
    scores, rows = lexical_search(index, ["alpha", "omega"], 4)
    assert rows[0].tolist() == [0, 2, 3, -1]  # three tied hits in corpus order; a passage that does not match is
    assert scores[0][0] == scores[0][1] == scores[0][2] > 0 and np.isneginf(scores[0][3])  # never retrieved
    assert rows[1].tolist() == [-1, -1, -1, -1]  # nothing matches: nothing retrieved


def test_top_k_against_a_full_sort():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, (7, 40)).astype(np.float32)  # many ties
    got_scores, got_rows = top_k(scores, 9)
    for row in range(7):
        order = sorted(range(40), key=lambda j: (-scores[row, j], j))[:9]
        assert got_rows[row].tolist() == order
        assert got_scores[row].tolist() == scores[row, order].tolist()


def hand_made_candidates() -> Candidates:
    """Two queries; dense and lexical top-3 lists over a corpus of 6 (rows), with ties."""
    dense_rows = np.array([[4, 1, 0], [2, 3, 5]])
    lexical_rows = np.array([[1, 5, 4], [3, 2, 0]])
    rows, dense_rank, lexical_rank = pool(dense_rows, lexical_rows)
    dense_all = np.array([[0.5, 0.8, 0.1, 0.0, 0.9, 0.2], [0.3, 0.0, 0.7, 0.7, 0.1, 0.6]])
    lexical_all = np.array([[0.0, 9.0, 0.0, 0.0, 3.0, 6.0], [1.0, 0.0, 4.0, 4.0, 0.0, 0.0]])
    safe = np.maximum(rows, 0)
    pick = lambda table: np.where(rows >= 0, np.take_along_axis(table, safe, 1), 0.0)  # noqa: E731
    return Candidates(rows, pick(dense_all), pick(lexical_all), dense_rank, lexical_rank)


def test_pool_unions_both_lists_with_their_ranks():
    c = hand_made_candidates()
    assert c.rows.tolist() == [[0, 1, 4, 5, -1, -1], [0, 2, 3, 5, -1, -1]]
    assert c.dense_rank.tolist() == [[3, 2, 1, 0, 0, 0], [0, 1, 2, 3, 0, 0]]
    assert c.lexical_rank.tolist() == [[0, 1, 3, 2, 0, 0], [3, 2, 1, 0, 0, 0]]


def direct_convex(dense: dict[int, float], lexical: dict[int, float], weight: float) -> dict[int, float]:
    def minmax(values: dict[int, float]) -> dict[int, float]:
        low, high = min(values.values()), max(values.values())
        return {d: (v - low) / (high - low) if high > low else 0.0 for d, v in values.items()}

    nd, nl = minmax(dense), minmax(lexical)
    return {d: weight * nd[d] + (1 - weight) * nl[d] for d in dense}


def pool_scores(c: Candidates, q: int) -> tuple[np.ndarray, dict[int, float], dict[int, float]]:
    """Query q's valid mask, and its pooled passages' dense and lexical scores by corpus row."""
    valid = c.rows[q] >= 0
    rows = c.rows[q][valid].tolist()
    return valid, dict(zip(rows, c.dense[q][valid].tolist())), dict(zip(rows, c.lexical[q][valid].tolist()))


def direct_order(fused: dict[int, float]) -> list[int]:
    return sorted(fused, key=lambda d: (-fused[d], d))


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.5, 1.0])
def test_convex_fusion_against_a_direct_computation(weight):
    c = hand_made_candidates()
    fused = convex(c, weight, "minmax")
    scores, rows = ranked(c, fused, 4)
    for q in range(2):
        valid, dense, lexical = pool_scores(c, q)
        want = direct_convex(dense, lexical, weight)
        assert rows[q].tolist() == direct_order(want)
        np.testing.assert_allclose(scores[q], [want[d] for d in direct_order(want)], rtol=1e-6)
    # query 1 at weight 0.5: rows 2 and 3 tie exactly (same dense and lexical score): corpus order
    if weight == 0.5:
        assert rows[1].tolist()[:2] == [2, 3]


def test_zscore_normalisation_against_numpy():
    c = hand_made_candidates()
    fused = convex(c, 0.4, "zscore")
    for q in range(2):
        valid = c.rows[q] >= 0
        z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
        want = 0.4 * z(c.dense[q][valid]) + 0.6 * z(c.lexical[q][valid])
        np.testing.assert_allclose(fused[q][valid], want, rtol=1e-9)
        assert np.isneginf(fused[q][~valid]).all()


@pytest.mark.parametrize("weight", [0.0, 0.4, 2 / 3, 1.0])
def test_max_fusion_is_the_cosine_plus_bm25_over_its_best(weight):
    """Fusion norm max: the dense cosine as it is, BM25 over the query's best candidate score (a
    direct loop over the hand-made pools); at w = 1 / (1 + temperature x beta) it orders the
    candidates as the logits of a model trained with loss.lexical_scale beta do."""
    c = hand_made_candidates()
    fused = convex(c, weight, "max")
    scores, rows = ranked(c, fused, 4)
    for q in range(2):
        valid, dense, lexical = pool_scores(c, q)
        best = max(lexical.values())
        want = {d: weight * dense[d] + (1 - weight) * lexical[d] / best for d in dense}
        assert rows[q].tolist() == direct_order(want)
        np.testing.assert_allclose(scores[q], [want[d] for d in direct_order(want)], rtol=1e-6)
        assert np.isneginf(fused[q][~valid]).all()
        if weight == 2 / 3:  # temperature 0.05, beta 10: cos / 0.05 + 10 x bm25 / best, the same order
            logits = {d: dense[d] / 0.05 + 10 * lexical[d] / best for d in dense}
            assert rows[q].tolist() == direct_order(logits)


def test_max_normalisation_of_a_query_bm25_does_not_match():
    """A query BM25 scores 0 everywhere (or whose best is <= 0) scales to 0 under max: the fusion is
    w x cosine there, never a division by zero or a flipped order."""
    valid = np.array([[True, True, True, False]])
    for row in ([0.0, 0.0, 0.0, 0.0], [-1.0, -2.0, 0.0, 5.0]):  # the padded 5.0 is not a candidate
        np.testing.assert_array_equal(normalized(np.array([row]), valid, "max"), [[0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(normalized(np.array([[2.0, 1.0, 0.5, 9.0]]), valid, "max"), [[1.0, 0.5, 0.25, 0.0]])


def test_reciprocal_rank_fusion_against_a_direct_computation():
    c = hand_made_candidates()
    scores, rows = ranked(c, reciprocal_rank(c, 60), 6)
    dense_lists, lexical_lists = [[4, 1, 0], [2, 3, 5]], [[1, 5, 4], [3, 2, 0]]
    for q in range(2):
        want: dict[int, float] = {}
        for listed in (dense_lists[q], lexical_lists[q]):
            for rank, d in enumerate(listed, start=1):
                want[d] = want.get(d, 0.0) + 1 / (60 + rank)
        order = direct_order(want)
        assert rows[q].tolist() == order + [-1] * (6 - len(order))
        np.testing.assert_allclose(scores[q][: len(order)], [want[d] for d in order], rtol=1e-6)
    assert rows[1].tolist()[:2] == [2, 3]  # 1/61 + 1/62 each: a tie, in corpus order


def tiny_ir() -> IRDataset:
    corpus_ids = [f"d{i}" for i in range(6)]
    texts = [
        "client money trust",
        "records five years",
        "inside information disclose",
        "records regulator",
        "money laundering",
        "trust deed",
    ]
    queries = ["client money", "keeping records", "disclosure"]
    qrels = {"q0": {"d0": 1}, "q1": {"d1": 1, "d3": 1}, "q2": {"d2": 1}}
    return IRDataset(corpus_ids, texts, ["q0", "q1", "q2"], queries, qrels, name="tiny")


def test_evaluate_hybrid_on_a_tiny_set_matches_its_parts():
    data = tiny_ir()
    rng = np.random.default_rng(3)
    query_emb, corpus_emb = rng.normal(size=(3, 8)), rng.normal(size=(6, 8))
    index = build_index(data.corpus_texts, LexicalConfig(stemmer=None, stopwords=None))
    results = evaluate_hybrid(query_emb, corpus_emb, data, [8, 4], index)
    qrels = [data.qrels[q] for q in data.query_ids]
    want_bm25 = score_ranking(*lexical_search(index, data.query_texts, 100), data, qrels)
    assert results.bm25.metrics == want_bm25.metrics
    assert results.weights_from == "tiny" and set(results.weights) == {8, 4}
    assert all(w in WEIGHT_GRID for w in results.weights.values())
    # the corpus is smaller than 100: every candidate is every passage, so weight 1 is the dense ranking
    at_one = evaluate_hybrid(query_emb, corpus_emb, data, [8], index, weights={8: 1.0}, weights_from="given")
    from retrieval.evaluation import evaluate_embeddings

    dense = evaluate_embeddings(query_emb, corpus_emb, data, [8])[8]
    assert at_one.fused[8]["convex"].ranked_ids == dense.ranked_ids
    at_zero = evaluate_hybrid(query_emb, corpus_emb, data, [8], index, weights={8: 0.0}, weights_from="given")
    for fused_ids, bm25_ids in zip(at_zero.fused[8]["convex"].ranked_ids, results.bm25.ranked_ids):
        assert fused_ids[: len(bm25_ids)] == bm25_ids  # BM25's matches in its order, then what BM25 did not match
    # the chosen weight is the best of the grid (ties: the lower)
    by_weight = {
        w: evaluate_hybrid(query_emb, corpus_emb, data, [8], index, {8: w}).fused[8]["convex"] for w in WEIGHT_GRID
    }
    best = max(by_weight[w].metrics["ndcg@10"] for w in WEIGHT_GRID)
    assert results.weights[8] == min(w for w in WEIGHT_GRID if by_weight[w].metrics["ndcg@10"] >= best - 1e-12)
    assert chosen_weights(query_emb, corpus_emb, data, [8, 4], index) == results.weights


def test_obliqa_dev_bm25_reproduces_the_published_baseline(obliqa):
    """bm25s lucene, k1 1.5, b 0.75, English stopwords, Snowball English stemmer, 'title text'."""
    data = load_beir(obliqa, "dev")
    index = build_index(data.corpus_texts, LexicalConfig())
    result = score_ranking(*lexical_search(index, data.query_texts, 100), data, [data.qrels[q] for q in data.query_ids])
    assert result.metrics["ndcg@10"] == pytest.approx(0.6901, abs=0.002)
    assert result.metrics["recall@10"] == pytest.approx(0.7763, abs=0.002)
    assert result.metrics["map@10"] == pytest.approx(0.6386, abs=0.002)


def test_evaluate_cli_reports_bm25_and_the_fused_model(tmp_path, tiny_bert):
    import json

    import evaluate
    from helpers import tiny_beir

    data_dir = tiny_beir(tmp_path / "beir")
    (data_dir / "qrels" / "train.tsv").write_text("".join(f"q{i}\tc{i * 3}\t1\n" for i in range(8)))
    out = tmp_path / "m.json"
    report = evaluate.main(
        [
            "--model",
            str(tiny_bert),
            "--data",
            str(data_dir),
            "--split",
            "dev",
            "--dims",
            "32,8",
            "--stemmer",
            "none",
            "--out",
            str(out),
            "--resamples",
            "200",
        ]
    )
    lexical = json.loads(out.read_text())["lexical"]
    data = load_beir(data_dir, "dev")
    index = build_index(data.corpus_texts, LexicalConfig(stemmer=None))
    want = score_ranking(*lexical_search(index, data.query_texts, 100), data, [data.qrels[q] for q in data.query_ids])
    assert lexical["bm25"] == pytest.approx(want.metrics)
    assert set(lexical["fused"]) == {"32", "8"} and lexical["weights_from"] == data.name
    assert set(lexical["versus_bm25"]) == {"dense", "convex", "rrf"}
    dense_vs = lexical["versus_bm25"]["dense"]["32"]["ndcg@10"]
    assert dense_vs["base"] == pytest.approx(want.metrics["ndcg@10"]) and dense_vs["new"] == report["32"]["ndcg@10"]
    given = evaluate.main(
        [
            "--model",
            str(tiny_bert),
            "--data",
            str(data_dir),
            "--split",
            "dev",
            "--dims",
            "32",
            "--fusion-weight",
            "0.3",
            "--resamples",
            "100",
        ]
    )
    assert given["lexical"]["fused"]["32"]["convex"]["weight"] == 0.3 and given["lexical"]["weights_from"] == "given"
    elsewhere = evaluate.main(
        [
            "--model",
            str(tiny_bert),
            "--data",
            str(data_dir),
            "--split",
            "dev",
            "--dims",
            "32",
            "--fusion-weight-from",
            "train",
            "--resamples",
            "100",
        ]
    )
    assert elsewhere["lexical"]["weights_from"] == "train"
    assert "lexical" not in evaluate.main(
        ["--model", str(tiny_bert), "--data", str(data_dir), "--split", "dev", "--lexical", "none"]
    )


def test_evaluate_cli_bm25_tokens_references(tmp_path, tiny_bert):
    """--bm25-tokens references: BM25 over rule numbers kept whole, recorded in the json's settings."""
    import evaluate
    from helpers import write_jsonl

    root = tmp_path / "beir"
    texts = [f"Rule {c}.{s}.{r} sets the reporting duty." for c in (1, 2) for s in (1, 2) for r in (1, 2, 3)]
    write_jsonl(root / "corpus.jsonl", [{"_id": f"c{i}", "title": "", "text": t} for i, t in enumerate(texts)])
    asked = [f"What does {texts[row][:10]} require?" for row in (0, 7)]  # "Rule 1.1.1", "Rule 2.1.2"
    write_jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": text} for i, text in enumerate(asked)])
    (root / "qrels").mkdir()
    (root / "qrels" / "dev.tsv").write_text("q0\tc0\t1\nq1\tc7\t1\n")
    argv = ["--model", str(tiny_bert), "--data", str(root), "--split", "dev", "--dims", "8", "--resamples", "100"]
    lexical = evaluate.main([*argv, "--bm25-tokens", "references"])["lexical"]
    assert lexical["settings"]["tokens"] == "references"
    assert lexical["bm25"]["ndcg@10"] == 1.0  # each question's rule number is one passage's alone
    words = evaluate.main(argv)["lexical"]
    assert words["settings"]["tokens"] == "words" and words["bm25"]["ndcg@10"] < 1.0  # "rule" ties all twelve


def test_check_lexical_config_names_a_bad_token_pattern():
    from retrieval.settings import check_lexical_config

    with pytest.raises(ValueError, match="lexical.tokens: 'digits' must be one of words, references"):
        check_lexical_config(LexicalConfig(tokens="digits"))


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--bm25-b", "2"], "lexical.b: 2.0 must be in"),
        (["--stemmer", "klingon"], "lexical.stemmer: 'klingon' is not a Snowball stemmer"),
        (["--fusion-weight", "0.5", "--fusion-weight-from", "train"], "give one"),
        (["--fusion-weight-from", "dev"], "the split evaluated"),
    ],
)
def test_evaluate_cli_rejects_bad_lexical_flags(tmp_path, argv, message):
    import evaluate
    from helpers import tiny_beir

    with pytest.raises(SystemExit, match=message):
        evaluate.main(["--data", str(tiny_beir(tmp_path / "beir")), "--split", "dev", *argv])


def test_lexical_prior_is_bm25_over_the_question_best():
    import bm25s.stopwords

    from retrieval.lexical import LexicalPrior

    prior = LexicalPrior(QUERIES, CORPUS, LexicalConfig())
    passage_ids = np.array([5, 0, -1, 3, 1])
    got = prior.scores(np.array([0, 1, 3, 0]), passage_ids)
    words = set(bm25s.stopwords.STOPWORDS_EN)
    for row, question in enumerate([0, 1, 3, 0]):
        full = reference_bm25(CORPUS, QUERIES[question], 1.5, 0.75, True, words)
        best = max(full)
        want = [full[p] / best if best > 0 and p >= 0 else 0.0 for p in passage_ids]
        np.testing.assert_allclose(got[row], want, rtol=1e-5, atol=1e-6)
    assert got.max() == pytest.approx(1.0) and not got[2].any()  # the best passage is 1; "zebra" matches none


def test_fusion_on_a_corpus_larger_than_k_never_credits_a_passage_bm25_did_not_match():
    """150 passages, k 100: the query's words are in 3 of them. BM25's list holds those 3 only, so
    RRF ranks every other passage by its dense rank alone and the pool is dense top 100 plus those 3."""
    rng = np.random.default_rng(0)
    texts = [f"filler{i} padding{i}" for i in range(150)]
    for row in (120, 7, 140):
        texts[row] = f"custody assets rule {row}"
    data = IRDataset(
        [f"d{i}" for i in range(150)],
        texts,
        ["q0", "q1"],
        ["custody assets", "nothing matches here"],
        {"q0": {"d140": 1}, "q1": {"d3": 1}},
        name="large",
    )
    query_emb, corpus_emb = rng.normal(size=(2, 8)), rng.normal(size=(150, 8))
    index = build_index(texts, LexicalConfig(stemmer=None))
    _, bm25_rows = lexical_search(index, data.query_texts, 100)
    assert sorted(bm25_rows[0][bm25_rows[0] >= 0].tolist()) == [7, 120, 140] and (bm25_rows[1] == -1).all()
    from retrieval.hybrid import candidates_by_dim
    from retrieval.search import exact_search, truncate_normalize

    candidates, _ = candidates_by_dim(query_emb, corpus_emb, data, [8], index)
    c = candidates[8]
    dense_rows = exact_search(truncate_normalize(query_emb, 8), truncate_normalize(corpus_emb, 8), 100)[1]
    for q in range(2):
        pooled = set(c.rows[q][c.rows[q] >= 0].tolist())
        assert pooled == set(dense_rows[q].tolist()) | set(bm25_rows[q][bm25_rows[q] >= 0].tolist())
        outside = c.rows[q] >= 0
        outside &= ~np.isin(c.rows[q], bm25_rows[q][bm25_rows[q] >= 0])
        assert (c.lexical_rank[q][outside] == 0).all()  # no RRF credit from BM25 for a non-matching passage
    rrf_scores, rrf_rows = ranked(c, reciprocal_rank(c, 60), 100)
    dense_rank = {row: rank for rank, row in enumerate(dense_rows[1].tolist(), start=1)}
    assert rrf_rows[1].tolist() == dense_rows[1].tolist()  # nothing matched: RRF is the dense ranking
    np.testing.assert_allclose(rrf_scores[1], [1 / (60 + dense_rank[r]) for r in rrf_rows[1]], rtol=1e-6)


def test_the_fused_frontier_at_int8_against_a_direct_computation():
    """int8 + BM25: the dense side scores with the stored (int8, dequantized) vectors; against a
    direct min-max fusion of those scores with bm25s's own, ranked by the tie rule."""
    from retrieval.evaluation import evaluate_embeddings
    from retrieval.hybrid import attach_fused_frontier, attach_hybrid
    from retrieval.lexical import lexical_search
    from retrieval.quantize import dequantize_int8, int8_ranges, quantize_int8
    from retrieval.search import truncate_normalize

    data = tiny_ir()
    rng = np.random.default_rng(4)
    query_emb, corpus_emb = rng.normal(size=(3, 8)), rng.normal(size=(6, 8))
    index = build_index(data.corpus_texts, LexicalConfig(stemmer=None, stopwords=None))
    results = evaluate_embeddings(query_emb, corpus_emb, data, [8, 4])
    attach_hybrid(results, query_emb, corpus_emb, data, index)
    attach_fused_frontier(results, query_emb, corpus_emb, data, index, ["float32", "int8", "binary"])
    assert set(results[4].quantized) == {"float32+bm25", "int8+bm25"}  # binary is not a fused setting
    assert results[8].quantized["float32+bm25"]["ndcg@10"] == results[8].fused["convex"].metrics["ndcg@10"]
    bm25_scores, bm25_rows = lexical_search(index, data.query_texts, 100)
    for dim in (8, 4):
        docs = truncate_normalize(corpus_emb, dim)
        stored = dequantize_int8(quantize_int8(docs, int8_ranges(docs)), int8_ranges(docs))
        queries = truncate_normalize(query_emb, dim)
        weight, ndcgs = results[dim].fusion_weight, []
        for q in range(3):
            dense = {d: float(queries[q] @ stored[d]) for d in range(6)}  # a corpus under 100: all of it
            lexical = dict.fromkeys(range(6), 0.0)
            lexical.update({int(r): float(s) for r, s in zip(bm25_rows[q], bm25_scores[q]) if r >= 0})
            order = direct_order(direct_convex(dense, lexical, weight))
            relevant = data.qrels[data.query_ids[q]]
            gains = [1.0 if data.corpus_ids[d] in relevant else 0.0 for d in order[:10]]
            dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
            ideal = sum(1 / np.log2(i + 2) for i in range(min(len(relevant), 10)))
            ndcgs.append(dcg / ideal)
        assert results[dim].quantized["int8+bm25"]["ndcg@10"] == pytest.approx(np.mean(ndcgs), abs=1e-12)
        assert results[dim].quantized["int8+bm25"]["bytes_per_vector"] == dim


def test_the_stopword_lists_named_are_the_ones_bm25s_knows():
    """The config check's static list against bm25s itself: each name it accepts tokenizes, and a
    name it refuses bm25s refuses too."""
    import bm25s

    from retrieval.settings import STOPWORD_LISTS, known_stopwords

    for name in STOPWORD_LISTS:
        bm25s.tokenize(["a"], stopwords=name, show_progress=False)
    for name in ("xx", "klingon", "EN"):
        assert not known_stopwords(name)
        with pytest.raises(ValueError):
            bm25s.tokenize(["a"], stopwords=name, show_progress=False)
