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
