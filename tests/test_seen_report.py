"""training.seen_report: the eval questions split by whether a relevant passage was a training
positive, checked against direct computations; and a tiny run that reports the split."""

from __future__ import annotations

import json

import numpy as np
import pytest

import train
from data import IRDataset, index_texts, load_pairs
from helpers import random_texts
from retrieval.metrics import DimResult
from retrieval.stats import paired_bootstrap
from training.seen_report import (
    count_groups,
    seen_in_order,
    seen_markdown,
    seen_mask,
    seen_summary,
    seen_verdict,
    table_positives,
    table_rows,
    times_asked,
    trained_passages,
)


def ir(qrels: dict[str, dict[str, int]], texts: dict[str, str]) -> IRDataset:
    ids = list(texts)
    return IRDataset(ids, [texts[i] for i in ids], list(qrels), [f"question {q}" for q in qrels], qrels)


def test_a_question_is_seen_when_any_relevant_passage_is_a_training_positive():
    texts = {"a": "Rule 3.2  applies\nhere", "b": "a passage never trained on", "c": "another one", "d": "x y"}
    trained = {"Rule 3.2 applies here", "x y z"}  # whitespace collapsed; "x y" is not "x y z"
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "a": 2}, "q3": {"b": 1, "c": 1}, "q4": {"d": 1}}
    assert seen_mask(ir(qrels, texts), trained).tolist() == [True, True, False, False]
    assert seen_in_order(ir(qrels, texts), trained, ["q4", "q2", "q1"]).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="1 of the 2 questions are not in"):
        seen_in_order(ir(qrels, texts), trained, ["q1", "q9"])


def test_trained_passages_are_the_positives_not_the_negatives(tmp_path):
    rows = [
        {"anchor": "q one", "positive": "p  one", "negative": "n one"},
        {"anchor": "q two", "positive": "p two", "negative": "p one"},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert trained_passages(table_positives(index_texts(load_pairs(path)))) == {"p one", "p two"}


def result(ndcg: list[float], bm25: list[float] | None = None, fused: list[float] | None = None) -> DimResult:
    def plain(values: list[float]) -> DimResult:
        v = np.array(values)
        per_query = {m: v for m in ("ndcg@10", "recall@10", "map@10")}
        return DimResult({m: float(v.mean()) for m in per_query}, per_query, [], np.zeros((len(v), 0)))

    r = plain(ndcg)
    if bm25 is not None:
        r.fused = {"bm25": plain(bm25), "convex": plain(fused)}
    return r


def test_each_group_is_paired_on_its_own_questions():
    seen = np.array([True, False, True, True, False])
    before = {8: result([0.1, 0.9, 0.2, 0.3, 0.8], [0.5, 0.7, 0.5, 0.4, 0.9], [0.4, 0.9, 0.5, 0.4, 0.9])}
    after = {8: result([0.6, 0.7, 0.7, 0.9, 0.8], [0.5, 0.7, 0.5, 0.4, 0.9], [0.7, 0.8, 0.8, 0.9, 0.8])}
    summary = seen_summary(seen, before, after, trained=7, resamples=2000)
    assert summary["questions"] == {"seen": 3, "unseen": 2} and summary["trained_passages"] == 7
    assert set(summary["changes"]) == {"seen", "unseen"}
    want = {  # group: name: (base, new) per-query NDCG@10 on that group's questions
        "seen": {
            "after_vs_before": ([0.1, 0.2, 0.3], [0.6, 0.7, 0.9]),
            "after_fused_vs_before_fused": ([0.4, 0.5, 0.4], [0.7, 0.8, 0.9]),
            "after_vs_bm25": ([0.5, 0.5, 0.4], [0.6, 0.7, 0.9]),
            "after_fused_vs_bm25": ([0.5, 0.5, 0.4], [0.7, 0.8, 0.9]),
        },
        "unseen": {
            "after_vs_before": ([0.9, 0.8], [0.7, 0.8]),
            "after_fused_vs_before_fused": ([0.9, 0.9], [0.8, 0.8]),
            "after_vs_bm25": ([0.7, 0.9], [0.7, 0.8]),
            "after_fused_vs_bm25": ([0.7, 0.9], [0.8, 0.8]),
        },
    }
    for group, by_name in want.items():
        assert set(summary["changes"][group]) == set(by_name)
        for name, (base, new) in by_name.items():
            c = summary["changes"][group][name]["8"]["ndcg@10"]
            assert c["base"] == pytest.approx(sum(base) / len(base)) and c["new"] == pytest.approx(sum(new) / len(new))
            assert c["diff"] == pytest.approx(sum(new) / len(new) - sum(base) / len(base))
            _, lo, hi = paired_bootstrap(np.array(base), np.array(new), 2000)
            assert (c["lo"], c["hi"]) == pytest.approx((lo, hi))
    card = " ".join(seen_verdict(summary))
    assert "3 of the 5 eval questions" in card and "+0.5333" in card and "+0.3667" in card and "-0.1000" in card


def test_the_asked_groups_are_named_by_their_counts_and_cover_every_question():
    asked = np.array([0, 1, 2, 3, 7, 0, 4, 2])
    groups = count_groups(asked)
    assert {g: m.nonzero()[0].tolist() for g, m in groups.items()} == {
        "asked 0": [0, 5],
        "asked 1": [1],
        "asked 2": [2, 7],
        "asked 3+": [3, 4, 6],
    }
    wide = count_groups(asked, [1, 4])
    assert {g: int(m.sum()) for g, m in wide.items()} == {"asked 0": 2, "asked 1-3": 4, "asked 4+": 2}
    for edges in ([], [0, 1], [2, 2], [3, 1], [1.5], [True, 2]):
        with pytest.raises(ValueError, match="increasing whole numbers from 1"):
            count_groups(asked, edges)


def test_times_asked_counts_distinct_training_questions_per_passage(tmp_path):
    """Rows with the same question and passage (whitespace aside) count once; a question's count is
    the most over its relevant passages; the training table gives back every row's texts."""
    rows = [("q a", "p  one"), ("q a", "p one"), ("q b", "p one"), ("q c", "p one"), ("q a", "p two"), ("q d", "p two")]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"anchor": a, "positive": p}) + "\n" for a, p in rows))
    anchors, positives = table_rows(index_texts(load_pairs(path)))
    assert sorted(zip(anchors, positives)) == sorted(rows)
    texts = {"d1": "p one", "d2": "p two", "d3": "p three"}
    data = ir({"x": {"d1": 1}, "y": {"d2": 1, "d3": 1}, "z": {"d3": 1}, "w": {"d2": 1, "d1": 0}}, texts)
    assert times_asked(data, anchors, positives, ["x", "y", "z", "w"]).tolist() == [3, 2, 0, 2]  # d1 graded 0


