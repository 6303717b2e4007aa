"""The small benches that BENCHMARKS.md's commands run, end to end on tiny inputs, so none breaks
unseen: mask_count's slot counts against a count by hand, compare_st's agreement with
sentence-transformers on the packaged model, hybrid_cost's and encode_speed's tables, and
fusion_prf's feedback query against a direct computation."""

from __future__ import annotations

import pytest

from bench import encode_speed, hybrid_cost, mask_count
from tests.helpers import make_tiny_bert, tiny_beir, write_jsonl


def test_mask_count_against_a_count_by_hand(tmp_path):
    """One batch of four rows: q1 has p1 and p2, q2 has p2, q3 has p4. Row (q1, p1) sees p2 twice
    (rows 2 and 3: other passages known relevant to q1), row (q1, p2) sees p1 once and a copy of
    its own positive (row 3); row (q2, p2) a copy of its own (row 2); q3 nothing. Both rules mask all."""
    rows = [("q1", "p1"), ("q1", "p2"), ("q2", "p2"), ("q3", "p4")]
    train = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": q, "positive": p} for q, p in rows])
    counts = mask_count.main(["--train", str(train), "--batch", "4"])
    assert counts == {
        "queries": 4,
        "queries_exposed": 2,
        "other_slots": 3,
        "other_batch_local": 3,
        "other_table_wide": 3,
        "copy_slots": 2,
        "copy_batch_local": 2,
        "copy_table_wide": 2,
    }
    # Batches of two, seed 42: the sampler spreads q1's rows apart, (q1, p1) beside (q2, p2) and (q1, p2)
    # beside (q3, p4). (q1, p1) then sees p2, known relevant to q1 through a row in the other batch:
    # the batch-local rule cannot see it, the table-wide rule masks it.
    spread = mask_count.main(["--train", str(train), "--batch", "2", "--seed", "42"])
    assert {k: v for k, v in spread.items() if k.startswith("other")} == {
        "other_slots": 1,
        "other_batch_local": 0,
        "other_table_wide": 1,
    }
    assert spread["queries_exposed"] == 1 and spread["copy_slots"] == 0


def test_compare_st_agrees_with_sentence_transformers_on_the_packaged_model(tmp_path):
    pytest.importorskip("sentence_transformers")
    from bench import compare_st

    beir = tiny_beir(tmp_path / "beir", n_docs=24, n_queries=6)
    assert compare_st.main(["--data", str(beir), "--out", str(tmp_path / "agree.json")]) == 0
    assert (tmp_path / "agree.json").is_file()


def test_hybrid_cost_and_encode_speed_print_their_tables(tmp_path, capsys):
    beir = tiny_beir(tmp_path / "beir", n_docs=30, n_queries=6)
    hybrid_cost.main(["--data", str(beir), "--dims", "32,16", "--repeats", "2"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "part" not in line]
    assert len(table) == 4
    for line in table:  # part | min s | median s | max s
        low, middle, high = (float(cell) for cell in line.strip("| ").split(" | ")[1:])
        assert 0 <= low <= middle <= high
    model = make_tiny_bert(tmp_path / "m")
    encode_speed.main(["--impl", "ours", "--model", str(model), "--data", str(beir), "--limit", "20", "--repeat", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("ours (cpu, no): 20 passages in") for line in lines)


def test_fusion_prf_without_feedback_is_the_first_round(tmp_path):
    """a = 1 keeps the query: the second round must score exactly the first (the same cross-fitted
    fusion); a < 1 moves each query to a q + (1 - a) x the mean of its first-round passages."""
    import numpy as np

    from bench import fusion_prf

    model = make_tiny_bert(tmp_path / "m")
    beir = tiny_beir(tmp_path / "beir", n_docs=30, n_queries=8)
    argv = ["--models", str(model), "--data", str(beir), "--dims", "32,16", "--resamples", "200"]
    found = fusion_prf.main([*argv, "--feedback", "1,2", "--alphas", "1,0.5"])[str(model)]
    for k in (1, 2):
        for d in (32, 16):
            assert found[k, 1.0][d]["change"] == [0.0, 0.0, 0.0]
    rng = np.random.default_rng(0)
    q, p = rng.normal(size=(2, 4)), rng.normal(size=(5, 4))
    top = np.array([[3, 1], [0, 4]])
    unit = lambda x: x / np.linalg.norm(x)  # noqa: E731
    want = [0.25 * unit(q[i]) + 0.75 * (unit(p[top[i, 0]]) + unit(p[top[i, 1]])) / 2 for i in range(2)]
    np.testing.assert_allclose(fusion_prf.feedback_queries(q, p, top, 2, 0.25), want, rtol=1e-6)
