"""bench/quality.py keeps its results apart from its models when asked, and resumes from them.

The bench's rows take hours; its per-row jsons are what a later session (on another machine, with
no runs/) resumes from, so they must land under --results and a present one must be skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import quality

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "quickstart"


def test_results_land_apart_from_the_models_and_a_present_row_is_skipped(tmp_path, capsys):
    pytest.importorskip("bm25s")
    out, results = tmp_path / "runs", tmp_path / "kept"
    argv = ["--rows", "bm25", "--data", str(SAMPLE), "--config", str(REPO / "configs/quickstart.yaml")]
    argv += ["--out", str(out), "--results", str(results), "--resamples", "100"]
    assert quality.main(argv) == 0
    kept = results / "bm25" / "result.json"
    assert kept.is_file() and (results / "report.md").is_file()
    assert not (out / "bm25" / "result.json").exists()
    first = json.loads(kept.read_text("utf-8"))
    ndcg = np.mean(first["per_query"]["bm25"]["ndcg@10"])

    kept.write_text(json.dumps({**first, "process_seconds": -1.0}) + "\n", encoding="utf-8")  # a marker
    capsys.readouterr()
    assert quality.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"bm25: done ({kept})" in printed
    assert json.loads(kept.read_text("utf-8"))["process_seconds"] == -1.0  # skipped, not rerun
    assert f"| bm25 | 1 | {ndcg:.4f} |" in printed  # the report is read from --results

    assert quality.main(["--report-only", "--rows", "bm25", "--out", str(tmp_path / "none")]) == 0
    assert "no results under" in capsys.readouterr().out


def _line(label: str, row: quality.Row, per_seed: list[list[float]]) -> quality.Line:
    values = [{384: {"ndcg@10": np.asarray(v)}, 64: {"ndcg@10": np.asarray(v)}} for v in per_seed]
    return quality.Line(label, row, [{}] * len(per_seed), values)


def test_what_a_model_adds_to_bm25_is_counted_per_question_on_the_seed_mean():
    bm25_row, ours_row = (next(r for r in quality.ROWS if r.name == name) for name in ("bm25", "ours"))
    # Five questions. BM25 misses questions 0, 1 and 4. Alone, seed 1 finds question 0, and seed 2
    # finds question 4; neither finds question 1. The seed mean is [0.25, 0, 0.5, 1, 0.25]: above
    # BM25 on questions 0, 3 and 4, below it on question 2, tied on question 1.
    lines = {
        "bm25": _line("bm25", bm25_row, [[0.0, 0.0, 1.0, 0.5, 0.0]]),
        "ours": _line("ours", ours_row, [[0.5, 0.0, 0.5, 1.0, 0.0], [0.0, 0.0, 0.5, 1.0, 0.5]]),
        "ours + BM25": _line("ours + BM25", ours_row, [[0.5, 0.0, 1.0, 1.0, 0.0], [0.5, 0.0, 1.0, 1.0, 1.0]]),
    }
    table = quality.complement_table(lines, [384, 64])
    # best of the two per question: [0.25, 0, 1, 1, 0.25] -> 2.5 / 5 = 0.5; fused: [0.5, 0, 1, 1, 0.5] -> 0.6
    assert table[2:] == [
        "| ours | 384 | 2 of 3 | 3 | 1 | 0.5000 | 0.6000 | +0.1000 |",
        "| ours | 64 | 2 of 3 | 3 | 1 | 0.5000 | 0.6000 | +0.1000 |",
    ]
    assert quality.complement_table({k: v for k, v in lines.items() if k != "bm25"}, [384, 64]) == []