def test_each_asked_group_is_paired_on_its_own_questions():
    asked = np.array([3, 0, 1, 5, 0, 2])
    seen = asked > 0
    before = {8: result([0.1, 0.9, 0.2, 0.3, 0.8, 0.5], [0.5, 0.7, 0.5, 0.4, 0.9, 0.6], [0.4, 0.9, 0.5, 0.4, 0.9, 0.6])}
    after = {8: result([0.6, 0.7, 0.7, 0.9, 0.8, 0.4], [0.5, 0.7, 0.5, 0.4, 0.9, 0.6], [0.7, 0.8, 0.8, 0.9, 0.8, 0.7])}
    summary = seen_summary(seen, before, after, trained=4, resamples=2000, asked=asked)["asked"]
    assert summary["questions"] == {"asked 0": 2, "asked 1": 1, "asked 2": 1, "asked 3+": 2}
    want = {  # group: name: (base, new) per-query NDCG@10 on the group's questions
        "asked 3+": {
            "after_vs_before": ([0.1, 0.3], [0.6, 0.9]),
            "after_fused_vs_before_fused": ([0.4, 0.4], [0.7, 0.9]),
        },
        "asked 0": {
            "after_vs_before": ([0.9, 0.8], [0.7, 0.8]),
            "after_fused_vs_before_fused": ([0.9, 0.9], [0.8, 0.8]),
        },
        "asked 2": {"after_vs_before": ([0.5], [0.4]), "after_fused_vs_before_fused": ([0.6], [0.7])},
    }
    for group, by_name in want.items():
        assert set(summary["changes"][group]) == set(by_name)  # the two headline changes, against the base
        for name, (base, new) in by_name.items():
            c = summary["changes"][group][name]["8"]["ndcg@10"]
            assert c["diff"] == pytest.approx(np.mean(new) - np.mean(base))
            _, lo, hi = paired_bootstrap(np.array(base), np.array(new), 2000)
            assert (c["lo"], c["hi"]) == pytest.approx((lo, hi))
    shown = seen_summary(seen, before, after, 4, 2000, asked=asked)
    table = "\n".join(seen_markdown(shown))
    assert (
        "| dim | fine-tuned + BM25 against base + BM25: asked 0 (2) | asked 1 (1) | asked 2 (1) | asked 3+ (2) |"
        in table
    )
    fused_row = table.split("asked 3+ (2) |")[2].splitlines()[2]  # the second table (fused), its dim 8
    assert fused_row.startswith("| 8 | 0.9000 → 0.8000, -0.1000") and fused_row.endswith(
        "| 0.4000 → 0.8000, +0.4000 [+0.3000, +0.5000] |"
    )
    assert "Too few questions for their intervals to mean much: asked 0 (2), asked 1 (1)" in table
    card = " ".join(seen_verdict(shown))
    assert (
        "NDCG@10 fused with BM25 against the base model fused (at 8 dims) changed by -0.1000 [-0.1000, -0.1000] "
        "where none asked, the unseen (2 questions), +0.3000 [+0.3000, +0.3000] where 1 asked (1 question)," in card
    )
    assert "+0.4000 [+0.3000, +0.5000] where 3 or more asked (2 questions)." in card
    assert card.endswith(
        "Intervals: 95% paired bootstrap. Too few questions for their intervals to mean much: seen (4), unseen (2), "
        "asked 0 (2), asked 1 (1), asked 2 (1), asked 3+ (2). "
    )
    # no base model: both changes against BM25; a base scored alone (evaluate.py's --baseline): the
    # change alone against it, the fused one against BM25
    bm25, fused = [0.5, 0.7, 0.5, 0.4, 0.9, 0.6], [0.7, 0.8, 0.8, 0.9, 0.8, 0.7]
    plain_before = {8: result([0.1, 0.9, 0.2, 0.3, 0.8, 0.5])}
    for base, alone_name, alone_base in ((None, "after_vs_bm25", bm25), (plain_before, "after_vs_before", None)):
        found = seen_summary(seen, base, after, 4, 200, asked=asked)["asked"]["changes"]["asked 3+"]
        assert set(found) == {alone_name, "after_fused_vs_bm25"}
        alone_base = alone_base or [0.1, 0.9, 0.2, 0.3, 0.8, 0.5]
        want_alone = np.mean([0.6, 0.9]) - np.mean([alone_base[0], alone_base[3]])  # questions 0 and 3
        assert found[alone_name]["8"]["ndcg@10"]["diff"] == pytest.approx(want_alone)
        want_fused = np.mean([fused[0], fused[3]]) - np.mean([bm25[0], bm25[3]])
        assert found["after_fused_vs_bm25"]["8"]["ndcg@10"]["diff"] == pytest.approx(want_fused)


