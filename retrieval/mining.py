"""Hard negatives mined on the user's corpus, with positive-aware filtering.

The corpus (a BEIR corpus.jsonl, or the distinct training passages) and the distinct questions
are encoded once, sharded over all processes as evaluation is, and searched exactly (cosine, full
size, the project's FAISS search) to depth `rank_max`. Per question, in this order, a candidate is
dropped when it is (1) known relevant to the question (any row's positive, the qrels): never a
negative; (2) ranked above `rank_min`; (3) scored above `max_relative` x the question's lowest
positive score (NV-Retriever's TopK-PercPos; on legal text many are real answers, so they are
written out for a person to review); (4) scored above `max_score`. Then k are taken: the best, or
a seeded random sample. A question left with fewer than k keeps what it has: its rows train with
fewer negatives (the trainer masks the empty slots) and are never padded with random text, which
is how other miners let positives in.

Written to the output directory, each file under a temporary name moved into place, meta.json
last: triplets.jsonl (one line per training row, in order), scores.jsonl (per question: its
positives' scores, each negative's rank and score), filtered.jsonl (what filter 3 removed) and
meta.json (fingerprint, settings, counts, checksum). A later call with the same model, data and
settings reuses a complete set instead of encoding again. With a cache folder (`cache`), a complete
set is also kept there as `<fingerprint>/`, and a run in another output folder that would mine the
same copies it instead (seeds of one recipe, levers that change only the training).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.files import count_lines, file_sha256, jsonl_lines, output_problem, replace_directory, write_atomic
from common.processes import is_main_process, main_process_decides
from data import DataError, PairsData, read_id_text
from model import Encoder
from retrieval.evaluation import encode_sharded
from retrieval.fusion import convex_scores
from retrieval.lexical import build_index, matched_top_k
from retrieval.search import exact_search, truncate_normalize
from retrieval.settings import INDEX_SETTINGS, TOKEN_PATTERNS, LexicalConfig, MineConfig, check_mine_config

logger = logging.getLogger(__name__)

FILTERS = ("relevant", "rank_window", "relative", "max_score")  # in the order they are applied
# Changes neither which negatives nor their order. The batch size does (embeddings differ in the last
# bits with it, which can reorder near ties), so it is fingerprinted.
NOT_FINGERPRINTED = ("refresh", "cache")


@dataclass
class MineReport:
    """Where the mined files are, what each filter removed, and whether an earlier run was reused."""

    triplets: Path
    scores: Path
    filtered: Path
    meta: Path
    counts: dict[str, int]
    settings: dict = field(default_factory=dict)
    reused: bool = False

    def format_report(self) -> str:
        c, s = self.counts, self.settings
        relative = (
            f"above {s['max_relative']} x the lowest positive score"
            if s["max_relative"] is not None
            else "(no relative filter)"
        )
        absolute = f"above {s['max_score']}" if s["max_score"] is not None else "(no max_score)"
        return (
            f"Hard negatives {'reused' if self.reused else 'mined'} "
            f"(k={s['k']}, ranks {s['rank_min']}-{s['rank_max']}, "
            f"{s['sample']}): {c['negatives']} for {c['questions']} questions ({c['rows']} rows) from {c['corpus']} "
            f"passages. Removed {c['removed_relevant']} known relevant, {c['removed_rank_window']} above rank "
            f"{s['rank_min']}, {c['removed_relative']} {relative} (for review in {self.filtered.name}), "
            f"{c['removed_max_score']} {absolute}. {c['questions_short']} questions ({c['rows_short']} rows) got "
            f"fewer than {s['k']}, {c['questions_none']} got none: their rows train with what they have. "
            f"Triplets: {self.triplets}"
        )


# ---------------------------------------------------------------- inputs and their fingerprint


def _sha256_lines(items: Iterable) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update((json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8"))
    return digest.hexdigest()


def corpus_texts(pairs: PairsData, config: MineConfig) -> tuple[list[str], str]:
    """The distinct texts to mine from, in corpus order, and a sha256 of their source.

    A BEIR corpus is read as evaluation reads it ('title text'); equal texts under different ids
    are one candidate (ObliQA has 462 such), so ranks count distinct texts. Without a corpus: the
    training positives and explicit negatives.
    """
    if config.corpus is None:
        texts = list(dict.fromkeys(pairs.positives + [text for row in pairs.negatives for text in row]))
        return texts, _sha256_lines(texts)
    path = Path(config.corpus) / "corpus.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: no such file (the mining corpus must be a BEIR directory)")
    texts = list(dict.fromkeys(read_id_text(path, title=True).values()))
    return texts, file_sha256(path)


def relevant_by_question(pairs: PairsData, relevant: dict[str, set[str]]) -> dict[str, set[str]]:
    """Each training question's known relevant texts, in order of first appearance: the caller's
    table-wide map plus every row's own positive (so a map built without them still keeps them out)."""
    by_question: dict[str, set[str]] = {}
    for anchor, positive in zip(pairs.anchors, pairs.positives):
        by_question.setdefault(anchor, set(relevant.get(anchor, ()))).add(positive)
    return by_question


