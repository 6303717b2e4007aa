"""Mining from BM25 and from the hybrid ranking: BM25 negatives against a direct float64 BM25
ranking with the filters applied by hand, and the hybrid source's ends (dense weight 1: the dense
negatives; 0: the BM25 ones)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from data import PairsData, known_relevant
from helpers import reference_bm25
from retrieval.mining import mine
from retrieval.settings import LexicalConfig, MineConfig

CORPUS = [
    "A firm must keep records of client money for five years.",
    "Client money must be held in a separate client account.",
    "The firm must reconcile client money records daily.",
    "An issuer must disclose inside information without delay.",
    "Inside information is information not generally available.",
    "The regulator may inspect the records of any firm.",
    "Records must be kept in a durable medium.",
    "A controller must notify the regulator of a change in control.",
    "Control means holding ten percent of the shares.",
    "Money laundering reporting officers must be approved.",
    "Client assets include client money and custody assets.",
    "A firm must appoint a compliance officer.",
]
EXTRA = "Client money records are kept for six years after the account closes."  # a positive not in the corpus
ROWS = [
    ("how long are client money records kept", CORPUS[0]),
    ("how long are client money records kept", EXTRA),
    ("when must inside information be disclosed", CORPUS[3]),
    ("who must notify a change in control", CORPUS[7]),
]


def pairs() -> PairsData:
    return PairsData([q for q, _ in ROWS], [p for _, p in ROWS], [[] for _ in ROWS], source="hand")


def beir(tmp_path):
    directory = tmp_path / "beir"
    directory.mkdir(exist_ok=True)
    lines = [json.dumps({"_id": f"c{i}", "title": "", "text": text}) for i, text in enumerate(CORPUS)]
    (directory / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    return directory


class RandomEncoder:
    """Unit vectors per text, seeded by the text: a stand-in model with any scores at all."""

    dim, device = 16, torch.device("cpu")

    def __init__(self):
        from types import SimpleNamespace

        self.spec = SimpleNamespace(query_prompt="", document_prompt="")

    def encode(self, texts, batch_size=64, prompt="", show_progress=False):
        rows = [np.random.default_rng(sum(map(ord, t)) * 7919 + len(t)).normal(size=self.dim) for t in texts]
        return torch.tensor(np.stack(rows) / np.linalg.norm(rows, axis=1, keepdims=True), dtype=torch.float32)


def mined(tmp_path, name: str, report: list | None = None, weight: float | None = None, **settings) -> list[list[str]]:
    config = MineConfig(corpus=str(beir(tmp_path)), **settings)
    lexical = LexicalConfig(fusion_weight=weight)
    found = mine(
        RandomEncoder(), pairs(), known_relevant(pairs()), config, tmp_path / name, {"model": "random"}, False, lexical
    )
    if report is not None:
        report.append(found)
    return [json.loads(line)["negatives"] for line in (tmp_path / name / "triplets.jsonl").read_text().splitlines()]


def kept_by_hand(ranking: list[int], scores, positives: set[str], rank_min: int, threshold: float) -> list[str]:
    """The corpus texts of `ranking` (rows, best first) that pass the filters in order: not known
    relevant, at rank_min or below, scored at most the threshold."""
    return [
        CORPUS[row]
        for rank, row in enumerate(ranking, start=1)
        if CORPUS[row] not in positives and rank >= rank_min and scores[row] <= threshold
    ]


def test_bm25_negatives_match_a_direct_ranking_with_the_filters_by_hand(tmp_path):
    import bm25s.stopwords

    k, rank_min, rank_max, relative = 2, 2, 8, 0.95
    reports = []
    got = mined(
        tmp_path, "bm25", reports, k=k, rank_min=rank_min, rank_max=rank_max, max_relative=relative, source="bm25"
    )
    passages = CORPUS + [EXTRA]
    words = set(bm25s.stopwords.STOPWORDS_EN)
    relevant = {}
    for q, p in ROWS:
        relevant.setdefault(q, set()).add(p)
    want_by_question = {}
    for question, positives in relevant.items():
        scores = reference_bm25(passages, question, 1.5, 0.75, True, words)  # one index: corpus and the extra positive
        ranking = sorted(range(len(CORPUS)), key=lambda row: (-scores[row], row))[:rank_max]
        threshold = relative * min(scores[passages.index(p)] for p in positives)
        want_by_question[question] = kept_by_hand(ranking, scores, positives, rank_min, threshold)[:k]
    assert got == [want_by_question[q] for q, _ in ROWS]
    counts = reports[0].counts  # every filter bites: the comparison above means something
    assert counts["removed_relevant"] and counts["removed_rank_window"] and counts["removed_relative"], counts


@pytest.mark.parametrize("weight,other", [(1.0, "dense"), (0.0, "bm25")])
def test_hybrid_at_either_end_is_that_source(tmp_path, weight, other):
    """Without the relative filter (scores differ in scale, ranks do not), a dense weight of 1 ranks
    the pool by the model and 0 by BM25: the same negatives as that source alone."""
    settings = dict(k=3, rank_min=1, rank_max=6, max_relative=None)
    hybrid = mined(tmp_path, "hybrid", source="hybrid", weight=weight, **settings)
    alone = mined(tmp_path, other, source=other, **settings)
    assert hybrid == alone and any(hybrid)


def test_hybrid_negatives_match_a_direct_fusion_with_the_filters_by_hand(tmp_path):
    """Dense weight 0.5 with the positive-aware filter on: each question's pool (the dense top, the
    BM25 top of the passages it matches, its positives), both scores min-max normalised over the
    pool in float64, fused, ranked (ties: corpus order); the filters applied on the fused scale."""
    import bm25s.stopwords

    k, rank_min, rank_max, relative, weight = 2, 2, 6, 0.95, 0.5
    reports = []
    settings = dict(k=k, rank_min=rank_min, rank_max=rank_max, max_relative=relative, source="hybrid")
    got = mined(tmp_path, "hybrid", reports, weight=weight, **settings)
    passages, n = CORPUS + [EXTRA], len(CORPUS)
    encoder, words = RandomEncoder(), set(bm25s.stopwords.STOPWORDS_EN)
    vectors = encoder.encode(passages).numpy().astype(np.float64)
    relevant = {}
    for question, positive in ROWS:
        relevant.setdefault(question, set()).add(positive)
    want, thresholds = {}, []
    for question, positives in relevant.items():
        cosine = vectors @ encoder.encode([question]).numpy()[0].astype(np.float64)
        bm25 = reference_bm25(passages, question, 1.5, 0.75, True, words)
        depth = min(rank_max, n)
        dense_top = sorted(range(n), key=lambda r: (-cosine[r], r))[:depth]
        bm25_top = sorted((r for r in range(n) if bm25[r] > 0), key=lambda r: (-bm25[r], r))[:depth]
        own = [passages.index(p) for p in positives]
        pool = sorted({*dense_top, *bm25_top, *own})

        def minmax(scores, pool=pool):
            values = np.array([scores[r] for r in pool], dtype=np.float64)
            span = values.max() - values.min()
            return (values - values.min()) / span if span > 0 else np.zeros_like(values)

        fused = dict(zip(pool, weight * minmax(cosine) + (1 - weight) * minmax(bm25)))
        ranking = sorted((r for r in pool if r < n), key=lambda r: (-fused[r], r))[:depth]
        lowest = min(fused[r] for r in own)
        threshold = relative * lowest if lowest > 0 else np.inf  # a positive at the pool's minimum: no filter
        thresholds.append(threshold)
        want[question] = kept_by_hand(ranking, fused, positives, rank_min, threshold)[:k]
    assert got == [want[q] for q, _ in ROWS]
    counts = reports[0].counts
    assert counts["removed_relative"] and counts["removed_rank_window"] and any(map(np.isfinite, thresholds)), counts


def test_bm25_source_encodes_nothing(tmp_path):
    class Refusing(RandomEncoder):
        def encode(self, *args, **kwargs):
            raise AssertionError("BM25 mining must not run the model")

    config = MineConfig(corpus=str(beir(tmp_path)), k=1, source="bm25")
    report = mine(Refusing(), pairs(), known_relevant(pairs()), config, tmp_path / "m", {}, False, LexicalConfig())
    assert report.counts["questions"] == 3


def test_a_positive_bm25_does_not_match_turns_the_relative_filter_off_for_its_question(tmp_path):
    """A question sharing no word with its positive would put the threshold at 0 x 0.95 and filter
    every candidate that matches: for that question the filter is skipped, and it gets its negative."""
    global ROWS
    saved = ROWS
    ROWS = [*saved, ("client money reconciled daily", CORPUS[11])]  # matches others, not its positive
    try:
        reports = []
        got = mined(tmp_path, "bm25", reports, k=1, rank_min=1, rank_max=8, max_relative=0.95, source="bm25")
    finally:
        ROWS = saved
    assert got[-1] == [CORPUS[2]]  # "The firm must reconcile client money records daily.": the best match
    assert reports[0].counts["questions"] == 4


@pytest.mark.parametrize(
    "settings,key",
    [
        (dict(source="bm25", max_score=0.5), "max_score"),
        (dict(source="hybrid", max_score=0.5), "max_score"),
        (dict(source="bm25", refresh=1), "refresh"),
        (dict(source="bm25", model="x"), "model"),
        (dict(source="sparse"), "source"),
    ],
)
def test_settings_that_make_no_sense_for_the_source_are_named(settings, key):
    from retrieval.settings import check_mine_config

    with pytest.raises(ValueError, match=f"data.hard_negatives.{key}"):
        check_mine_config(MineConfig(k=1, **settings))


@pytest.mark.parametrize("source", ["bm25", "hybrid"])
def test_only_the_lexical_settings_mining_reads_decide_whether_it_mines_again(tmp_path, source):
    """The evaluation's fusion_norm, rrf_k and retriever reuse the mined set; BM25's own settings mine
    again; the dense weight does for hybrid only (bm25 never fuses)."""

    def again(name: str, **lexical) -> bool:
        config = MineConfig(corpus=str(beir(tmp_path)), k=1, rank_max=8, source=source)
        found = mine(
            RandomEncoder(),
            pairs(),
            known_relevant(pairs()),
            config,
            tmp_path / name,
            {"model": "random"},
            False,
            LexicalConfig(**lexical),
        )
        return found.reused

    assert not again("m")
    assert again("m", fusion_norm="zscore", rrf_k=10, retriever="none")
    assert again("m", fusion_weight=0.5)  # what null means when mining
    changed = {"method": "robertson", "k1": 1.2, "b": 0.5, "stemmer": None, "stopwords": None, "tokens": "references"}
    for key, value in changed.items():
        assert not again("m", **{key: value}), key
        assert not again("m")  # back to the defaults: mined again, the folder held the other set
    assert again("m", fusion_weight=0.3) is (source == "bm25")


def test_default_tokens_leave_the_fingerprint_of_earlier_mined_sets_unchanged():
    """lexical.tokens came later: at its default (words) mining reads what it read before it existed,
    so sets mined then are reused; references adds the pattern itself."""
    from retrieval.mining import lexical_read

    before = {"method": "lucene", "k1": 1.5, "b": 0.75, "stemmer": "english", "stopwords": "en"}
    assert lexical_read(LexicalConfig(), "bm25") == before
    assert lexical_read(LexicalConfig(), "hybrid") == {**before, "fusion_weight": 0.5}
    pattern = lexical_read(LexicalConfig(tokens="references"), "bm25")["token_pattern"]
    assert "3.2.1" in re.findall(pattern, "rule 3.2.1 applies")


def test_a_positive_missing_from_the_corpus_is_warned_about(tmp_path, caplog):
    """EXTRA is no corpus text: a passage holding it with other words would not be known relevant."""
    import logging

    caplog.set_level(logging.WARNING)
    mined(tmp_path, "m", k=1, source="bm25")
    assert "1 of 4 training positives are not" in caplog.text
