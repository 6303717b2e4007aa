"""evaluate.py end to end from the command line on a tiny model and a tiny BEIR set."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import pytrec_eval
import torch

import evaluate
from helpers import ROOT, tiny_beir
from retrieval.metrics import METRICS


def test_main_writes_table_json_and_runs(tmp_path, tiny_bert, capsys):
    data = tiny_beir(tmp_path / "beir")
    report = evaluate.main(
        [
            "--model",
            str(tiny_bert),
            "--data",
            str(data),
            "--split",
            "dev",
            "--out",
            str(tmp_path / "m.json"),
            "--run-out",
            str(tmp_path / "runs"),
        ]
    )
    printed = capsys.readouterr().out
    assert "| 32 |" in printed and "| 16 |" not in printed  # default dims: 32 only for a 32-dim model
    written = json.loads((tmp_path / "m.json").read_text())
    assert set(written["32"]) >= set(METRICS) and written["32"] == report["32"]
    run_lines = (tmp_path / "runs" / "run.32.trec").read_text().splitlines()
    assert len(run_lines) == 8 * 40  # every query ranks the whole 40-passage corpus
    qid, q0, doc, rank, score, tag = run_lines[0].split()
    assert (qid, q0, rank) == ("q0", "Q0", "1")
    # trec_eval on the run file reproduces the report
    run = {}
    for line in run_lines:
        qid, _, doc, _, score, _ = line.split()
        run.setdefault(qid, {})[doc] = float(score)
    qrels = {f"q{i}": {f"c{i * 3}": 1} for i in range(8)}
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100", "map_cut_100"}).evaluate(run)
    for trec_name, name in [("ndcg_cut_10", "ndcg@10"), ("recall_100", "recall@100"), ("map_cut_100", "map@100")]:
        assert sum(t[trec_name] for t in trec.values()) / 8 == pytest.approx(report["32"][name], abs=1e-6)
    per_query = [json.loads(line) for line in (tmp_path / "runs" / "per_query.32.jsonl").read_text().splitlines()]
    assert len(per_query) == 8
    assert sum(r["ndcg@10"] for r in per_query) / 8 == pytest.approx(report["32"]["ndcg@10"])
    # the embedding space: the whole 40-passage corpus is the sample; its mean cosine, by a direct computation
    from model import Encoder, ModelConfig

    texts = [json.loads(line)["text"] for line in (data / "corpus.jsonl").read_text().splitlines()]
    emb = Encoder.from_config(ModelConfig(str(tiny_bert))).encode(texts).double().numpy()
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cosines = emb @ emb.T
    assert written["space"]["32"]["anisotropy"] == pytest.approx((cosines.sum() - 40) / (40 * 39), abs=1e-5)
    assert "the embedding space (a fixed sample of 40 passages)" in printed


def test_dims_flag(tmp_path, tiny_bert):
    data = tiny_beir(tmp_path / "beir")
    report = evaluate.main(["--model", str(tiny_bert), "--data", str(data), "--split", "dev", "--dims", "32,8"])
    assert [k for k in report if k not in ("meta", "lexical", "space")] == ["32", "8"]
    assert list(report["space"]) == ["32", "8"]


def test_bad_data_exits_nonzero_naming_file_and_line(tmp_path):
    data = tiny_beir(tmp_path / "beir")
    (data / "qrels" / "dev.tsv").write_text("q0\tc0\t1\nq0\tnope\t1\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), "--data", str(data), "--split", "dev"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert f"{data / 'qrels' / 'dev.tsv'}:2: corpus id 'nope' is not in corpus.jsonl" in result.stderr
    assert "Traceback" not in result.stderr


def test_seen_reports_questions_on_training_positives_apart(tmp_path, tiny_bert, capsys):
    """--seen: questions q0-q2 ask about passages the pairs trained on, q3-q7 do not. Each group's
    mean times its size adds up to the whole set's metric (dense and BM25), and the model against
    itself as --baseline changes nothing in either group."""
    data = tiny_beir(tmp_path / "beir")
    texts = [json.loads(line)["text"] for line in (data / "corpus.jsonl").read_text().splitlines()]
    pairs = tmp_path / "pairs.jsonl"
    # q0's passage asked by three training questions, q1's by two, q2's by one (its row twice: one question)
    asked = [("a0", 0), ("b0", 0), ("c0", 0), ("a1", 3), ("b1", 3), ("a2", 6), ("a2", 6)]
    pairs.write_text("".join(json.dumps({"anchor": a, "positive": texts[i]}) + "\n" for a, i in asked))
    argv = ["--model", str(tiny_bert), "--data", str(data), "--split", "dev", "--seen", str(pairs)]
    runs = tmp_path / "runs"
    report = evaluate.main([*argv, "--baseline", str(tiny_bert), "--resamples", "200", "--run-out", str(runs)])
    seen = report["seen"]
    assert seen["questions"] == {"seen": 3, "unseen": 5} and seen["trained_passages"] == 3
    assert (
        set(seen["changes"]["seen"])
        == set(seen["changes"]["unseen"])
        == {
            "after_vs_before",
            "after_vs_bm25",
            "after_fused_vs_bm25",
        }
    )  # the baseline is not fused: no after_fused_vs_before_fused
    dense = [seen["changes"][g]["after_vs_before"]["32"]["ndcg@10"] for g in ("seen", "unseen")]
    per_query = {
        r["query_id"]: r["ndcg@10"] for r in map(json.loads, (runs / "per_query.32.jsonl").read_text().splitlines())
    }
    assert dense[0]["new"] == pytest.approx(np.mean([per_query[f"q{i}"] for i in range(3)]))
    assert dense[1]["new"] == pytest.approx(np.mean([per_query[f"q{i}"] for i in range(3, 8)]))
    assert dense[0]["diff"] == dense[1]["diff"] == 0
    assert seen["asked"]["questions"] == {"asked 0": 5, "asked 1": 1, "asked 2": 1, "asked 3+": 1}
    groups = {"asked 3+": ["q0"], "asked 2": ["q1"], "asked 1": ["q2"], "asked 0": [f"q{i}" for i in range(3, 8)]}
    for group, questions in groups.items():  # alone against the base; fused against BM25 (the base is not fused)
        assert set(seen["asked"]["changes"][group]) == {"after_vs_before", "after_fused_vs_bm25"}
        change = seen["asked"]["changes"][group]["after_vs_before"]["32"]["ndcg@10"]
        assert change["new"] == pytest.approx(np.mean([per_query[q] for q in questions])) and change["diff"] == 0
    bm25_by_group = [seen["asked"]["changes"][g]["after_fused_vs_bm25"]["32"]["ndcg@10"]["base"] for g in groups]
    sizes = [len(questions) for questions in groups.values()]
    assert np.dot(sizes, bm25_by_group) / 8 == pytest.approx(report["lexical"]["bm25"]["ndcg@10"])
    bm25 = [seen["changes"][g]["after_vs_bm25"]["32"]["ndcg@10"]["base"] for g in ("seen", "unseen")]
    assert (3 * bm25[0] + 5 * bm25[1]) / 8 == pytest.approx(report["lexical"]["bm25"]["ndcg@10"])
    printed = capsys.readouterr().out
    assert "## Questions on passages it trained on, and on the others" in printed
    assert "| dim | fine-tuned against base: asked 0 (5) | asked 1 (1) | asked 2 (1) | asked 3+ (1) |" in printed
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"anchor": "a", "positive": "p"}\n{"anchor": "b"\n')
    for path, message in ((tmp_path / "missing.jsonl", "missing.jsonl"), (bad, r"bad\.jsonl:2")):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main([*argv[:-1], str(path)])
        assert str(exit_info.value).startswith("error: --seen: ") and "\n" not in str(exit_info.value)
        assert re.search(message, str(exit_info.value))
    with pytest.raises(SystemExit, match="--seen pairs the model with --baseline or BM25"):
        evaluate.main([*argv, "--lexical", "none"])


def test_memory_scores_the_fusion_remembering_the_training_questions(tmp_path, tiny_bert, capsys):
    """--memory: at dense weight 1 the fused top 10 is the remembered dense ranking, checked against
    a float64 full matrix scored by pytrec_eval; the pairings against BM25 and the plain fusion read
    the same figures the report gives; each --seen group's share adds up to the whole."""
    from model import Encoder, ModelConfig

    data = tiny_beir(tmp_path / "beir")
    texts = [json.loads(line)["text"] for line in (data / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line)["text"] for line in (data / "queries.jsonl").read_text().splitlines()]
    # q4 and q5 asked again in other words (their passages c12, c15), and two questions on other passages
    anchors = [queries[4] + " again", "and " + queries[5], f"asked about {texts[5][:30]}", "something else"]
    linked = (12, 15, 5, 11)
    rows = [{"anchor": a, "positive": texts[i]} for a, i in zip(anchors, linked)]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["--model", str(tiny_bert), "--data", str(data), "--split", "dev", "--dims", "32", "--memory", str(pairs)]
    report = evaluate.main([*argv, "--seen", str(pairs), "--fusion-weight", "1", "--resamples", "200"])
    memory = report["lexical"]["memory"]
    assert (memory["questions"], memory["passages"], memory["weights_from"]) == (4, 4, "given")

    encoder = Encoder.from_config(ModelConfig(str(tiny_bert)))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    q, d, k = (
        unit(encoder.encode(t, batch_size=8).numpy().astype(np.float64))
        for t in (queries, texts, [r["anchor"] for r in rows])
    )
    scores = q @ d.T
    for key, row in enumerate(linked):
        scores[:, row] = np.maximum(scores[:, row], q @ k[key])
    run = {f"q{i}": {f"c{j}": float(s) for j, s in enumerate(scores[i])} for i in range(len(queries))}
    qrels = {f"q{i}": {f"c{i * 3}": 1} for i in range(len(queries))}
    want = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    assert memory["fused"]["32"]["convex"]["ndcg@10"] > report["32"]["ndcg@10"]  # remembering changed the ranking
    assert memory["fused"]["32"]["convex"]["ndcg@10"] == pytest.approx(
        np.mean([v["ndcg_cut_10"] for v in want.values()]), abs=1e-4
    )

    versus = memory["versus"]
    assert versus["all"]["bm25"]["32"]["ndcg@10"]["base"] == pytest.approx(report["lexical"]["bm25"]["ndcg@10"])
    assert versus["all"]["fused"]["32"]["ndcg@10"]["base"] == pytest.approx(
        report["lexical"]["fused"]["32"]["convex"]["ndcg@10"]
    )
    assert versus["all"]["fused"]["32"]["ndcg@10"]["new"] == pytest.approx(memory["fused"]["32"]["convex"]["ndcg@10"])
    assert report["seen"]["questions"] == {"seen": 2, "unseen": 6}  # q4 (c12) and q5 (c15) ask about trained passages
    for side in ("base", "new"):
        groups = [versus[g]["fused"]["32"]["ndcg@10"][side] for g in ("seen", "unseen")]
        assert (2 * groups[0] + 6 * groups[1]) / 8 == pytest.approx(versus["all"]["fused"]["32"]["ndcg@10"][side])
    assert "the fused retriever remembering 4 training questions" in capsys.readouterr().out

    with pytest.raises(SystemExit, match="--memory remembers in the fused retriever: it needs --lexical bm25"):
        evaluate.main([*argv, "--lexical", "none"])
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text(json.dumps({"anchor": "a", "positive": "no passage says this"}) + "\n")
    for path, message in (
        (tmp_path / "missing.jsonl", "missing.jsonl"),
        (elsewhere, "none of the 1 training positives"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main([*argv[:-1], str(path)])
        assert str(exit_info.value).startswith("error: --memory: ") and "\n" not in str(exit_info.value)
        assert message in str(exit_info.value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-size", "-8"], "--batch-size -8: must be at least 1"),
        (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["--seed", "-1"], "--seed -1: must be >= 0"),
        (["--dims", "0,8"], "--dims 0,8: each must be at least 1"),
        (["--stopwords", "xx"], "lexical.stopwords: 'xx' is not a bm25s stopword list"),
        (["--bm25-k1", "nan"], "lexical.k1: nan must be a finite number"),
        (["--fusion-weight-from", "tarin"], "--fusion-weight-from: .*tarin"),
    ],
)
def test_bad_flags_stop_before_any_model_loads(tmp_path, argv, message):
    """The model named does not exist: were a flag checked only after loading it, the error would
    be the model's, not the flag's."""
    data = tiny_beir(tmp_path / "beir")
    with pytest.raises(SystemExit, match="^error: " + message):
        evaluate.main(["--model", str(tmp_path / "no_model"), "--data", str(data), "--split", "dev", *argv])


def test_outputs_are_never_inputs(tmp_path):
    data = tiny_beir(tmp_path / "beir")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"anchor": "w1", "positive": "w2"}\n')
    before = {p: p.read_bytes() for p in [pairs, *sorted(data.rglob("*.*"))]}
    base = ["--model", str(tmp_path / "no_model"), "--data", str(data), "--split", "dev"]
    for argv, message in [
        (["--seen", str(pairs), "--out", str(pairs)], f"--out {pairs}: is the --seen file"),
        (["--memory", str(pairs), "--out", str(pairs)], f"--out {pairs}: is the --memory file"),
        (["--out", str(data / "corpus.jsonl")], "--out .*: inside --data"),
        (["--out", str(data / "results.json")], "--out .*: inside --data"),
        (["--run-out", str(data / "runs")], "--run-out .*: inside --data"),
    ]:
        with pytest.raises(SystemExit, match="^error: " + message):
            evaluate.main([*base, *argv])
    assert {p: p.read_bytes() for p in before} == before and not (data / "runs").exists()