def test_an_empty_group_and_a_run_without_before_or_bm25():
    after = {8: result([0.5, 0.6], [0.4, 0.4], [0.6, 0.7])}
    summary = seen_summary(np.array([True, True]), None, after, trained=2, resamples=200)
    assert summary["questions"] == {"seen": 2, "unseen": 0} and set(summary["changes"]) == {"seen"}
    assert set(summary["changes"]["seen"]) == {"after_vs_bm25", "after_fused_vs_bm25"}
    card = " ".join(seen_verdict(summary))  # no before: the card says the changes against BM25
    assert "alone against BM25 (at 8 dims) by +0.1500" in card and "Too few questions" in card
    assert "seen (2)" in " ".join(seen_markdown(summary))
    alone = seen_summary(np.array([False, True]), {8: result([0.1, 0.2])}, {8: result([0.3, 0.1])}, 1, 200)
    assert set(alone["changes"]) == {"seen", "unseen"} and set(alone["changes"]["unseen"]) == {"after_vs_before"}
    nothing = seen_summary(np.array([False, True]), None, {8: result([0.3, 0.1])}, 0, 200)  # no before, no BM25
    assert nothing["changes"] == {} and seen_markdown(nothing) == [] and seen_verdict(nothing) == []
    none_seen = seen_summary(np.array([False, False]), None, after, 5, 200)
    assert "is the training data of this corpus?" in " ".join(seen_markdown(none_seen))
    assert seen_summary(None, None, after, 0) is None and seen_summary(np.array([True]), None, None, 0) is None


