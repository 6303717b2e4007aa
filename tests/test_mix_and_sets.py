"""Several eval sets in one run and a second training source mixed into every batch (data.eval as
a list, eval.select_set, data.mix): the shares per batch, determinism, resume mid-epoch, masking
across sources, the per-set report, and the embedding space's numbers and map in a run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_resume import launch, log_of

import train
from data import PairsData, SpreadBatchSampler, TrainTable, index_texts
from helpers import random_texts, write_jsonl
from training.config import ConfigError, load_config
from training.table import mixed_table


def table_of_sources(sizes: list[int]) -> TrainTable:
    """A table whose rows are all distinct, `sizes[s]` rows from source s."""
    total = sum(sizes)
    pairs = PairsData([f"q{i}" for i in range(total)], [f"p{i}" for i in range(total)], [[] for _ in range(total)], "")
    return index_texts(pairs, source_rows=sizes)


def source_of(rows: np.ndarray, sizes: list[int]) -> np.ndarray:
    return np.searchsorted(np.cumsum(sizes), rows, side="right")


def test_every_batch_holds_each_sources_share_without_repeats_within_an_epoch():
    sizes, shares = [50, 30, 200], [3, 5]  # batch 16: 8 from data.train, 3 and 5 from the mixed sources
    sampler = SpreadBatchSampler(table_of_sources(sizes), 16, seed=7, mix_rows=shares)
    assert len(sampler) == 50 // 8 == 6
    batches = list(sampler)
    for batch in batches:
        assert len(batch) == 16 and len(set(batch.tolist())) == 16
        assert Counter(source_of(batch, sizes).tolist()) == {0: 8, 1: 3, 2: 5}
    drawn = np.concatenate(batches)
    for s in range(3):  # 48 of data.train's 50, 18 of 30 and 30 of 200: none twice in the epoch
        rows = drawn[source_of(drawn, sizes) == s]
        assert len(rows) == len(set(rows.tolist())) == [48, 18, 30][s]
    assert not np.array_equal(np.concatenate(list(sampler)), drawn)  # the next epoch draws anew


def test_a_small_source_is_drawn_whole_before_any_row_repeats_and_never_twice_in_a_batch():
    from data import mixed_draws

    for seed in range(20):  # 8 batches of 2 from a source of 5: passes end inside batches
        stream = np.concatenate([mixed_draws(5, 2, 8, epoch, [seed, 1]) for epoch in range(3)])  # (24, 2)
        assert all(a != b for a, b in stream.tolist())
        flat = stream.reshape(-1).tolist()  # the stream goes on across epochs
        for start in range(0, 45, 5):  # every pass over the source draws each row once
            assert sorted(flat[start : start + 5]) == [0, 1, 2, 3, 4], (seed, start)
        sampler = SpreadBatchSampler(table_of_sources([64, 5]), 10, seed=seed, mix_rows=[2])
        drawn = [list(sampler) for _ in range(3)]
        assert np.array_equal(
            np.stack([np.sort(b[b >= 64]) for epoch in drawn for b in epoch]) - 64, np.sort(stream, 1)
        )
        assert all(len(set(b.tolist())) == 10 for epoch in drawn for b in epoch)


def test_a_source_smaller_than_its_share_is_refused():
    with pytest.raises(ValueError, match=r"data.mix\[0\]: 3 rows, fewer than the 5 of every global batch"):
        SpreadBatchSampler(table_of_sources([40, 3]), 10, seed=0, mix_rows=[5])


def test_mixed_batches_are_deterministic_and_resume_mid_epoch():
    sizes, shares = [40, 25], [4]
    first = [b.tolist() for b in SpreadBatchSampler(table_of_sources(sizes), 12, 3, mix_rows=shares)]
    again = [b.tolist() for b in SpreadBatchSampler(table_of_sources(sizes), 12, 3, mix_rows=shares)]
    other = [b.tolist() for b in SpreadBatchSampler(table_of_sources(sizes), 12, 4, mix_rows=shares)]
    assert first == again and first != other
    sampler = SpreadBatchSampler(table_of_sources(sizes), 12, 3, mix_rows=shares)
    iterator = iter(sampler)
    next(iterator), next(iterator)
    state = sampler.state_dict()
    resumed = SpreadBatchSampler(table_of_sources(sizes), 12, 3, mix_rows=shares)
    resumed.load_state_dict(state)
    assert [b.tolist() for b in resumed] == first[2:]


def test_an_unmixed_sampler_is_unchanged_by_the_mixing_code():
    """Without data.mix the batches are spread_batches' with the (seed, epoch) generator, as before."""
    from data import spread_batches

    table = table_of_sources([40])
    plain = [b.tolist() for b in SpreadBatchSampler(table, 8, 5)]
    expected = spread_batches(table.anchor_ids, table.positive_ids, 8, np.random.default_rng([5, 0]))
    assert plain == [b.tolist() for b in expected]


