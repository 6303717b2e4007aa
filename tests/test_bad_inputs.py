"""Every command line fed a bad input (bench/bad_inputs.py's cases) ends in one error line naming
the path or key, the expected exit code, and no traceback."""

from __future__ import annotations

import pytest

from bench.bad_inputs import CASES, run_case, scratch_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return scratch_folder(tmp_path_factory.mktemp("bad_inputs"))


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c.command[:1] + c.command[-2:]) for c in CASES])
def test_a_bad_input_ends_in_one_error_line(case, folder):
    proc = run_case(case, folder)
    assert proc.returncode == case.code, proc.stderr[-2000:]
    assert case.message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
