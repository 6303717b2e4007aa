"""Retrieval evaluation at every Matryoshka dimension: encode once -> exact FAISS search -> metrics.

    python evaluate.py --model MODEL --data BEIR_DIR --split dev --out metrics.json
    python evaluate.py --model NEW --baseline OLD --data BEIR_DIR --split dev   # paired comparison
    python evaluate.py --model NEW --baseline OLD --data BEIR_DIR --split dev --seen TRAIN_PAIRS
        # and split: questions on passages NEW trained on (memory) and the others (transfer)
    python evaluate.py --model NEW --data BEIR_DIR --split dev --memory TRAIN_PAIRS
        # and the fused retriever with the training questions as extra keys of their passages

Corpus and queries are encoded once at full size; each dimension truncates, re-normalises and
runs exact inner-product search (`IndexFlatIP`, on the GPU when faiss has GPU support and CUDA
is present). Ties in score are broken by one rule: score descending, then corpus order.
Metrics follow trec_eval: NDCG@10 with the judged relevance as gain, MRR@10, Recall@10,
Recall@100, and MAP@100 (average precision over the top 100, divided by all relevant documents).
The embedding space is described at every dim too (retrieval/diagnostics.py: alignment,
uniformity, anisotropy, effective rank, on a fixed sample of passages): "space" in --out.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from common.files import output_problem, write_atomic
from common.processes import is_main_process, start_processes, stop_processes
from data import DataError, IRDataset, PairsData, data_path, load_ir, load_pairs
from model import PACKAGED_MINILM, Encoder, ModelConfig
from retrieval.diagnostics import SAMPLE, format_space, space_diagnostics
from retrieval.evaluation import (
    default_dims,
    encode_ir,
    encode_queries,
    evaluate_embeddings,
    first_not_finite,
    write_runs,
)
from retrieval.frontier import evaluate_frontier, frontier_report, write_frontier_runs
from retrieval.hybrid import (
    CONVEX,
    HybridResults,
    attach_fused,
    candidates_by_dim,
    choose_weight,
    evaluate_hybrid,
    format_hybrid,
    hybrid_json,
    lexical_index,
    versus_bm25,
)
from retrieval.lexical import LexicalIndex
from retrieval.memory import EncodedMemory, QuestionMemory, build_memory
from retrieval.metrics import METRICS, DimResult, format_table
from retrieval.rerank import (
    Fused,
    Reranker,
    bm25_settings,
    check_rerank_flags,
    chosen_weights,
    evaluate_reranked,
    load_reranker,
    saved_weight,
    unused_weight_note,
)
from retrieval.settings import FUSION_NORMS, TOKEN_PATTERNS, LexicalConfig, check_lexical_config, check_precision_flags
from retrieval.stats import compare_per_query, format_comparison
from training.seen_report import seen_markdown, seen_summary, subset_of, times_asked, trained_passages

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=PACKAGED_MINILM, help="hub id or local directory (default: packaged MiniLM)")
    parser.add_argument(
        "--data", required=True, help="BEIR directory, or pairs (directory of <split> files, or hub id)"
    )
    parser.add_argument("--split", default="test", help="qrels split of a BEIR set, or the held-out pairs split")
    parser.add_argument(
        "--dims",
        type=lambda s: [int(d) for d in s.split(",")],
        help="e.g. 384,128,64 (default: full and powers of two down to 32)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--mixed-precision",
        choices=("auto", "bf16", "no"),
        default="auto",
        help="encode in bf16 (auto: on CUDA) or full precision; flash-attn (attention auto) only with bf16",
    )
    parser.add_argument("--out", type=Path, help="write metrics JSON here")
    parser.add_argument("--run-out", type=Path, help="write TREC runs and per-query metrics to this directory")
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--pooling", choices=["cls", "mean", "lasttoken", "max"])
    parser.add_argument("--query-prompt")
    parser.add_argument("--document-prompt")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model's (and the baseline's) own code"
    )
    parser.add_argument(
        "--baseline", help="also evaluate this model (with its own settings) and compare the two per query"
    )
    parser.add_argument(
        "--resamples", type=int, default=10000, help="bootstrap and randomization resamples (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    parser.add_argument(
        "--seen",
        type=Path,
        metavar="PAIRS",
        help="the pairs the model trained on: also report the questions with a relevant passage among their "
        "positives (memory) and the others (transfer) apart, and grouped by how many of PAIRS' questions ask "
        "about their passage (0, 1, 2, 3+), against --baseline and BM25",
    )
    parser.add_argument(
        "--precision",
        type=lambda s: [p for p in s.split(",") if p],
        default=["float32"],
        help="float32,int8,binary: search each dim at each precision (default float32 only)",
    )
    parser.add_argument(
        "--rescore",
        type=int,
        default=0,
        help="also rescore the top N binary candidates with the float32 query (N >= 100)",
    )
    lexical = parser.add_argument_group("lexical baseline and hybrid fusion (BM25 through bm25s)")
    default = LexicalConfig()
    lexical.add_argument(
        "--lexical",
        choices=["bm25", "none"],
        default=default.retriever,
        help="score BM25 alone and fused with the model at every dim (default bm25)",
    )
    lexical.add_argument("--bm25-method", default=default.method, help=f"bm25s variant (default {default.method})")
    lexical.add_argument("--bm25-k1", type=float, default=default.k1)
    lexical.add_argument("--bm25-b", type=float, default=default.b)
    lexical.add_argument("--stemmer", default=default.stemmer, help="Snowball language, or none (default english)")
    lexical.add_argument("--stopwords", default=default.stopwords, help="bm25s stopword list, or none (default en)")
    lexical.add_argument(
        "--bm25-tokens",
        choices=list(TOKEN_PATTERNS),
        default=default.tokens,
        help="words: bm25s's words of 2+ characters (default); references: also rule numbers (3.2.1) whole and digits",
    )
    lexical.add_argument("--fusion-norm", choices=list(FUSION_NORMS), default=default.fusion_norm)
    lexical.add_argument(
        "--fusion-weight",
        type=float,
        default=None,
        help="dense weight of the convex fusion (default: the best on --fusion-weight-from)",
    )
    lexical.add_argument(
        "--fusion-weight-from",
        metavar="SPLIT",
        help="choose the fusion weight per dim on this split (default: on --split itself, which is optimistic)",
    )
    lexical.add_argument("--rrf-k", type=int, default=default.rrf_k)
    lexical.add_argument(
        "--memory",
        type=Path,
        metavar="PAIRS",
        help="training pairs: their questions become extra keys of their passages in the fused retriever "
        "(retrieval/memory.py); scored beside the fusion without them, paired with it and with BM25",
    )
    rerank = parser.add_argument_group("a cross-encoder re-ranker over the fused top k (train_reranker.py)")
    rerank.add_argument("--rerank", type=Path, metavar="DIR", help="re-rank each dim's fused ranking with this")
    rerank.add_argument("--rerank-depth", type=int, help="how much of the fused top it orders (default: its own)")
    rerank.add_argument(
        "--rerank-weight",
        type=float,
        help="the cross-encoder's weight against the fused score, in [0, 1] (default: the one train_reranker.py "
        "chose on its held-out questions, at its depth, min-max fusion and BM25 tokens; else chosen on "
        "--fusion-weight-from's split; else on --split, optimistic)",
    )
    return parser.parse_args(argv)


def lexical_config(args: argparse.Namespace) -> LexicalConfig:
    none = lambda value: None if value is None or value.lower() in ("none", "null") else value  # noqa: E731
    return LexicalConfig(
        retriever=args.lexical,
        method=args.bm25_method,
        k1=args.bm25_k1,
        b=args.bm25_b,
        stemmer=none(args.stemmer),
        stopwords=none(args.stopwords),
        tokens=args.bm25_tokens,
        fusion_norm=args.fusion_norm,
        fusion_weight=args.fusion_weight,
        rrf_k=args.rrf_k,
    )


def _compare(
    results: dict[int, DimResult], base_results: dict[int, DimResult], args: argparse.Namespace
) -> dict[str, dict[str, dict[str, float]]]:
    """Print the baseline's table and the paired change per metric; the comparison keyed by str(dim) for JSON."""
    comparison = compare_per_query(
        {dim: r.per_query for dim, r in base_results.items()},
        {dim: r.per_query for dim, r in results.items()},
        METRICS,
        args.resamples,
        args.seed,
    )
    print(f"\nbaseline {args.baseline}:")
    print(format_table({dim: result.metrics for dim, result in base_results.items()}))
    print(
        f"\nchange from the baseline per query: 95% paired bootstrap interval, two-sided randomization p "
        f"({args.resamples} resamples, seed {args.seed})"
    )
    print(format_comparison(comparison, METRICS))
    return {str(dim): by_metric for dim, by_metric in comparison.items()}


