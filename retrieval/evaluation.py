"""Retrieval evaluation at every Matryoshka dimension: encode once -> exact FAISS search -> metrics.

Corpus and queries are encoded once at full size (sharded over the processes under torchrun);
each dimension truncates, re-normalises and runs exact inner-product search (`search.py`: ties
broken by score descending, then corpus order), and `metrics.py` scores the ranking.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from common.files import write_atomic
from common.processes import is_distributed
from data import IRDataset
from model import Encoder
from retrieval.metrics import METRICS, TOP_K, DimResult, score_ranking
from retrieval.search import exact_search, truncate_normalize


def default_dims(full: int, smallest: int = 32) -> list[int]:
    """The full size and every power of two below it, down to `smallest`: 384 -> [384, 256, 128, 64, 32]."""
    dims = [full]
    power = 1 << (full.bit_length() - 1)  # largest power of two <= full
    power = power // 2 if power == full else power
    while power >= smallest:
        dims.append(power)
        power //= 2
    return dims


def evaluate_embeddings(
    query_emb: np.ndarray, corpus_emb: np.ndarray, data: IRDataset, dims: list[int]
) -> dict[int, DimResult]:
    """Metrics at each dim from full-size (Q, D) query and (N, D) corpus embeddings."""
    full = corpus_emb.shape[1]
    bad = [d for d in dims if not 0 < d <= full]
    if bad:
        raise ValueError(f"dims {bad} are outside 1..{full}, the model's embedding size")
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    unjudged = [qid for qid, judged in zip(data.query_ids, qrels) if not any(r > 0 for r in judged.values())]
    if unjudged:
        raise ValueError(f"queries without a relevant document cannot be scored: {unjudged[:5]}")
    results = {}
    for dim in dims:
        scores, rows = exact_search(truncate_normalize(query_emb, dim), truncate_normalize(corpus_emb, dim), TOP_K)
        results[dim] = score_ranking(scores, rows, data, qrels)
    return results


def encode_sharded(
    encode: Callable[[list[str]], torch.Tensor], texts: list[str], dim: int, device: torch.device
) -> torch.Tensor | None:
    """(N, dim) embeddings of `texts` in input order on the main process (None on the others).

    Outside distributed mode this is `encode(texts)`. With P processes, process r encodes
    texts[r::P] (strided, so every process gets a similar mix of lengths): each text is encoded
    exactly once, and the shards are gathered to process 0, which alone searches.
    """
    if not is_distributed():
        return encode(texts)
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = texts[rank::world]
    mine = encode(shard) if shard else torch.zeros(0, dim)
    rows = -(-len(texts) // world)  # every shard padded to the largest, as gather needs equal sizes
    padded = torch.zeros(rows, dim, device=device)
    padded[: len(shard)] = mine.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)] if rank == 0 else None
    dist.gather(padded, parts, dst=0)  # NCCL gathers CUDA tensors, gloo CPU ones: `device` is the model's
    if rank != 0:
        return None
    out = torch.empty(len(texts), dim)
    for r, part in enumerate(parts):
        out[r::world] = part[: len(range(r, len(texts), world))].cpu()
    return out


def encode_ir(
    encoder: Encoder, data: IRDataset, batch_size: int, show_progress: bool
) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """Full-size query and corpus embeddings (None on all but the main process when distributed),
    and the corpus encoding time in seconds."""

    def encoder_for(prompt: str) -> Callable[[list[str]], torch.Tensor]:
        return lambda texts: encoder.encode(texts, batch_size=batch_size, prompt=prompt, show_progress=show_progress)

    query_emb = encode_sharded(encoder_for(encoder.spec.query_prompt), data.query_texts, encoder.dim, encoder.device)
    start = time.perf_counter()
    corpus_emb = encode_sharded(
        encoder_for(encoder.spec.document_prompt), data.corpus_texts, encoder.dim, encoder.device
    )
    seconds = time.perf_counter() - start
    if query_emb is None:
        return None, None, seconds
    return query_emb.numpy(), corpus_emb.numpy(), seconds


def first_not_finite(embeddings: np.ndarray, ids: list[str], what: str) -> str | None:
    """Why `embeddings` (N, D) cannot be scored, naming the first row that is not finite (a diverged
    model, a bf16 overflow: such a row would rank nothing, or never be ranked, and score silently as
    a miss); None when every row is finite."""
    bad = ~np.isfinite(embeddings).all(axis=1)
    if not bad.any():
        return None
    first = int(np.flatnonzero(bad)[0])
    return f"the model gave a non-finite embedding for {what} {ids[first]!r} ({int(bad.sum())} in all)"


def encode_queries(encoder: Encoder, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray | None:
    """(Q, D) full-size query embeddings (sharded like encode_ir; None on all but the main process)."""
    embeddings = encode_sharded(
        lambda shard: encoder.encode(
            shard, batch_size=batch_size, prompt=encoder.spec.query_prompt, show_progress=show_progress
        ),
        texts,
        encoder.dim,
        encoder.device,
    )
    return None if embeddings is None else embeddings.numpy()


def evaluate(
    encoder: Encoder, data: IRDataset, dims: list[int] | None = None, batch_size: int = 64, show_progress: bool = False
) -> dict[int, DimResult] | None:
    """Encode `data` once with `encoder` and measure retrieval at each Matryoshka dim (default: all).

    Under torch.distributed every process must call it: encoding is sharded across processes and
    the search runs on the main one, which gets the results; the others get None.
    """
    query_emb, corpus_emb, _ = encode_ir(encoder, data, batch_size, show_progress)
    if query_emb is None:
        return None
    return evaluate_embeddings(query_emb, corpus_emb, data, dims or default_dims(encoder.dim))


def write_runs(
    results: dict[int, DimResult], data: IRDataset, out_dir: Path, tag: str = "embed", suffix: str = ""
) -> None:
    """Per dim: a TREC run file (qid Q0 docid rank score tag) and per-query metrics as JSONL
    (`run.<dim><suffix>.trec`; the suffix names the precision when there are several)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for dim, result in results.items():
        write_atomic(
            out_dir / f"run.{dim}{suffix}.trec",
            (
                f"{qid} Q0 {doc_id} {rank} {score:.9g} {tag}\n"
                for qid, ids, scores in zip(data.query_ids, result.ranked_ids, result.ranked_scores)
                for rank, (doc_id, score) in enumerate(zip(ids, scores), start=1)
            ),
        )
        write_atomic(
            out_dir / f"per_query.{dim}{suffix}.jsonl",
            (json.dumps(per_query_record(data, result, row)) + "\n" for row in range(len(data.query_ids))),
        )


def per_query_record(data: IRDataset, result: DimResult, row: int) -> dict:
    """One line of per_query.<dim>.jsonl: the question, its relevant ids, its metrics, its top 10."""
    qid = data.query_ids[row]
    record = {"query_id": qid, "query": data.query_texts[row], "relevant": sorted(data.qrels[qid])}
    record.update({m: float(result.per_query[m][row]) for m in METRICS})
    record["top10"] = result.ranked_ids[row][:10]
    return record