def test_a_mixed_source_and_the_main_one_share_one_relevance_table(tmp_path):
    """A question of data.train whose passage is also a mixed source's positive: that passage is
    masked as known relevant in the question's row, whichever source put it in the batch."""
    main = write_jsonl(
        tmp_path / "main.jsonl", [{"anchor": f"main q{i}", "positive": f"passage {i}"} for i in range(6)]
    )
    extra = write_jsonl(
        tmp_path / "extra.jsonl",
        [{"anchor": "general q0", "positive": "passage 3", "negative": "n0"}]
        + [{"anchor": f"general q{i}", "positive": f"g{i}", "negative": f"n{i}"} for i in range(1, 4)],
    )
    config = load_config(
        ["--data.train", str(main), "--data.mix", f"[{{path: {extra}, weight: 0.25}}]", "--train.global_batch", "8"]
    )
    from data import load_pairs
    from training.table import relevance_map

    pairs = load_pairs(main)
    table = mixed_table(config, pairs, relevance_map(config, pairs))
    assert table.negative_ids.shape == (10, 0)  # data.train has no negatives: the mixed rows bring none
    assert table.source_rows == [6, 4] and len(table) == 10
    rows = np.array([3, 6, 0])  # main q3 (positive passage 3), general q0 (the same passage), main q0
    mask = table.known_mask(rows)  # (3, 3): candidates are the 3 rows' positives
    assert mask[0].tolist() == [True, True, False]  # passage 3 twice: both are main q3's known positive
    assert mask[1].tolist() == [True, True, False]  # and general q0's
    assert mask[2].tolist() == [False, False, True]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data.mix", "[{path: a.jsonl, weight: 0}]"], "data.mix[0].weight: a share of every batch in (0, 1)"),
        (["--data.mix", "[{weight: 0.2}]"], "data.mix[0].path: required"),
        (["--data.mix", "[{path: a.jsonl, weight: 0.5}, {path: b.jsonl, weight: 0.5}]"], "data.train at least 1"),
        (["--data.mix", "[{path: a.jsonl, weight: 0.2}]", "--train.drop_last", "false"], "needs train.drop_last true"),
        (["--data.eval", "[{name: x, path: a}, {name: x, path: b}]"], "data.eval[1].name: 'x' names two sets"),
        (["--data.eval", "[{name: x}]"], "data.eval[0].path: required"),
        (["--data.eval", "[{name: x, path: a, spilt: dev}]"], "unknown key data.eval[0].spilt"),
        (["--data.eval", "a", "--eval.select_set", "b"], "eval.select_set: 'b' is not a data.eval set (sets: a)"),
    ],
)
def test_bad_sets_and_mixes_are_named(argv, message):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(["--data.train", "x.jsonl", *argv])
    assert message in str(err.value)


