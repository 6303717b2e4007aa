"""The retrieval settings that the trainer's config and the command lines share, with their checks:
one copy of each, raising ValueError that names the key (or the CLI flag). Light on purpose:
loading a config loads neither FAISS nor the miner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from retrieval.metrics import TOP_K

PRECISIONS = ("float32", "int8", "binary")
FUSION_NORMS = ("minmax", "zscore", "max")
NEGATIVE_SOURCES = ("dense", "bm25", "hybrid")
SAMPLES = ("top", "random")


def check_precision_flags(
    precisions: list[str], rescore: int, keys: tuple[str, str] = ("--precision", "--rescore")
) -> None:
    """The storage frontier's settings: some of PRECISIONS, and a rescore depth that is 0 or, with
    binary among the precisions, at least TOP_K (the depth the metrics need). `keys` names the two
    settings in the message: the CLI's flags, or the config's eval.precisions and eval.rescore."""
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise ValueError(f"{keys[0]} {','.join(precisions)}: choose from {','.join(PRECISIONS)}")
    if rescore and (rescore < TOP_K or "binary" not in precisions):
        raise ValueError(
            f"{keys[1]} {rescore}: rescores binary candidates, so it needs binary among "
            f"{keys[0]} and N >= {TOP_K} (the depth the metrics need), or 0"
        )


@dataclass
class MineConfig:
    """How to mine; embedded in the trainer's config as `data.hard_negatives`."""

    k: int = 0  # negatives per question; 0: no mining (off)
    corpus: str | None = None  # BEIR directory (its corpus.jsonl) to mine from; null: the training passages
    model: str | None = None  # encoder to mine with; null: the model being trained
    rank_min: int = 1  # window of ranks (1-based, in the model's ranking of the whole corpus, positives included) ...
    rank_max: int = 30  # ... from which candidates are taken
    max_relative: float | None = (
        0.95  # drop candidates scoring above max_relative x the question's lowest positive score
    )
    max_score: float | None = None  # drop candidates with cosine above this
    sample: str = "top"  # top | random (seeded)
    seed: int = 42
    batch_size: int = 64
    refresh: int = 0  # re-mine with the current model every N epochs; 0: never (the trainer does it)
    source: str = "dense"  # rank candidates by: dense (the model) | bm25 | hybrid (both, fused as lexical.* says)
    cache: str | None = (
        None  # a folder runs share: mined files kept under their fingerprint, copied to a run that mines the same
    )


def check_mine_config(config: MineConfig, key_prefix: str = "data.hard_negatives") -> None:
    """Raise ValueError naming the key of the first bad value; with key_prefix "", the CLI's --flag."""

    def key(name: str) -> str:
        return f"{key_prefix}.{name}" if key_prefix else "--" + name.replace("_", "-")

    window = config.rank_max - config.rank_min + 1
    problems = [
        ("k", config.k < 0, "must be >= 0 (0: no mining)"),
        ("rank_min", config.rank_min < 1, "must be >= 1 (ranks are 1-based)"),
        ("rank_max", config.rank_max < config.rank_min, f"must be >= rank_min ({config.rank_min})"),
        ("k", config.k > window, f"is more than the rank window holds ({window} ranks)"),
        ("rank_max", config.rank_max > 2048, "must be <= 2048 (faiss-gpu's largest k)"),
        (
            "max_relative",
            config.max_relative is not None and not (0 < config.max_relative < math.inf),
            "must be a finite number > 0, or null for no filter",
        ),
        (
            "max_score",
            config.max_score is not None and not math.isfinite(config.max_score),
            "must be a finite cosine, or null for no cap",
        ),
        ("sample", config.sample not in SAMPLES, f"must be one of {', '.join(SAMPLES)}"),
        ("batch_size", config.batch_size < 1, "must be >= 1"),
        ("refresh", config.refresh < 0, "must be >= 0 (0: never)"),
        ("source", config.source not in NEGATIVE_SOURCES, f"must be one of {', '.join(NEGATIVE_SOURCES)}"),
        ("max_score", config.max_score is not None and config.source != "dense", "is a cosine: only with source dense"),
        ("refresh", config.refresh and config.source == "bm25", "re-mines with the model: BM25 would mine the same"),
        ("model", config.model is not None and config.source == "bm25", "is not used by source bm25: leave it null"),
    ]
    for name, bad, why in problems:
        if bad:
            raise ValueError(f"{key(name)}: {getattr(config, name)!r} {why}")


