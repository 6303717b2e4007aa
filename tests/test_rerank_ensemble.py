"""train_reranker.py --members: an ensemble of re-rankers from consecutive seeds, each member the
very model a single run with its seed trains, kept when an earlier run left it; the ensemble's
logit the mean of its members' as sentence-transformers scores them; evaluate.py --rerank reads it;
a damaged or foreign member is refused, and a failed save leaves the members where they were."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

import evaluate
import train_reranker
from common.files import write_manifest
from data import load_ir
from retrieval.fusion import WEIGHT_GRID
from retrieval.rerank import CrossEncoder, Ensemble, load_reranker, resave_settings, save_ensemble, saved_problem
from tests.helpers import make_tiny_bert, tiny_beir
from tests.test_rerank_commands import _fused_rows, reordered_score


def _tiny_set(root):
    """A tiny BERT and a tiny BEIR set with 12 train questions beside its 12 dev ones."""
    model, data = make_tiny_bert(root / "model"), tiny_beir(root / "beir", n_docs=60, n_queries=12)
    texts = [json.loads(line)["text"] for line in (data / "corpus.jsonl").read_text().splitlines()]
    with open(data / "queries.jsonl", "a") as queries:
        queries.writelines(json.dumps({"_id": f"t{i}", "text": texts[i * 3 + 1][:25]}) + "\n" for i in range(12))
    (data / "qrels" / "train.tsv").write_text("".join(f"t{i}\tc{i * 3 + 1}\t1\n" for i in range(12)))
    return model, data


def _argv(model, data, out, *extra):
    flags = f"--data {data} --out {out} --first-stage {model} --init {model} --pool 10 --negatives 3 "
    return [*(flags + "--max-length 48 --depth 8 --batch 4 --holdout 0.25").split(), *extra]


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """Single runs with seeds 5 and 6; then --members 2 --seed 5, with seed 5's run left where the
    ensemble keeps its first member (as an interrupted ensemble run would leave it)."""
    root = tmp_path_factory.mktemp("ensemble")
    model, data = _tiny_set(root)
    singles = {seed: root / f"single{seed}" for seed in (5, 6)}
    for seed, path in singles.items():
        train_reranker.main(_argv(model, data, path, "--seed", str(seed)))
    out = root / "ens"
    shutil.copytree(singles[5], root / "ens.member-5")
    settings = train_reranker.main(_argv(model, data, out, "--seed", "5", "--members", "2"))
    return model, data, out, settings, singles


def test_each_member_is_the_single_run_of_its_seed(ensemble, capsys):
    _, _, out, settings, singles = ensemble
    assert settings["members"] == ["ens.member-5", "ens.member-6"] and settings["seeds"] == [5, 6]
    assert not list(out.parent.glob("ens.member-*")) and not list(out.parent.glob(".ens.tmp-*"))
    for seed, name in zip((5, 6), settings["members"]):
        ours, single = load_file(out / name / "model.safetensors"), load_file(singles[seed] / "model.safetensors")
        assert ours.keys() == single.keys() and all(np.array_equal(ours[k], single[k]) for k in ours)
        member, single = (json.loads((where / "reranker.json").read_text()) for where in (out / name, singles[seed]))
        member["trained"].pop("seconds"), single["trained"].pop("seconds")  # all else the same
        assert member == single
    heads = [load_file(out / name / "model.safetensors")["classifier.weight"] for name in settings["members"]]
    assert not np.array_equal(*heads)  # two seeds, two models
    each = [json.loads((singles[s] / "reranker.json").read_text())["trained"] for s in (5, 6)]
    assert settings["trained"]["steps"] == sum(t["steps"] for t in each)
    assert [t["pairs"] for t in settings["trained"]["members"]] == [t["pairs"] for t in each]
    assert settings["training"]["seed"] == 5 and settings["max_length"] == 48 and settings["depth"] == 8
    held = settings["held_out"]
    assert held["questions"] == 3 and held["weight"] in WEIGHT_GRID and held["rule"] == "one standard error"
    assert held["fused"] == json.loads((singles[5] / "reranker.json").read_text())["held_out"]["fused"]
    assert saved_problem(out) is None and json.loads((out / "reranker.json").read_text()) == settings
    kept = (out / "ens.member-5" / "complete.json").read_bytes()  # the run's own seed 5 would differ (its seconds)
    assert kept == (singles[5] / "complete.json").read_bytes()


def test_a_member_stopped_before_its_weight_is_kept_and_given_one(ensemble, tmp_path, capsys):
    model, data, _, _, singles = ensemble
    for seed in (5, 6):
        shutil.copytree(singles[seed], tmp_path / f"again.member-{seed}")
    unweighted = tmp_path / "again.member-6"  # as a run stopped while choosing its weight leaves it
    settings = json.loads((unweighted / "reranker.json").read_text())
    (unweighted / "reranker.json").write_text(json.dumps({k: v for k, v in settings.items() if k != "held_out"}))
    write_manifest(unweighted)
    train_reranker.main(_argv(model, data, tmp_path / "again", "--seed", "5", "--members", "2"))
    printed = capsys.readouterr().out
    assert printed.count(": kept (an earlier run's") == 2 and "re-ranker saved to" not in printed  # nothing trained
    member = json.loads((tmp_path / "again" / "again.member-6" / "reranker.json").read_text())
    assert member["held_out"] == settings["held_out"]  # the weight the single run chose, chosen again
    with pytest.raises(SystemExit, match="this run holds none"):
        shutil.copytree(singles[5], tmp_path / "none.member-5")
        train_reranker.main(_argv(model, data, tmp_path / "none", "--seed", "5", "--members", "2", "--holdout", "0"))


def test_the_ensembles_logit_is_the_mean_of_its_members_in_sentence_transformers(ensemble):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    _, data, out, settings, singles = ensemble
    ours = load_reranker(out)
    assert isinstance(ours, Ensemble) and ours.depth == 8 and len(ours.members) == 2
    ir = load_ir(data, "dev")
    pairs = [(ir.query_texts[q], ir.corpus_texts[r]) for q in range(6) for r in range(0, 60, 7)]
    theirs = np.mean([STCrossEncoder(str(singles[s]), device="cpu").predict(pairs, batch_size=7) for s in (5, 6)], 0)
    np.testing.assert_allclose(ours.score(pairs[:10], 4), theirs[:10], atol=1e-5)
    np.testing.assert_allclose(ours.score(pairs, 5), theirs, atol=1e-5)  # the first 10 from the members' caches
    with pytest.raises(ValueError, match="an ensemble of 2; not one model"):
        CrossEncoder.load(out)


def test_evaluate_reranks_with_the_ensemble(ensemble):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    model, data, out, _, singles = ensemble
    argv = f"--model {model} --data {data} --split dev --dims 32 --resamples 50 --rerank {out}"
    got = evaluate.main([*argv.split(), "--rerank-weight", "1", "--rerank-depth", "5"])["lexical"]["reranked"]
    ir, _, (_, rows) = _fused_rows(model, data)
    members = [STCrossEncoder(str(singles[s]), device="cpu") for s in (5, 6)]
    logits = np.array(
        [
            np.mean([m.predict([(ir.query_texts[q], ir.corpus_texts[r]) for r in line[:5]]) for m in members], 0)
            for q, line in enumerate(rows)
        ]
    )
    expected = reordered_score(ir, rows, logits)
    assert got["32"]["ndcg@10"] == pytest.approx(expected.metrics["ndcg@10"], abs=1e-12)
    assert got["32"]["map@100"] == pytest.approx(expected.metrics["map@100"], abs=1e-12)
    saved = evaluate.main(argv.split())["lexical"]["reranked"]  # the ensemble's own held-out weight
    assert saved["32"]["weight"] == json.loads((out / "reranker.json").read_text())["held_out"]["weight"]


def test_a_member_made_otherwise_is_refused(ensemble, tmp_path):
    model, data, _, _, singles = ensemble
    shutil.copytree(singles[6], tmp_path / "new.member-5")  # seed 6's run where seed 5's belongs
    with pytest.raises(SystemExit) as stop:
        train_reranker.main(_argv(model, data, tmp_path / "new", "--seed", "5", "--members", "2"))
    assert str(stop.value).startswith(f"error: {tmp_path / 'new.member-5'}: a re-ranker made otherwise (training")
    assert not (tmp_path / "new").exists() and (tmp_path / "new.member-5" / "complete.json").is_file()
    other = tmp_path / "other.member-5"  # seed 5, other held-out questions
    train_reranker.main(_argv(model, data, other, "--seed", "5", "--holdout-seed", "1"))
    with pytest.raises(SystemExit, match=r"made otherwise \(trained_on, held_out \(other held-out questions\)\)"):
        train_reranker.main(_argv(model, data, tmp_path / "other", "--seed", "5", "--members", "2"))
    (tmp_path / "new.member-5" / "complete.json").unlink()  # as an interrupted save leaves it
    with pytest.raises(SystemExit, match="a member left by an interrupted run"):
        train_reranker.main(_argv(model, data, tmp_path / "new", "--seed", "5", "--members", "2"))


def test_a_member_that_trained_on_the_questions_now_held_out_is_refused(ensemble, tmp_path):
    """A member left by a run that held nothing out (--holdout 0) trained on the questions this run
    holds out: keeping it and choosing its weight there would score it on its own training
    questions. Refused even where every other setting matches (its first stage's weight set to
    this run's, as a large split would give it)."""
    model, data, _, _, singles = ensemble
    member = tmp_path / "zero.member-5"
    train_reranker.main(_argv(model, data, member, "--seed", "5", "--holdout", "0"))
    settings = json.loads((member / "reranker.json").read_text())
    first_stage_weight = json.loads((singles[5] / "reranker.json").read_text())["first_stage_weight"]
    resave_settings(member, {**settings, "first_stage_weight": first_stage_weight})
    with pytest.raises(SystemExit, match=r"^error: .*zero.member-5: a re-ranker made otherwise \(trained_on\)"):
        train_reranker.main(_argv(model, data, tmp_path / "zero", "--seed", "5", "--members", "2"))
    assert "held_out" not in json.loads((member / "reranker.json").read_text())


def test_a_damaged_or_strange_member_is_refused(ensemble, tmp_path):
    _, _, out, settings, _ = ensemble
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / settings["members"][1] / "model.safetensors", "r+b") as weights:
        weights.seek(-8, 2)
        weights.write(b"\0" * 8)
    with pytest.raises(ValueError, match="does not match its checksum"):
        load_reranker(copy)
    strange = tmp_path / "strange"
    shutil.copytree(out, strange)
    cases = (("../copy", "names the member '../copy', not a folder inside it"), (7, "unreadable"), (None, "empty"))
    for name, problem in cases:
        (strange / "reranker.json").write_text(json.dumps({**settings, "members": [] if name is None else [name]}))
        write_manifest(strange)  # a manifest that agrees: only the names are wrong
        assert problem in saved_problem(strange)
        with pytest.raises(ValueError, match="re-ranker .*strange"):
            load_reranker(strange)


