"""bench/pair_results.py pairs two quality-bench results by question id, not by position."""

from __future__ import annotations

import json

import pytest

from bench import pair_results
from data import load_ir, load_pairs
from training.seen_report import times_asked


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


def _seed(path, seed, ids, alone, fused, **settings):
    body = {
        "seed": seed,
        "query_ids": ids,
        "train_config": {"train.seed": seed, "train.global_batch": 128, **settings},
        "per_query": {"384": {"ndcg@10": alone}},
        "fused": {"384": {"ndcg@10": fused}},
    }
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def test_seeds_are_averaged_per_question_before_pairing(tmp_path, capsys):
    # two seeds of each setting, each file's questions in its own order: each question's mean over its seeds
    a1 = _seed(tmp_path / "a1.json", 42, ["q1", "q2", "q3"], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0])
    a2 = _seed(tmp_path / "a2.json", 43, ["q2", "q3", "q1"], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0])
    b1 = _seed(tmp_path / "b1.json", 42, ["q3", "q1", "q2"], [0.0, 1.0, 1.0], [0.0, 1.0, 0.5])
    b2 = _seed(tmp_path / "b2.json", 43, ["q1", "q2", "q3"], [1.0, 0.5, 1.0], [0.0, 0.5, 0.0])
    assert pair_results.main([f"{a1},{a2}", f"{b1},{b2}", "--resamples", "200"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 384")]
    # alone: first q1 (1+0)/2, q2 (0+0.5)/2, q3 (0+1)/2 = 0.5, 0.25, 0.5; second q1 1, q2 0.75, q3 0.5:
    # +0.5, +0.5, 0 (misaligned by position, q1 of a2 would read 0.5 and q3 0.0)
    assert rows[0].startswith("| 384 | alone | 0.4167 | 0.7500 | +0.3333 [")
    # fused: first q1 1, q2 0, q3 0; second q1 0.5, q2 0.5, q3 0
    assert rows[1].startswith("| 384 | fused | 0.3333 | 0.3333 | +0.0000 [")
    # a mean is blind to the order, the pairing is not: each question's own mean, by id
    for files, expected in (
        ([a1, a2], {"q1": 0.5, "q2": 0.25, "q3": 0.5}),
        ([b1, b2], {"q1": 1.0, "q2": 0.75, "q3": 0.5}),
    ):
        mean = pair_results.load_seeds(files)
        assert dict(zip(mean["query_ids"], mean["per_query"]["384"]["ndcg@10"])) == expected


def test_seeds_of_other_settings_or_other_questions_are_refused(tmp_path):
    a1 = _seed(tmp_path / "a1.json", 42, ["q1", "q2"], [1.0, 0.0], [1.0, 0.0])
    a2 = _seed(tmp_path / "a2.json", 43, ["q1", "q2"], [0.5, 0.0], [0.0, 1.0])
    b1 = _seed(tmp_path / "b1.json", 42, ["q1", "q2"], [1.0, 1.0], [1.0, 0.5])
    other = _seed(tmp_path / "c.json", 43, ["q1", "q9"], [1.0, 0.0], [1.0, 0.0])
    with pytest.raises(SystemExit, match=r"a1\.json and .*c\.json score different questions"):
        pair_results.main([f"{a1},{other}", str(b1)])
    with pytest.raises(SystemExit, match=r"a1\.json: seed 42 again"):
        pair_results.main([f"{a1},{a1}", str(b1)])
    batch64 = _seed(tmp_path / "d.json", 43, ["q1", "q2"], [1.0, 0.0], [1.0, 0.0], **{"train.global_batch": 64})
    with pytest.raises(
        SystemExit, match=r"d\.json: trained with other settings than .*a1\.json \(train\.global_batch\)"
    ):
        pair_results.main([f"{a1},{batch64}", str(b1)])
    # one training file named from two directories is one setting; another file, or the same name
    # under another folder, is not
    here = _seed(tmp_path / "f.json", 42, ["q1", "q2"], [1.0, 0.0], [1.0, 0.0], **{"data.train": "runs/curve/q.jsonl"})
    there = _seed(
        tmp_path / "g.json", 43, ["q1", "q2"], [0.5, 0.0], [0.0, 1.0], **{"data.train": "/w/runs/curve/q.jsonl"}
    )
    assert pair_results.main([f"{here},{there}", str(b1), "--resamples", "200"]) == 0
    for elsewhere in ("/w/runs/other/q.jsonl", "/w/xruns/curve/q.jsonl", "/w/runs/curve/q2.jsonl"):
        moved = _seed(tmp_path / "h.json", 43, ["q1", "q2"], [0.5, 0.0], [0.0, 1.0], **{"data.train": elsewhere})
        with pytest.raises(SystemExit, match=r"h\.json: trained with other settings than .*f\.json \(data\.train\)"):
            pair_results.main([f"{here},{moved}", str(b1)])
    no_fused = json.loads(a2.read_text("utf-8"))
    no_fused["fused"] = {}
    (tmp_path / "e.json").write_text(json.dumps(no_fused), "utf-8")
    with pytest.raises(SystemExit, match=r"e\.json: no ndcg@10 at dim 384 \(fused\)"):
        pair_results.main([f"{a1},{tmp_path / 'e.json'}", str(b1)])
    bm25 = tmp_path / "bm25.json"
    bm25.write_text(json.dumps({"query_ids": ["q1", "q2"], "per_query": {"bm25": {"ndcg@10": [0.5, 1.0]}}}), "utf-8")
    with pytest.raises(SystemExit, match=r"bm25\.json: BM25's row is one file"):
        pair_results.main([f"{bm25},{a1}", str(b1)])
    with pytest.raises(SystemExit):  # argparse: no result file
        pair_results.main([",", str(b1)])


def test_a_metric_missing_at_any_dim_is_named(tmp_path):
    first = _result(tmp_path / "a.json", ["q1", "q2"], [1.0, 0.0], [1.0, 0.0])
    body = json.loads(first.read_text("utf-8"))
    body["per_query"]["64"] = {"recall@10": [1.0, 1.0]}
    body["fused"]["64"] = {"recall@10": [1.0, 1.0]}
    (tmp_path / "b.json").write_text(json.dumps(body), "utf-8")
    with pytest.raises(SystemExit, match=r"b\.json: no metric 'ndcg@10' at dim 64 \(per_query\)"):
        pair_results.main([str(first), str(tmp_path / "b.json")])


def _beir(tmp_path, passages: dict[str, str], qrels: list[tuple[str, str]]):
    """A BEIR folder: the passages, a question for each id in qrels, and the dev qrels (grade 1)."""
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in passages.items()))
    questions = sorted({q for q, _ in qrels})
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": f"question {q}"}) + "\n" for q in questions)
    )
    (beir / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels)
    )
    return beir