def checked_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed flags; a bad one exits with one error line before anything is loaded."""
    args = parse_args(argv)
    try:
        if args.resamples < 1:
            raise ValueError(f"--resamples {args.resamples}: must be at least 1")
        if args.seed < 0:
            raise ValueError(f"--seed {args.seed}: must be >= 0")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size {args.batch_size}: must be at least 1")
        if args.dims is not None and not all(dim >= 1 for dim in args.dims):
            raise ValueError(f"--dims {','.join(map(str, args.dims))}: each must be at least 1")
        check_precision_flags(args.precision, args.rescore)
        check_lexical_config(lexical_config(args), key_prefix="lexical")
        if args.fusion_weight is not None and args.fusion_weight_from:
            raise ValueError("--fusion-weight and --fusion-weight-from: give one (a weight, or where to choose it)")
        if args.fusion_weight_from and args.fusion_weight_from == args.split:
            raise ValueError(f"--fusion-weight-from {args.split}: the split evaluated; leave it out to choose there")
        check_rerank(args)
        if args.memory is not None and args.lexical == "none":
            raise ValueError("--memory remembers in the fused retriever: it needs --lexical bm25")
        if args.seen is not None and args.baseline is None and args.lexical == "none":
            raise ValueError("--seen pairs the model with --baseline or BM25: give --baseline, or keep --lexical bm25")
        check_outputs(args)
    except ValueError as err:
        sys.exit(f"error: {err}")
    return args


def check_outputs(args: argparse.Namespace) -> None:
    """--out and --run-out: writable, and never an input: not the --seen or --memory file, and not
    inside a local --data folder (its files would be replaced, or read as splits next time)."""
    data = Path(args.data)
    for flag, path, directory in (("--out", args.out, False), ("--run-out", args.run_out, True)):
        if path is None:
            continue
        where = path.resolve()
        for name, given in (("--seen", args.seen), ("--memory", args.memory)):
            if given is not None and given.resolve() == where:
                raise ValueError(f"{flag} {path}: is the {name} file, which it would replace")
        if data.is_dir() and data.resolve() in [where, *where.parents]:
            raise ValueError(f"{flag} {path}: inside --data {args.data}; write the results elsewhere")
        if problem := output_problem(path, directory=directory):  # last: it creates the folder
            raise ValueError(f"{flag} {path}: {problem}")


def check_rerank(args: argparse.Namespace) -> None:
    if args.rerank is not None and args.lexical == "none":
        raise ValueError("--rerank re-ranks the fused ranking: it needs --lexical bm25")
    check_rerank_flags(args.rerank, args.rerank_depth, args.rerank_weight)


def load_data(args: argparse.Namespace, pairs: PairsData | None = None) -> tuple[IRDataset, QuestionMemory | None]:
    """The data and --memory's pairs linked to its corpus (None without), before any model loads."""
    try:
        data = load_ir(args.data, args.split)
    except DataError as err:
        sys.exit(f"error: {err}")
    if args.run_out and (spaced := next((i for i in [*data.query_ids, *data.corpus_ids] if has_space(i)), None)):
        sys.exit(f"error: --run-out: the id {spaced!r} holds whitespace, which splits a TREC run line")
    return data, linked_memory(args, pairs, data)


