"""Train a cross-encoder re-ranker for the fused top k (retrieval/rerank.py, training/reranker.py).

    python train_reranker.py --data BEIR_DIR --split train --out runs/reranker
    python evaluate.py --model MODEL --data BEIR_DIR --split dev --rerank runs/reranker

The groups come from --split's judged questions: each relevant passage, and --negatives others
drawn from the question's top --pool of --first-stage fused with BM25 (its dense weight chosen on
--split). The cross-encoder starts from --init with a fresh one-logit head. --holdout of the
questions (default 0.1, seeded) are kept out of training: the weight of the cross-encoder against
the fused score is chosen on them and saved with the model, and evaluate.py --rerank uses it.
Train it on a split you do not evaluate on: evaluate.py scores it on another.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from common.files import output_problem
from data import DataError, IRDataset, data_path, load_ir, question_subset
from model import PACKAGED_MINILM, Encoder, ModelConfig, resolve_model_dir
from retrieval.evaluation import encode_ir
from retrieval.fusion import best_weight, convex, ranked
from retrieval.hybrid import candidates_by_dim, choose_weight, lexical_index
from retrieval.metrics import TOP_K
from retrieval.rerank import (
    DEPTH,
    CrossEncoder,
    Fused,
    cached_scorer,
    one_standard_error_weight,
    weight_curve,
)
from retrieval.settings import LexicalConfig
from training.reranker import RerankTraining, train_cross_encoder, training_groups


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="BEIR directory, or pairs (directory of <split> files)")
    parser.add_argument("--split", default="train", help="the judged split the groups come from (default train)")
    parser.add_argument("--out", required=True, type=Path, help="the re-ranker's directory (must not exist)")
    parser.add_argument("--first-stage", default=PACKAGED_MINILM, help="dense model fused with BM25 to draw negatives")
    parser.add_argument("--init", default=PACKAGED_MINILM, help="weights the cross-encoder starts from")
    parser.add_argument("--pool", type=int, default=30, help="negatives are drawn from this fused top (default 30)")
    parser.add_argument("--negatives", type=int, default=3, help="per group (default 3)")
    parser.add_argument("--max-length", type=int, default=192, help="tokens of question + passage (default 192)")
    parser.add_argument("--depth", type=int, default=DEPTH, help=f"the fused top it re-ranks (default {DEPTH})")
    parser.add_argument("--batch-size", type=int, default=64, help="encoding batch of the first stage")
    parser.add_argument("--holdout-seed", type=int, default=0, help="which questions are held out (default 0)")
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.1,
        help="questions kept out of training to choose the cross-encoder's weight on (default 0.1; 0: none)",
    )
    default = RerankTraining()
    for field in fields(RerankTraining):
        parser.add_argument(f"--{field.name}", type=type(getattr(default, field.name)), default=field.default)
    return parser.parse_args(argv)


def checked_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed flags; a bad one exits with one error line before anything is loaded."""
    args = parse_args(argv)
    positive = ("pool", "negatives", "max_length", "depth", "batch_size", "epochs", "batch", "chunk")
    problems = [
        f"--{n.replace('_', '-')} {getattr(args, n)}: must be at least 1" for n in positive if getattr(args, n) < 1
    ]
    if not 1 <= args.depth <= TOP_K:
        problems.append(f"--depth {args.depth}: must be in 1..{TOP_K} (the fused top k evaluate.py ranks)")
    if not 0 <= args.holdout <= 0.5:
        problems.append(f"--holdout {args.holdout}: must be in [0, 0.5]")
    if not args.lr > 0:
        problems.append(f"--lr {args.lr}: must be > 0")
    if not 0 <= args.warmup < 1:
        problems.append(f"--warmup {args.warmup}: must be in [0, 1)")
    if args.out.exists():
        problems.append(f"--out {args.out}: exists; give a new directory (a re-ranker is never overwritten)")
    elif problem := output_problem(args.out.parent, directory=True):  # written beside, then moved into place
        problems.append(f"--out {args.out}: {problem}")
    if problems:
        sys.exit(f"error: {problems[0]}")
    return args


