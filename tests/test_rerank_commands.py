"""train_reranker.py and evaluate.py --rerank end to end on a tiny BEIR set: the saved re-ranker loads
in sentence-transformers with the same logits, a damaged one is refused, weight 0 leaves the fusion
as it was, weight 1 orders the fused top k by sentence-transformers' own scores, and bad flags stop
with one line before anything is encoded; a re-ranker trained over BM25's reference tokens says so, and its
saved weight is used only by an evaluation with the same tokens."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import evaluate
import train_reranker
from data import load_ir
from retrieval.evaluation import encode_ir
from retrieval.fusion import WEIGHT_GRID, convex, ranked
from retrieval.hybrid import evaluate_hybrid, lexical_index
from retrieval.metrics import TOP_K, score_ranking
from retrieval.rerank import CrossEncoder
from retrieval.settings import LexicalConfig
from tests.helpers import make_tiny_bert, tiny_beir, write_jsonl


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny BERT, a tiny BEIR set with 12 train questions beside its 12 dev ones, and a re-ranker
    trained on train."""
    root = tmp_path_factory.mktemp("rerank")
    model, data = make_tiny_bert(root / "model"), tiny_beir(root / "beir", n_docs=60, n_queries=12)
    texts = [json.loads(line)["text"] for line in (data / "corpus.jsonl").read_text().splitlines()]
    with open(data / "queries.jsonl", "a") as queries:  # train questions, on other passages than dev's
        queries.writelines(json.dumps({"_id": f"t{i}", "text": texts[i * 3 + 1][:25]}) + "\n" for i in range(12))
    (data / "qrels" / "train.tsv").write_text("".join(f"t{i}\tc{i * 3 + 1}\t1\n" for i in range(12)))
    out = root / "reranker"
    argv = f"--data {data} --out {out} --first-stage {model} --init {model} --pool 10 --negatives 3"
    settings = train_reranker.main([*argv.split(), *"--max-length 48 --depth 8 --batch 4 --holdout 0.25".split()])
    return model, data, out, settings


def test_the_saved_reranker_says_how_it_was_trained(trained):
    _, data, out, settings = trained
    # 12 questions, 3 held out: 9 groups, 4 a step (3 steps), over the default 2 epochs
    assert settings["groups"] == 9 and settings["trained"]["steps"] == 6 and settings["training"]["epochs"] == 2
    assert settings["trained"]["pairs"] == 2 * 9 * 4 and settings["depth"] == 8 and settings["max_length"] == 48
    held = settings["held_out"]
    assert held["questions"] == 3 and held["weight"] in WEIGHT_GRID and held["weight_from"].endswith("(held out)")
    curve = held["curve"]  # mean NDCG@10 at each weight of the grid; the chosen one at most the best
    assert list(curve) == [f"{w:g}" for w in WEIGHT_GRID] and held["rule"] == "one standard error"
    assert held["best_weight"] == min(w for w in WEIGHT_GRID if curve[f"{w:g}"] == max(curve.values()))
    assert held["weight"] <= held["best_weight"] and curve[f"{held['weight']:g}"] == round(held["reranked"], 6)
    assert curve["0"] == round(held["fused"], 6)  # weight 0: the fusion alone
    assert settings["split"] == "train" and settings["data_path"] == str(data.resolve())
    assert json.loads((out / "reranker.json").read_text()) == settings
    assert (out / "complete.json").is_file() and (out / "model.safetensors").is_file()
    assert not list(out.parent.glob(".reranker.tmp-*"))  # nothing half-written left beside it


def test_sentence_transformers_loads_it_with_the_same_logits(trained):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    _, data, out, _ = trained
    ours = CrossEncoder.load(out)
    theirs = STCrossEncoder(str(out), device="cpu")  # as a user would load it: nothing passed
    ir = load_ir(data, "dev")
    pairs = [(ir.query_texts[q], ir.corpus_texts[r]) for q in range(6) for r in range(0, 60, 7)]
    pairs += [(" ".join(ir.corpus_texts[:3]), " ".join(ir.corpus_texts[3:6]))]  # past 48 tokens: cut the same way
    assert len(ours.tokenizer(*pairs[-1])["input_ids"]) > 48
    np.testing.assert_allclose(ours.score(pairs, 5), theirs.predict(pairs, batch_size=7), atol=1e-5)


