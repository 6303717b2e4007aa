"""int8 and binary search against direct numpy computations (quantization, Hamming distances,
rescoring), ties included; the float32 path unchanged; the --precision CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import evaluate
from helpers import tiny_beir
from retrieval.evaluation import evaluate_embeddings
from retrieval.frontier import evaluate_frontier, quantized_searcher
from retrieval.metrics import METRICS
from retrieval.quantize import bytes_per_vector, dequantize_int8, int8_ranges, pack_signs, quantize_int8
from retrieval.search import exact_search


def vectors(n: int, dim: int, seed: int, repeats: bool = True) -> np.ndarray:
    """Unit rows; with `repeats`, every fifth row copies an earlier one: exact ties in every precision."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    if repeats:
        x[5::5] = x[0 : len(x[5::5])]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_ranking(scores: np.ndarray, k: int) -> np.ndarray:
    """(Q, N) float64 scores -> (Q, k) ids by score descending, then corpus order: a plain loop."""
    out = []
    for row in scores:
        out.append(sorted(range(len(row)), key=lambda i: (-row[i], i))[:k])
    return np.array(out)


def test_int8_codes_and_levels_match_a_per_element_loop():
    docs, queries = vectors(50, 12, seed=1), vectors(7, 12, seed=2) * 1.5  # queries reach outside the corpus range
    ranges = int8_ranges(docs)
    codes = quantize_int8(queries, ranges)
    for i in range(queries.shape[0]):
        for j in range(queries.shape[1]):
            lo, hi = float(docs[:, j].min()), float(docs[:, j].max())
            step = (hi - lo) / 255
            level = min(255, max(0, round((float(queries[i, j]) - lo) / step)))
            assert codes[i, j] == level - 128
            assert dequantize_int8(codes, ranges)[i, j] == pytest.approx(lo + level * step, abs=1e-6)
    decoded = dequantize_int8(quantize_int8(docs, ranges), ranges)
    assert np.abs(decoded - docs).max() <= ranges.step.max() / 2 + 1e-6  # rounding: within half a step


@pytest.mark.parametrize("dim", [13, 32])
def test_int8_search_is_the_float_query_against_the_decoded_corpus(dim):
    docs, queries = vectors(60, dim, seed=3), vectors(9, dim, seed=4)
    ranges = int8_ranges(docs)
    decoded = dequantize_int8(quantize_int8(docs, ranges), ranges).astype(np.float64)
    want_scores = queries.astype(np.float64) @ decoded.T
    scores, ids = quantized_searcher(docs, "int8")(queries, 20)
    np.testing.assert_array_equal(ids, reference_ranking(want_scores, 20))
    np.testing.assert_allclose(scores, np.take_along_axis(want_scores, ids, 1), atol=1e-5)


