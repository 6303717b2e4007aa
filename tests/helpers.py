"""Helpers the tests share, imported by name (`from helpers import ...`): a tiny random BERT, random
texts over its vocabulary, small JSONL and BEIR files, and where the repository and ../shared are."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_OBLIQA = ROOT.parent / "shared" / "data" / "obliqa"
WORDS = [f"w{i}" for i in range(200)]


def make_tiny_bert(path: Path, **config_overrides) -> Path:
    """A small random BERT with a word-level vocabulary, saved as a plain Hugging Face model."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=True)
    assert tokenizer("w3 W7")["input_ids"] == [2, 8, 12, 3]  # real word ids, not [UNK]
    settings = dict(
        vocab_size=len(WORDS) + 5,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    settings.update(config_overrides)
    torch.manual_seed(0)
    BertModel(BertConfig(**settings)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def random_texts(count: int, seed: int = 0, max_words: int = 40) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, max_words))) for _ in range(count)]


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_beir(root, n_docs=40, n_queries=8):
    texts = random_texts(n_docs, seed=7)
    write_jsonl(root / "corpus.jsonl", [{"_id": f"c{i}", "title": "", "text": t} for i, t in enumerate(texts)])
    write_jsonl(root / "queries.jsonl", [{"_id": f"q{i}", "text": texts[i * 3][:25]} for i in range(n_queries)])
    (root / "qrels").mkdir()
    (root / "qrels" / "dev.tsv").write_text("".join(f"q{i}\tc{i * 3}\t1\n" for i in range(n_queries)))
    return root