def test_a_failed_ensemble_save_leaves_the_members_where_they_were(ensemble, tmp_path):
    _, _, _, _, singles = ensemble
    members = [shutil.copytree(singles[s], tmp_path / f"m{s}") for s in (5, 6)]
    before = [(m / "complete.json").read_bytes() for m in members]
    with pytest.raises(TypeError, match="not JSON serializable"):  # fails inside, after the members' copies
        save_ensemble(members, tmp_path / "out", {"depth": object()})
    assert [(m / "complete.json").read_bytes() for m in members] == before and not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="never written over"):
        save_ensemble(members, tmp_path / "taken", {"depth": 8})
    assert saved_problem(members[0]) is None and saved_problem(members[1]) is None
    assert saved_problem(save_ensemble(members, tmp_path / "out", {"depth": 8})) is None


def test_the_bench_rebuilds_the_held_out_curves_the_rerankers_saved(ensemble, tmp_path):
    from bench import rerank_ensemble

    _, data, out, settings, singles = ensemble
    argv = f"--data {data} --rerankers {singles[5]},{singles[6]} --ensembles A+B --holdout 0.25 --resamples 200"
    read = argv.replace(" --holdout 0.25", "")  # the draw (--holdout 0.25, seed 0) read from reranker.json
    result = rerank_ensemble.main([*read.split(), "--out", str(tmp_path / "r.json")])
    saved = {f"A {singles[5]}": singles[5], f"B {singles[6]}": singles[6], "A+B": out}
    for label, where in saved.items():  # each curve as train_reranker.py saved it, the ensemble's too
        curve = json.loads((where / "reranker.json").read_text())["held_out"]["curve"]
        assert {w: round(float(np.mean(v)), 6) for w, v in result["curves"][label].items()} == curve
        assert result["weights"][label] == json.loads((where / "reranker.json").read_text())["held_out"]["weight"]
    a, ab = (np.array(result["curves"][k][f"{result['weights'][k]:g}"]) for k in (f"A {singles[5]}", "A+B"))
    assert result["pairs"]["A+B - A"]["diff"] == pytest.approx(float(np.mean(ab - a)), abs=1e-12)
    assert json.loads((tmp_path / "r.json").read_text()) == result
    with pytest.raises(SystemExit, match="held out 3 questions, not 6"):
        rerank_ensemble.main([*argv.split(), "--holdout", "0.5"])
    with pytest.raises(SystemExit, match="held out other questions than --holdout 0.25 --holdout-seed 1"):
        rerank_ensemble.main([*argv.split(), "--holdout-seed", "1"])
    other = tmp_path / "other"  # B recording another draw than A: refused, whatever the flags
    shutil.copytree(singles[6], other)
    settings = json.loads((other / "reranker.json").read_text())
    resave_settings(other, {**settings, "held_out": {**settings["held_out"], "fraction": 0.3}})
    with pytest.raises(SystemExit, match=r"record different held-out draws \[\(0.25, 0\), \(0.3, 0\)\]"):
        rerank_ensemble.main(read.replace(str(singles[6]), str(other)).split())
    tokens = tmp_path / "tokens"  # B's first stage over BM25 reference tokens: another fusion, refused
    shutil.copytree(singles[6], tokens)
    resave_settings(tokens, {**json.loads((tokens / "reranker.json").read_text()), "bm25_tokens": "references"})
    with pytest.raises(SystemExit, match="differ in .*bm25_tokens.*cannot be paired"):
        rerank_ensemble.main(read.replace(str(singles[6]), str(tokens)).split())


