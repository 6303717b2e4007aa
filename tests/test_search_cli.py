"""search.py: the fused retriever for a user's questions, against a direct computation."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

import search
from helpers import ROOT, make_tiny_bert, random_texts, reference_bm25, write_jsonl
from model import Encoder, ModelConfig

N_PASSAGES = 150  # more than each retriever's top 100: the pool is a real union


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    texts = random_texts(N_PASSAGES, seed=21, max_words=30)
    write_jsonl(root / "corpus.jsonl", [{"_id": f"p{i}", "title": "", "text": t} for i, t in enumerate(texts)])
    questions = [texts[5][:30], texts[77][:20], "w1 w2 w3"]
    write_jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": q} for i, q in enumerate(questions)])
    return root, texts, questions


def reference_hits(tiny_bert, texts, question, dim, weight, k, linked=None):
    """The fused top k from its definition, in float64: each retriever's top 100 (BM25: passages
    sharing a word with the question), the union, min-max over it, w * dense + (1 - w) * BM25,
    score descending then corpus order. `linked` {row: [training questions]}: a passage's dense
    score is the best of its cosine and its questions' cosines with the question (question memory)."""
    import bm25s.stopwords

    encoder = Encoder.from_config(ModelConfig(str(tiny_bert)))

    def unit(strings):
        vectors = encoder.encode(strings).numpy().astype(np.float64)[:, :dim]
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    query = unit([question])[0]
    cosine = unit(texts) @ query
    for row, asked in (linked or {}).items():
        cosine[row] = max(cosine[row], *(unit(asked) @ query))
    bm25 = np.array(reference_bm25(texts, question, 1.5, 0.75, True, set(bm25s.stopwords.STOPWORDS_EN)))
    rows = range(len(texts))
    dense_top = sorted(rows, key=lambda r: (-cosine[r], r))[:100]
    lexical_top = sorted((r for r in rows if bm25[r] > 0), key=lambda r: (-bm25[r], r))[:100]
    pooled = sorted(set(dense_top) | set(lexical_top))

    def minmax(values):
        values = np.array([values[r] for r in pooled])
        return dict(zip(pooled, (values - values.min()) / (values.max() - values.min())))

    dense, lexical = minmax(cosine), minmax(bm25)
    fused = {r: weight * dense[r] + (1 - weight) * lexical[r] for r in pooled}
    top = sorted(pooled, key=lambda r: (-fused[r], r))[:k]
    return [(f"p{r}", fused[r], cosine[r], bm25[r]) for r in top]


@pytest.mark.parametrize("dim, weight", [(32, 0.35), (16, 1.0), (32, 0.0)])
def test_hits_are_the_fused_ranking_computed_directly(tiny_bert, corpus, dim, weight):
    root, texts, questions = corpus
    records = search.main(
        [*questions, "--model", str(tiny_bert), "--corpus", str(root), "--dim", str(dim)]
        + ["--fusion-weight", str(weight), "--k", "12"]
    )
    assert [r["question"] for r in records] == questions and [r["id"] for r in records] == ["1", "2", "3"]
    for record, question in zip(records, questions):
        want = reference_hits(tiny_bert, texts, question, dim, weight, 12)
        got = record["hits"]
        assert [h["id"] for h in got] == [w[0] for w in want]
        assert [h["rank"] for h in got] == list(range(1, 13))
        for hit, (pid, fused, cosine, bm25) in zip(got, want):
            assert hit["score"] == pytest.approx(fused, abs=1e-5)
            assert hit["dense"] == pytest.approx(cosine, abs=1e-5)
            assert hit["bm25"] == pytest.approx(bm25, rel=1e-4, abs=1e-6)
            assert hit["text"] == texts[int(pid[1:])]


