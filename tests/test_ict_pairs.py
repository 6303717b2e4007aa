"""bench/ict_pairs.py: each query a contiguous span of its passage, the positive that passage with
the span cut out (or whole), short and shared passages left out; checked by finding the span again."""

from __future__ import annotations

import json

import pytest

from bench import ict_pairs


def _corpus(tmp_path, texts):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(texts)), "utf-8")
    return path


def _span_at(words, span):
    """Every start at which `span` occurs in `words`."""
    return [i for i in range(len(words) - len(span) + 1) if words[i : i + len(span)] == span]


def test_queries_are_spans_and_positives_the_rest(tmp_path):
    long = [" ".join(f"w{i}_{j}" for j in range(n)) for i, n in enumerate([25, 40, 60, 100, 30, 26, 80, 45])]
    shared = " ".join(f"s{j}" for j in range(40))
    texts = [*long, "too short to use", shared, shared]
    out = tmp_path / "pairs.jsonl"
    assert ict_pairs.main(["--corpus", str(_corpus(tmp_path, texts)), "--out", str(out), "--seed", "3"]) == 0
    pairs = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    # the short passage and the two that share a text give none
    assert [p["query_id"] for p in pairs] == [f"ict-p{i}" for i in range(len(long))]
    for pair, text in zip(pairs, long):
        words, query = text.split(), pair["anchor"].split()
        assert 8 <= len(query) <= 30
        assert 0.3 * len(words) - 1 <= len(query) or len(query) == 8
        assert len(query) <= max(8, 0.5 * len(words) + 1)
        (start,) = _span_at(words, query)  # the words are all distinct: one place
        rest = words[:start] + words[start + len(query) :]
        assert pair["positive"] in (text, " ".join(rest))
        if len(rest) < 8:
            assert pair["positive"] == text
    again = tmp_path / "again.jsonl"
    ict_pairs.main(["--corpus", str(_corpus(tmp_path, texts)), "--out", str(again), "--seed", "3"])
    assert again.read_text("utf-8") == out.read_text("utf-8")
    other = tmp_path / "other.jsonl"
    ict_pairs.main(["--corpus", str(_corpus(tmp_path, texts)), "--out", str(other), "--seed", "4"])
    assert other.read_text("utf-8") != out.read_text("utf-8")  # the seed draws the spans


def test_about_one_positive_in_ten_keeps_the_span():
    corpus = {f"p{i}": " ".join(f"w{i}_{j}" for j in range(60)) for i in range(2000)}
    pairs = ict_pairs.ict_pairs(corpus, min_words=25, seed=0)
    whole = sum(p["positive"] == corpus[p["query_id"][4:]] for p in pairs)
    assert 140 <= whole <= 260  # binomial(2000, 0.1): mean 200, sd 13


def test_a_passage_too_short_to_cut_is_kept_whole():
    text = " ".join(f"w{j}" for j in range(10))  # the query takes 8 words, the rest (2) is too short a positive
    for seed in range(20):
        (pair,) = ict_pairs.ict_pairs({"p": text}, min_words=8, seed=seed)
        assert pair["positive"] == text and len(pair["anchor"].split()) == 8


def test_a_corpus_with_nothing_to_use_is_one_clear_error(tmp_path):
    path = _corpus(tmp_path, ["short", "also short"])
    with pytest.raises(SystemExit, match=r"corpus\.jsonl: no passage of at least 25 words"):
        ict_pairs.main(["--corpus", str(path), "--out", str(tmp_path / "x.jsonl")])
    assert not (tmp_path / "x.jsonl").exists()
    with pytest.raises(SystemExit, match=r"missing\.jsonl"):
        ict_pairs.main(["--corpus", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.jsonl")])


def test_a_minimum_below_the_shortest_query_is_refused():
    with pytest.raises(ValueError, match="min_words must be at least 8"):
        ict_pairs.ict_pairs({"p": "a b c d e f g"}, min_words=5, seed=0)