def test_a_run_reports_memory_against_transfer(tiny_bert, tmp_path):
    """Trained on pairs of half the passages, scored on questions over all of them: results.json
    counts the questions as the files say, and its per-group change is the mean over that group's
    questions of per_query.json's after - before."""
    questions, passages = random_texts(40, seed=1, max_words=8), random_texts(30, seed=2)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(json.dumps({"anchor": q, "positive": passages[i % 15]}) + "\n" for i, q in enumerate(questions))
    )
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": p}) + "\n" for i, p in enumerate(passages))
    )
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": q}) + "\n" for i, q in enumerate(questions))
    )
    (beir / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i % 30}\t1\n" for i in range(40))
    )
    run = tmp_path / "run"
    train.main(
        ["--model.name_or_path", str(tiny_bert), "--data.train", str(pairs), "--data.eval", str(beir)]
        + ["--train.global_batch", "16", "--train.micro_batch", "8", "--loss.dims", "32,16", "--train.lr", "1e-3"]
        + ["--output.dir", str(run)]
    )
    saved = json.loads((run / "results.json").read_text())["seen"]
    per_query = json.loads((run / "per_query.json").read_text())
    want = [int(q[1:]) % 30 < 15 for q in per_query["query_ids"]]  # d0-d14 are the training positives
    assert per_query["seen"] == want
    assert (
        saved["questions"] == {"seen": sum(want), "unseen": len(want) - sum(want)} and saved["trained_passages"] == 15
    )
    for group, mask in (("seen", np.array(want)), ("unseen", ~np.array(want))):
        for dim in ("32", "16"):
            after, before = (np.array(per_query[side][dim]["ndcg@10"]) for side in ("after", "before"))
            c = saved["changes"][group]["after_vs_before"][dim]["ndcg@10"]
            assert c["diff"] == pytest.approx((after - before)[mask].mean())
            fused = np.array(per_query["after_fused"][dim]["ndcg@10"]) - np.array(per_query["bm25"]["ndcg@10"])
            assert saved["changes"][group]["after_fused_vs_bm25"][dim]["ndcg@10"]["diff"] == pytest.approx(
                fused[mask].mean()
            )
    # passage j < 15 is the positive of questions j, j + 15 and j + 30 (those under 40): three for
    # j < 10, two for the others; the eval question i asks about passage i % 30
    direct = [(3 if i % 30 < 10 else 2) if i % 30 < 15 else 0 for i in (int(q[1:]) for q in per_query["query_ids"])]
    assert per_query["asked"] == direct
    counts = np.array(direct)
    assert saved["asked"]["questions"] == {
        "asked 0": int((counts == 0).sum()),
        "asked 1": 0,
        "asked 2": int((counts == 2).sum()),
        "asked 3+": int((counts == 3).sum()),
    }
    assert "asked 1" not in saved["asked"]["changes"]  # no question: nothing paired
    for group, mask in (("asked 0", counts == 0), ("asked 2", counts == 2), ("asked 3+", counts == 3)):
        after, before = (np.array(per_query[side]["32"]["ndcg@10"]) for side in ("after", "before"))
        c = saved["asked"]["changes"][group]["after_vs_before"]["32"]["ndcg@10"]
        assert c["diff"] == pytest.approx((after - before)[mask].mean())
        after, before = (np.array(per_query[side]["32"]["ndcg@10"]) for side in ("after_fused", "before_fused"))
        c = saved["asked"]["changes"][group]["after_fused_vs_before_fused"]["32"]["ndcg@10"]
        assert c["diff"] == pytest.approx((after - before)[mask].mean())
    assert "## By how many training questions asked about the passage" in (run / "results.md").read_text()
    assert "## Questions on passages it trained on, and on the others" in (run / "results.md").read_text()
    card = (run / "model" / "README.md").read_text()
    assert "## Memory or transfer" in card and "where 3 or more asked" in card