def has_space(text: str) -> bool:
    return any(c.isspace() for c in text)


def load_models(args: argparse.Namespace) -> tuple[Encoder, Encoder | None, list[int]]:
    """The model, the baseline (None without --baseline) and the dims, checked before encoding."""
    config = ModelConfig(
        args.model,
        pooling=args.pooling,
        max_length=args.max_length,
        query_prompt=args.query_prompt,
        document_prompt=args.document_prompt,
        trust_remote_code=args.trust_remote_code,
    )
    try:
        encoder = Encoder.from_config(config, args.mixed_precision)
        # the baseline reads its own pooling, prompts and max length
        baseline = (
            Encoder.from_config(
                ModelConfig(args.baseline, trust_remote_code=args.trust_remote_code), args.mixed_precision
            )
            if args.baseline
            else None
        )
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    full = min(model.dim for model in (encoder, baseline) if model is not None)
    dims = args.dims or default_dims(full)
    if not all(0 < dim <= full for dim in dims):
        sys.exit(
            f"error: --dims {dims}: each must be in 1..{full}, the embedding size of "
            + ("the smaller model" if baseline else "the model")
        )
    return encoder, baseline, dims


def checked_reranker(args: argparse.Namespace) -> Reranker | None:
    """The --rerank cross-encoder (checked by checked_args), loaded before anything is encoded."""
    if args.rerank is None:
        return None
    try:
        reranker = load_reranker(args.rerank, device="cpu")  # to the device after the encoding
    except (OSError, ValueError) as err:
        sys.exit(f"error: --rerank {args.rerank}: {err}")
    trained_on = (reranker.settings.get("data_path"), reranker.settings.get("split"))
    if trained_on == (data_path(args.data), args.split):
        sys.exit(f"error: --rerank {args.rerank}: trained on {args.split} of {args.data}; evaluate another split")
    return reranker


