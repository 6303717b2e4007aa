"""bench/subset_pairs.py: nested subsets by question, every pair of a kept question kept, lines as
the file had them; the kept questions are the first of numpy's seeded permutation of the sorted
questions, worked out here with the generator directly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import subset_pairs


def _pairs(path, with_ids=True):
    rows = []
    for q in range(8):  # question q has q % 3 + 1 pairs
        for k in range(q % 3 + 1):
            row = {"anchor": f"question {q}", "positive": f"passage {q}-{k}"}
            rows.append({"query_id": f"id{q}", **row} if with_ids else row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return rows


@pytest.mark.parametrize("with_ids", [True, False])
def test_subsets_are_nested_whole_questions_in_file_order(tmp_path, with_ids):
    rows = _pairs(tmp_path / "p.jsonl", with_ids)
    written = subset_pairs.main(f"--pairs {tmp_path / 'p.jsonl'} --fractions 0.25,0.5 --out {tmp_path / 'o'}".split())
    key = "query_id" if with_ids else "anchor"
    order = np.random.default_rng(0).permutation(8)  # over the sorted questions
    names = sorted({r[key] for r in rows})
    for fraction, n in ((0.25, 2), (0.5, 4)):
        kept = {names[i] for i in order[:n]}
        expected = [r for r in rows if r[key] in kept]
        assert written[fraction] == tmp_path / "o" / f"p-{fraction:g}.jsonl"
        assert [json.loads(line) for line in written[fraction].read_text().splitlines()] == expected
    quarter, half = ({json.loads(line)[key] for line in written[f].read_text().splitlines()} for f in (0.25, 0.5))
    assert len(quarter) == 2 and len(half) == 4 and quarter < half


@pytest.mark.parametrize("fractions", ["0", "1.5", "x", ""])
def test_a_bad_fraction_stops_with_one_line(tmp_path, fractions):
    _pairs(tmp_path / "p.jsonl")
    with pytest.raises(SystemExit, match=r"^error: --fractions"):
        subset_pairs.main(["--pairs", str(tmp_path / "p.jsonl"), "--fractions", fractions, "--out", str(tmp_path)])
    assert not list(tmp_path.glob("p-*.jsonl"))
