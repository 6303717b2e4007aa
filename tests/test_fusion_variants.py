"""bench/fusion_variants.py end to end on a tiny set: a row per model and variant, each variant's
fused scores the quality bench's cross-fitted figure under that normalisation, the first variant
paired with itself at zero."""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from bench import fusion_variants
from bench.quality import Scorer, encode_model, model_bench_parser
from retrieval.hybrid import lexical_index
from retrieval.settings import LexicalConfig
from tests.helpers import make_tiny_bert, tiny_beir


def test_every_variant_is_scored_as_the_bench_scores_a_row(tmp_path, capsys):
    model = make_tiny_bert(tmp_path / "m")
    beir = tiny_beir(tmp_path / "beir", n_docs=30, n_queries=8)
    common = ["--models", str(model), "--data", str(beir), "--dims", "32,16", "--resamples", "200"]
    fusion_variants.main([*common, "--variants", "minmax,max,zscore:k1=0.6:b=0.9"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {model} |")]
    assert [row.split(" | ")[1] for row in rows] == ["minmax", "max", "zscore:k1=0.6:b=0.9"]
    assert rows[0].count("+0.0000 [+0.0000, +0.0000]") == 2  # the first variant against itself

    args = model_bench_parser("").parse_args(common)
    args.weight_split = "cross"
    scorer = Scorer(args)
    queries, corpus, _ = encode_model(model, scorer)
    for row, config in zip(rows, (LexicalConfig(), dataclasses.replace(LexicalConfig(), fusion_norm="max"))):
        scorer.index = lexical_index(scorer.data, config)
        fused, _, _ = scorer.cross_fitted(queries, corpus)
        shown = [float(x) for x in re.findall(r"\| (\d\.\d{4}) ", row)]  # BM25 alone, fused 32, fused 16
        assert shown[1:] == [round(float(np.mean(fused[d]["ndcg@10"])), 4) for d in (32, 16)]
