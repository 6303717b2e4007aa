"""Mine hard negatives for a training set, with positive-aware filtering (retrieval/mining.py).

    python mine.py --train PAIRS --corpus BEIR_DIR --qrels-split train --k 1 --out DIR

Writes DIR/triplets.jsonl (one line per training row), scores.jsonl, filtered.jsonl (what the
positive-aware filter removed, for review) and meta.json last; see retrieval/mining.py for the
filters and their order.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from common.files import output_problem
from common.processes import is_main_process, start_processes, stop_processes
from data import DataError, known_relevant, load_pairs
from model import PACKAGED_MINILM, Encoder, ModelConfig, weights_digest
from retrieval.mining import MineReport, mine
from retrieval.settings import TOKEN_PATTERNS, LexicalConfig, MineConfig, check_lexical_config, check_mine_config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = MineConfig()
    parser.add_argument(
        "--train", required=True, help="training pairs: .jsonl / .csv / .parquet file or hub dataset id"
    )
    parser.add_argument("--out", required=True, type=Path, help="directory for triplets.jsonl and its sidecars")
    parser.add_argument("--model", help="hub id or local directory (default: the packaged MiniLM)")
    parser.add_argument("--corpus", help="BEIR directory to mine from (default: the training passages)")
    parser.add_argument("--qrels-split", help="also treat qrels/<split>.tsv of --corpus as known relevant")
    parser.add_argument("--k", type=int, default=1, help="negatives per question (default 1)")
    parser.add_argument("--rank-min", type=int, default=default.rank_min)
    parser.add_argument("--rank-max", type=int, default=default.rank_max)
    parser.add_argument(
        "--max-relative", type=_optional_float, default=default.max_relative, help="'none' for no filter"
    )
    parser.add_argument("--max-score", type=_optional_float, default=default.max_score)
    parser.add_argument("--sample", default=default.sample, help="top | random")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--batch-size", type=int, default=default.batch_size)
    parser.add_argument(
        "--mixed-precision",
        choices=("auto", "bf16", "no"),
        default="auto",
        help="encode in bf16 (auto: on CUDA) or full precision; flash-attn (attention auto) only with bf16",
    )
    parser.add_argument(
        "--source",
        default=default.source,
        help="rank candidates by dense (the model), bm25 (no model is run) or hybrid (both fused)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="a folder runs share: the mined files are kept there under their fingerprint, and a later "
        "run with the same model, data and settings copies them instead of mining",
    )
    parser.add_argument(
        "--bm25-tokens",
        choices=list(TOKEN_PATTERNS),
        default=LexicalConfig.tokens,
        help="with --source bm25 or hybrid: words (default) or references (rule numbers such as 3.2.1 kept whole)",
    )
    parser.add_argument(
        "--fusion-weight",
        type=float,
        default=None,
        help="with --source hybrid: the dense weight of the fusion (default 0.5)",
    )
    return parser.parse_args(argv)


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "null") else float(text)


def main(argv: list[str] | None = None) -> MineReport | None:
    """Mine from the command line; prints and returns the report (None on all but the main process)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = MineConfig(
        k=args.k,
        corpus=args.corpus,
        model=args.model,
        rank_min=args.rank_min,
        rank_max=args.rank_max,
        max_relative=args.max_relative,
        max_score=args.max_score,
        sample=args.sample,
        seed=args.seed,
        batch_size=args.batch_size,
        source=args.source,
        cache=str(args.cache) if args.cache else None,
    )
    lexical = LexicalConfig(fusion_weight=args.fusion_weight, tokens=args.bm25_tokens)
    try:
        check_mine_config(config, key_prefix="")
        check_lexical_config(lexical, key_prefix="lexical")
        if config.k == 0 or (args.qrels_split and not config.corpus):
            raise ValueError("--k must be > 0" if config.k == 0 else "--qrels-split needs --corpus")
        if problem := output_problem(args.out, directory=True):
            raise ValueError(f"--out {args.out}: {problem}")
        if args.cache and (problem := output_problem(args.cache, directory=True)):
            raise ValueError(f"--cache {args.cache}: {problem}")
        pairs = load_pairs(args.train)
        relevant = known_relevant(pairs, config.corpus if args.qrels_split else None, args.qrels_split)
        model_name = args.model or PACKAGED_MINILM
        encoder = Encoder.from_config(ModelConfig(model_name), args.mixed_precision).to(start_processes())
        main_process = is_main_process()
        # the weights as loaded: a model retrained in place under the same name mines again
        identity = {"model": model_name, "weights": weights_digest(encoder)} if config.source != "bm25" else {}
        report = mine(encoder, pairs, relevant, config, args.out, identity, main_process, lexical)
    except (DataError, ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    except OSError as err:  # a write failed (disk full): the files of an earlier run stay whole
        sys.exit(f"error: {err.filename + ': ' if err.filename else ''}{err.strerror or err}")
    finally:
        stop_processes()
    if report is not None:
        print(report.format_report())
    return report


if __name__ == "__main__":
    main()