def test_question_memory_scores_each_passage_by_its_best_key(tiny_bert, corpus, tmp_path):
    """--memory: a training question is an extra key of its passage, and a question asked in
    training finds its own key (cosine 1: answered before, answered again)."""
    root, texts, questions = corpus
    asked = {9: ["w4 w8 w15", "w2 w2 w30"], 40: ["w1 w2 w3"], 41: ["w1 w2 w3"], 120: ["w7"]}
    rows = [{"anchor": q, "positive": texts[r]} for r, qs in asked.items() for q in qs]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    records = search.main([*questions, "--model", str(tiny_bert), "--corpus", str(root), "--dim", "32"]
                          + ["--fusion-weight", "0.6", "--k", "12", "--memory", str(pairs)])  # fmt: skip
    for record, question in zip(records, questions):
        want = reference_hits(tiny_bert, texts, question, 32, 0.6, 12, linked=asked)
        assert [h["id"] for h in record["hits"]] == [w[0] for w in want]
        for hit, (_, fused, dense, _) in zip(record["hits"], want):
            assert hit["score"] == pytest.approx(fused, abs=1e-5) and hit["dense"] == pytest.approx(dense, abs=1e-5)
    own = {h["id"]: h["dense"] for h in records[2]["hits"]}  # "w1 w2 w3" was asked about passages 40 and 41
    assert own.get("p40") == pytest.approx(1.0, abs=1e-5) and own.get("p41") == pytest.approx(1.0, abs=1e-5)
    unlinked = write_jsonl(tmp_path / "none.jsonl", [{"anchor": "a", "positive": "w99"}])
    with pytest.raises(SystemExit, match="^error: --memory: .*none of the 1 training positives is a passage"):
        search.main(["q", "--model", str(tiny_bert), "--corpus", str(root), "--fusion-weight", "0.5"]
                    + ["--memory", str(unlinked)])  # fmt: skip


@pytest.fixture(scope="module")
def reranker(tmp_path_factory):
    """A tiny untrained cross-encoder saved as train_reranker.py saves one, twice: with no weight of
    its own, and with one chosen on held-out questions. Its head is scaled so that the logits of
    different pairs lie far apart (an untrained head gives them all nearly the same)."""
    import torch

    from retrieval.rerank import CrossEncoder

    root = tmp_path_factory.mktemp("reranker")
    ce = CrossEncoder(make_tiny_bert(root / "init", hidden_act="relu"), max_length=48)
    with torch.no_grad():
        ce.model.classifier.weight.mul_(1e5)
    ce.save(root / "ce", {"depth": 8})
    held_out = {"weight": 0.4, "weight_from": "held-out questions"}
    ce.save(root / "weighted", {"depth": 8, "held_out": held_out, "first_stage": "a model"})
    return root / "ce"


@pytest.mark.parametrize("ce_weight", [0.4, 1.0])
def test_the_fused_top_is_reranked_by_sentence_transformers_own_logits(tiny_bert, corpus, reranker, ce_weight):
    """--rerank: the fused top `depth` ordered by w * minmax(logit) + (1 - w) * minmax(fused score),
    the logits sentence-transformers' CrossEncoder gives the saved re-ranker; the rest as fused."""
    from sentence_transformers import CrossEncoder as STCrossEncoder

    root, texts, questions = corpus
    records = search.main([*questions, "--model", str(tiny_bert), "--corpus", str(root), "--dim", "32"]
                          + ["--fusion-weight", "0.6", "--k", "12", "--rerank", str(reranker),
                             "--rerank-weight", str(ce_weight)])  # fmt: skip
    theirs = STCrossEncoder(str(reranker), device="cpu")
    for record, question in zip(records, questions):
        fused = reference_hits(tiny_bert, texts, question, 32, 0.6, 100)
        top = fused[:8]
        logits = theirs.predict([(question, texts[int(pid[1:])]) for pid, *_ in top]).astype(np.float64)

        def minmax(values):
            values = np.asarray(values, dtype=np.float64)
            return (values - values.min()) / (values.max() - values.min())

        mix = ce_weight * minmax(logits) + (1 - ce_weight) * minmax([f for _, f, _, _ in top])
        order = sorted(range(8), key=lambda i: (-mix[i], i))  # ties: the fused order
        want = [top[i][0] for i in order] + [pid for pid, *_ in fused[8:12]]
        assert [h["id"] for h in record["hits"]] == want
        gaps = np.diff(np.sort(logits))  # the pairs' logits lie apart: a logit given to the wrong hit would show
        assert gaps.min() > 10 * 1e-5 * np.abs(logits).max()  # ten times the tolerance below
        by_id = dict(zip((pid for pid, *_ in top), logits))
        for hit in record["hits"]:
            assert hit["rerank"] == (pytest.approx(by_id[hit["id"]], rel=1e-5) if hit["rank"] <= 8 else None)
    with pytest.raises(
        SystemExit, match="^error: --rerank .*: it saved no weight for this fusion; give --rerank-weight"
    ):
        search.main(["q", "--model", str(tiny_bert), "--corpus", str(root), "--fusion-weight", "0.5"]
                    + ["--rerank", str(reranker)])  # fmt: skip


