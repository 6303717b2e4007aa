"""Train a cross-encoder re-ranker for the fused top k (retrieval/rerank.py, training/reranker.py).

    python train_reranker.py --data BEIR_DIR --split train --out runs/reranker
    python evaluate.py --model MODEL --data BEIR_DIR --split dev --rerank runs/reranker

The groups come from --split's judged questions: each relevant passage, and --negatives others
drawn from the question's top --pool of --first-stage fused with BM25 (its dense weight chosen on
--split; BM25 cuts text as --bm25-tokens). The cross-encoder starts from --init with a fresh
one-logit head. --holdout of the questions (default 0.1, seeded) are kept out of training: the
weight of the cross-encoder against the fused score is chosen on them and saved with the model,
and evaluate.py --rerank uses it (when it evaluates with the same --bm25-tokens).
Train it on a split you do not evaluate on: evaluate.py scores it on another.

--members N trains N re-rankers from the seeds --seed, --seed + 1, ... (N times the training) and
saves them as one ensemble (a pair's logit is their mean), its weight chosen on the same held-out
questions. Each member is saved beside --out as it finishes (`<out>.member-<seed>`), and moved into
the ensemble at the end; a run started again with the same flags keeps the members already there.

    python train_reranker.py --reweigh runs/reranker --depth 40

--reweigh trains nothing: it chooses a saved re-ranker's (or ensemble's) weight again for another
--depth (how much of the fused top it orders, a cost the user picks at search time) on the same
held-out questions, and saves it in place with that depth; the earlier choice is kept under
`reweighed` in its reranker.json. Depth does not change training: the result is what a run with
that --depth would have saved.
"""

from __future__ import annotations

import argparse
import json
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
from retrieval.fusion import best_weight, convex, ranked
from retrieval.metrics import TOP_K
from retrieval.rerank import (
    DEPTH,
    SETTINGS_FILE,
    CrossEncoder,
    Ensemble,
    Fused,
    Reranker,
    cached_scorer,
    first_stage_tokens,
    load_reranker,
    one_standard_error_weight,
    resave_settings,
    save_ensemble,
    saved_problem,
    weight_curve,
)
from retrieval.settings import INDEX_SETTINGS, TOKEN_PATTERNS, LexicalConfig
from training.reranker import (
    HOLDOUT,
    HOLDOUT_SEED,
    RerankTraining,
    first_stage,
    held_out,
    held_out_part,
    holdout_flags,
    ids_sha256,
    same_held_out,
    train_cross_encoder,
    training_groups,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="BEIR directory, or pairs (directory of <split> files)")
    parser.add_argument("--split", default="train", help="the judged split the groups come from (default train)")
    parser.add_argument("--out", type=Path, help="the re-ranker's directory (must not exist)")
    parser.add_argument(
        "--reweigh",
        type=Path,
        help="no training: choose a saved re-ranker's weight again for --depth, on its own held-out questions",
    )
    parser.add_argument("--first-stage", default=PACKAGED_MINILM, help="dense model fused with BM25 to draw negatives")
    parser.add_argument(
        "--bm25-tokens",
        choices=list(TOKEN_PATTERNS),
        help="BM25's tokens in the first stage, as evaluate.py --bm25-tokens (default words; --reweigh: as saved); "
        "evaluate.py uses the saved weight only with the same tokens",
    )
    parser.add_argument("--init", default=PACKAGED_MINILM, help="weights the cross-encoder starts from")
    parser.add_argument("--pool", type=int, default=30, help="negatives are drawn from this fused top (default 30)")
    parser.add_argument("--negatives", type=int, default=3, help="per group (default 3)")
    parser.add_argument("--max-length", type=int, default=192, help="tokens of question + passage (default 192)")
    parser.add_argument("--depth", type=int, default=DEPTH, help=f"the fused top it re-ranks (default {DEPTH})")
    parser.add_argument("--batch-size", type=int, default=64, help="encoding batch of the first stage")
    parser.add_argument(
        "--members", type=int, default=1, help="re-rankers from seeds --seed, --seed + 1, ... averaged (default 1)"
    )
    parser.add_argument(
        "--holdout-seed", type=int, help=f"which questions are held out (default {HOLDOUT_SEED}; --reweigh: as saved)"
    )
    parser.add_argument(
        "--holdout",
        type=float,
        help=f"questions kept out of training to choose the cross-encoder's weight on (default {HOLDOUT}; 0: none; "
        "--reweigh: as saved)",
    )
    default = RerankTraining()
    for field in fields(RerankTraining):
        parser.add_argument(f"--{field.name}", type=type(getattr(default, field.name)), default=field.default)
    return parser.parse_args(argv)


