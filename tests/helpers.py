"""Helpers the tests share, imported by name (`from helpers import ...`): a tiny random BERT, random
texts over its vocabulary, small JSONL and BEIR files, and where the repository and ../shared are."""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import Stemmer
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED_OBLIQA = ROOT.parent / "shared" / "data" / "obliqa"
WORDS = [f"w{i}" for i in range(200)]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process a test starts: offline, one thread, the repository importable."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


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


def reference_bm25(
    corpus: list[str],
    query: str,
    k1: float,
    b: float,
    stem: bool,
    stopwords: set[str],
    split: Callable[[str], list[str]] | None = None,
) -> list[float]:
    """bm25s's lucene BM25, from its definition: tokens are lower-cased words of 2+ characters (or
    what `split` makes of the lower-cased text), minus stopwords, stemmed;
    idf = ln(1 + (N - df + 0.5) / (df + 0.5)); tf / (tf + k1 (1 - b + b |d| / avgdl))."""
    stemmer = Stemmer.Stemmer("english") if stem else None
    split = split or (lambda text: re.findall(r"(?u)\b\w\w+\b", text))

    def tokens(text: str) -> list[str]:
        words = [w for w in split(text.lower()) if w not in stopwords]
        return stemmer.stemWords(words) if stemmer else words

    docs = [tokens(text) for text in corpus]
    lengths = [len(d) for d in docs]  # a passage of stopwords only has length 0
    avgdl = sum(lengths) / len(docs)
    df = Counter(t for d in docs for t in set(d))
    out = []
    for doc, length in zip(docs, lengths):
        tf = Counter(doc)
        score = 0.0
        for t in tokens(query):
            if t in df and tf[t]:
                idf = math.log(1 + (len(docs) - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf[t] / (tf[t] + k1 * (1 - b + b * length / avgdl))
        out.append(score)
    return out