@pytest.mark.parametrize("dim", [13, 32])  # 13: bits that do not fill the last byte
def test_binary_search_ranks_by_hamming_distance_with_ties_in_corpus_order(dim):
    docs, queries = vectors(300, dim, seed=5), vectors(9, dim, seed=6)
    hamming = np.array([[int(np.sum((q > 0) != (d > 0))) for d in docs] for q in queries])
    scores, ids = quantized_searcher(docs, "binary")(queries, 100)  # 300 docs, <= 14 distances: deep ties
    np.testing.assert_array_equal(ids, reference_ranking(-hamming.astype(np.float64), 100))
    np.testing.assert_array_equal(scores, -np.take_along_axis(hamming, ids, 1))
    assert pack_signs(docs).shape == (300, -(-dim // 8))


def test_binary_rescoring_reranks_the_hamming_top_n_with_the_float_query():
    docs, queries, n = vectors(300, 24, seed=7), vectors(9, 24, seed=8), 120
    hamming = np.array([[np.sum((q > 0) != (d > 0)) for d in docs] for q in queries]).astype(np.float64)
    candidates = reference_ranking(-hamming, n)  # the first stage, ties in corpus order
    signs = np.where(docs > 0, 1.0, -1.0)
    want = []
    for q, cands in zip(queries.astype(np.float64), candidates):
        rescored = {int(c): float(signs[c] @ q) for c in cands}
        want.append(sorted(rescored, key=lambda c: (-rescored[c], c))[:100])
    scores, ids = quantized_searcher(docs, "binary", rescore_n=n)(queries, 100)
    np.testing.assert_array_equal(ids, np.array(want))
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_float32_path_is_unchanged():
    docs, queries = vectors(80, 16, seed=9), vectors(6, 16, seed=10)
    want = exact_search(queries, docs, 30)
    got = quantized_searcher(docs, "float32")(queries, 30)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


def test_bytes_per_vector():
    assert [bytes_per_vector(384, p) for p in ("float32", "int8", "binary")] == [1536, 384, 48]
    assert bytes_per_vector(13, "binary") == 2


def test_frontier_float32_points_equal_the_plain_evaluation(tmp_path):
    from data import load_ir

    data = load_ir(tiny_beir(tmp_path / "beir"), "dev")
    q, d = vectors(len(data.query_ids), 32, seed=11, repeats=False), vectors(len(data.corpus_ids), 32, seed=12)
    plain = evaluate_embeddings(q, d, data, [32, 8])
    points = evaluate_frontier(q, d, data, [32, 8], ["float32", "int8", "binary"], rescore_n=100)
    assert [(p.dim, p.label) for p in points] == [
        (dim, label) for dim in (32, 8) for label in ("float32", "int8", "binary", "binary+rescore100")
    ]
    for p in points:
        if p.label == "float32":
            assert p.result.metrics == plain[p.dim].metrics
        assert p.ms_per_query > 0 and p.bytes_per_vector == bytes_per_vector(p.dim, p.label.split("+")[0])


def test_cli_precision_table_json_and_runs(tmp_path, tiny_bert, capsys):
    data = tiny_beir(tmp_path / "beir")
    default = evaluate.main(["--model", str(tiny_bert), "--data", str(data), "--split", "dev"])
    report = evaluate.main(
        [
            "--model",
            str(tiny_bert),
            "--data",
            str(data),
            "--split",
            "dev",
            "--precision",
            "float32,int8,binary",
            "--rescore",
            "100",
            "--out",
            str(tmp_path / "f.json"),
            "--run-out",
            str(tmp_path / "runs"),
        ]
    )
    printed = capsys.readouterr().out
    assert "| 32 | binary+rescore100 | 4 | 4 MB |" in printed
    written = json.loads((tmp_path / "f.json").read_text())
    assert set(written["32"]) == {"float32", "int8", "binary", "binary+rescore100"}
    assert {k: v for k, v in written["32"]["float32"].items() if k in METRICS} == default["32"]
    assert written["32"]["int8"]["bytes_per_vector"] == 32 and len(written["meta"]["int8_ranges"]["32"]["lo"]) == 32
    assert report["32"]["binary"]["index_bytes_per_million"] == 4_000_000
    assert (tmp_path / "runs" / "run.32.binary+rescore100.trec").exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--precision", "fp16"], "--precision fp16: choose from float32,int8,binary"),
        (["--precision", "int8", "--rescore", "200"], "--rescore 200: rescores binary candidates"),
        (["--precision", "binary", "--rescore", "50"], "N >= 100"),
    ],
)
def test_cli_rejects_bad_precision_flags(tmp_path, argv, message):
    data = tiny_beir(tmp_path / "beir")
    with pytest.raises(SystemExit, match=message):
        evaluate.main(["--data", str(data), "--split", "dev", *argv])


def test_the_report_names_the_cheapest_settings_from_hand_made_points():
    from training.report import frontier_findings

    def point(ndcg, nbytes):
        return {"ndcg@10": ndcg, "bytes_per_vector": nbytes, "ms_per_query": 0.1}

    after = {
        "64": {"float32": point(0.70, 256), "int8": point(0.695, 64), "binary": point(0.60, 8)},
        "32": {"float32": point(0.62, 128), "int8": point(0.69, 32), "binary": point(0.50, 4)},
    }
    before = {"64": {"float32": point(0.55, 256)}, "32": {"float32": point(0.45, 128)}}
    found = frontier_findings(before, after, {"64": {"ndcg@10": 0.70}, "32": {"ndcg@10": 0.62}})
    assert "**32 dims int8**, 32 bytes a vector (8x smaller), NDCG@10 0.6900" in found[0]  # 0.69 >= 0.70 - 0.01
    assert "**64 dims binary**, 8 bytes a vector (32x smaller)" in found[1]  # 0.60 >= 0.55, 8 bytes beats 32


def test_cli_precision_with_a_baseline_keeps_the_comparison(tmp_path, tiny_bert):
    data = tiny_beir(tmp_path / "beir")
    report = evaluate.main(
        [
            "--model",
            str(tiny_bert),
            "--baseline",
            str(tiny_bert),
            "--data",
            str(data),
            "--split",
            "dev",
            "--precision",
            "float32,binary",
            "--resamples",
            "200",
        ]
    )
    assert set(report["32"]) == {"float32", "binary"}
    assert report["comparison"]["32"]["ndcg@10"]["diff"] == 0.0  # the same model on both sides
