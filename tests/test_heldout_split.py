"""bench/heldout_split.py: the questions of a qrels split that a pairs file did not train on, as a
BEIR directory that loads; checked against the questions picked by hand, whatever the qrels file's
header (none, `query-id`, `qid`, a byte-order mark) and with a question whose id starts with "query"."""

from __future__ import annotations

import json

import pytest

from bench import heldout_split
from data import load_ir
from helpers import tiny_beir, write_jsonl

HEADERS = ["", "query-id\tcorpus-id\tscore\n", "qid\tdocid\tscore\n", "\ufeffquery-id\tcorpus-id\tscore\n"]


@pytest.mark.parametrize("header", HEADERS)
def test_the_heldout_split_keeps_the_questions_the_pairs_lack(tmp_path, capsys, header):
    data = tiny_beir(tmp_path / "beir")  # q_i asks about c_{3i}, its text the first 25 characters of c_{3i}
    texts = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (data / "queries.jsonl").open()}
    texts["query9"] = "a question whose id looks like a header"
    texts["q9"] = "a question judged with no relevant passage"
    write_jsonl(data / "queries.jsonl", [{"_id": q, "text": t} for q, t in texts.items()])
    judged = [("query9", "c5", 1)] + [(f"q{i}", f"c{3 * i + k}", 1) for i in range(8) for k in (0, 1)]
    judged += [("q9", "c2", 0)]  # no relevant passage: not a question of the split
    (data / "qrels" / "train.tsv").write_text(header + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in judged), "utf-8")
    # trained on query9, q1, q4 and q6 (q4's text with its whitespace doubled: still q4), and one
    # question the split does not hold
    anchors = [texts["query9"], texts["q1"], texts["q4"].replace(" ", "  "), texts["q6"], texts["q6"], "elsewhere?"]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": a, "positive": "some passage"}) + "\n" for a in anchors))
    out = tmp_path / "held"
    assert heldout_split.main(["--data", str(data), "--pairs", str(pairs), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"questions": 5, "of": 9, "trained_questions_matched": 4, "trained_questions_not_in_split": 1}
    held = load_ir(out, "heldout")
    want = ["q0", "q2", "q3", "q5", "q7"]
    assert held.query_ids == want
    assert held.qrels == {q: {f"c{3 * int(q[1:])}": 1, f"c{3 * int(q[1:]) + 1}": 1} for q in want}
    assert load_ir(out, "dev").query_ids == load_ir(data, "dev").query_ids  # the other splits are linked
    assert sorted(p.name for p in out.parent.iterdir()) == ["beir", "held", "pairs.jsonl"]  # nothing left aside


def test_bad_input_stops_with_one_line_before_writing(tmp_path):
    data = tiny_beir(tmp_path / "beir")
    (data / "qrels" / "train.tsv").write_text("q0\tc0\t1\n")
    texts = [json.loads(line)["text"] for line in (data / "queries.jsonl").open()]
    every, elsewhere, bad = (tmp_path / f"{name}.jsonl" for name in ("every", "elsewhere", "bad"))
    every.write_text(json.dumps({"anchor": texts[0], "positive": "p"}) + "\n")
    elsewhere.write_text(json.dumps({"anchor": "query: " + texts[0], "positive": "p"}) + "\n")
    bad.write_text('{"anchor": "a"}\n')
    cases = [
        (["--data", str(tmp_path), "--pairs", str(every)], "not a BEIR directory"),
        (["--data", str(data), "--pairs", str(bad)], "bad.jsonl:1"),
        (["--data", str(data), "--pairs", str(every)], "every question of"),
        (["--data", str(data), "--pairs", str(elsewhere)], "none of its 1 questions is a question of"),
        (["--data", str(data), "--pairs", str(every), "--split", "nope"], "qrels/nope.tsv: no such file"),
    ]
    for n, (argv, message) in enumerate(cases):
        out = tmp_path / f"out{n}"
        with pytest.raises(SystemExit) as exit_info:
            heldout_split.main([*argv, "--out", str(out)])
        assert str(exit_info.value).startswith("error: ") and message in str(exit_info.value)
        assert "\n" not in str(exit_info.value) and not any(out.rglob("*")) and not list(tmp_path.glob(".out*"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(SystemExit, match="not an empty directory"):
        heldout_split.main(["--data", str(data), "--pairs", str(every), "--out", str(tmp_path / "full")])
