"""bench/pair_results.py pairs two quality-bench results by question id, not by position."""

from __future__ import annotations

import json

import pytest

from bench import pair_results


def _result(path, ids, alone, fused):
    body = {
        "query_ids": ids,
        "per_query": {"384": {"ndcg@10": alone}},
        "fused": {"384": {"ndcg@10": fused}},
    }
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_questions_are_paired_by_id_whatever_their_order(tmp_path, capsys):
    first = _result(tmp_path / "a.json", ["q1", "q2", "q3", "q4"], [1.0, 0.0, 0.5, 0.5], [1.0, 0.5, 0.5, 0.5])
    # the same questions in another order: q1 +0, q2 +1, q3 -0.5, q4 +0.5 alone; every fused one +0
    second = _result(tmp_path / "b.json", ["q3", "q1", "q4", "q2"], [0.0, 1.0, 1.0, 1.0], [0.5, 1.0, 0.5, 0.5])
    assert pair_results.main([str(first), str(second), "--resamples", "200"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 384")]
    assert rows[0].startswith("| 384 | alone | 0.5000 | 0.7500 | +0.2500 [")
    assert rows[1].startswith("| 384 | fused | 0.6250 | 0.6250 | +0.0000 [+0.0000, +0.0000] |")


def test_other_questions_or_another_file_is_one_clear_error(tmp_path):
    first = _result(tmp_path / "a.json", ["q1", "q2"], [1.0, 0.0], [1.0, 0.0])
    other = _result(tmp_path / "b.json", ["q1", "q9"], [1.0, 0.0], [1.0, 0.0])
    with pytest.raises(SystemExit, match="score different questions"):
        pair_results.main([str(first), str(other)])
    (tmp_path / "c.json").write_text('{"row": "bm25"}', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"c\.json: not a quality-bench model result"):
        pair_results.main([str(first), str(tmp_path / "c.json")])


def test_the_bm25_row_is_paired_with_every_dim_alone_and_fused(tmp_path, capsys):
    bm25 = tmp_path / "bm25.json"
    bm25.write_text(
        json.dumps({"row": "bm25", "query_ids": ["q1", "q2"], "per_query": {"bm25": {"ndcg@10": [0.5, 1.0]}}}),
        encoding="utf-8",
    )
    model = tmp_path / "m.json"
    model.write_text(
        json.dumps(
            {
                "query_ids": ["q2", "q1"],
                "per_query": {"384": {"ndcg@10": [1.0, 1.0]}, "64": {"ndcg@10": [0.0, 0.5]}},
                "fused": {"384": {"ndcg@10": [1.0, 0.5]}, "64": {"ndcg@10": [0.5, 0.5]}},
            }
        ),
        encoding="utf-8",
    )
    assert pair_results.main([str(bm25), str(model), "--resamples", "200"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| 384", "| 64"))]
    # BM25: q1 0.5, q2 1.0 (mean 0.75) against each dim and kind, aligned by id
    assert [row.split(" | ")[:4] for row in rows] == [
        ["| 384", "alone", "0.7500", "1.0000"],
        ["| 384", "fused", "0.7500", "0.7500"],
        ["| 64", "alone", "0.7500", "0.2500"],
        ["| 64", "fused", "0.7500", "0.5000"],
    ]
    assert rows[1].split(" | ")[4].startswith("+0.0000 [+0.0000, +0.0000]")
    with pytest.raises(SystemExit, match=r"bm25\.json: not a quality-bench model result"):
        pair_results.main([str(model), str(bm25)])


def test_seeds_are_averaged_per_question_before_pairing(tmp_path, capsys):
    # two seeds of each setting, questions in different orders: each question's mean over its seeds is paired
    a1 = _result(tmp_path / "a1.json", ["q1", "q2"], [1.0, 0.0], [1.0, 0.0])
    a2 = _result(tmp_path / "a2.json", ["q2", "q1"], [0.5, 0.0], [0.0, 1.0])
    b1 = _result(tmp_path / "b1.json", ["q1", "q2"], [1.0, 1.0], [1.0, 0.5])
    b2 = _result(tmp_path / "b2.json", ["q1", "q2"], [1.0, 0.5], [1.0, 0.5])
    assert pair_results.main([f"{a1},{a2}", f"{b1},{b2}", "--resamples", "200"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 384")]
    # alone: first q1 (1+0)/2 = 0.5, q2 (0+0.5)/2 = 0.25; second q1 1, q2 0.75: +0.5 on each question
    assert rows[0].startswith("| 384 | alone | 0.3750 | 0.8750 | +0.5000 [+0.5000, +0.5000] |")
    # fused: first q1 1, q2 0; second q1 1, q2 0.5
    assert rows[1].startswith("| 384 | fused | 0.5000 | 0.7500 | +0.2500 [")
    other = _result(tmp_path / "c.json", ["q1", "q9"], [1.0, 0.0], [1.0, 0.0])
    with pytest.raises(SystemExit, match="score different questions"):
        pair_results.main([f"{a1},{other}", str(b1)])
    bm25 = tmp_path / "bm25.json"
    bm25.write_text(json.dumps({"query_ids": ["q1", "q2"], "per_query": {"bm25": {"ndcg@10": [0.5, 1.0]}}}), "utf-8")
    with pytest.raises(SystemExit, match=r"bm25\.json: BM25's row is one file"):
        pair_results.main([f"{bm25},{a1}", str(b1)])