def fingerprint(
    config: MineConfig, pairs: PairsData, relevant_to: dict[str, set[str]], corpus_hash: str, extra: dict
) -> str:
    """sha256 of everything the mined files depend on: settings, the caller's model identity
    (`extra`), the training rows, the known relevant passages and the corpus."""
    settings = {k: v for k, v in asdict(config).items() if k not in NOT_FINGERPRINTED}
    parts = {
        "settings": settings,
        "extra": extra,
        "rows": _sha256_lines(zip(pairs.anchors, pairs.positives, pairs.negatives)),
        "relevant": _sha256_lines((q, sorted(texts)) for q, texts in relevant_to.items()),
        "corpus": corpus_hash,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def output_paths(out_dir: Path) -> dict[str, Path]:
    names = {"triplets": "triplets.jsonl", "scores": "scores.jsonl", "filtered": "filtered.jsonl", "meta": "meta.json"}
    return {key: out_dir / name for key, name in names.items()}


def from_cache(cache: Path, out_dir: Path, fingerprint_hex: str) -> MineReport | None:
    """Copy a complete set with this fingerprint from the cache into out_dir, meta.json last (so a
    copy cut short is never taken for complete); None when the cache has none."""
    entry = cache / fingerprint_hex
    if reusable(entry, fingerprint_hex) is None:
        return None
    source, paths = output_paths(entry), output_paths(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths["meta"].unlink(missing_ok=True)
    for key in ("triplets", "scores", "filtered", "meta"):
        write_atomic(paths[key], source[key].read_bytes())
    return reusable(out_dir, fingerprint_hex)


def to_cache(cache: Path, out_dir: Path, fingerprint_hex: str) -> None:
    """Keep a complete set in the cache under its fingerprint: built beside its final name and
    renamed into place, so a reader sees the whole set or none. A failure here loses nothing the run
    needs (its own copy is in out_dir), so it is logged, not raised."""
    entry = cache / fingerprint_hex
    if reusable(entry, fingerprint_hex) is not None:
        return
    building = cache / f".{fingerprint_hex}.{os.getpid()}.tmp"
    try:
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        for path in output_paths(out_dir).values():
            shutil.copyfile(path, building / path.name)
        replace_directory(building, entry)
        logger.info("kept the mined files in the cache: %s", entry)
    except OSError as err:
        logger.warning("could not keep the mined files in the cache %s: %s", cache, err)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def reusable(out_dir: Path, fingerprint_hex: str) -> MineReport | None:
    """The report of a complete earlier run with this fingerprint; None when anything is missing,
    partial (triplets' checksum or line count differ from meta.json's) or mined differently."""
    paths = output_paths(out_dir)
    try:
        meta = json.loads(paths["meta"].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or meta.get("fingerprint") != fingerprint_hex:
        return None
    if not all(path.is_file() for path in paths.values()):
        return None
    if (file_sha256(paths["triplets"]), count_lines(paths["triplets"])) != (
        meta.get("triplets_sha256"),
        meta.get("rows"),
    ):
        return None
    return MineReport(**paths, counts=meta["counts"], settings=meta["settings"], reused=True)


# ---------------------------------------------------------------- encode and search


def _embed(encoder: Encoder, texts: list[str], prompt: str, batch_size: int, show_progress: bool) -> np.ndarray | None:
    """(N, D) unit-length embeddings on the main process, None on the others."""

    def encode(shard: list[str]) -> torch.Tensor:
        return encoder.encode(shard, batch_size=batch_size, prompt=prompt, show_progress=show_progress)

    embeddings = encode_sharded(encode, texts, encoder.dim, encoder.device)
    return None if embeddings is None else truncate_normalize(embeddings.numpy(), encoder.dim)


def embed_all(
    encoder: Encoder,
    questions: list[str],
    corpus: list[str],
    extra_passages: list[str],
    batch_size: int,
    show_progress: bool,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Questions (Q, D) with the query prompt; corpus then the relevant passages missing from it
    (N + M, D) with the document prompt. None on all but the main process."""
    query_emb = _embed(encoder, questions, encoder.spec.query_prompt, batch_size, show_progress)
    passage_emb = _embed(encoder, corpus, encoder.spec.document_prompt, batch_size, show_progress)
    if extra_passages:  # decided from the data, so every process takes this branch alike
        extra_emb = _embed(encoder, extra_passages, encoder.spec.document_prompt, batch_size, show_progress)
        passage_emb = None if passage_emb is None else np.concatenate([passage_emb, extra_emb])
    return None if query_emb is None else (query_emb, passage_emb)


# ---------------------------------------------------------------- per question


@dataclass
class Mined:
    """One question's outcome; candidates are (rank, corpus row, score), best first."""

    negatives: list[tuple[int, int, float]]
    filtered: list[tuple[int, int, float]]  # removed by the positive-aware filter, for review
    removed: Counter  # filter name -> candidates it removed
    positive_scores: list[float]  # every known relevant passage's score, best first
    threshold: float | None  # max_relative x the lowest positive score


def select_negatives(
    ranked_rows: np.ndarray,
    ranked_scores: np.ndarray,
    corpus: list[str],
    relevant: set[str],
    positive_scores: list[float],
    config: MineConfig,
    question_index: int,
) -> Mined:
    """Apply the four filters in order to one question's (rank_max,) ranking, then take k."""
    threshold = None if config.max_relative is None else config.max_relative * min(positive_scores)
    if threshold is not None and config.source != "dense" and min(positive_scores) <= 0:
        threshold = None  # a positive BM25 does not match (or the fused pool's minimum): no scale to filter by
    removed: Counter = Counter({name: 0 for name in FILTERS})
    kept, filtered = [], []
    for rank, (row, score) in enumerate(zip(ranked_rows.tolist(), ranked_scores.tolist()), start=1):
        candidate = (rank, row, score)
        if row < 0:  # the corpus holds fewer than rank_max texts
            break
        if corpus[row] in relevant:
            removed["relevant"] += 1
        elif rank < config.rank_min:
            removed["rank_window"] += 1
        elif threshold is not None and score > threshold:
            removed["relative"] += 1
            filtered.append(candidate)
        elif config.max_score is not None and score > config.max_score:
            removed["max_score"] += 1
        else:
            kept.append(candidate)
    return Mined(
        take_k(kept, config, question_index), filtered, removed, sorted(positive_scores, reverse=True), threshold
    )


def take_k(kept: list, config: MineConfig, question_index: int) -> list:
    """The first k, or k drawn without replacement from a generator seeded by (seed, question index),
    so one question's draw does not depend on any other's; kept in rank order."""
    if config.sample == "top" or len(kept) <= config.k:
        return kept[: config.k]
    rng = np.random.default_rng([config.seed, question_index])
    chosen = np.sort(rng.choice(len(kept), size=config.k, replace=False))
    return [kept[i] for i in chosen]


def mine_questions(
    ranking: Ranking, questions: list[str], corpus: list[str], relevant_to: dict[str, set[str]], config: MineConfig
) -> list[Mined]:
    """Select every question's negatives from its ranking (retrieval on the source's scores)."""
    return [
        select_negatives(ranking.rows[i], ranking.scores[i], corpus, relevant_to[q], ranking.positives[i], config, i)
        for i, q in enumerate(questions)
    ]


@dataclass
class Ranking:
    """Each question's top rank_max corpus rows and scores under the source (best first, positives
    included, -1 padded), and its known relevant passages' scores on the same scale."""

    scores: np.ndarray  # (Q, rank_max)
    rows: np.ndarray  # (Q, rank_max)
    positives: list[list[float]]


def dense_ranking(
    query_emb: np.ndarray, passage_emb: np.ndarray, corpus_size: int, relevant_rows: list[list[int]], depth: int
) -> Ranking:
    """Cosine (rows are unit length) over the corpus rows of `passage_emb` (corpus, then extra passages)."""
    scores, rows = exact_search(query_emb, passage_emb[:corpus_size], depth)  # (Q, depth) each
    positives = [(passage_emb[r] @ query_emb[i]).tolist() for i, r in enumerate(relevant_rows)]
    return Ranking(scores, rows, positives)


def lexical_ranking(
    questions: list[str],
    passages: list[str],
    corpus_size: int,
    relevant_rows: list[list[int]],
    depth: int,
    lexical: LexicalConfig,
) -> Ranking:
    """BM25 over the corpus and the extra relevant passages (one index, so every positive has a score);
    only corpus rows are candidates."""
    index = build_index(passages, lexical)
    depth = min(depth, corpus_size)
    scores, rows, positives = np.empty((len(questions), depth), np.float32), np.empty((len(questions), depth), int), []
    for block, block_scores, matched in index.scores(questions):  # (B, N + M)
        scores[block], rows[block] = matched_top_k(block_scores[:, :corpus_size], matched[:, :corpus_size], depth)
        positives += [block_scores[i, r].tolist() for i, r in enumerate(relevant_rows[block])]
    return Ranking(scores, rows, positives)


def mining_weight(lexical: LexicalConfig) -> float:
    """The dense weight of the hybrid source's fusion: lexical.fusion_weight, else 0.5."""
    return 0.5 if lexical.fusion_weight is None else lexical.fusion_weight


def hybrid_ranking(
    query_emb: np.ndarray,
    passage_emb: np.ndarray,
    questions: list[str],
    passages: list[str],
    corpus_size: int,
    relevant_rows: list[list[int]],
    depth: int,
    lexical: LexicalConfig,
) -> Ranking:
    """The convex fusion (retrieval/fusion.py; dense weight lexical.fusion_weight, else 0.5) over each
    question's pool: the dense top, the BM25 top and its relevant passages, normalised over that pool."""
    weight = mining_weight(lexical)
    dense = dense_ranking(query_emb, passage_emb, corpus_size, relevant_rows, depth)
    index = build_index(passages, lexical)
    depth = min(depth, corpus_size)
    scores = np.full((len(questions), depth), -np.inf, dtype=np.float32)
    rows = np.full((len(questions), depth), -1, dtype=np.int64)
    positives = []
    for block, block_scores, matched in index.scores(questions):  # (B, N + M)
        bm25_rows = matched_top_k(block_scores[:, :corpus_size], matched[:, :corpus_size], depth)[1]
        for offset, i in enumerate(range(len(questions))[block]):
            listed = np.union1d(dense.rows[i][dense.rows[i] >= 0], bm25_rows[offset][bm25_rows[offset] >= 0])
            pool = np.union1d(listed, relevant_rows[i])
            # min-max whatever lexical.fusion_norm says: the positive-aware filter needs scores >= 0
            fused = convex_scores(passage_emb[pool] @ query_emb[i], block_scores[offset, pool], weight)  # (C,)
            positives.append(fused[np.searchsorted(pool, relevant_rows[i])].tolist())
            keep = pool < corpus_size  # the extra relevant passages score, but are never candidates
            order = np.lexsort((pool[keep], -fused[keep]))[:depth]
            rows[i, : order.size], scores[i, : order.size] = pool[keep][order], fused[keep][order]
    return Ranking(scores, rows, positives)


# ---------------------------------------------------------------- outputs


def count(mined: list[Mined], rows_per_question: list[int], k: int, corpus_size: int) -> dict[str, int]:
    short = [len(m.negatives) < k for m in mined]
    counts = {
        "questions": len(mined),
        "rows": sum(rows_per_question),
        "corpus": corpus_size,
        "negatives": sum(len(m.negatives) for m in mined),
        "questions_short": sum(short),
        "questions_none": sum(not m.negatives for m in mined),
        "rows_short": sum(n for n, is_short in zip(rows_per_question, short) if is_short),
    }
    counts.update({f"removed_{name}": sum(m.removed[name] for m in mined) for name in FILTERS})
    return counts


def _candidates(found: list[tuple[int, int, float]], corpus: list[str] | None = None) -> list[dict]:
    return [
        {"rank": rank, "score": round(score, 6), **({"text": corpus[row]} if corpus else {})}
        for rank, row, score in found
    ]


def write_outputs(
    out_dir: Path, pairs: PairsData, questions: list[str], corpus: list[str], mined: list[Mined], meta: dict
) -> MineReport:
    """triplets, scores and filtered files, then meta.json with the triplets' checksum: it is
    removed first, so until the new one lands no earlier meta.json can vouch for new files."""
    paths = output_paths(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths["meta"].unlink(missing_ok=True)
    by_question = dict(zip(questions, mined))
    write_atomic(
        paths["triplets"],
        jsonl_lines(
            {"anchor": a, "positive": p, "negatives": [corpus[row] for _, row, _ in by_question[a].negatives]}
            for a, p in zip(pairs.anchors, pairs.positives)
        ),
    )
    write_atomic(
        paths["scores"],
        jsonl_lines(
            {
                "question": q,
                "positive_scores": [round(s, 6) for s in m.positive_scores],
                "negatives": _candidates(m.negatives),
            }
            for q, m in by_question.items()
        ),
    )
    write_atomic(
        paths["filtered"],
        jsonl_lines(
            {
                "question": q,
                "lowest_positive_score": round(m.positive_scores[-1], 6),
                "threshold": round(m.threshold, 6),
                "removed": _candidates(m.filtered, corpus),
            }
            for q, m in by_question.items()
            if m.filtered
        ),
    )
    meta["triplets_sha256"], meta["rows"] = file_sha256(paths["triplets"]), count_lines(paths["triplets"])
    write_atomic(paths["meta"], [json.dumps(meta, indent=2, default=str) + "\n"])
    return MineReport(**paths, counts=meta["counts"], settings=meta["settings"], reused=False)


# ---------------------------------------------------------------- the whole job


def lexical_read(lexical: LexicalConfig, source: str) -> dict:
    """The lexical settings a `source` mining run reads (its fingerprint's share): the index's, and
    the dense weight when fusing; not the evaluation's fusion_norm, rrf_k or retriever, so changing
    those reuses the mined set."""
    read = {key: getattr(lexical, key) for key in INDEX_SETTINGS}
    if lexical.tokens != "words":  # the pattern itself; absent for the default, so caches mined before it stay valid
        read["token_pattern"] = TOKEN_PATTERNS[lexical.tokens]
    return {**read, "fusion_weight": mining_weight(lexical)} if source == "hybrid" else read


def mine(
    encoder: Encoder,
    pairs: PairsData,
    relevant: dict[str, set[str]],
    config: MineConfig,
    out_dir: Path,
    fingerprint_extra: dict,
    show_progress: bool = True,
    lexical: LexicalConfig | None = None,
) -> MineReport | None:
    """Mine config.k negatives per question into `out_dir`, or reuse a complete identical run there.

    Every process must call it (encoding is sharded); the main one searches, writes and gets the
    report, the others get None (the caller waits for all). `relevant` maps a question text to every
    passage text known relevant to it (`data.known_relevant`, qrels already folded in);
    `fingerprint_extra` names the model (and e.g. the epoch) so a different one re-mines. Only the
    encoder's `dim`, `device`, `spec` prompts, `bf16` (if it has one: fingerprinted) and `encode` are
    used. `config.source` ranks the candidates by the model (dense), by BM25 as `lexical` says (bm25:
    nothing is encoded), or by both fused (hybrid); the positive-aware filter compares scores on the
    source's own scale.
    """
    check_mine_config(config)
    if config.k == 0:
        raise ValueError("data.hard_negatives.k: 0 means no mining; mine() needs k > 0")
    out_dir = Path(out_dir)
    corpus, corpus_hash = corpus_texts(pairs, config)
    relevant_to = relevant_by_question(pairs, relevant)
    questions = list(relevant_to)
    if config.source != "dense":  # BM25's settings decide the negatives too: those mining reads
        fingerprint_extra = {**fingerprint_extra, "lexical": lexical_read(lexical or LexicalConfig(), config.source)}
    if config.source != "bm25" and getattr(encoder, "bf16", False):  # bf16 embeddings rank otherwise (absent
        fingerprint_extra = {**fingerprint_extra, "bf16": True}  # when off: sets mined before stay valid)
    fingerprint_hex = fingerprint(config, pairs, relevant_to, corpus_hash, fingerprint_extra)
    cache = Path(config.cache) if config.cache else None
    if cache is not None and (problem := output_problem(cache, directory=True)) is not None:  # on every process
        raise DataError(f"data.hard_negatives.cache: {cache} {problem}")
    earlier = reusable(out_dir, fingerprint_hex) if is_main_process() else None
    if earlier is not None:
        logger.info("reusing hard negatives in %s (same model, data and settings)", out_dir)
        if cache is not None:  # every complete set is kept there, this one too
            to_cache(cache, out_dir, fingerprint_hex)
    elif cache is not None and is_main_process():
        earlier = from_cache(cache, out_dir, fingerprint_hex)
        if earlier is not None:
            logger.info("hard negatives copied from the cache %s (same model, data and settings)", cache)
    if main_process_decides(earlier is not None, encoder.device):
        return earlier
    corpus_set = set(corpus)
    extra = sorted({text for texts in relevant_to.values() for text in texts if text not in corpus_set})
    positives = set(pairs.positives)
    missing = len(positives - corpus_set)
    if config.corpus is not None and missing > len(positives) / 2:  # e.g. a corpus with titles: 'title text'
        raise DataError(
            f"{config.corpus}/corpus.jsonl: {missing} of {len(positives)} training positives are not "
            "corpus texts ('title text' when a title is present), so a question's own answer could be "
            "mined as its negative; make the positives the corpus texts"
        )
    if config.corpus is not None and missing:
        logger.warning(
            "%d of %d training positives are not %s/corpus.jsonl texts: a corpus passage that holds one "
            "with other words (a title, say) is not known relevant and could be mined as its negative",
            missing,
            len(positives),
            config.corpus,
        )
    logger.info(
        "mining hard negatives: %d questions against %d passages (+%d relevant passages not in it)",
        len(questions),
        len(corpus),
        len(extra),
    )
    passages = corpus + extra
    passage_row = {text: row for row, text in enumerate(passages)}
    relevant_rows = [[passage_row[text] for text in sorted(relevant_to[question])] for question in questions]
    lexical = lexical or LexicalConfig()
    if config.source == "bm25":  # no model: the main process alone
        if not is_main_process():
            return None
        ranking = lexical_ranking(questions, passages, len(corpus), relevant_rows, config.rank_max, lexical)
    else:
        embedded = embed_all(encoder, questions, corpus, extra, config.batch_size, show_progress)
        if embedded is None:
            return None
        if config.source == "hybrid":
            ranking = hybrid_ranking(
                *embedded, questions, passages, len(corpus), relevant_rows, config.rank_max, lexical
            )
        else:
            ranking = dense_ranking(*embedded, len(corpus), relevant_rows, config.rank_max)
    mined = mine_questions(ranking, questions, corpus, relevant_to, config)
    rows_of = Counter(pairs.anchors)
    rows_per_question = [rows_of[question] for question in questions]
    meta = {
        "fingerprint": fingerprint_hex,
        "settings": asdict(config),
        "fingerprint_extra": fingerprint_extra,
        "counts": count(mined, rows_per_question, config.k, len(corpus)),
    }
    report = write_outputs(out_dir, pairs, questions, corpus, mined, meta)
    if cache is not None:
        to_cache(cache, out_dir, fingerprint_hex)
    return report
