"""train_reranker.py --reweigh: a saved re-ranker's weight chosen again for another depth on its own
held-out questions, without training. Checked against a re-ranker trained from the start with that
depth (depth does not change training, so the two must save the same held-out choice), for one
re-ranker and for an ensemble; the weights untouched, the earlier choice kept, evaluate.py reading
the new depth, and every bad call refused with one line and nothing changed."""

from __future__ import annotations

import json
import os
import shutil

import pytest

import evaluate
import retrieval.rerank as rerank
import train_reranker
from retrieval.rerank import load_reranker, saved_problem
from tests.test_rerank_ensemble import _argv, _tiny_set


def _files(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _settings(path):
    return json.loads((path / "reranker.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Seed 5 and 6 trained for depth 8, and seed 5 again for depth 5."""
    root = tmp_path_factory.mktemp("reweigh")
    model, data = _tiny_set(root)
    paths = {}
    for seed, depth in ((5, 8), (6, 8), (5, 5)):
        paths[seed, depth] = root / f"s{seed}d{depth}"
        argv = [a if a != "8" else str(depth) for a in _argv(model, data, paths[seed, depth], "--seed", str(seed))]
        train_reranker.main(argv)
    return model, data, paths


def _reweigh(path, depth, *extra):
    return train_reranker.main(["--reweigh", str(path), "--depth", str(depth), "--holdout", "0.25", *extra])


def test_reweighed_is_what_training_for_that_depth_saves(trained, tmp_path, capsys):
    model, data, paths = trained
    again = tmp_path / "again"
    shutil.copytree(paths[5, 8], again)
    before, old = _files(again), _settings(again)
    os.link(again / "reranker.json", tmp_path / "linked.json")  # a link made before: never written through
    new = _reweigh(again, 5, "--data", str(data))
    direct = _settings(paths[5, 5])
    assert old["held_out"]["curve"] != direct["held_out"]["curve"]  # the depth changes the choice here
    assert new["depth"] == 5 and new["held_out"] == direct["held_out"]  # curve, weights, questions' sha256
    assert new["reweighed"] == [{"depth": 8, **{k: old["held_out"][k] for k in ("weight", "reranked", "curve")}}]
    assert {k: v for k, v in new.items() if k not in ("depth", "held_out", "reweighed")} == {
        k: v for k, v in old.items() if k not in ("depth", "held_out")
    }
    assert _settings(again) == new and saved_problem(again) is None
    after = _files(again)
    assert {k: v for k, v in after.items() if k not in ("reranker.json", "complete.json")} == {
        k: v for k, v in before.items() if k not in ("reranker.json", "complete.json")
    }  # the weights and tokenizer untouched
    assert not list(tmp_path.glob(".again*"))
    assert (tmp_path / "linked.json").read_bytes() == before["reranker.json"]  # replaced, not written in place
    assert load_reranker(again).depth == 5
    argv = f"--model {model} --data {data} --split dev --dims 32 --resamples 50 --rerank {again}"
    got = evaluate.main(argv.split())["lexical"]["reranked"]
    assert got["depth"] == 5 and got["32"]["weight"] == new["held_out"]["weight"]
    assert "depth 8 -> 5" in capsys.readouterr().out


def test_an_ensemble_is_reweighed_as_one_trained_for_that_depth(trained, tmp_path):
    model, data, paths = trained
    for seed in (5, 6):  # members trained for depth 8, kept by an ensemble run for depth 5: depth is not trained
        shutil.copytree(paths[seed, 8], tmp_path / f"d5.member-{seed}")
        shutil.copytree(paths[seed, 8], tmp_path / f"d8.member-{seed}")
    argv = _argv(model, data, tmp_path / "d5", "--seed", "5", "--members", "2")
    direct = train_reranker.main([a if a != "8" else "5" for a in argv])
    train_reranker.main(_argv(model, data, tmp_path / "d8", "--seed", "5", "--members", "2"))
    members = {name: _files(tmp_path / "d8" / name) for name in ("d8.member-5", "d8.member-6")}
    new = _reweigh(tmp_path / "d8", 5)
    assert new["depth"] == 5 and new["held_out"] == direct["held_out"] and new["reweighed"][0]["depth"] == 8
    assert direct["held_out"]["curve"] != new["reweighed"][0]["curve"]  # the depth changes the choice here
    assert {name: _files(tmp_path / "d8" / name) for name in members} == members
    ensemble = load_reranker(tmp_path / "d8")
    assert ensemble.depth == 5 and [m.depth for m in ensemble.members] == [8, 8]  # each member as it was saved


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--holdout-seed 1", "held out other questions than --holdout 0.25 --holdout-seed 1"),
        ("--data {other}", "was trained on"),
        ("--out {out}", r"give --out \(train a re-ranker\) or --reweigh DIR"),
    ],
)
def test_a_bad_reweigh_changes_nothing(trained, tmp_path, flags, message):
    _, data, paths = trained
    again = tmp_path / "again"
    shutil.copytree(paths[5, 8], again)
    other = tmp_path / "other"
    shutil.copytree(data, other)
    before = _files(again)
    with pytest.raises(SystemExit, match=message):
        _reweigh(again, 5, *flags.format(other=other, out=tmp_path / "new").split())
    assert _files(again) == before


def test_no_re_ranker_and_one_without_held_out_questions_are_refused(trained, tmp_path):
    model, data, _ = trained
    with pytest.raises(SystemExit, match="--reweigh .*missing: no such directory"):
        _reweigh(tmp_path / "missing", 5)
    with pytest.raises(SystemExit, match="--holdout 0: --reweigh chooses on the questions"):
        train_reranker.main(["--reweigh", str(tmp_path), "--depth", "5", "--holdout", "0"])
    with pytest.raises(SystemExit, match="--data: required to train"):
        train_reranker.main(["--out", str(tmp_path / "x")])
    train_reranker.main([a if a != "0.25" else "0" for a in _argv(model, data, tmp_path / "none", "--seed", "5")])
    with pytest.raises(SystemExit, match="held no questions out"):
        _reweigh(tmp_path / "none", 5)


def test_reweigh_of_the_current_folder(trained, tmp_path, monkeypatch):
    """`--reweigh .` (a path with no name to build the new copy beside) reweighs as a full path does."""
    _, _, paths = trained
    here, there = tmp_path / "here", tmp_path / "there"
    shutil.copytree(paths[5, 8], here)
    shutil.copytree(paths[5, 8], there)
    want = _reweigh(there, 5)
    monkeypatch.chdir(here)
    assert train_reranker.main(["--reweigh", ".", "--depth", "5", "--holdout", "0.25"]) == want
    assert saved_problem(here) is None and _settings(here) == want


def test_a_failed_resave_leaves_the_re_ranker_whole(trained, tmp_path):
    _, _, paths = trained
    again = tmp_path / "again"
    shutil.copytree(paths[5, 8], again)
    before = _files(again)
    with pytest.raises(TypeError, match="not JSON serializable"):  # fails inside, after the copy
        rerank.resave_settings(again, {**_settings(again), "weight": object()})
    assert _files(again) == before and saved_problem(again) is None
    assert not list(tmp_path.glob(".again*"))


def test_the_held_out_draw_is_read_from_the_re_ranker(trained, tmp_path):
    """A re-ranker records the draw that held its questions out, so --reweigh needs no --holdout: the
    same choice as with the flags. One saved before the draw was recorded falls back to the flags'
    defaults, and its questions' sha256 still refuses a wrong draw."""
    _, _, paths = trained
    assert {k: _settings(paths[5, 8])["held_out"][k] for k in ("fraction", "seed")} == {"fraction": 0.25, "seed": 0}
    flags, read = tmp_path / "flags", tmp_path / "read"
    shutil.copytree(paths[5, 8], flags)
    shutil.copytree(paths[5, 8], read)
    with_flags = _reweigh(flags, 5)
    assert train_reranker.main(["--reweigh", str(read), "--depth", "5"]) == with_flags

    older = tmp_path / "older"
    shutil.copytree(paths[5, 8], older)
    settings = _settings(older)
    settings["held_out"] = {k: v for k, v in settings["held_out"].items() if k not in ("fraction", "seed")}
    rerank.resave_settings(older, settings)
    before = _files(older)
    with pytest.raises(SystemExit, match="held out other questions than --holdout 0.1 --holdout-seed 0"):
        train_reranker.main(["--reweigh", str(older), "--depth", "5"])
    assert _files(older) == before
    assert _reweigh(older, 5)["held_out"] == with_flags["held_out"]  # the flags given: as before