# ---------------------------------------------------------------- in a run


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory) -> Path:
    """A domain task (40 pairs, a BEIR dev set of 60 passages with doc_ids) and a general one (24
    pairs, a BEIR dev set of its own), as a user with a general set would have them."""
    root = tmp_path_factory.mktemp("two_tasks")
    for name, n_pairs, n_passages, seed in (("domain", 40, 60, 21), ("general", 24, 30, 31)):
        questions, passages = random_texts(n_pairs, seed=seed, max_words=8), random_texts(n_passages, seed=seed + 1)
        write_jsonl(
            root / name / "pairs.jsonl", [{"anchor": q, "positive": passages[i]} for i, q in enumerate(questions)]
        )
        corpus = [{"_id": f"d{i}", "text": p, "doc_id": i % 4} for i, p in enumerate(passages)]
        write_jsonl(root / name / "beir" / "corpus.jsonl", corpus)
        write_jsonl(
            root / name / "beir" / "queries.jsonl", [{"_id": f"q{i}", "text": q} for i, q in enumerate(questions[:12])]
        )
        write_jsonl(root / name / "beir" / "qrels" / "dev.tsv", [])  # the folder
        (root / name / "beir" / "qrels" / "dev.tsv").write_text("".join(f"q{i}\td{i}\t1\n" for i in range(12)))
    return root


def run_args(model: Path, tasks: Path, out: Path, *extra: str) -> list[str]:
    """Domain pairs with a quarter of every batch from the general ones; both dev sets scored."""
    return [
        "--model.name_or_path",
        str(model),
        "--data.train",
        str(tasks / "domain" / "pairs.jsonl"),
        "--data.mix",
        f"[{{path: {tasks / 'general' / 'pairs.jsonl'}, weight: 0.25}}]",
        "--data.eval",
        f"[{{name: domain, path: {tasks / 'domain' / 'beir'}}}, {{name: general, path: {tasks / 'general' / 'beir'}}}]",
        "--eval.every",
        "epoch",
        "--train.global_batch",
        "8",
        "--train.micro_batch",
        "3",
        "--train.epochs",
        "2",
        "--loss.dims",
        "32,16",
        "--train.lr",
        "1e-3",
        "--checkpoint.every",
        "2",
        "--report.report_to",
        "[]",
        "--report.map",
        "false",
        "--output.dir",
        str(out),
        *extra,
    ]


