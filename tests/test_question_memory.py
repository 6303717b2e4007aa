"""bench/question_memory.py: memory off, the quality bench's own alone and fused figures; memory on,
what it keeps for bench.pair_results (the component itself: tests/test_memory.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import pair_results, question_memory
from bench.quality import Scorer, encode_model, model_bench_parser
from retrieval.evaluation import evaluate_embeddings
from tests.helpers import make_tiny_bert, write_jsonl
from tests.test_fusion_variants import noisy_beir


def test_memory_off_alone_is_the_evaluation_and_the_kept_jsons_are_what_it_prints(tmp_path, capsys):
    """The fused figures are the quality bench's own cross-fitting (bench.quality.Scorer), tested
    there; the component is tested against a float64 full matrix in tests/test_memory.py."""
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
    for row, dim in zip(rows, (32, 16)):  # memory off: the evaluation's own figures
        assert float(row[2]) == pytest.approx(alone[dim].metrics["ndcg@10"], abs=5e-5)
    kept = json.loads((tmp_path / "kept" / "0.json").read_text())  # memory on, as bench.pair_results reads it
    for row, dim in zip(rows, ("32", "16")):
        assert float(row[3]) == pytest.approx(np.mean(kept["per_query"][dim]["ndcg@10"]), abs=5e-5)
        assert float(row[5]) == pytest.approx(np.mean(kept["fused"][dim]["ndcg@10"]), abs=5e-5)
    assert pair_results.main([str(tmp_path / "kept" / "0.json")] * 2) == 0
    with pytest.raises(SystemExit, match="--pairs"):
        question_memory.main([*common, "--pairs", str(tmp_path / "missing.jsonl")])
