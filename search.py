"""Search a corpus with a model fused with BM25: the retriever the evaluation scores, for your questions.

    python search.py --model runs/obliqa-best/model --corpus ../shared/data/obliqa \\
        --weights-from runs/obliqa-best/results.json "Who may approve a Fund Manager's delegation?"
    python search.py --model MODEL --corpus corpus.jsonl --fusion-weight 0.5 --queries queries.jsonl \\
        --out hits.jsonl --index runs/index      # the passages' vectors kept in runs/index and reused

Each question is ranked as `evaluate.py` and every training run rank the fused retriever
(retrieval/fusion.py): the model's top 100 and BM25's top 100 pooled, every pooled passage scored
by both (its cosine at `--dim`, its BM25 score), each normalised over the pool (min-max by
default), and ranked by `w * dense + (1 - w) * bm25`, ties in corpus order. `w` is
`--fusion-weight` (1: the model alone, 0: BM25 alone), or the weight a run chose at that dim
(`--weights-from RUN/results.json`, the weight its model card states), with the BM25 and fusion
settings that run used. `--memory PAIRS` adds question memory (retrieval/memory.py): a question
asked in training finds its own key here, where the evaluation leaves it out. `--rerank DIR`
re-orders the fused top with a cross-encoder train_reranker.py saved, as `evaluate.py --rerank`
does (retrieval/rerank.py).

Encoding the corpus is the slow part (minutes for 10k passages on a CPU). `--index DIR` keeps the
full-size passage vectors there (`embeddings.npy`, read without pickle, and a manifest written
last) and reuses them only while every file of the model, the encoding precision and the corpus
bytes are the ones they were encoded from; otherwise it encodes again and replaces the folder,
whole or not at all. A folder that is not such an index is refused, never replaced.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from common.files import (
    MANIFEST,
    file_sha256,
    jsonl_lines,
    output_problem,
    recover_replaced,
    remove_stale,
    write_atomic,
)
from data import DataError, IRDataset, PairsData, load_pairs, read_id_text
from model import PACKAGED_MINILM, Encoder, ModelConfig
from retrieval.answers import fused_hits
from retrieval.memory import EncodedMemory, build_memory
from retrieval.metrics import TOP_K
from retrieval.passage_index import index_identity, index_problem, keep_embeddings, kept_embeddings
from retrieval.rerank import (
    Reranker,
    bm25_settings,
    check_rerank_flags,
    load_reranker,
    saved_weight,
    unused_weight_note,
)
from retrieval.settings import FUSION_NORMS, LexicalConfig, check_lexical_config

logger = logging.getLogger(__name__)
RUN_SETTINGS = ("method", "k1", "b", "stemmer", "stopwords", "tokens", "fusion_norm")  # of a run's lexical.settings
FLAGS = {"k1": "--bm25-k1", "b": "--bm25-b", "fusion_norm": "--fusion-norm"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("questions", nargs="*", help="questions to answer (or --queries FILE)")
    parser.add_argument("--model", default=PACKAGED_MINILM, help="hub id or local directory (default: packaged MiniLM)")
    parser.add_argument("--corpus", required=True, type=Path, help="a BEIR folder or its corpus.jsonl")
    parser.add_argument("--queries", type=Path, help="a JSONL file of questions (_id, text), as BEIR's queries.jsonl")
    parser.add_argument("--dim", type=int, help="the Matryoshka dim searched (default: the model's full size)")
    weight = parser.add_mutually_exclusive_group(required=True)
    weight.add_argument("--fusion-weight", type=float, help="the dense weight w in [0, 1]")
    weight.add_argument("--weights-from", type=Path, help="a run's results.json: its weight at --dim, its BM25")
    default = LexicalConfig()
    parser.add_argument("--fusion-norm", choices=list(FUSION_NORMS), help=f"default {default.fusion_norm}")
    parser.add_argument("--bm25-k1", type=float, help=f"default {default.k1}")
    parser.add_argument("--bm25-b", type=float, help=f"default {default.b}")
    parser.add_argument("--memory", type=Path, help="training pairs: their questions become keys of their passages")
    parser.add_argument("--rerank", type=Path, metavar="DIR", help="re-rank the fused top with this cross-encoder")
    parser.add_argument("--rerank-depth", type=int, help="how much of the fused top it orders (default: its own)")
    parser.add_argument("--rerank-weight", type=float, help="the cross-encoder's weight in [0, 1] (default: saved)")
    parser.add_argument("--k", type=int, default=10, help=f"passages per question, at most {TOP_K} (default 10)")
    parser.add_argument("--index", type=Path, help="keep and reuse the passages' vectors in this folder")
    parser.add_argument("--out", type=Path, help="write the hits as JSONL here instead of printing them")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--mixed-precision",
        choices=("auto", "bf16", "no"),
        default="auto",
        help="encode in bf16 (auto: on CUDA) or full precision",
    )
    return parser.parse_args(argv)


def checked_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed flags, --weights-from's results read (`args.run`) and the BM25 settings resolved
    (`args.lexical`); a bad one exits with one error line before anything else is read or loaded."""
    args = parse_args(argv)
    try:
        if bool(args.questions) == bool(args.queries):
            raise ValueError("give the questions on the command line or --queries FILE (one of the two)")
        if not 1 <= args.k <= TOP_K:
            raise ValueError(f"--k {args.k}: must be in 1..{TOP_K} (each retriever's pool is its top {TOP_K})")
        if args.fusion_weight is not None and not 0 <= args.fusion_weight <= 1:
            raise ValueError(f"--fusion-weight {args.fusion_weight}: must be in [0, 1]")
        if args.dim is not None and args.dim < 1:
            raise ValueError(f"--dim {args.dim}: must be at least 1")
        if args.batch_size < 1:
            raise ValueError(f"--batch-size {args.batch_size}: must be at least 1")
        args.run = read_run(args.weights_from) if args.weights_from else None
        args.lexical = lexical_config(args)
        check_lexical_config(args.lexical, key_prefix="lexical")
        check_rerank_flags(args.rerank, args.rerank_depth, args.rerank_weight)
        if args.rerank and args.memory and args.rerank_weight is None:  # a saved weight was chosen without memory
            raise ValueError(
                f"--rerank {args.rerank} with --memory: its saved weight is for another first stage; "
                "give --rerank-weight"
            )
        if args.out:
            check_out(args)
        if args.index:
            recover_replaced(args.index)  # a replace cut between its renames: the old index back before any check
            if problem := index_problem(args.index):
                raise ValueError(f"--index {args.index}: {problem}")
    except ValueError as err:
        sys.exit(f"error: {err}")
    return args