# How BM25 cuts text into tokens (before stopwords and stemming), as bm25s's token_pattern.
# words: bm25s's default, words of two or more letters or digits, so "Rule 3.2.1" keeps only "rule"
# and "A4.3.6" only "a4". references: also any dotted run of letters and digits whole ("3.2.1",
# "a4.3.6", "14.2.12" of "14.2.12(d)"; also "e.g", "u.a.e", and two sentences run together without a
# space; a sentence's full stop is not part of it) and a single digit, as Lucene's standard tokenizer
# keeps dotted numbers and digits. Single letters stay dropped; "1,000" stays two tokens.
TOKEN_PATTERNS = {
    "words": r"(?u)\b\w\w+\b",
    "references": r"(?u)\b\w+(?:\.\w+)+\b|\b\w\w+\b|\b\d\b",
}


@dataclass
class LexicalConfig:
    """BM25 as bm25s computes it: the baseline every evaluation reports and hybrid fusion uses."""

    retriever: str = "bm25"  # bm25 | none (no lexical baseline, no fusion)
    method: str = "lucene"  # bm25s's variant: lucene | robertson | atire | bm25l | bm25+
    k1: float = 1.5
    b: float = 0.75
    stemmer: str | None = "english"  # a PyStemmer (Snowball) language; null: no stemming
    stopwords: str | None = "en"  # bm25s's list for that language; null: keep every word
    tokens: str = "words"  # words | references (rule numbers kept whole, single digits kept): TOKEN_PATTERNS
    fusion_norm: str = "minmax"  # per-query normalisation before the convex combination: minmax | zscore | max
    fusion_weight: float | None = None  # weight of the dense score; null: chosen on the evaluated split (optimistic)
    rrf_k: int = 60  # reciprocal rank fusion's constant


# The stopword lists bm25s knows by name (bm25s.tokenization._infer_stopwords), kept here so that a
# config check needs no bm25s import; tests/test_hybrid.py checks bm25s accepts each and refuses others.
STOPWORD_LISTS = (
    "en", "english", "en_plus", "english_plus", "de", "german", "nl", "dutch", "fr", "french", "es", "spanish",
    "pt", "portuguese", "it", "italian", "ru", "russian", "sv", "swedish", "no", "norwegian", "zh", "chinese",
    "tr", "turkish", "ko", "korean", "da", "danish",
)  # fmt: skip


INDEX_SETTINGS = ("method", "k1", "b", "stemmer", "stopwords")  # what a BM25 index reads of LexicalConfig, and tokens


def known_stopwords(name: object) -> bool:
    """Whether bm25s knows the stopword list `name` (a language such as en or english; None: none)."""
    return name is None or name in STOPWORD_LISTS


def check_lexical_config(config: LexicalConfig, key_prefix: str = "lexical") -> None:
    """Raise ValueError naming the key of the first bad value."""
    import Stemmer  # PyStemmer: a C extension, light to load

    methods = ("lucene", "robertson", "atire", "bm25l", "bm25+")
    stemmers = Stemmer.algorithms()
    problems = [
        (
            "stemmer",
            config.stemmer is not None and config.stemmer not in stemmers,
            f"is not a Snowball stemmer (PyStemmer has {', '.join(stemmers)}), or null for none",
        ),
        ("retriever", config.retriever not in ("bm25", "none"), "must be bm25 or none"),
        ("method", config.method not in methods, f"must be one of {', '.join(methods)}"),
        ("tokens", config.tokens not in TOKEN_PATTERNS, f"must be one of {', '.join(TOKEN_PATTERNS)}"),
        ("k1", not math.isfinite(config.k1) or config.k1 < 0, "must be a finite number >= 0"),
        ("b", not 0 <= config.b <= 1, "must be in [0, 1]"),
        ("fusion_norm", config.fusion_norm not in FUSION_NORMS, f"must be one of {', '.join(FUSION_NORMS)}"),
        (
            "fusion_weight",
            config.fusion_weight is not None and not 0 <= config.fusion_weight <= 1,
            "must be in [0, 1], or null to choose it on the evaluated split",
        ),
        ("rrf_k", config.rrf_k < 1, "must be >= 1"),
        ("stopwords", not known_stopwords(config.stopwords), "is not a bm25s stopword list (say en), or null for none"),
    ]
    for name, bad, why in problems:
        if bad:
            raise ValueError(f"{key_prefix}.{name}: {getattr(config, name)!r} {why}")