def test_a_saved_rerank_weight_is_used_and_never_with_memory(tiny_bert, corpus, reranker, tmp_path):
    root, texts, questions = corpus
    common = [*questions, "--model", str(tiny_bert), "--corpus", str(root), "--dim", "32", "--fusion-weight", "0.6"]
    saved = search.main([*common, "--rerank", str(reranker.parent / "weighted")])
    assert saved == search.main([*common, "--rerank", str(reranker), "--rerank-weight", "0.4"])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": "w1 w2 w3", "positive": texts[40]}])
    with pytest.raises(SystemExit, match="^error: --rerank .* with --memory: its saved weight is for another first"):
        search.main([*common, "--rerank", str(reranker.parent / "weighted"), "--memory", str(pairs)])
    # a flag conflict is found before any model loads: this model does not exist, the conflict is named
    no_model = [arg if arg != str(tiny_bert) else str(tmp_path / "no_model") for arg in common]
    with pytest.raises(SystemExit, match="^error: --rerank .* with --memory"):
        search.main([*no_model, "--rerank", str(reranker.parent / "weighted"), "--memory", str(pairs)])
    with pytest.raises(SystemExit, match=r"^error: --rerank .*: the re-ranker's saved weight was chosen at depth 8"):
        search.main([*common, "--rerank", str(reranker.parent / "weighted"), "--rerank-depth", "5"])


def test_the_index_is_kept_reused_and_refreshed_when_model_or_corpus_change(tiny_bert, corpus, tmp_path, caplog):
    root, texts, questions = corpus
    index = tmp_path / "index"
    args = ["--model", str(tiny_bert), "--corpus", str(root / "corpus.jsonl"), "--fusion-weight", "0.5"]
    args += ["--queries", str(root / "queries.jsonl"), "--index", str(index)]
    caplog.set_level(logging.INFO)
    first = search.main([*args, "--out", str(tmp_path / "hits.jsonl")])
    assert "passage vectors kept in" in caplog.text and (index / "complete.json").is_file()
    assert [json.loads(line) for line in (tmp_path / "hits.jsonl").read_text().splitlines()] == first
    assert [r["id"] for r in first] == ["q0", "q1", "q2"]
    caplog.clear()
    assert search.main(args) == first and "passage vectors reused from" in caplog.text
    # a damaged index is never taken for complete: encoded again, the same hits
    (index / "embeddings.npy").write_bytes((index / "embeddings.npy").read_bytes()[:-8])
    caplog.clear()
    assert search.main(args) == first and "embeddings.npy has" in caplog.text and "kept in" in caplog.text
    # another corpus, another model: the kept vectors are not reused; the hits are those without an index
    changed = tmp_path / "corpus.jsonl"
    write_jsonl(changed, [{"_id": f"p{i}", "text": "w9 w9 w9" if i == 5 else t} for i, t in enumerate(texts)])
    other = make_tiny_bert(tmp_path / "other_bert", hidden_act="relu")
    for model, corpus_path in ((tiny_bert, changed), (other, changed)):
        caplog.clear()
        argv = ["--model", str(model), "--corpus", str(corpus_path), "--fusion-weight", "0.5", *questions]
        assert search.main([*argv, "--index", str(index)]) == search.main(argv)
        assert "encoded from another model, precision or corpus" in caplog.text