def checked_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed flags; a bad one exits with one error line before anything is loaded."""
    args = parse_args(argv)
    args.out = args.out.resolve() if args.out else None  # "." has no name to build a new copy beside
    args.reweigh = args.reweigh.resolve() if args.reweigh else None
    if args.reweigh is None:  # training draws by the flags, or the defaults; --reweigh by what it saved
        args.holdout, args.holdout_seed = holdout_flags(None, args.holdout, args.holdout_seed)
        args.bm25_tokens = args.bm25_tokens or LexicalConfig().tokens
    positive = ("pool", "negatives", "max_length", "depth", "batch_size", "epochs", "batch", "chunk", "members")
    problems = [
        f"--{n.replace('_', '-')} {getattr(args, n)}: must be at least 1" for n in positive if getattr(args, n) < 1
    ]
    if not 1 <= args.depth <= TOP_K:
        problems.append(f"--depth {args.depth}: must be in 1..{TOP_K} (the fused top k evaluate.py ranks)")
    if args.holdout is not None and not 0 <= args.holdout <= 0.5:
        problems.append(f"--holdout {args.holdout}: must be in [0, 0.5]")
    if args.holdout_seed is not None and args.holdout_seed < 0:
        problems.append(f"--holdout-seed {args.holdout_seed}: must be >= 0")
    if not args.lr > 0:
        problems.append(f"--lr {args.lr}: must be > 0")
    if not 0 <= args.warmup < 1:
        problems.append(f"--warmup {args.warmup}: must be in [0, 1)")
    if (args.out is None) == (args.reweigh is None):
        problems.append("give --out (train a re-ranker) or --reweigh DIR (choose a saved one's weight again)")
    elif args.reweigh is not None:
        if args.bm25_tokens is not None:
            problems.append("--bm25-tokens: --reweigh takes the first stage's tokens from the re-ranker it reweighs")
        elif args.holdout == 0:
            problems.append("--holdout 0: --reweigh chooses on the questions the re-ranker held out; give its own")
        elif problem := saved_problem(args.reweigh):
            problems.append(f"--reweigh {args.reweigh}: {problem}")
        elif problem := output_problem(args.reweigh.parent, directory=True):  # its new copy is written beside it
            problems.append(f"--reweigh {args.reweigh}: {problem}")
    elif args.data is None:
        problems.append("--data: required to train a re-ranker")
    elif args.out.exists():
        problems.append(f"--out {args.out}: exists; give a new directory (a re-ranker is never overwritten)")
    elif problem := output_problem(args.out.parent, directory=True):  # written beside, then moved into place
        problems.append(f"--out {args.out}: {problem}")
    for member in member_paths(args) if args.members > 1 and args.out is not None else []:
        if member.exists() and (problem := saved_problem(member)):
            problems.append(f"{member}: a member left by an interrupted run ({problem}); delete it")
    if problems:
        sys.exit(f"error: {problems[0]}")
    return args


def mixing_weight(ce: Reranker, held: Fused, args: argparse.Namespace) -> dict:
    """The cross-encoder weight chosen on the held-out questions by the one-standard-error rule, the
    weight with the best mean there, the mean NDCG@10 at every weight of the grid (the curve; weight
    0 is the fusion alone), and the fusion's and the re-ranked + fused NDCG@10 at the chosen weight
    (chosen there: optimistic), at --depth; with the draw that held them out (--holdout, --holdout-seed),
    so --reweigh needs neither flag."""
    ((dim, c),) = held.candidates.items()
    curve = weight_curve(c, held.weights[dim], held.norm, cached_scorer(ce, held.data), held.data, args.depth)
    weight = one_standard_error_weight(curve)
    print(
        f"on {len(held.data.query_ids)} held-out questions: fused NDCG@10 {curve[0.0].mean():.4f}, re-ranked + "
        f"fused {curve[weight].mean():.4f} at cross-encoder weight {weight} (chosen there, one-standard-error "
        f"rule; the best there: {best_weight(curve)}; evaluate.py uses the chosen one)"
    )
    return {
        "weight": weight,
        "rule": "one standard error",
        "best_weight": best_weight(curve),
        "weight_from": held.data.name,
        "questions": len(held.data.query_ids),
        "question_ids_sha256": ids_sha256(held.data.query_ids),
        "fraction": args.holdout,
        "seed": args.holdout_seed,
        "fused": float(curve[0.0].mean()),
        "reranked": float(curve[weight].mean()),
        "curve": {f"{w:g}": round(float(v.mean()), 6) for w, v in curve.items()},
    }


def member_paths(args: argparse.Namespace) -> list[Path]:
    """Where each member of --members is saved until the ensemble is: beside --out, by seed."""
    return [args.out.with_name(f"{args.out.name}.member-{args.seed + i}") for i in range(args.members)]


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


def train_member(
    args: argparse.Namespace,
    ce: CrossEncoder,
    data: IRDataset,
    fused: Fused,
    trained_on: np.ndarray,
    held: Fused | None,
    seed: int,
    out: Path,
) -> tuple[CrossEncoder, Path]:
    """`ce` trained from `seed` on groups of the questions `trained_on`, saved to `out` (its weight
    chosen on `held`, when there are held-out questions, and saved again with it). Returns it and
    where it went (beside `out` if a directory appeared there during training)."""
    ((full, c),) = fused.candidates.items()  # one dim: the first stage's full size
    fusion_weight = fused.weights[full]
    rows = ranked(c.take(trained_on), convex(c.take(trained_on), fusion_weight), args.pool)[1]  # (Q, pool)
    settings = training_of(args, seed)
    groups = training_groups(question_subset(data, trained_on, "trained on"), rows, args.negatives, settings.seed)
    if not groups:
        sys.exit(f"error: --data {args.data} --split {args.split}: no question has a passage to draw a negative from")
    print(
        f"{len(groups)} groups from {len(trained_on)} questions of {data.name} "
        f"({len(data.query_ids) - len(trained_on)} held out); negatives from the top {args.pool} of "
        f"{args.first_stage} + BM25 (dense weight {fusion_weight}): {sum(len(g[2]) for g in groups)}; seed {seed}"
    )
    ce.to("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(settings.seed)  # dropout
    trained = train_cross_encoder(ce, groups, settings, show_progress=True)
    saved = {
        **expected_settings(args, data, fusion_weight, seed, trained_on),
        "groups": len(groups),
        "trained": trained,
    }
    out = save(ce, out, saved, first=True)  # what the training produced, before anything that can still fail
    if held is not None:
        saved["held_out"] = mixing_weight(ce, held, args)
        save(ce, out, saved, first=False)
    print(f"re-ranker saved to {out}: {trained['steps']} steps in {trained['seconds']:.0f} s")
    return ce, out


def training_of(args: argparse.Namespace, seed: int) -> RerankTraining:
    """The loop's settings from the flags, with `seed` (a member's) for --seed."""
    return RerankTraining(**{**{f.name: getattr(args, f.name) for f in fields(RerankTraining)}, "seed": seed})


def expected_settings(
    args: argparse.Namespace, data: IRDataset, fusion_weight: float, seed: int, trained_on: np.ndarray
) -> dict:
    """What a re-ranker trained by these flags from `seed` on the questions at `trained_on` saves
    about how it was made: the held-out draw too, so a member an earlier run left is kept only when
    it never trained on the questions this run holds out."""
    settings = training_of(args, seed)
    saved = {
        "trained_on": {
            "holdout": args.holdout,
            "holdout_seed": args.holdout_seed,
            "questions": len(trained_on),
            "questions_sha256": ids_sha256([data.query_ids[i] for i in trained_on.tolist()]),
        },
        "bm25": {key: getattr(LexicalConfig(), key) for key in INDEX_SETTINGS},  # its first stage's, besides tokens
        "depth": args.depth,
        "init": args.init,
        "data": data.name,
        "data_path": data_path(args.data),
        "split": args.split,
        "first_stage": args.first_stage,
        "first_stage_weight": fusion_weight,
        "pool": args.pool,
        "negatives": args.negatives,
        "training": asdict(settings),
        "max_length": args.max_length,
    }
    if args.bm25_tokens != "words":  # absent means words, as every re-ranker saved before the flag
        saved["bm25_tokens"] = args.bm25_tokens
    return saved


def kept_member(
    args: argparse.Namespace,
    path: Path,
    data: IRDataset,
    fusion_weight: float,
    seed: int,
    trained_on: np.ndarray,
    held: Fused | None,
) -> CrossEncoder | None:
    """The member an earlier run of the same flags saved at `path`, if there is one (None if not);
    exits with one line if what is there was made otherwise. A member saved before its held-out
    weight was (a run stopped while choosing it) gets it now."""
    if not path.exists():
        return None
    try:
        ce = CrossEncoder.load(path)
    except ValueError as err:
        sys.exit(f"error: {err}; delete it or give another --out")
    wanted = expected_settings(args, data, fusion_weight, seed, trained_on)
    skip = ("depth", "bm25_tokens")  # depth: not trained; the tokens: absent when words, compared below
    differ = [key for key in wanted if key not in skip and ce.settings.get(key) != wanted[key]]
    if first_stage_tokens(ce.settings) != args.bm25_tokens:
        differ.append(f"bm25_tokens ({first_stage_tokens(ce.settings)}; this run: {args.bm25_tokens})")
    saved_held = ce.settings.get("held_out")
    if held is None and saved_held is not None:
        differ.append("held_out (it held questions out; this run holds none)")
    elif held is not None and saved_held is not None and not same_held_out(saved_held, held, args.depth):
        differ.append("held_out (other held-out questions)")
    if differ:
        sys.exit(f"error: {path}: a re-ranker made otherwise ({', '.join(differ)}); delete it or give another --out")
    if held is not None and saved_held is None:
        ce.save(path, {**ce.settings, "held_out": mixing_weight(ce, held, args)})
    print(f"member {path}: kept (an earlier run's, the same flags and seed {seed})")
    return ce


def reweigh(args: argparse.Namespace) -> dict:
    """--reweigh: the saved re-ranker's cross-encoder weight chosen again for --depth on the questions
    it held out (the same first stage and questions, checked), saved in place with the new depth
    (its weights untouched; the earlier depth's choice kept under `reweighed`). Returns its settings."""
    try:
        ce = load_reranker(args.reweigh)
        settings = ce.settings
        if not settings.get("held_out"):
            raise ValueError(f"re-ranker {args.reweigh}: it held no questions out, so there is none to choose on")
        args.holdout, args.holdout_seed = holdout_flags(settings["held_out"], args.holdout, args.holdout_seed)
        if (tokens := first_stage_tokens(settings)) not in TOKEN_PATTERNS:
            raise ValueError(f"re-ranker {args.reweigh}: bm25_tokens {tokens!r} is none of {', '.join(TOKEN_PATTERNS)}")
        data = load_ir(settings["data_path"], settings["split"])
        if args.data is not None and data_path(args.data) != settings["data_path"]:
            raise ValueError(f"--data {args.data}: re-ranker {args.reweigh} was trained on {settings['data_path']}")
        encoder = Encoder.from_config(ModelConfig(settings["first_stage"]), "auto")
    except (DataError, FileNotFoundError, OSError, ValueError, KeyError) as err:
        sys.exit(f"error: {err}")
    trained_on, held = held_out(len(data.query_ids), args.holdout, args.holdout_seed)
    fused = first_stage(data, encoder, trained_on, args.batch_size, first_stage_tokens(settings))
    full = next(iter(fused.candidates))
    held_fused = held_out_part(fused, held)
    if not same_held_out(settings["held_out"], held_fused, ce.depth):
        flags = f"--holdout {args.holdout} --holdout-seed {args.holdout_seed}"
        sys.exit(f"error: {args.reweigh} held out other questions than {flags}; give the ones it was trained with")
    if fused.weights[full] != settings.get("first_stage_weight"):
        sys.exit(
            f"error: {settings['first_stage']} + BM25 now takes dense weight {fused.weights[full]}, not the "
            f"{settings.get('first_stage_weight')} the re-ranker was trained with: not the same first stage"
        )
    before = {"depth": ce.depth, **{k: settings["held_out"].get(k) for k in ("weight", "reranked", "curve")}}
    new = {
        **settings,
        "depth": args.depth,
        "held_out": mixing_weight(ce, held_fused, args),
        "reweighed": [*settings.get("reweighed", []), before],
    }
    resave_settings(args.reweigh, new)
    print(f"re-ranker {args.reweigh}: depth {ce.depth} -> {args.depth}, weight {new['held_out']['weight']}")
    return new


def main(argv: list[str] | None = None) -> dict:
    """Train and save the re-ranker (or the ensemble); returns the settings saved in its reranker.json."""
    args = checked_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.reweigh is not None:
        return reweigh(args)
    data, encoder, ce = load_models(args)
    trained_on, held = held_out(len(data.query_ids), args.holdout, args.holdout_seed)
    if len(trained_on) == 0:
        sys.exit(f"error: --holdout {args.holdout}: holds out all {len(data.query_ids)} questions of {data.name}")
    fused = first_stage(data, encoder, trained_on, args.batch_size, args.bm25_tokens)
    ((full, c),) = fused.candidates.items()
    fusion_weight = fused.weights[full]
    held_fused = None
    if len(held):
        held_fused = held_out_part(fused, held)
    if args.members == 1:
        return train_member(args, ce, data, fused, trained_on, held_fused, args.seed, args.out)[0].settings
    paths = member_paths(args)
    seeds = [args.seed + i for i in range(args.members)]
    members = [
        kept_member(args, path, data, fusion_weight, seed, trained_on, held_fused) for path, seed in zip(paths, seeds)
    ]
    for i, (path, seed) in enumerate(zip(paths, seeds)):  # every kept one checked before any training
        if members[i] is None:
            if i > 0:
                torch.manual_seed(seed)  # the fresh head's weights, as a run with --seed SEED draws them
                ce = CrossEncoder(resolve_model_dir(args.init), args.max_length, device="cpu")
            members[i], paths[i] = train_member(args, ce, data, fused, trained_on, held_fused, seed, path)
    saved = {
        **expected_settings(args, data, fusion_weight, args.seed, trained_on),
        "seeds": seeds,
    }
    each = [member.settings["trained"] for member in members]
    saved["trained"] = {
        "steps": sum(t["steps"] for t in each),
        "seconds": round(sum(t["seconds"] for t in each), 1),
        "pairs": sum(t["pairs"] for t in each),
        "members": each,
    }
    ensemble = Ensemble(members)
    if held_fused is not None:
        saved["held_out"] = mixing_weight(ensemble, held_fused, args)
    if args.out.exists():
        sys.exit(f"error: --out {args.out} appeared during training; move it away and run again (the members are kept)")
    out = save_ensemble(paths, args.out, saved)
    print(f"ensemble of {args.members} re-rankers saved to {out}")
    return json.loads((out / SETTINGS_FILE).read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
