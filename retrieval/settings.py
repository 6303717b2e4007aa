"""The retrieval settings that the trainer's config and the command lines share, with their checks:
one copy of each, raising ValueError that names the key (or the CLI flag). Light on purpose:
loading a config loads neither FAISS nor the miner.
"""

from __future__ import annotations

from dataclasses import dataclass

from retrieval.metrics import TOP_K

PRECISIONS = ("float32", "int8", "binary")
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
            config.max_relative is not None and config.max_relative <= 0,
            "must be > 0, or null for no filter",
        ),
        ("sample", config.sample not in SAMPLES, f"must be one of {', '.join(SAMPLES)}"),
        ("batch_size", config.batch_size < 1, "must be >= 1"),
        ("refresh", config.refresh < 0, "must be >= 0 (0: never)"),
    ]
    for name, bad, why in problems:
        if bad:
            raise ValueError(f"{key(name)}: {getattr(config, name)!r} {why}")