def test_an_index_a_cut_replace_left_aside_is_put_back_and_reused(tiny_bert, corpus, tmp_path, caplog):
    """A refresh killed between its two renames leaves the old index only as `.index.old-PID`: the
    next run puts it back and reuses it (the folder check must not create an empty index first)."""
    root, _, questions = corpus
    index = tmp_path / "index"
    argv = [*questions, "--model", str(tiny_bert), "--corpus", str(root), "--fusion-weight", "0.5"]
    first = search.main([*argv, "--index", str(index)])
    index.rename(tmp_path / ".index.old-999999999")  # no process has that pid
    caplog.set_level(logging.INFO)
    assert search.main([*argv, "--index", str(index)]) == first
    assert "passage vectors reused from" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]


def test_out_is_never_an_input_the_index_or_inside_the_model(tiny_bert, corpus, tmp_path):
    """--out would be replaced by the hits: an input file, the index folder or the model's folder is
    refused before any model loads, and left as it was."""
    root, _, _ = corpus
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": "w1", "positive": "w2"}])
    queries = root / "queries.jsonl"
    before = {path: path.read_bytes() for path in (queries, root / "corpus.jsonl", pairs)}
    no_model = ["--model", str(tmp_path / "no_model"), "--corpus", str(root), "--fusion-weight", "0.5"]
    for flags, out, message in [
        (["--queries", str(queries)], queries, "is the --queries file"),
        (["q"], root / "corpus.jsonl", "is the --corpus file"),
        (["q", "--memory", str(pairs)], pairs, "is the --memory file"),
        (["q", "--index", str(tmp_path / "idx")], tmp_path / "idx", "inside --index"),
    ]:
        with pytest.raises(SystemExit, match=f"^error: --out {out}: {message}"):
            search.main([*no_model, *flags, "--out", str(out)])
    assert {path: path.read_bytes() for path in before} == before and not (tmp_path / "idx").exists()
    held = sorted(p.name for p in tiny_bert.iterdir())
    with pytest.raises(SystemExit, match="^error: --out .*: inside the model's folder"):
        search.main(["q", "--model", str(tiny_bert), "--corpus", str(root), "--fusion-weight", "0.5"]
                    + ["--out", str(tiny_bert / "hits.jsonl")])  # fmt: skip
    assert sorted(p.name for p in tiny_bert.iterdir()) == held