def test_a_damaged_reranker_is_refused(trained, tmp_path):
    import shutil

    _, _, out, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "model.safetensors", "r+b") as weights:
        weights.seek(-8, 2)
        weights.write(b"\0" * 8)
    with pytest.raises(ValueError, match="model.safetensors does not match its checksum"):
        CrossEncoder.load(copy)
    (copy / "reranker.json").unlink()
    with pytest.raises(ValueError, match="no reranker.json"):
        CrossEncoder.load(copy)


def _fused_rows(model, data):
    """The dev fusion at 32 dims as evaluate.py makes it (weight chosen on dev): (Q, 100) rows."""
    from model import Encoder, ModelConfig

    ir = load_ir(data, "dev")
    query_emb, corpus_emb, _ = encode_ir(Encoder.from_config(ModelConfig(str(model)), "no"), ir, 64, False)
    hybrid = evaluate_hybrid(query_emb, corpus_emb, ir, [32], lexical_index(ir, LexicalConfig()))
    c = hybrid.candidates[32]
    return ir, hybrid, ranked(c, convex(c, hybrid.weights[32]), TOP_K)


def reordered_score(ir, rows, logits):
    """The fused ranking `rows` (Q, 100) with its top logits.shape[1] ordered by `logits`
    descending (ties: the fused order), scored."""
    depth = logits.shape[1]
    order = np.argsort(-logits, axis=1, kind="stable")
    expected_rows = np.concatenate([np.take_along_axis(rows[:, :depth], order, 1), rows[:, depth:]], 1)
    qrels = [ir.qrels[qid] for qid in ir.query_ids]
    return score_ranking(
        np.where(expected_rows >= 0, -np.arange(TOP_K, dtype=float), -np.inf), expected_rows, ir, qrels
    )


def test_evaluate_reranks_the_fusion(trained, tmp_path):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    model, data, out, _ = trained
    common = f"--model {model} --data {data} --split dev --dims 32 --resamples 50 --rerank {out}".split()
    unchanged = evaluate.main([*common, "--rerank-weight", "0"])["lexical"]
    assert unchanged["reranked"]["32"]["ndcg@10"] == unchanged["fused"]["32"]["convex"]["ndcg@10"]
    assert unchanged["reranked"]["32"]["map@100"] == unchanged["fused"]["32"]["convex"]["map@100"]
    assert unchanged["reranked"]["depth"] == 8 and unchanged["reranked"]["weights_from"] == "given"

    alone = evaluate.main([*common, "--rerank-weight", "1", "--rerank-depth", "5"])["lexical"]["reranked"]
    ir, _, (scores, rows) = _fused_rows(model, data)
    theirs = STCrossEncoder(str(out), device="cpu")
    logits = np.array(
        [theirs.predict([(ir.query_texts[q], ir.corpus_texts[r]) for r in line[:5]]) for q, line in enumerate(rows)]
    )
    expected = reordered_score(ir, rows, logits)  # sentence-transformers' order of the top 5
    assert alone["32"]["ndcg@10"] == pytest.approx(expected.metrics["ndcg@10"], abs=1e-12)
    assert alone["32"]["recall@100"] == pytest.approx(expected.metrics["recall@100"], abs=1e-12)
    assert alone["32"] != unchanged["reranked"]["32"]  # the order did change

    saved = evaluate.main([*common, "--fusion-weight-from", "train", "--out", str(tmp_path / "m.json")])
    reranked = saved["lexical"]["reranked"]
    assert "(held out) with" in reranked["weights_from"]  # the re-ranker's own weight comes before the split's
    assert reranked["32"]["weight"] == json.loads((out / "reranker.json").read_text())["held_out"]["weight"]
    assert set(reranked["versus"]) == {"bm25", "fused"}
    assert json.loads((tmp_path / "m.json").read_text())["lexical"]["reranked"]["32"] == reranked["32"]


