"""bench/heldout_split.py: the questions of a qrels split that a pairs file did not train on, as a
BEIR directory that loads; checked against the questions picked by hand."""

from __future__ import annotations

import json

import pytest

from bench import heldout_split
from data import load_ir
from helpers import tiny_beir


def test_the_heldout_split_keeps_the_questions_the_pairs_lack(tmp_path, capsys):
    data = tiny_beir(tmp_path / "beir")  # q_i asks about c_{3i}, its text the first 25 characters of c_{3i}
    (data / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\tc{3 * i}\t1\nq{i}\tc{3 * i + 1}\t1\n" for i in range(8))
    )
    texts = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (data / "queries.jsonl").open()}
    # trained on q1, q4 and q6 (q4's text with its whitespace doubled: still q4)
    anchors = [texts["q1"], texts["q4"].replace(" ", "  "), texts["q6"], texts["q6"]]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": a, "positive": "some passage"}) + "\n" for a in anchors))
    out = tmp_path / "held"
    assert heldout_split.main(["--data", str(data), "--pairs", str(pairs), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out) == {"questions": 5, "of": 8, "trained_questions": 3}
    held = load_ir(out, "heldout")
    want = ["q0", "q2", "q3", "q5", "q7"]
    assert sorted(held.query_ids) == want
    assert held.qrels == {q: {f"c{3 * int(q[1:])}": 1, f"c{3 * int(q[1:]) + 1}": 1} for q in want}
    assert load_ir(out, "dev").query_ids == load_ir(data, "dev").query_ids  # the other splits are linked
    assert (out / "qrels" / "heldout.tsv").read_text().startswith("query-id\tcorpus-id\tscore\n")


def test_bad_input_stops_with_one_line_before_writing(tmp_path):
    data = tiny_beir(tmp_path / "beir")
    (data / "qrels" / "train.tsv").write_text("q0\tc0\t1\n")
    texts = [json.loads(line)["text"] for line in (data / "queries.jsonl").open()]
    every = tmp_path / "every.jsonl"
    every.write_text(json.dumps({"anchor": texts[0], "positive": "p"}) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"anchor": "a"}\n')
    cases = [
        (["--data", str(tmp_path), "--pairs", str(every)], "not a BEIR directory"),
        (["--data", str(data), "--pairs", str(bad)], "bad.jsonl:1"),
        (["--data", str(data), "--pairs", str(every)], "nothing is held out"),
        (["--data", str(data), "--pairs", str(every), "--split", "nope"], "nope"),
    ]
    for n, (argv, message) in enumerate(cases):
        out = tmp_path / f"out{n}"
        with pytest.raises(SystemExit) as exit_info:
            heldout_split.main([*argv, "--out", str(out)])
        assert str(exit_info.value).startswith("error: ") and message in str(exit_info.value)
        assert "\n" not in str(exit_info.value) and not any(out.rglob("*.tsv"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(SystemExit, match="not empty"):
        heldout_split.main(["--data", str(data), "--pairs", str(every), "--out", str(tmp_path / "full")])