class Seen(NamedTuple):
    """--seen's split of the evaluated questions, in data.query_ids' order."""

    mask: np.ndarray  # (Q,) bool: a relevant passage is a training positive
    trained: int  # distinct training positives
    asked: np.ndarray  # (Q,) distinct training questions on the question's passage (seen_report.times_asked)


def trained_texts(args: argparse.Namespace) -> tuple[list[str], list[str]] | None:
    """--seen: the training pairs' (anchor, positive) texts, read before any model is loaded."""
    if args.seen is None:
        return None
    try:
        pairs = load_pairs(args.seen)
    except (DataError, OSError) as err:
        sys.exit(f"error: --seen: {err}")
    return pairs.anchors, pairs.positives


def memory_pairs(args: argparse.Namespace) -> PairsData | None:
    """--memory: the training pairs, read before any model is loaded."""
    if args.memory is None:
        return None
    try:
        return load_pairs(args.memory)
    except (DataError, OSError) as err:
        sys.exit(f"error: --memory: {err}")


def linked_memory(args: argparse.Namespace, pairs: PairsData | None, data: IRDataset) -> QuestionMemory | None:
    """--memory's questions linked to the evaluated corpus, before anything is encoded."""
    if pairs is None:
        return None
    try:
        return build_memory(pairs.anchors, pairs.positives, data.corpus_texts, str(args.memory))
    except ValueError as err:
        sys.exit(f"error: --memory: {err}")


def weight_split(args: argparse.Namespace, data: IRDataset) -> IRDataset | None:
    """The split the fusion weight is chosen on (--fusion-weight-from), checked to share the corpus."""
    if not args.fusion_weight_from or args.lexical == "none":
        return None
    try:
        other = load_ir(args.data, args.fusion_weight_from)
    except DataError as err:
        sys.exit(f"error: --fusion-weight-from: {err}")
    if other.corpus_ids != data.corpus_ids:
        sys.exit(f"error: --fusion-weight-from {args.fusion_weight_from}: its corpus differs from {args.split}'s")
    return other