def test_seen_splits_the_questions_by_the_training_positives(tmp_path, capsys):
    """--seen: q1 and q3 ask about a passage the pairs trained on (q3 through one of two), q2 and q4
    do not; each group is paired on its own questions, beside all of them."""
    passages = {"d1": "alpha  rule", "d2": "beta rule", "d3": "gamma rule", "d4": "delta rule"}
    beir = _beir(tmp_path, passages, [("q1", "d1"), ("q2", "d2"), ("q3", "d2"), ("q3", "d3"), ("q4", "d4")])
    pairs = tmp_path / "pairs.jsonl"  # "alpha rule" matches d1 once whitespace is collapsed
    pairs.write_text(
        "".join(json.dumps({"anchor": a, "positive": p}) + "\n" for a, p in [("x", "alpha rule"), ("y", "gamma rule")])
    )
    first = _result(tmp_path / "a.json", ["q4", "q3", "q2", "q1"], [0.5, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5])
    second = _result(tmp_path / "b.json", ["q1", "q2", "q3", "q4"], [1.0, 0.5, 1.0, 0.5], [0.5, 0.5, 0.5, 0.5])
    argv = [str(first), str(second), "--resamples", "200", "--seen", str(pairs), "--data", str(beir)]
    assert pair_results.main(argv) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 384 | alone")]
    assert rows[0].startswith("| 384 | alone | all (4) | 0.3750 | 0.7500 | +0.3750 [")
    assert rows[1].startswith("| 384 | alone | seen (2) | 0.0000 | 1.0000 | +1.0000 [+1.0000, +1.0000] |")
    assert rows[2].startswith("| 384 | alone | unseen (2) | 0.7500 | 0.5000 | -0.2500 [")
    with pytest.raises(SystemExit):  # argparse's usage error: --seen without --data
        pair_results.main([str(first), str(second), "--seen", str(pairs)])
    assert "--data goes with --seen or --by-count, and each of them needs it" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="1 of the 2 questions are not in"):
        other = _result(tmp_path / "c.json", ["q1", "q9"], [1.0, 0.0], [1.0, 0.0])
        pair_results.main([str(other), str(other), "--seen", str(pairs), "--data", str(beir)])

    # nested files: "alpha rule" alone (q1), then those pairs and "delta rule" (q4 first seen by it);
    # q2 and q3's "beta rule" none has, q3's "gamma rule" neither: unseen by all
    one, more = tmp_path / "one.jsonl", tmp_path / "more.jsonl"
    one.write_text(pairs.read_text().splitlines()[0] + "\n")
    more.write_text(one.read_text() + json.dumps({"anchor": "z", "positive": "delta rule"}) + "\n")
    argv = [str(first), str(second), "--resamples", "200", "--seen", f"{one},{more}"]
    assert pair_results.main([*argv, "--data", str(beir)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 384 | alone")]
    assert rows[1].startswith("| 384 | alone | first seen by one.jsonl (1) | 0.0000 | 1.0000 |")
    assert rows[2].startswith("| 384 | alone | first seen by more.jsonl (1) | 0.5000 | 0.5000 |")
    assert rows[3].startswith("| 384 | alone | unseen by all (2) | 0.5000 | 0.7500 |")


def test_by_count_splits_the_questions_by_how_many_training_questions_ask_about_their_passage(tmp_path, capsys):
    """--by-count: alpha is asked by x (twice, once with other spacing: one question), y and z (3); beta
    by w and v (2); gamma by x (1); delta by none. q3's passages are beta and gamma: the most, 2."""
    passages = {"d1": "alpha rule", "d2": "beta rule", "d3": "gamma rule", "d4": "delta rule"}
    qrels = [("q1", "d1"), ("q2", "d2"), ("q3", "d2"), ("q3", "d3"), ("q4", "d4"), ("q5", "d3")]
    beir = _beir(tmp_path, passages, qrels)
    rows = [
        ("x", "alpha rule"),
        ("x", "alpha  rule"),
        ("y", "alpha rule"),
        ("z", " alpha rule"),
        ("x", "gamma rule"),
        (" x", "gamma  rule"),  # the same question and passage once whitespace is collapsed: gamma stays at 1
        ("w", "beta rule"),
        ("v", "beta rule"),
    ]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"anchor": a, "positive": p}) + "\n" for a, p in rows))
    ids = ["q1", "q2", "q3", "q4", "q5"]
    first = _result(tmp_path / "a.json", ids[::-1], [0.0, 1.0, 0.5, 0.0, 0.0], [0.5] * 5)  # q5 .. q1
    second = _result(tmp_path / "b.json", ids, [1.0, 0.5, 1.0, 1.0, 0.0], [0.5] * 5)
    argv = [str(first), str(second), "--resamples", "200", "--by-count", str(pairs), "--data", str(beir)]
    assert pair_results.main(argv) == 0
    rows_out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 384 | alone")]
    # first, aligned by id: q1 0, q2 0, q3 0.5, q4 1, q5 0; second: q1 1, q2 0.5, q3 1, q4 1, q5 0
    assert [row.split(" | ")[2:5] for row in rows_out] == [
        ["all (5)", "0.3000", "0.7000"],
        ["asked 0 (1)", "1.0000", "1.0000"],  # q4
        ["asked 1 (1)", "0.0000", "0.0000"],  # q5
        ["asked 2 (2)", "0.2500", "0.7500"],  # q2, q3
        ["asked 3+ (1)", "0.0000", "1.0000"],  # q1
    ]
    assert pair_results.main([*argv, "--bins", "2"]) == 0
    rows_out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 384 | alone")]
    assert [row.split(" | ")[2] for row in rows_out] == ["all (5)", "asked 0-1 (2)", "asked 2+ (3)"]
    assert pair_results.main([*argv, "--bins", "1,3"]) == 0
    rows_out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 384 | alone")]
    assert [row.split(" | ")[2] for row in rows_out] == ["all (5)", "asked 0 (1)", "asked 1-2 (3)", "asked 3+ (1)"]
    for bad, why in (("0,2", "increasing whole numbers from 1"), ("2,2", "increasing"), ("x", "not whole numbers")):
        with pytest.raises(SystemExit):  # argparse's usage error
            pair_results.main([*argv, "--bins", bad])
        assert why in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pair_results.main([*argv, "--seen", str(pairs)])
    assert "give one" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pair_results.main([str(first), str(second), "--bins", "2"])
    assert "--bins goes with --by-count" in capsys.readouterr().err
    ir = load_ir(beir, "dev")
    training = load_pairs(pairs)
    asked = times_asked(ir, training.anchors, training.positives, ["q5", "q4", "q3", "q2", "q1"])
    assert asked.tolist() == [1, 0, 2, 2, 3]
    with pytest.raises(SystemExit, match="--by-count: 1 of the 2 questions are not in"):
        other = _result(tmp_path / "c.json", ["q1", "q9"], [1.0, 0.0], [1.0, 0.0])
        pair_results.main([str(other), str(other), "--by-count", str(pairs), "--data", str(beir)])
