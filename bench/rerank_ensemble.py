"""Re-rankers alone and averaged, on the held-out questions they share: no dev question is read.

    python -m bench.rerank_ensemble --data ../shared/data/obliqa --rerankers A,B,C,D --ensembles A+B,C+D,A+B+C+D

Each re-ranker train_reranker.py saved with the same --data, --split, --holdout and --holdout-seed
holds out the same questions; they are ranked as it ranked them (its first stage fused with BM25,
the dense weight chosen on the questions trained on). For each re-ranker and each ensemble
(`retrieval.rerank.Ensemble`: the members' mean logit), the held-out NDCG@10 at every cross-encoder
weight of the grid and at the one the one-standard-error rule takes; then each ensemble paired with
each of its members at their own rule's weights (bootstrap interval, randomization p). --out keeps
every question's NDCG@10 at every weight as JSON.

    python -m bench.rerank_ensemble --data ../shared/data/obliqa --rerankers A --depths 10,20,30,50,100

--depths also ranks the held-out questions with each re-ranker ordering the fused top D for each D
(its weight chosen again there by the rule, as `train_reranker.py --reweigh --depth D` would), each
depth paired with the re-rankers' own at their rule's weights: how deep re-ranking pays.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.quality import change
from data import data_path, load_ir
from model import Encoder, ModelConfig, resolve_model_dir
from retrieval.metrics import TOP_K
from retrieval.rerank import (
    CrossEncoder,
    Ensemble,
    cached_scorer,
    first_stage_tokens,
    one_standard_error_weight,
    weight_curve,
)
from training.reranker import first_stage, held_out, held_out_part, holdout_flags, same_held_out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the BEIR directory the re-rankers were trained on")
    parser.add_argument("--rerankers", required=True, type=lambda s: s.split(","), help="saved re-rankers, A,B,...")
    parser.add_argument("--ensembles", default="", help="e.g. A+B,A+B+C: members by their place in --rerankers")
    parser.add_argument("--out", type=Path, help="every question's NDCG@10 at every weight, as JSON")
    parser.add_argument("--holdout", type=float, help="train_reranker.py's --holdout (default: as the first saved)")
    parser.add_argument("--holdout-seed", type=int, help="train_reranker.py's --holdout-seed (default: as saved)")
    parser.add_argument(
        "--depths", default="", help="e.g. 10,30,50: also each depth, paired with the re-rankers' own (1..100)"
    )
    parser.add_argument("--resamples", type=int, default=10000)
    return parser.parse_args(argv)


def shared_settings(rerankers: list[CrossEncoder]) -> dict:
    """What the re-rankers must share for their held-out questions to be the same; exits otherwise."""
    keys = ("data_path", "split", "first_stage", "depth", "bm25_tokens")

    def shared(ce: CrossEncoder) -> dict:  # the first stage by where it is: an id and its path are one model
        return {key: ce.settings.get(key) for key in keys} | {
            "first_stage": str(resolve_model_dir(ce.settings["first_stage"])),
            "bm25_tokens": first_stage_tokens(ce.settings),
        }

    first = shared(rerankers[0])
    for ce in rerankers:
        if shared(ce) != first or not ce.settings.get("held_out"):
            sys.exit(f"error: the re-rankers differ in {keys} or hold out no questions: they cannot be paired")
    return first


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        rerankers = [CrossEncoder.load(path, device="cpu") for path in args.rerankers]
    except ValueError as err:
        sys.exit(f"error: {err}")
    try:
        depths = [int(d) for d in args.depths.split(",") if d]
    except ValueError:
        sys.exit(f"error: --depths {args.depths}: give whole numbers, e.g. 10,30,50")
    if any(not 1 <= d <= TOP_K for d in depths):
        sys.exit(f"error: --depths {args.depths}: each must be in 1..{TOP_K}")
    names = [chr(ord("A") + i) for i in range(len(rerankers))]
    ensembles = [part.split("+") for part in args.ensembles.split(",") if part]
    if any(m not in names for members in ensembles for m in members):
        sys.exit(f"error: --ensembles {args.ensembles}: members are {', '.join(names)}")
    shared = shared_settings(rerankers)
    if data_path(args.data) != shared["data_path"]:
        sys.exit(f"error: --data {args.data}: the re-rankers were trained on {shared['data_path']}")
    data = load_ir(args.data, shared["split"])
    recorded = {(h["fraction"], h["seed"]) for ce in rerankers if "fraction" in (h := ce.settings["held_out"])}
    if len(recorded) > 1:
        sys.exit(f"error: the re-rankers record different held-out draws {sorted(recorded)}: they cannot be paired")
    draw = dict(zip(("fraction", "seed"), next(iter(recorded)))) if recorded else None
    args.holdout, args.holdout_seed = holdout_flags(draw, args.holdout, args.holdout_seed)
    trained_on, held = held_out(len(data.query_ids), args.holdout, args.holdout_seed)
    if len(held) != (saved := rerankers[0].settings["held_out"]["questions"]):
        sys.exit(f"error: the re-rankers held out {saved} questions, not {len(held)}: check --holdout")
    encoder = Encoder.from_config(ModelConfig(shared["first_stage"]), "auto")
    fused = first_stage(data, encoder, trained_on, 64, shared["bm25_tokens"])
    ((full, c),) = fused.candidates.items()
    saved_weights = {ce.settings.get("first_stage_weight", fused.weights[full]) for ce in rerankers}
    if saved_weights != {fused.weights[full]}:  # the same model, data and tokens: the same weight, or not the same
        sys.exit(
            f"error: {shared['first_stage']} + BM25 now takes dense weight {fused.weights[full]}, not the "
            f"{sorted(saved_weights)} the re-rankers were trained with: not the same first stage"
        )
    held_fused = held_out_part(fused, held)
    held_data = held_fused.data
    for path, ce in zip(args.rerankers, rerankers):  # the questions each held out: these, none other
        if not same_held_out(ce.settings["held_out"], held_fused, shared["depth"]):
            flags = f"--holdout {args.holdout} --holdout-seed {args.holdout_seed}"
            sys.exit(f"error: {path} held out other questions than {flags}")
    by_name = dict(zip(names, rerankers))
    judges = {f"{n} {path}": ce for n, path, ce in zip(names, args.rerankers, rerankers)}
    judges |= {"+".join(m): Ensemble([by_name[n] for n in m]) for m in ensembles}
    curves, chosen = {}, {}
    for label, judge in judges.items():
        scorer = cached_scorer(judge, held_data)
        curves[label] = weight_curve(c.take(held), fused.weights[full], "minmax", scorer, held_data, shared["depth"])
        chosen[label] = one_standard_error_weight(curves[label])
        line = " ".join(f"{w:g} {v.mean():.4f}" for w, v in curves[label].items())
        print(
            f"{label}: the rule's weight {chosen[label]:g}, NDCG@10 {curves[label][chosen[label]].mean():.4f}; {line}"
        )
    pairs = {}
    for members in ensembles:
        ensemble = "+".join(members)
        mine = curves[ensemble][chosen[ensemble]]
        for n in members:
            label = next(lbl for lbl in judges if lbl.startswith(f"{n} "))
            diff, lo, hi, p = change(curves[label][chosen[label]], mine, args.resamples)
            pairs[f"{ensemble} - {n}"] = {"diff": diff, "lo": lo, "hi": hi, "p": p}
            print(f"{ensemble} - {n}: {diff:+.4f} [{lo:+.4f}, {hi:+.4f}] p={p:.2g}")
    by_depth = {}
    for label, judge in judges.items():  # the logits of the deepest top cover every shallower one
        scorer, own = cached_scorer(judge, held_data), shared["depth"]
        by_depth[label] = {}
        for depth in sorted(set(depths) - {own}, reverse=True):
            curve = weight_curve(c.take(held), fused.weights[full], "minmax", scorer, held_data, depth)
            weight = one_standard_error_weight(curve)
            diff, lo, hi, p = change(curves[label][chosen[label]], curve[weight], args.resamples)
            by_depth[label][depth] = {
                "weight": weight,
                "ndcg@10": float(curve[weight].mean()),
                "best": max(float(v.mean()) for v in curve.values()),
                "change": {"diff": diff, "lo": lo, "hi": hi, "p": p},
                "curve": {f"{w:g}": v.tolist() for w, v in curve.items()},
            }
        for depth in sorted(by_depth[label]):
            d = by_depth[label][depth]
            ch = d["change"]
            print(
                f"{label}: depth {depth}, the rule's weight {d['weight']:g}, NDCG@10 {d['ndcg@10']:.4f} (best weight "
                f"{d['best']:.4f}); - depth {own}: {ch['diff']:+.4f} [{ch['lo']:+.4f}, {ch['hi']:+.4f}] p={ch['p']:.2g}"
            )
    result = {
        "questions": len(held),
        "depth": shared["depth"],
        "depths": {label: {str(d): v for d, v in sorted(found.items())} for label, found in by_depth.items()},
        "weights": chosen,
        "pairs": pairs,
        "curves": {label: {f"{w:g}": v.tolist() for w, v in curve.items()} for label, curve in curves.items()},
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