def scored_report(
    args: argparse.Namespace,
    data: IRDataset,
    dims: list[int],
    embeddings: tuple,
    base_embeddings: tuple | None,
    weight_on: tuple[IRDataset, np.ndarray] | None = None,
    reranker: Reranker | None = None,
    seen: Seen | None = None,
    memory: EncodedMemory | None = None,
) -> dict:
    """Score, print and return the report: metrics per dim, the metadata, the paired comparison with
    --baseline, and the storage frontier with --precision. `embeddings` is (queries, corpus, seconds);
    `seen`: --seen's split of the questions; `memory`: --memory's
    questions, encoded."""
    query_emb, corpus_emb, seconds = embeddings
    results = evaluate_embeddings(query_emb, corpus_emb, data, dims)
    report: dict = {str(dim): result.metrics for dim, result in results.items()}
    report["meta"] = {
        "model": args.model,
        "data": data.name,
        "queries": len(data.query_ids),
        "corpus": len(data.corpus_ids),
        "corpus_encode_s": seconds,
        "passages_per_s": len(data.corpus_ids) / seconds,
    }
    print(
        f"{data.name}: {len(data.query_ids)} queries, {len(data.corpus_ids)} passages "
        f"(encoded at {len(data.corpus_ids) / seconds:.1f} passages/s)"
    )
    if base_embeddings is not None:
        print(f"model {args.model}:")
    print(format_table({dim: result.metrics for dim, result in results.items()}))
    space = space_diagnostics(query_emb, corpus_emb, data, dims)
    report["space"] = {str(dim): values for dim, values in space.items()}
    print(f"\nthe embedding space (a fixed sample of {min(SAMPLE, len(data.corpus_ids))} passages):")
    print(format_space(None, space))
    base_results = None
    if base_embeddings is not None:
        base_results = evaluate_embeddings(*base_embeddings, data, dims)
        report["comparison"] = _compare(results, base_results, args)
        report["meta"].update(baseline=args.baseline, resamples=args.resamples, seed=args.seed)
    if args.precision != ["float32"] or args.rescore:
        comparison = report.get("comparison")  # --baseline's, of the float32 search
        points = evaluate_frontier(query_emb, corpus_emb, data, dims, args.precision, args.rescore)
        report = frontier_report(
            points, corpus_emb, data, {**report["meta"], "precisions": args.precision, "rescore": args.rescore}
        )
        if comparison is not None:
            report["comparison"] = comparison
        report["space"] = {str(dim): values for dim, values in space.items()}
        if args.run_out:
            write_frontier_runs(points, data, args.run_out)
    elif args.run_out:
        write_runs(results, data, args.run_out)
    if args.lexical != "none":
        report["lexical"] = lexical_report(
            args,
            data,
            dims,
            results,
            (query_emb, corpus_emb),
            weight_on,
            reranker,
            memory,
            None if seen is None else seen.mask,
        )
    if seen is not None:
        report["seen"] = seen_summary(
            seen.mask, base_results, results, seen.trained, args.resamples, args.seed, asked=seen.asked
        )
        print("\n" + "\n".join(seen_markdown(report["seen"])))
    return report


def weight_source(hybrid: HybridResults) -> str:
    """Where a fusion's weight came from, as the output says it."""
    return {"given": "given", "": ""}.get(hybrid.weights_from, f"chosen on {hybrid.weights_from}")


def lexical_report(
    args: argparse.Namespace,
    data: IRDataset,
    dims: list[int],
    results: dict[int, DimResult],
    embeddings: tuple[np.ndarray, np.ndarray],
    weight_on: tuple[IRDataset, np.ndarray] | None,
    reranker: Reranker | None = None,
    memory: EncodedMemory | None = None,
    seen: np.ndarray | None = None,
) -> dict:
    """BM25 alone and fused with the model at every dim, printed, and each against BM25 paired; with
    a re-ranker, the fused ranking re-ranked too, against BM25 and against the fusion; with a memory,
    the fusion remembering the training questions, against BM25 and the fusion (per --seen group too).
    embeddings: (queries, corpus) of the evaluated split; weight_on: (the split, its query embeddings)
    the fusion weight is chosen on, if not the evaluated one."""
    query_emb, corpus_emb = embeddings
    config = lexical_config(args)
    index = lexical_index(data, config)
    weights, other_fused = None, None
    if weight_on is not None:
        other, other_query_emb = weight_on
        other_candidates = candidates_by_dim(other_query_emb, corpus_emb, other, dims, index)[0]
        weights = {dim: choose_weight(c, other, config.fusion_norm) for dim, c in other_candidates.items()}
        other_fused = Fused(other, other_candidates, weights, config.fusion_norm, config.tokens, bm25_settings(config))
    hybrid = evaluate_hybrid(query_emb, corpus_emb, data, dims, index, weights, args.fusion_weight_from or "")
    attach_fused(results, hybrid)  # beside each dim's dense result, as a training run's report holds them (--seen)
    chosen = weight_source(hybrid)
    print(
        f"\nBM25 ({config.method}, k1 {config.k1:g}, b {config.b:g}, stemmer {config.stemmer}, stopwords "
        f"{config.stopwords}, tokens {config.tokens}) and the model fused with it ({config.fusion_norm} convex, "
        f"weight {chosen}; RRF k {config.rrf_k}):"
    )
    print(format_hybrid(hybrid, results))
    comparison = versus_bm25(hybrid, results, args.resamples, args.seed)
    for name, by_dim in comparison.items():
        print(f"\n{name} against BM25, paired over the same questions:")
        print(format_comparison(by_dim, ("ndcg@10", "recall@10", "map@10")))
    as_json = {name: {str(dim): by_metric for dim, by_metric in by_dim.items()} for name, by_dim in comparison.items()}
    report = {**hybrid_json(hybrid), "settings": asdict(config), "versus_bm25": as_json}
    if reranker is not None:
        fused = Fused(data, hybrid.candidates, hybrid.weights, config.fusion_norm, config.tokens, bm25_settings(config))
        report["reranked"] = reranked_report(args, hybrid, fused, reranker, other_fused)
    if memory is not None:
        report["memory"] = memory_report(args, data, dims, embeddings, index, hybrid, weight_on, memory, seen)
    return report