def test_the_bench_ranks_each_depth_as_a_reweighed_re_ranker_saves_it(ensemble, tmp_path):
    from bench import rerank_ensemble

    _, data, _, _, singles = ensemble
    argv = f"--data {data} --rerankers {singles[5]} --ensembles A --holdout 0.25 --resamples 200 --depths 5,8,3"
    result = rerank_ensemble.main(argv.split())
    assert result["depth"] == 8 and set(result["depths"][f"A {singles[5]}"]) == {"3", "5"}  # 8: its own
    for i, label in enumerate((f"A {singles[5]}", "A")):  # the re-ranker, and an ensemble of it alone
        again = tmp_path / f"again-{i}"
        shutil.copytree(singles[5], again)
        found = result["depths"][label]["5"]
        held = train_reranker.main(["--reweigh", str(again), "--depth", "5", "--holdout", "0.25"])["held_out"]
        assert found["weight"] == held["weight"]
        assert {w: round(float(np.mean(v)), 6) for w, v in found["curve"].items()} == held["curve"]
        own = np.array(result["curves"][label][f"{result['weights'][label]:g}"])
        mine = np.array(found["curve"][f"{found['weight']:g}"])
        assert found["change"]["diff"] == pytest.approx(float(np.mean(mine - own)), abs=1e-12)
    with pytest.raises(SystemExit, match="--depths 0,5: each must be in 1..100"):
        rerank_ensemble.main([*argv.split()[:-1], "0,5"])
