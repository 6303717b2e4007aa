"""bench/ensemble.py: one model joined with itself is that model, scored as the quality bench
scores a row; two models' joined vectors rank by the mean of their cosines (a float64 full matrix
scored by pytrec_eval)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytrec_eval

from bench import ensemble
from bench.quality import CROSS, Scorer, model_bench_parser
from model import Encoder, ModelConfig
from tests.helpers import make_tiny_bert
from tests.test_fusion_variants import noisy_beir


@pytest.fixture(scope="module")
def bench_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    first, second = make_tiny_bert(root / "a"), make_tiny_bert(root / "b", hidden_act="relu")
    return first, second, noisy_beir(root / "beir")


def test_a_model_joined_with_itself_is_the_model(bench_set, tmp_path):
    first, _, beir = bench_set
    texts = [json.loads(line)["text"] for line in (beir / "corpus.jsonl").read_text().splitlines()]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": f"asked {i}", "positive": texts[i]}) + "\n" for i in range(8)))
    common = ["--data", str(beir), "--dims", "32,16", "--resamples", "100"]
    out = ["--out", str(tmp_path / "e"), "--memory", str(pairs)]
    assert ensemble.main(["--models", f"{first},{first}", *common, *out]) == 0
    joined = json.loads((tmp_path / "e" / "result.json").read_text())
    args = model_bench_parser("").parse_args(["--models", str(first), *common])
    args.weight_split, args.memory = CROSS, pairs
    alone = Scorer(args).model(first)
    for dim in ("32", "16"):
        for key in ("per_query", "fused", "remembered"):
            np.testing.assert_allclose(joined[key][dim]["ndcg@10"], alone[key][dim]["ndcg@10"], atol=1e-6)
        assert joined["weights"][dim] == alone["weights"][dim]


def test_two_models_rank_by_the_mean_of_their_cosines(bench_set, tmp_path):
    first, second, beir = bench_set
    argv = ["--models", f"{first},{second}", "--data", str(beir), "--dims", "32", "--resamples", "100"]
    assert ensemble.main([*argv, "--out", str(tmp_path / "e")]) == 0
    got = json.loads((tmp_path / "e" / "result.json").read_text())["per_query"]["32"]["ndcg@10"]
    corpus = [json.loads(line)["text"] for line in (beir / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line)["text"] for line in (beir / "queries.jsonl").read_text().splitlines()]
    cosines = []
    for model in (first, second):
        encoder = Encoder.from_config(ModelConfig(str(model)))
        q, d = (encoder.encode(t).numpy().astype(np.float64)[:, :32] for t in (queries, corpus))
        q, d = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (q, d))
        cosines.append(q @ d.T)
    mean = (cosines[0] + cosines[1]) / 2
    assert not np.allclose(cosines[0], cosines[1])  # two different models
    run = {f"q{i}": {f"c{j}": float(s) for j, s in enumerate(row)} for i, row in enumerate(mean)}
    qrels = {f"q{i}": {f"c{i}": 1} for i in range(len(queries))}
    want = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    np.testing.assert_allclose(got, [want[f"q{i}"]["ndcg_cut_10"] for i in range(len(queries))], atol=1e-6)