def memory_report(
    args: argparse.Namespace,
    data: IRDataset,
    dims: list[int],
    embeddings: tuple[np.ndarray, np.ndarray],
    index: LexicalIndex,
    hybrid: HybridResults,
    weight_on: tuple[IRDataset, np.ndarray] | None,
    memory: EncodedMemory,
    seen: np.ndarray | None,
) -> dict:
    """The fused retriever whose dense side remembers --memory's questions (its weight found as the
    plain fusion's is), printed, and paired against BM25 and the fusion without memory (with --seen,
    on each group of questions too)."""
    query_emb, corpus_emb = embeddings
    norm = index.config.fusion_norm
    weights = None
    if weight_on is not None:
        other, other_query_emb = weight_on
        other_candidates = candidates_by_dim(other_query_emb, corpus_emb, other, dims, index, memory=memory)[0]
        weights = {dim: choose_weight(c, other, norm) for dim, c in other_candidates.items()}
    remembered = evaluate_hybrid(
        query_emb, corpus_emb, data, dims, index, weights, args.fusion_weight_from or "", memory
    )
    chosen = weight_source(remembered)
    m = memory.memory
    print(
        f"\nthe fused retriever remembering {len(m.questions)} training questions of {m.source} (linked to "
        f"{len(m.rows)} passages; {norm} convex, weight {chosen}):"
    )
    print(
        format_table(
            {
                f"{dim} convex (w {remembered.weights[dim]:.2f})": r[CONVEX].metrics
                for dim, r in remembered.fused.items()
            }
        )
    )
    new = {dim: r[CONVEX].per_query for dim, r in remembered.fused.items()}
    bases = {"bm25": {dim: hybrid.bm25.per_query for dim in new}}
    bases["fused"] = {dim: hybrid.fused[dim][CONVEX].per_query for dim in new}
    groups = {"all": np.ones(len(data.query_ids), dtype=bool)}
    if seen is not None:
        groups.update(seen=seen, unseen=~seen)
    versus: dict = {}
    for group, mask in groups.items():
        if not mask.any():
            continue
        for name, base in bases.items():
            by_dim = compare_per_query(subset_of(base, mask), subset_of(new, mask), METRICS, args.resamples, args.seed)
            versus.setdefault(group, {})[name] = {str(dim): v for dim, v in by_dim.items()}
            what = "BM25" if name == "bm25" else "the fusion without memory"
            print(f"\nwith memory against {what}, paired over {int(mask.sum())} questions ({group}):")
            print(format_comparison(by_dim, ("ndcg@10", "recall@10", "map@10")))
    fused = hybrid_json(remembered)
    return {
        "pairs": m.source,
        "questions": len(m.questions),
        "passages": len(m.rows),
        "fused": fused["fused"],
        "weights_from": fused["weights_from"],
        "versus": versus,
    }


def rerank_weights(
    args: argparse.Namespace, reranker: Reranker, fused: Fused, other: Fused | None, depth: int
) -> tuple[dict[int, float], str]:
    """The cross-encoder's weight per dim and where it came from: --rerank-weight; else the weight
    train_reranker.py chose on its held-out questions (when it applies: same depth, min-max fusion and
    BM25 tokens);
    else chosen on --fusion-weight-from's split; else on the evaluated split (optimistic)."""
    if args.rerank_weight is not None:
        return {dim: args.rerank_weight for dim in fused.candidates}, "given"
    if (saved := saved_weight(reranker, depth, fused.norm, fused.tokens, fused.bm25)) is not None:
        return {dim: saved[0] for dim in fused.candidates}, saved[1]
    if note := unused_weight_note(reranker, depth, fused.norm, fused.tokens, fused.bm25):
        print(f"note: {note}")
    if other is not None:
        return chosen_weights(reranker, other, depth), f"chosen on {other.data.name}"
    return chosen_weights(reranker, fused, depth), f"chosen on {fused.data.name} (optimistic)"