def test_an_index_folder_holding_anything_else_is_refused_untouched(tiny_bert, corpus, tmp_path):
    root, _, _ = corpus
    precious = tmp_path / "run"
    precious.mkdir()
    (precious / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(SystemExit, match="^error: --index .*: holds files that are not a search.py index"):
        search.main(["q", "--model", str(tiny_bert), "--corpus", str(root), "--fusion-weight", "0.5"]
                    + ["--index", str(precious)])  # fmt: skip
    assert [p.name for p in precious.iterdir()] == ["model.safetensors"]
    index = tmp_path / "index"
    argv = ["q", "--model", str(tiny_bert), "--corpus", str(root), "--fusion-weight", "0.5", "--index", str(index)]
    search.main(argv)
    with pytest.raises(SystemExit, match="^error: --out .*: inside --index"):
        search.main([*argv, "--out", str(index / "hits.jsonl")])
    (index / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="^error: --index .*: holds files besides a search.py index"):
        search.main(argv)
    assert (index / "notes.txt").read_text() == "mine"


def test_a_runs_weight_and_bm25_settings_rank_as_its_evaluation_scored(tiny_bert, corpus, tmp_path):
    """--weights-from: the hits of the run's own eval questions score the NDCG@10 its results.json
    reports for the fused model (trec_eval's measure, through pytrec_eval, on search.py's hits)."""
    import pytrec_eval

    import train

    source, texts, _ = corpus
    root = tmp_path / "beir"
    shutil.copytree(source, root)
    write_jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": texts[i][: 10 + i % 17]} for i in range(0, 150, 5)])
    (root / "qrels").mkdir()
    (root / "qrels" / "dev.tsv").write_text("".join(f"q{i}\tp{(i + 1) % 150}\t1\n" for i in range(0, 150, 5)))
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": texts[i][:20], "positive": texts[i]} for i in range(32)])
    run = tmp_path / "run"
    train.main(
        ["--model.name_or_path", str(tiny_bert), "--data.train", str(pairs), "--data.eval", str(root)]
        + ["--train.global_batch", "16", "--loss.dims", "32,16", "--output.dir", str(run), "--eval.before", "false"]
        + ["--lexical.k1", "0.9", "--lexical.fusion_norm", "zscore", "--eval.precisions", "[float32]"]
    )
    fused = json.loads((run / "results.json").read_text())["lexical"]["after"]["16"]["convex"]
    common = ["--model", str(run / "model"), "--corpus", str(root), "--dim", "16", "--k", "100"]
    results = ["--weights-from", str(run / "results.json")]
    hits = search.main([*common, *results, "--queries", str(root / "queries.jsonl")])
    qrels = {f"q{i}": {f"p{(i + 1) % 150}": 1} for i in range(0, 150, 5)}
    runs = {r["id"]: {h["id"]: h["score"] for h in r["hits"]} for r in hits}
    scored = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(runs)
    assert np.mean([v["ndcg_cut_10"] for v in scored.values()]) == pytest.approx(fused["ndcg@10"], abs=1e-9)
    with pytest.raises(SystemExit, match=r"^error: --bm25-k1 1.5: the run fused with k1 0.9"):
        search.main([*common, *results, "--bm25-k1", "1.5", "x"])
    with pytest.raises(SystemExit, match=r"^error: --weights-from .*: no fused weight at 8 dims \(it has 16, 32\)"):
        search.main([*common[:4], "--dim", "8", *results, "x"])


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "give the questions on the command line or --queries FILE"),
        (["q", "--k", "0"], r"--k 0: must be in 1..100"),
        (["q", "--k", "101"], r"--k 101: must be in 1..100"),
        (["q", "--fusion-weight", "1.5"], r"--fusion-weight 1.5: must be in \[0, 1\]"),
        (["q", "--bm25-k1", "-1"], "k1"),
        (["q", "--bm25-k1", "nan"], "k1: nan must be a finite number"),
        (["q", "--bm25-k1", "inf"], "k1: inf must be a finite number"),
        (["q", "--dim", "999"], "--dim 999: the model's vectors have 32"),
        (["q", "--rerank-weight", "0.5"], "--rerank-depth and --rerank-weight need --rerank DIR"),
        (["q", "--rerank", "nowhere"], "--rerank nowhere: no such directory"),
    ],
)
def test_bad_flags_are_one_error_line(tiny_bert, corpus, extra, message):
    root, _, _ = corpus
    argv = ["--model", str(tiny_bert), "--corpus", str(root), *extra]
    if "--fusion-weight" not in extra:
        argv += ["--fusion-weight", "0.5"]
    with pytest.raises(SystemExit, match="^error: .*" + message):
        search.main(argv)


def test_a_bad_corpus_line_is_named_from_the_command_line(tiny_bert, tmp_path):
    bad = tmp_path / "corpus.jsonl"
    bad.write_text('{"_id": "a", "text": "w1 w2"}\n{"_id": "b"}\n')
    proc = subprocess.run(
        [sys.executable, "search.py", "--model", str(tiny_bert), "--corpus", str(bad), "--fusion-weight", "0.5", "q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"error: {bad}:2: missing column 'text'" in proc.stderr