def first_stage(args: argparse.Namespace, data: IRDataset, encoder: Encoder, trained_on: np.ndarray) -> Fused:
    """Each question's candidates under --first-stage and BM25 at the model's full size, and the
    dense weight of their fusion, chosen on the questions trained on (it draws their negatives and
    ranks the held-out questions the mixing weight is chosen on)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    query_emb, corpus_emb, _ = encode_ir(encoder.to(device), data, args.batch_size, True)
    full = corpus_emb.shape[1]
    c = candidates_by_dim(query_emb, corpus_emb, data, [full], lexical_index(data, LexicalConfig()))[0][full]
    weight = choose_weight(c.take(trained_on), question_subset(data, trained_on, "trained on"), "minmax")
    return Fused(data, {full: c}, {full: weight})


def held_out(n_questions: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(trained on, held out): question rows, a seeded `fraction` held out (at least one when > 0)."""
    order = np.random.default_rng(seed).permutation(n_questions)
    n_held = max(1, round(fraction * n_questions)) if fraction > 0 else 0
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def mixing_weight(ce: CrossEncoder, held: Fused, depth: int) -> dict:
    """The cross-encoder weight chosen on the held-out questions by the one-standard-error rule, the
    weight with the best mean there, the mean NDCG@10 at every weight of the grid (the curve; weight
    0 is the fusion alone), and the fusion's and the re-ranked + fused NDCG@10 at the chosen weight
    (chosen there: optimistic)."""
    ((dim, c),) = held.candidates.items()
    curve = weight_curve(c, held.weights[dim], held.norm, cached_scorer(ce, held.data), held.data, depth)
    weight = one_standard_error_weight(curve)
    return {
        "weight": weight,
        "rule": "one standard error",
        "best_weight": best_weight(curve),
        "weight_from": held.data.name,
        "questions": len(held.data.query_ids),
        "fused": float(curve[0.0].mean()),
        "reranked": float(curve[weight].mean()),
        "curve": {f"{w:g}": round(float(v.mean()), 6) for w, v in curve.items()},
    }


def load_models(args: argparse.Namespace) -> tuple[IRDataset, Encoder, CrossEncoder]:
    """The data, the first stage and the fresh cross-encoder (seeded head), each checked before any
    encoding; one error line otherwise."""
    try:
        data = load_ir(args.data, args.split)
        encoder = Encoder.from_config(ModelConfig(args.first_stage), "auto")
        torch.manual_seed(args.seed)  # the fresh head's weights
        ce = CrossEncoder(resolve_model_dir(args.init), args.max_length, device="cpu")
    except (DataError, FileNotFoundError, OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    return data, encoder, ce


def save(ce: CrossEncoder, out: Path, settings: dict, first: bool) -> Path:
    """The re-ranker into `out`; the first save never over a directory that appeared there during
    training (beside it instead, said on stderr). Returns where it went."""
    if first and out.exists():
        out = out.with_name(f"{out.name}-{os.getpid()}")
        print(f"warning: --out appeared during training; saving to {out} instead", file=sys.stderr)
    ce.save(out, settings)
    return out


def main(argv: list[str] | None = None) -> dict:
    """Train and save the re-ranker; returns the settings saved in its reranker.json."""
    args = checked_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data, encoder, ce = load_models(args)
    trained_on, held = held_out(len(data.query_ids), args.holdout, args.holdout_seed)
    if len(trained_on) == 0:
        sys.exit(f"error: --holdout {args.holdout}: holds out all {len(data.query_ids)} questions of {data.name}")
    fused = first_stage(args, data, encoder, trained_on)
    ((full, c),) = fused.candidates.items()  # one dim: the first stage's full size
    fusion_weight = fused.weights[full]
    rows = ranked(c.take(trained_on), convex(c.take(trained_on), fusion_weight), args.pool)[1]  # (Q, pool)
    settings = RerankTraining(**{f.name: getattr(args, f.name) for f in fields(RerankTraining)})
    groups = training_groups(question_subset(data, trained_on, "trained on"), rows, args.negatives, settings.seed)
    if not groups:
        sys.exit(f"error: --data {args.data} --split {args.split}: no question has a passage to draw a negative from")
    print(
        f"{len(groups)} groups from {len(trained_on)} questions of {data.name} ({len(held)} held out); negatives "
        f"from the top {args.pool} of {args.first_stage} + BM25 (dense weight {fusion_weight}): "
        f"{sum(len(g[2]) for g in groups)}"
    )
    ce.to("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(settings.seed)  # dropout
    trained = train_cross_encoder(ce, groups, settings, show_progress=True)
    saved = {
        "depth": args.depth,
        "init": args.init,
        "data": data.name,
        "data_path": data_path(args.data),
        "split": args.split,
        "first_stage": args.first_stage,
        "first_stage_weight": fusion_weight,
        "pool": args.pool,
        "negatives": args.negatives,
        "groups": len(groups),
        "training": asdict(settings),
        "trained": trained,
    }
    out = save(ce, args.out, saved, first=True)  # what the training produced, before anything that can still fail
    if len(held):
        held_fused = Fused(question_subset(data, held, "held out"), {full: c.take(held)}, {full: fusion_weight})
        saved["held_out"] = found = mixing_weight(ce, held_fused, args.depth)
        print(
            f"on {found['questions']} held-out questions: fused NDCG@10 {found['fused']:.4f}, re-ranked + fused "
            f"{found['reranked']:.4f} at cross-encoder weight {found['weight']} (chosen there, one-standard-error "
            f"rule; the best there: {found['best_weight']}; evaluate.py uses the chosen one)"
        )
        save(ce, out, saved, first=False)
    print(f"re-ranker saved to {out}: {trained['steps']} steps in {trained['seconds']:.0f} s")
    return ce.settings


if __name__ == "__main__":
    main()