def check_out(args: argparse.Namespace) -> None:
    """--out must be a writable file that is none of the inputs (it would be replaced by the hits)
    and lies in neither --index (replaced when refreshed) nor the model's folder (every file of
    which the index records, and which the model's manifest describes)."""
    out = args.out.resolve()
    inputs = {"--queries": args.queries, "--corpus": corpus_file(args.corpus), "--memory": args.memory}
    inputs["--weights-from"] = args.weights_from
    for flag, path in inputs.items():
        if path is not None and Path(path).resolve() == out:
            raise ValueError(f"--out {args.out}: is the {flag} file, which the hits would replace")
    folders = {"--index": args.index, "the model's folder": Path(args.model) if Path(args.model).is_dir() else None}
    for name, folder in folders.items():
        if folder is not None and folder.resolve() in [out, *out.parents]:
            raise ValueError(f"--out {args.out}: inside {name} {folder}, which is not the place for the hits")
    if problem := output_problem(args.out, directory=False):  # last: it creates the folder
        raise ValueError(f"--out {args.out}: {problem}")


def read_run(path: Path) -> dict:
    """A run's `lexical` results (results.json): its fused rows after training and its settings."""
    try:
        lexical = json.loads(Path(path).read_text(encoding="utf-8")).get("lexical")
    except (OSError, ValueError, AttributeError) as err:
        raise ValueError(f"--weights-from {path}: not a run's results.json ({err})") from None
    if not isinstance(lexical, dict) or not isinstance(lexical.get("after"), dict) or not lexical["after"]:
        raise ValueError(f"--weights-from {path}: no fused rows after training (was the run scored with BM25?)")
    if not isinstance(lexical.get("settings"), dict):
        raise ValueError(f"--weights-from {path}: no lexical settings")
    return lexical