@pytest.mark.parametrize(
    "flags, note",
    [
        ("--rerank-depth 5", "saved weight was chosen at depth 8"),
        ("--bm25-k1 0.9", "saved weight was chosen at BM25 lucene k1 1.5 b 0.75"),
        ("--stopwords none", "stopwords en"),
    ],
)
def test_a_saved_weight_is_not_used_for_another_fusion(trained, capsys, flags, note):
    """The re-ranker's weight was chosen over its first stage's fusion (depth 8, BM25's defaults):
    evaluating another depth or another BM25 chooses one on the evaluated split instead, and says why."""
    model, data, out, _ = trained
    argv = f"--model {model} --data {data} --split dev --dims 32 --resamples 50 --rerank {out} {flags}".split()
    capsys.readouterr()
    reranked = evaluate.main(argv)["lexical"]["reranked"]
    assert reranked["weights_from"].endswith("(dev) (optimistic)")
    assert note in capsys.readouterr().out


def test_a_reranker_with_no_held_out_weight_gets_one_chosen(trained, tmp_path):
    model, data, _, _ = trained
    out = tmp_path / "no_holdout"
    argv = f"--data {data} --out {out} --first-stage {model} --init {model} --pool 10 --max-length 48 --holdout 0"
    assert "held_out" not in train_reranker.main(argv.split())
    common = f"--model {model} --data {data} --split dev --dims 32 --resamples 50 --rerank {out}".split()
    on_train = evaluate.main([*common, "--fusion-weight-from", "train"])["lexical"]["reranked"]
    assert on_train["weights_from"].endswith("(train)") and on_train["32"]["weight"] in WEIGHT_GRID
    on_dev = evaluate.main(common)["lexical"]["reranked"]
    assert on_dev["weights_from"].endswith("(dev) (optimistic)") and on_dev["32"]["weight"] in WEIGHT_GRID


def test_held_out_questions_are_seeded_and_disjoint():
    trained_on, held = train_reranker.held_out(40, 0.1, seed=3)
    assert len(held) == 4 and len(trained_on) == 36 and not set(held) & set(trained_on)
    assert sorted([*held, *trained_on]) == list(range(40))
    again = train_reranker.held_out(40, 0.1, seed=3)
    assert (again[1] == held).all() and not (train_reranker.held_out(40, 0.1, seed=4)[1] == held).all()
    assert len(train_reranker.held_out(5, 0.01, seed=0)[1]) == 1 and len(train_reranker.held_out(5, 0, 0)[1]) == 0


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--rerank-weight 0.5", "--rerank-depth and --rerank-weight need --rerank DIR"),
        ("--rerank {out} --lexical none", "it needs --lexical bm25"),
        ("--rerank {out} --rerank-weight 1.5", "--rerank-weight 1.5: must be in"),
        ("--rerank {out} --rerank-depth 0", "--rerank-depth 0: must be in 1..100"),
        ("--rerank {missing}", "no such directory"),
        ("--rerank {model}", "no reranker.json"),
    ],
)
def test_evaluate_rejects_bad_rerank_flags(trained, tmp_path, capsys, flags, message):
    model, data, out, _ = trained
    argv = f"--model {model} --data {data} --split dev " + flags.format(out=out, model=model, missing=tmp_path / "x")
    with pytest.raises(SystemExit) as stop:
        evaluate.main(argv.split())
    assert message in str(stop.value) and str(stop.value).startswith("error: ")


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--negatives 0", "--negatives 0: must be at least 1"),
        ("--lr 0", "--lr 0.0: must be > 0"),
        ("--warmup 1", "--warmup 1.0: must be in [0, 1)"),
        ("--split test", "qrels/test.tsv"),
        ("--init {missing}", "no such directory"),
        ("--holdout 0.6", "--holdout 0.6: must be in [0, 0.5]"),
        ("--holdout-seed -1", "--holdout-seed -1: must be >= 0"),
        ("--depth 101", "--depth 101: must be in 1..100"),
        ("--max-length 4096 --init {model}", "max length 4096: the model"),
    ],
)
def test_train_reranker_rejects_bad_input(trained, tmp_path, flags, message):
    model, data, _, _ = trained
    argv = f"--data {data} --out {tmp_path / 'new'} --first-stage {model} "
    argv += flags.format(missing=tmp_path / "x", model=model)
    with pytest.raises(SystemExit) as stop:
        train_reranker.main(argv.split())
    assert message in str(stop.value) and str(stop.value).startswith("error: ")
    assert not (tmp_path / "new").exists()


