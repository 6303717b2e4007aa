"""bench/question_memory.py: the links from training questions to passages, the memory score
against a float64 loop, and, memory off, the quality bench's own alone and fused figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import pair_results, question_memory
from bench.quality import Scorer, encode_model, model_bench_parser
from retrieval.evaluation import evaluate_embeddings
from tests.helpers import make_tiny_bert, write_jsonl
from tests.test_fusion_variants import noisy_beir


def test_a_question_links_to_every_passage_with_its_positives_text(tmp_path):
    corpus = ["rule  one", "rule two", "rule one", "rule three"]  # rows 0 and 2 share a text
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"anchor": "a", "positive": "rule one"},
            {"anchor": "b", "positive": "rule three"},
            {"anchor": "a", "positive": "rule two"},
            {"anchor": "c", "positive": "not in the corpus"},
        ],
    )
    questions, key_of, row_of = question_memory.memory_keys(pairs, corpus)
    assert questions == ["a", "b"]  # c links to nothing
    assert sorted(zip(key_of.tolist(), row_of.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 3)]


def test_memory_scores_against_a_float64_loop():
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    queries, keys = unit(rng.normal(size=(5, 8))), unit(rng.normal(size=(4, 8)))
    key_of, row_of = np.array([0, 1, 2, 3, 1]), np.array([3, 3, 0, 5, 1])  # key 1 on rows 3 and 1
    got = question_memory.memory_scores(queries.astype(np.float32), keys.astype(np.float32), key_of, row_of, 7)
    want = np.full((5, 7), -np.inf)
    for key, row in zip(key_of, row_of):
        for q in range(5):
            want[q, row] = max(want[q, row], float(queries[q] @ keys[key]))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_memory_off_is_the_quality_bench_and_on_changes_the_linked_passages(tmp_path, capsys):
    model = make_tiny_bert(tmp_path / "m")
    beir = noisy_beir(tmp_path / "beir")
    texts = [json.loads(line)["text"] for line in (beir / "corpus.jsonl").read_text().splitlines()]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": f"asked {i}", "positive": texts[i]} for i in range(8)])
    common = ["--models", str(model), "--data", str(beir), "--dims", "32,16", "--resamples", "200"]
    question_memory.main([*common, "--pairs", str(pairs), "--out", str(tmp_path / "kept")])
    printed = capsys.readouterr().out
    assert "8 training questions linked to 8 passages; 8 of 20 questions seen" in printed
    rows = [line.split(" | ") for line in printed.splitlines() if line.startswith(f"| {model} |")]
    assert [row[1] for row in rows] == ["32", "16"]

    args = model_bench_parser("").parse_args(common)
    args.weight_split = "cross"
    scorer = Scorer(args)
    queries, corpus, _ = encode_model(model, scorer)
    alone = evaluate_embeddings(queries, corpus, scorer.data, [32, 16])
    fused, _, _ = scorer.cross_fitted(queries, corpus)
    for row, dim in zip(rows, (32, 16)):  # memory off: the bench's own per-question figures
        assert float(row[2]) == pytest.approx(alone[dim].metrics["ndcg@10"], abs=5e-5)
        assert float(row[4]) == pytest.approx(np.mean(fused[dim]["ndcg@10"]), abs=5e-5)
    kept = json.loads((tmp_path / "kept" / "0.json").read_text())  # memory on, as bench.pair_results reads it
    for row, dim in zip(rows, ("32", "16")):
        assert float(row[3]) == pytest.approx(np.mean(kept["per_query"][dim]["ndcg@10"]), abs=5e-5)
        assert float(row[5]) == pytest.approx(np.mean(kept["fused"][dim]["ndcg@10"]), abs=5e-5)
    assert pair_results.main([str(tmp_path / "kept" / "0.json")] * 2) == 0
    with pytest.raises(SystemExit, match="--pairs"):
        question_memory.main([*common, "--pairs", str(tmp_path / "missing.jsonl")])