def lexical_config(args: argparse.Namespace) -> LexicalConfig:
    """BM25 and fusion settings: the run's with --weights-from (a flag may only repeat them: its
    weight is for that fusion), else the evaluation's defaults and the flags."""
    flags = {"k1": args.bm25_k1, "b": args.bm25_b, "fusion_norm": args.fusion_norm}
    if args.run is None:
        return dataclasses.replace(LexicalConfig(), **{k: v for k, v in flags.items() if v is not None})
    settings = args.run["settings"]
    for key, value in flags.items():
        if value is not None and value != settings.get(key):
            raise ValueError(
                f"{FLAGS[key]} {value}: the run fused with {key} {settings.get(key)!r} and its weight is for "
                "that fusion; leave the flag out, or give --fusion-weight"
            )
    return dataclasses.replace(LexicalConfig(), **{k: settings[k] for k in RUN_SETTINGS if k in settings})


def corpus_file(path: Path) -> Path:
    """The corpus JSONL: the path itself, or corpus.jsonl inside a BEIR folder."""
    return path / "corpus.jsonl" if path.is_dir() else path


def read_questions(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(ids, texts): the command line's questions numbered from 1, or --queries' rows."""
    if args.queries is None:
        return [str(n) for n in range(1, len(args.questions) + 1)], list(args.questions)
    rows = read_id_text(args.queries, title=False)
    return list(rows), list(rows.values())


def fused_weight(args: argparse.Namespace, dim: int) -> tuple[float, str]:
    """The dense weight, and where it came from: --fusion-weight, or the run's chosen weight at `dim`
    (with --memory, the one it chose for the fusion with question memory, `eval.memory`)."""
    if args.fusion_weight is not None:
        return args.fusion_weight, "given"
    where, kind = f"--weights-from {args.weights_from}", "remembered" if args.memory else "convex"
    rows = args.run["after"]
    row = rows.get(str(dim))
    if isinstance(row, dict) and "convex" in row and kind not in row:
        raise ValueError(f"{where}: no weight for the fusion with question memory (the run had eval.memory false)")
    if not isinstance(row, dict) or not isinstance(row.get(kind), dict):
        raise ValueError(f"{where}: no fused weight at {dim} dims (it has {', '.join(sorted(rows, key=int))})")
    weight = row[kind].get("weight")
    if not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise ValueError(f"{where}: the weight at {dim} dims is {weight!r}, not a number in [0, 1]")
    return float(weight), f"the run's, {args.run.get('weight_chosen_on', 'chosen on its eval set')}"


def reranker_of(args: argparse.Namespace) -> tuple[Reranker, int, float, str] | None:
    """--rerank's cross-encoder, depth, weight and where the weight came from: --rerank-weight, else
    the one train_reranker.py saved when it was chosen for this fusion (its depth, min-max, BM25's
    tokens; not with --memory), else an error asking for it."""
    if args.rerank is None:
        return None
    ce = load_reranker(args.rerank)
    depth = args.rerank_depth or ce.depth
    if args.rerank_weight is not None:
        return ce, depth, args.rerank_weight, "given"
    lexical = args.lexical
    saved = saved_weight(ce, depth, lexical.fusion_norm, lexical.tokens, bm25_settings(lexical))
    if saved is None:
        why = unused_weight_note(ce, depth, lexical.fusion_norm, lexical.tokens, bm25_settings(lexical))
        why = why or "it saved no weight for this fusion"
        raise ValueError(f"--rerank {args.rerank}: {why}; give --rerank-weight")
    return ce, depth, *saved


def corpus_embeddings(args: argparse.Namespace, encoder: Encoder, data: IRDataset, corpus_sha256: str) -> np.ndarray:
    """(N, D) full-size passage vectors: kept in --index when they match, else encoded (and kept;
    a failure to keep them is a warning, the answers still come)."""
    identity = None
    if args.index:  # (an index a cut replace left aside was put back by checked_args)
        remove_stale(args.index.parent, [f".{args.index.name}.tmp-*", f".{args.index.name}.old-*"])
        identity = index_identity(encoder, corpus_sha256)
        if (args.index / MANIFEST).exists():
            kept, problem = kept_embeddings(args.index, identity, (len(data.corpus_ids), encoder.dim))
            if problem is not None:
                logger.info("--index %s: %s; encoding again", args.index, problem)
            else:
                logger.info("passage vectors reused from %s", args.index)
                return kept
    logger.info("encoding %d passages", len(data.corpus_texts))
    embeddings = encoder.encode(
        data.corpus_texts, batch_size=args.batch_size, prompt=encoder.spec.document_prompt, show_progress=True
    ).numpy()
    if args.index:
        try:
            keep_embeddings(args.index, identity, embeddings)
            logger.info("passage vectors kept in %s", args.index)
        except OSError as err:
            logger.warning("--index %s: the vectors could not be kept (%s); answering anyway", args.index, err)
    return embeddings


def printed(question: str, hits: list[dict], width: int = 110) -> str:
    lines = [f"? {question}"]
    for hit in hits:
        text = " ".join(hit["text"].split())
        text = text if len(text) <= width else text[: width - 3] + "..."
        logit = f"  {hit['rerank']:+.3f}" if hit.get("rerank") is not None else ""  # the re-ranked order's
        lines.append(f"{hit['rank']:>4}  {hit['score']:.4f}{logit}  {hit['id']}  {text}")
    return "\n".join(lines)


def read_inputs(args: argparse.Namespace) -> tuple[IRDataset, str, PairsData | None]:
    """The corpus (and the sha256 of its bytes, taken before they are read: a file rewritten
    meanwhile never passes for the one encoded), the questions and --memory's pairs, read and
    checked before any model loads."""
    corpus = corpus_file(args.corpus)
    try:
        corpus_sha256 = file_sha256(corpus) if args.index else ""
        groups: list[str] = []
        passages = read_id_text(corpus, title=True, groups=groups)
        query_ids, query_texts = read_questions(args)
    except (DataError, OSError) as err:
        sys.exit(f"error: {err}")
    data = IRDataset(list(passages), list(passages.values()), query_ids, query_texts, {}, corpus.name, groups)
    try:
        return data, corpus_sha256, load_pairs(args.memory) if args.memory else None
    except (DataError, OSError) as err:
        sys.exit(f"error: --memory: {err}")


def main(argv: list[str] | None = None) -> list[dict]:
    """Run from the command line; returns one record per question: its id, text and hits."""
    args = checked_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data, corpus_sha256, pairs = read_inputs(args)
    try:
        memory = None
        if pairs is not None:
            memory = build_memory(pairs.anchors, pairs.positives, data.corpus_texts, str(args.memory))
    except ValueError as err:
        sys.exit(f"error: --memory: {err}")
    try:
        encoder = Encoder.from_config(ModelConfig(args.model), args.mixed_precision)
        dim = args.dim or encoder.dim
        if dim > encoder.dim:
            raise ValueError(f"--dim {dim}: the model's vectors have {encoder.dim}")
        if args.index and encoder.source_dir.resolve() in [args.index.resolve(), *args.index.resolve().parents]:
            raise ValueError(f"--index {args.index}: inside the model's folder, whose every file it records")
        weight, weight_source = fused_weight(args, dim)
        rerank = reranker_of(args)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    encoder.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    corpus_emb = corpus_embeddings(args, encoder, data, corpus_sha256)

    def encoded(texts: list[str]) -> np.ndarray:  # (len(texts), D) full size, as questions are encoded
        return encoder.encode(texts, batch_size=args.batch_size, prompt=encoder.spec.query_prompt).numpy()

    remembered = None if memory is None else EncodedMemory(memory, encoded(memory.questions))
    lexical = args.lexical
    logger.info(
        "%d dims, dense weight %.2f (%s), %s fusion, BM25 %s k1 %g b %g%s",
        dim,
        weight,
        weight_source,
        lexical.fusion_norm,
        lexical.method,
        lexical.k1,
        lexical.b,
        f", {len(memory.questions)} training questions remembered" if memory else "",
    )
    if rerank is not None:
        logger.info("re-ranked by %s: its top %d, cross-encoder weight %.2f (%s)", args.rerank, *rerank[1:])
        rerank = rerank[:3]
    hits = fused_hits(data, encoded(data.query_texts), corpus_emb, dim, weight, lexical, args.k, remembered, rerank)
    records = [{"id": i, "question": t, "hits": h} for i, t, h in zip(data.query_ids, data.query_texts, hits)]
    if args.out:  # each hit's text is the passage's, whole
        try:
            write_atomic(args.out, jsonl_lines(records))
        except OSError as err:
            sys.exit(f"error: --out {args.out}: {err.strerror or err}")
        logger.info("%d questions' hits written to %s", len(records), args.out)
    else:
        print("\n\n".join(printed(r["question"], r["hits"]) for r in records))
    return records


if __name__ == "__main__":
    main()