def test_train_reranker_never_overwrites(trained):
    model, data, out, _ = trained
    before = (out / "complete.json").read_bytes()
    with pytest.raises(SystemExit, match="exists; give a new directory"):
        train_reranker.main(f"--data {data} --out {out} --first-stage {model}".split())
    assert (out / "complete.json").read_bytes() == before


def _rules_set(root):
    """Passages told apart only by a rule number of single digits ("Rule 3.4.7 applies to the firm."),
    each asked about by one train and one dev question: BM25 over words sees the same tokens in every
    passage and question; over reference tokens only the asked passage holds the question's number."""
    numbers = [f"3.{a}.{b}" for a in range(1, 5) for b in range(1, 7)]  # 24 passages
    corpus = [{"_id": f"r{i}", "title": "", "text": f"Rule {n} applies to the firm."} for i, n in enumerate(numbers)]
    write_jsonl(root / "corpus.jsonl", corpus)
    asked = [f"What does Rule {n} require?" for n in numbers]
    questions = [{"_id": f"{s}{i}", "text": text} for s in "td" for i, text in enumerate(asked)]
    write_jsonl(root / "queries.jsonl", questions)
    (root / "qrels").mkdir()
    for split, s in (("train", "t"), ("dev", "d")):
        (root / "qrels" / f"{split}.tsv").write_text("".join(f"{s}{i}\tr{i}\t1\n" for i in range(len(numbers))))
    return root


def test_a_reranker_trained_over_reference_tokens_says_so_and_its_weight_needs_them(trained, tmp_path, capsys):
    model = trained[0]
    data = _rules_set(tmp_path / "rules")
    argv = f"--data {data} --first-stage {model} --init {model} --pool 10 --negatives 3 --max-length 32 --batch 4"
    ref, words_dir = tmp_path / "ref", tmp_path / "words"
    references = train_reranker.main([*argv.split(), "--out", str(ref), "--bm25-tokens", "references"])
    words = train_reranker.main([*argv.split(), "--out", str(words_dir)])
    assert references["bm25_tokens"] == "references" and "bm25_tokens" not in words  # absent: words, as before
    # With reference tokens BM25 min-max scores the asked passage 1 and every other 0, so any dense weight
    # under 0.5 keeps it first: every held-out question's fused NDCG@10 is 1. Over words BM25 scores every
    # passage the same, so the fusion orders them by the random dense model (or corpus order): some miss.
    assert references["first_stage_weight"] < 0.5 and references["held_out"]["fused"] == 1.0
    assert words["held_out"]["fused"] < 1.0

    common = f"--model {model} --data {data} --split dev --dims 32 --resamples 50 --rerank".split()
    same = evaluate.main([*common, str(ref), "--bm25-tokens", "references"])["lexical"]["reranked"]
    assert "(references tokens) when it was trained" in same["weights_from"]
    assert same["32"]["weight"] == references["held_out"]["weight"]
    capsys.readouterr()
    for reranker, tokens, saved in ((ref, "words", "references"), (words_dir, "references", "words")):
        other = evaluate.main([*common, str(reranker), "--bm25-tokens", tokens])["lexical"]["reranked"]
        assert other["weights_from"].endswith("(dev) (optimistic)")  # its saved weight is over another fusion
        assert f"saved weight was chosen at BM25 over {saved} tokens" in capsys.readouterr().out

    shutil.copytree(ref, tmp_path / "ens.member-0")  # a references run as a words member (seed 0)
    with pytest.raises(SystemExit, match=r"made otherwise \(bm25_tokens \(references; this run: words\)\)"):
        train_reranker.main([*argv.split(), "--out", str(tmp_path / "ens"), "--members", "2"])
    assert not (tmp_path / "ens").exists()

    with pytest.raises(SystemExit, match="--bm25-tokens: --reweigh takes the first stage's tokens from the re-ranker"):
        train_reranker.main(["--reweigh", str(ref), "--bm25-tokens", "references"])
    reweighed = train_reranker.main(["--reweigh", str(ref), "--depth", "5"])  # its first stage rebuilt over references
    assert reweighed["held_out"]["fused"] == 1.0 and reweighed["depth"] == 5
    assert reweighed["bm25_tokens"] == "references"