def reranked_report(
    args: argparse.Namespace, hybrid: HybridResults, fused: Fused, reranker: Reranker, other: Fused | None
) -> dict:
    """Each dim's fused ranking re-ranked by `reranker`, printed, and paired against BM25 and the fusion."""
    depth = args.rerank_depth or reranker.depth
    weights, source = rerank_weights(args, reranker, fused, other, depth)
    reranked = evaluate_reranked(reranker, fused, depth, weights)
    print(f"\nthe fused top {depth} re-ranked by {args.rerank} (cross-encoder weight {source}):")
    print(format_table({f"{dim} (w {weights[dim]:.2f})": r.metrics for dim, r in reranked.items()}))
    new = {dim: r.per_query for dim, r in reranked.items()}
    bases = {"bm25": {dim: hybrid.bm25.per_query for dim in new}}
    bases["fused"] = {dim: hybrid.fused[dim][CONVEX].per_query for dim in new}
    versus = {name: compare_per_query(base, new, METRICS, args.resamples, args.seed) for name, base in bases.items()}
    for name, by_dim in versus.items():
        print(f"\nre-ranked against {'BM25' if name == 'bm25' else 'the fusion'}, paired over the same questions:")
        print(format_comparison(by_dim, ("ndcg@10", "recall@10", "map@10")))
    return {
        "depth": depth,
        "weights_from": source,
        "settings": reranker.settings,
        **{str(dim): {**r.metrics, "weight": weights[dim]} for dim, r in reranked.items()},
        "versus": {name: {str(dim): v for dim, v in by_dim.items()} for name, by_dim in versus.items()},
    }


def not_finite(data, embeddings, base_embeddings, weight_on, memory, keys) -> str | None:
    """Why the encoded vectors cannot be scored (one that is not finite), or None; on the main
    process, after every process has finished encoding."""
    checks = [(embeddings[0], data.query_ids, "query"), (embeddings[1], data.corpus_ids, "passage")]
    if base_embeddings is not None:
        checks += [
            (base_embeddings[0], data.query_ids, "--baseline query"),
            (base_embeddings[1], data.corpus_ids, "--baseline passage"),
        ]
    if weight_on is not None:
        checks.append((weight_on[1], weight_on[0].query_ids, "--fusion-weight-from query"))
    if keys is not None:
        checks.append((keys, [f"#{i + 1}" for i in range(len(memory.questions))], "--memory question"))
    return next((problem for emb, ids, what in checks if (problem := first_not_finite(emb, ids, what))), None)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run from the command line; returns {dim: {metric: value}} and the metadata as written to --out."""
    args = checked_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trained = trained_texts(args)
    data, memory = load_data(args, memory_pairs(args))
    other = weight_split(args, data)
    reranker = checked_reranker(args)
    encoder, baseline, dims = load_models(args)
    seen = None
    if trained is not None:
        asked = times_asked(data, *trained, data.query_ids)
        seen = Seen(mask=asked > 0, trained=len(trained_passages(trained[1])), asked=asked)
    device = start_processes()
    show_progress = is_main_process()
    embeddings = encode_ir(encoder.to(device), data, args.batch_size, show_progress)
    weight_on = None
    if other is not None:  # the queries of the split the fusion weight is chosen on
        weight_on = (other, encode_queries(encoder, other.query_texts, args.batch_size, show_progress))
    keys = None if memory is None else encode_queries(encoder, memory.questions, args.batch_size, show_progress)
    base_embeddings = None
    if baseline is not None:
        encoder.cpu()  # one model on the device at a time
        base_embeddings = encode_ir(baseline.to(device), data, args.batch_size, show_progress)[:2]
    stop_processes()
    if embeddings[0] is None:  # not the main process: its shard is encoded and gathered
        return {}
    if problem := not_finite(data, embeddings, base_embeddings, weight_on, memory, keys):
        sys.exit(f"error: {problem}")
    if reranker is not None:
        reranker.to(device)
    encoded = None if keys is None else EncodedMemory(memory, keys)
    report = scored_report(args, data, dims, embeddings, base_embeddings, weight_on, reranker, seen, encoded)
    if args.out:
        try:
            write_atomic(args.out, json.dumps(report, indent=2) + "\n")
        except OSError as err:
            sys.exit(f"error: --out {args.out}: {err.strerror or err}")
    return report


if __name__ == "__main__":
    main()