def test_a_config_with_two_eval_sets_and_a_mix_dry_runs(tiny_bert, two_tasks, tmp_path, capsys):
    found = train.main(run_args(tiny_bert, two_tasks, tmp_path / "run", "--dry-run"))
    printed = capsys.readouterr().out
    assert found == {"rows": 64, "steps_per_epoch": 40 // 6}
    assert "each global batch of 8: 6 from" in printed and "2 from" in printed
    assert (
        "eval set domain:" in printed and "eval set general:" in printed and "(eval.select scores this one)" in printed
    )


def test_every_eval_set_is_reported_before_and_after_with_the_paired_change(tiny_bert, two_tasks, tmp_path):
    out = tmp_path / "run"
    result = train.main(
        run_args(tiny_bert, two_tasks, out, "--eval.select_set", "general", "--eval.select", "ndcg@10:32")
    )
    sets = result["eval_sets"]
    assert list(sets) == ["domain", "general"] and sets["general"]["selected"] and not sets["domain"]["selected"]
    for name in sets:
        assert set(sets[name]["before"]) == set(sets[name]["after"]) == {"32", "16"}
        change = sets[name]["change"]["32"]["ndcg@10"]
        assert change["new"] - change["base"] == pytest.approx(change["diff"])
        assert change["new"] == pytest.approx(sets[name]["after"]["32"]["ndcg@10"])
    assert result["after"][32] == sets["general"]["after"]["32"]  # the selected set is the run's own
    curve = result["curve"]
    assert len(curve) == 2 and all(set(point["sets"]) == {"domain"} for point in curve)  # the others, per step
    best = max(curve, key=lambda p: p["metrics"]["32"]["ndcg@10"])
    assert result["selected_step"] == best["step"]
    assert sets["domain"]["after"] == best["sets"]["domain"]  # the other set at the step kept
    md = (out / "results.md").read_text()
    assert "## Every eval set" in md and "### domain:" in md and "### general:" in md
    card = (out / "model" / "README.md").read_text()
    assert "## Every eval set" in card and "on 40 training rows" in card
    assert f"mixed with 24 rows of `{two_tasks / 'general' / 'pairs.jsonl'}` (2 of every 8)" in card


def test_a_mixed_run_with_two_eval_sets_resumes_after_a_sigkill_bitwise(tiny_bert, two_tasks, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    proc = launch(1, straight, run_args(tiny_bert, two_tasks, straight))
    assert proc.returncode == 0, proc.stderr[-3000:]
    killed = launch(1, resumed, run_args(tiny_bert, two_tasks, resumed), kill_at=9)  # epoch 2 (6 steps each)
    assert killed.returncode != 0 and not (resumed / "model").exists()
    again = launch(1, resumed, run_args(tiny_bert, two_tasks, resumed, "--resume"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr and "step 8" in again.stderr
    a, b = load_file(resumed / "model" / "model.safetensors"), load_file(straight / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [(r["step"], r["loss"]) for r in log_of(resumed)] == [(r["step"], r["loss"]) for r in log_of(straight)]
    results_a, results_b = (json.loads((run / "results.json").read_text()) for run in (resumed, straight))
    assert results_a["eval_sets"] == results_b["eval_sets"] and results_a["curve"] == results_b["curve"]


def test_the_run_reports_the_embedding_space_and_draws_its_map(tiny_bert, two_tasks, tmp_path, capsys):
    """The numbers in results.json against a direct computation on the saved model's embeddings;
    the map: a PNG in the run and in model/, referred to by the card."""
    from model import Encoder, ModelConfig
    from retrieval.diagnostics import map_problem

    out = tmp_path / "run"
    argv = run_args(tiny_bert, two_tasks, out, "--train.epochs", "1", "--report.map", "true")
    result = train.main(argv)
    space = result["space"]
    assert set(space["before"]) == set(space["after"]) == {"32", "16"}
    data_dir = two_tasks / "domain" / "beir"
    texts = [json.loads(line)["text"] for line in (data_dir / "corpus.jsonl").read_text().splitlines()]
    passages = Encoder.from_config(ModelConfig(str(out / "model"))).encode(texts).double().numpy()
    cut = passages[:, :16] / np.linalg.norm(passages[:, :16], axis=1, keepdims=True)
    cosines = cut @ cut.T
    n = len(cut)  # 60 passages: the whole corpus is the sample
    assert space["after"]["16"]["anisotropy"] == pytest.approx((cosines.sum() - n) / (n * (n - 1)), abs=1e-5)
    potentials = np.exp(-2 * (2 - 2 * cosines))
    expected = np.log((potentials.sum() - n) / (n * (n - 1)))
    assert space["after"]["16"]["uniformity"] == pytest.approx(expected, abs=1e-4)
    assert result["eval_sets"]["general"]["space"]["after"]["32"]["effective_rank"] > 1
    md = (out / "results.md").read_text()
    assert "## The embedding space" in md and "anisotropy after" in md
    if map_problem(60) is not None:
        assert "no results_map.png" in capsys.readouterr().out
        return
    png = (out / "results_map.png").read_bytes()
    assert png.startswith(b"\x89PNG") and (out / "model" / "results_map.png").read_bytes() == png
    assert "results_map.png" in (out / "model" / "README.md").read_text()


def test_no_map_below_50_passages_says_so(tiny_bert, tmp_path, capsys):
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl", [{"anchor": f"question {i}", "positive": f"passage {i} text"} for i in range(8)]
    )
    beir = tmp_path / "beir"
    write_jsonl(beir / "corpus.jsonl", [{"_id": f"d{i}", "text": f"passage {i} text"} for i in range(8)])
    write_jsonl(beir / "queries.jsonl", [{"_id": f"q{i}", "text": f"question {i}"} for i in range(8)])
    write_jsonl(beir / "qrels" / "dev.tsv", [f"q{i}\td{i}\t1" for i in range(8)])
    argv = ["--model.name_or_path", str(tiny_bert), "--data.train", str(pairs), "--data.eval", str(beir)]
    train.main(
        [
            *argv,
            "--train.global_batch",
            "8",
            "--loss.dims",
            "32",
            "--report.report_to",
            "[]",
            "--output.dir",
            str(tmp_path / "run"),
        ]
    )
    printed = capsys.readouterr().out
    assert (
        "no results_map.png: the embedding map needs" in printed and not (tmp_path / "run" / "results_map.png").exists()
    )