def test_run_files_refuse_ids_with_whitespace(tmp_path):
    data = tiny_beir(tmp_path / "beir")
    corpus = (data / "corpus.jsonl").read_text().replace('"c1"', '"c 1"')
    (data / "corpus.jsonl").write_text(corpus)
    argv = ["--model", str(tmp_path / "no_model"), "--data", str(data), "--split", "dev"]
    with pytest.raises(SystemExit, match=r"^error: --run-out: the id 'c 1' holds whitespace"):
        evaluate.main([*argv, "--run-out", str(tmp_path / "runs")])


def test_a_model_giving_non_finite_embeddings_is_an_error_not_a_score(tmp_path, tiny_bert):
    """A model with a NaN weight (a diverged run, say) gives NaN vectors: refused by name, where the
    search would have ranked nothing for such a query and scored it as a miss."""
    from transformers import AutoModel

    from helpers import make_tiny_bert

    broken = make_tiny_bert(tmp_path / "broken")
    model = AutoModel.from_pretrained(broken)
    with torch.no_grad():
        model.encoder.layer[0].output.dense.weight[0, 0] = float("nan")
    model.save_pretrained(broken)
    data = tiny_beir(tmp_path / "beir")
    with pytest.raises(SystemExit, match=r"^error: the model gave a non-finite embedding for query 'q0' \(8 in all\)"):
        evaluate.main(["--model", str(broken), "--data", str(data), "--split", "dev", "--lexical", "none"])
