"""A cross-encoder re-ranker over the fused top k: question and passage read together by one
transformer that gives the pair one logit.

The re-ranked + fused ranking of a question is its fused ranking (dense + BM25, convex) with the
first `depth` passages ordered by w * minmax(cross-encoder logit) + (1 - w) * minmax(fused score),
both normalised over those `depth` passages; the rest keep their fused order after them. w = 1 is
the cross-encoder alone over the top `depth`, w = 0 the fusion unchanged. Ties keep the fused order.

A re-ranker directory is transformers' sequence classifier with one label (what
`sentence_transformers.CrossEncoder(path)` loads too), its tokenizer, `reranker.json` (the
max length and depth it was trained for, how it was trained) and the project's manifest
(`complete.json`, written last), moved into place whole.

An ensemble directory (`train_reranker.py --members N`) holds N such re-rankers, each trained from
another seed (`<its name>.member-<seed>/`, each loadable alone), and its own `reranker.json` (`members`: their
folder names; the weight chosen for the ensemble) and manifest over every file. A pair's logit is
the mean of the members' logits. `load_reranker` reads either kind.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import sdpa_kernel
from tqdm.auto import tqdm

from common.files import built_directory, listed_files_problem, read_manifest, write_atomic
from data import IRDataset
from model import SDPA_BACKENDS
from retrieval.fusion import WEIGHT_GRID, Candidates, best_weight, convex, normalized, ranked
from retrieval.metrics import TOP_K, DimResult, score_ranking
from retrieval.settings import INDEX_SETTINGS, LexicalConfig

SETTINGS_FILE = "reranker.json"
MEMBERS = "members"  # an ensemble's reranker.json: its members' folder names
# the fused top a re-ranker orders, unless its reranker.json or the caller says otherwise; chosen on held-out
# train questions (BENCHMARKS.md, "How deep to re-rank")
DEPTH = 50

Scorer = Callable[[np.ndarray], np.ndarray]  # (Q, depth) corpus rows (-1 padding) -> (Q, depth) logits


class CrossEncoder:
    """A transformers sequence classifier with one logit: logit(question, passage)."""

    def __init__(
        self, path: str | Path, max_length: int = 256, settings: dict | None = None, device: str | None = None
    ):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions is not None and max_length > positions:
            raise ValueError(f"max length {max_length}: the model {path} reads at most {positions} tokens")
        self.max_length = max_length
        self.settings = settings or {}
        self.logit_cache: dict[tuple[str, str], float] = {}  # (question, passage) -> logit, see cached_scorer
        self.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def to(self, device: str | torch.device) -> CrossEncoder:
        self.model.to(device)
        self.device = next(self.model.parameters()).device
        return self

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> CrossEncoder:
        """One re-ranker this project saved; ValueError naming what is wrong with `path` otherwise
        (an ensemble too: `load_reranker` reads both)."""
        reranker = load_reranker(path, device)
        if isinstance(reranker, Ensemble):
            raise ValueError(f"re-ranker {path}: an ensemble of {len(reranker.members)}; not one model")
        return reranker

    @property
    def depth(self) -> int:
        return int(self.settings.get("depth", DEPTH))

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
        with sdpa_kernel(SDPA_BACKENDS):  # no cuDNN attention: a plan per shape (model.py)
            return self.model(**batch).logits[:, 0]  # (B,)

    def logits(self, pairs: list[tuple[str, str]], chunk: int, progress: str | None = None) -> torch.Tensor:
        """(len(pairs),) logits with grad, in the pairs' order; computed in chunks of similar length
        so each pads only to its own longest. `progress`: a bar with that name over the chunks."""
        lengths = [len(q) + len(p) for q, p in pairs]
        order = np.argsort(-np.asarray(lengths), kind="stable")
        chunks = np.array_split(order, -(-len(pairs) // chunk))
        chunks = tqdm(chunks, desc=progress, unit="batch", disable=progress is None)
        parts = [(idx, self._logits([pairs[i] for i in idx])) for idx in chunks]
        index = torch.from_numpy(np.concatenate([idx for idx, _ in parts])).to(self.device)
        values = torch.cat([logit for _, logit in parts])
        return torch.empty(len(pairs), device=self.device).index_put((index,), values)

    @torch.no_grad()
    def score(self, pairs: list[tuple[str, str]], batch_size: int = 64, progress: str | None = None) -> np.ndarray:
        """(len(pairs),) float32 logits, in eval mode; `progress`: a bar with that name."""
        self.model.eval()
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        return self.logits(pairs, batch_size, progress).float().cpu().numpy()

    def save(self, path: Path, settings: dict) -> Path:
        """Written beside `path`, manifest last, then moved into place: an interrupted save never
        leaves a directory that looks complete, and a failed one leaves an earlier `path` whole."""
        path = Path(path)
        with built_directory(path) as tmp:
            # what sentence-transformers' CrossEncoder(path) reads: raw logits, cut where training cut
            self.model.config.sentence_transformers = {"activation_fn": "torch.nn.modules.linear.Identity"}
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.model_max_length = self.max_length
            self.tokenizer.save_pretrained(tmp)
            self.settings = {**settings, "max_length": self.max_length}
            write_atomic(tmp / SETTINGS_FILE, json.dumps(self.settings, indent=1) + "\n")
        return path


class Ensemble:
    """Several re-rankers read as one: a pair's logit is the mean of its members' logits (each
    member a CrossEncoder trained from another seed). What a re-ranker offers the evaluation:
    `score`, `settings`, `depth`, `logit_cache`, `to`, `device`."""

    depth = CrossEncoder.depth

    def __init__(self, members: list[CrossEncoder], settings: dict | None = None):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = members
        self.settings = settings or {}
        self.logit_cache: dict[tuple[str, str], float] = {}  # the mean logits, see cached_scorer

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    def to(self, device: str | torch.device) -> Ensemble:
        for member in self.members:
            member.to(device)
        return self

    def score(self, pairs: list[tuple[str, str]], batch_size: int = 64, progress: str | None = None) -> np.ndarray:
        """(len(pairs),) the members' mean logit of each pair (float32); a pair a member has already
        scored (its `logit_cache`) is not scored again."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        total = np.zeros(len(pairs), dtype=np.float64)
        for i, member in enumerate(self.members):
            cache = member.logit_cache
            wanted = sorted(set(pairs) - cache.keys())
            name = None if progress is None or not wanted else f"{progress} {i + 1}/{len(self.members)}"
            cache.update(zip(wanted, member.score(wanted, batch_size, name).tolist()))
            total += [cache[pair] for pair in pairs]
        return (total / len(self.members)).astype(np.float32)


Reranker = CrossEncoder | Ensemble  # what the evaluation re-ranks with


def load_reranker(path: str | Path, device: str | None = None) -> Reranker:
    """A re-ranker or an ensemble of re-rankers this project saved; ValueError naming what is
    wrong with `path` otherwise."""
    path = Path(path)
    problem = saved_problem(path)
    if problem:
        raise ValueError(f"re-ranker {path}: {problem}")
    settings = json.loads((path / SETTINGS_FILE).read_text(encoding="utf-8"))
    if MEMBERS not in settings:
        return CrossEncoder(path, int(settings["max_length"]), settings, device)
    members = []  # each already checked, checksums too, by saved_problem above: not read twice more
    for name in settings[MEMBERS]:
        own = json.loads((path / name / SETTINGS_FILE).read_text(encoding="utf-8"))
        members.append(CrossEncoder(path / name, int(own["max_length"]), own, device))
    return Ensemble(members, settings)


def save_ensemble(members: list[Path], out: Path, settings: dict) -> Path:
    """The complete re-rankers `members` moved into a new ensemble directory `out` (each keeps its
    folder name), with `settings` (plus their names and max length) and the manifest written last,
    then moved into place whole. The members are linked (else copied) into it and removed from where
    they were only once it is in place: however it stops, they are whole somewhere. Fails, changing
    nothing, if `out` exists."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; an ensemble is never written over a directory")
    if len({m.name for m in members}) != len(members):
        raise ValueError(f"members {[str(m) for m in members]}: their folder names must differ")
    for member in members:
        if problem := saved_problem(member):
            raise ValueError(f"member {member}: {problem}")
    with built_directory(out) as tmp:
        for member in members:
            shutil.copytree(member, tmp / member.name, copy_function=link_or_copy)
        first = json.loads((tmp / members[0].name / SETTINGS_FILE).read_text(encoding="utf-8"))
        settings = {**settings, MEMBERS: [m.name for m in members], "max_length": first["max_length"]}
        write_atomic(tmp / SETTINGS_FILE, json.dumps(settings, indent=1) + "\n")
    for member in members:
        shutil.rmtree(member)
    return out


def resave_settings(path: Path, settings: dict) -> Path:
    """The complete re-ranker or ensemble at `path` with its reranker.json replaced by `settings`,
    its weights untouched: linked (else copied) beside it, the settings and the manifest written
    there, then moved into place whole, so a stop at any point leaves one complete copy."""
    path = Path(path)
    if problem := saved_problem(path):
        raise ValueError(f"re-ranker {path}: {problem}")
    with built_directory(path) as tmp:
        shutil.copytree(path, tmp, copy_function=link_or_copy, dirs_exist_ok=True)
        write_atomic(tmp / SETTINGS_FILE, json.dumps(settings, indent=1) + "\n")  # a new file, not the link
    return path


def link_or_copy(source: str, destination: str) -> str:
    """A hard link of `source` at `destination` (no bytes copied), else a copy."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination


def check_rerank_flags(path: Path | None, depth: int | None, weight: float | None) -> None:
    """The command lines' --rerank, --rerank-depth and --rerank-weight, checked before anything
    loads: ValueError naming the flag."""
    if path is None:
        if depth is not None or weight is not None:
            raise ValueError("--rerank-depth and --rerank-weight need --rerank DIR")
        return
    if depth is not None and not 1 <= depth <= TOP_K:
        raise ValueError(f"--rerank-depth {depth}: must be in 1..{TOP_K}")
    if weight is not None and not 0 <= weight <= 1:
        raise ValueError(f"--rerank-weight {weight}: must be in [0, 1]")
    if problem := saved_problem(path):
        raise ValueError(f"--rerank {path}: {problem}")


def saved_problem(path: Path) -> str | None:
    """None when `path` holds a complete re-ranker this project saved, else why not."""
    if not path.is_dir():
        return "no such directory"
    if not (path / SETTINGS_FILE).is_file():
        return f"no {SETTINGS_FILE}: not a re-ranker train_reranker.py saved"
    manifest, problem = read_manifest(path)
    problem = problem or listed_files_problem(path, manifest["files"])
    if problem:
        return f"damaged or incomplete: {problem}"
    try:
        settings = json.loads((path / SETTINGS_FILE).read_text(encoding="utf-8"))
        int(settings["max_length"])
        members = settings.get(MEMBERS, [])
        if not isinstance(members, list) or not all(isinstance(name, str) for name in members):
            raise TypeError(f"{MEMBERS} is not a list of folder names")
        if MEMBERS in settings and not members:
            raise ValueError(f"{MEMBERS} is empty")
    except (ValueError, KeyError, TypeError) as err:
        return f"{SETTINGS_FILE} is unreadable ({err!r})"
    for name in members:
        if Path(name).name != name or name in ("", ".", "..") or (path / name).is_symlink():
            return f"{SETTINGS_FILE} names the member {name!r}, not a folder inside it"
        if problem := saved_problem(path / name):
            return f"member {name}: {problem}"
    return None


def cached_scorer(
    ce: Reranker, data: IRDataset, batch_size: int = 64, progress: str | None = "cross-encoder"
) -> Scorer:
    """rows (Q, depth) of `data`'s questions -> (Q, depth) logits (0 at padding). Each (question,
    passage) text pair is scored once however many rankings (dims, weights, splits) and scorers ask
    for it: the logits are kept on `ce` (`ce.logit_cache`, emptied when it trains). `progress`: the
    bar's name while pairs not yet cached are scored (None: no bar)."""
    cache = ce.logit_cache

    def scores(rows: np.ndarray) -> np.ndarray:
        pairs = [
            [(data.query_texts[q], data.corpus_texts[r]) if r >= 0 else None for r in line]
            for q, line in enumerate(rows.tolist())
        ]
        wanted = sorted({pair for line in pairs for pair in line if pair is not None} - cache.keys())
        cache.update(zip(wanted, ce.score(wanted, batch_size, progress if wanted else None).tolist()))
        return np.array([[cache[pair] if pair is not None else 0.0 for pair in line] for line in pairs])

    return scores


def reorder_top(rows: np.ndarray, new: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """rows: (Q, k) a ranking, -1 padded; new: (Q, depth) scores of its first `depth` rows (-inf at
    padding). Each query's first `depth` rows ordered by `new` descending (ties: the ranking's own
    order), the rest after as they were. Returns (Q, k) scores that keep this order (k down to 1,
    -inf at padding; only the order matters) and rows."""
    order = np.argsort(-new, axis=1, kind="stable")  # (Q, depth)
    rows = np.concatenate([np.take_along_axis(rows[:, :depth], order, 1), rows[:, depth:]], 1)
    ranks = np.broadcast_to(np.arange(rows.shape[1], 0, -1, dtype=np.float32), rows.shape)
    return np.where(rows >= 0, ranks, -np.inf).astype(np.float32), rows


def mixed(logits: np.ndarray, fused: np.ndarray, valid: np.ndarray, weight: float) -> np.ndarray:
    """(Q, depth) w * minmax(logits) + (1 - w) * minmax(fused), -inf at padding."""
    mix = weight * normalized(logits, valid, "minmax") + (1 - weight) * normalized(fused, valid, "minmax")
    return np.where(valid, mix, -np.inf)


def reranked_rankings(
    c: Candidates, fusion_weight: float, norm: str, scorer: Scorer, depth: int, weights=WEIGHT_GRID
) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """The fused top 100 at `fusion_weight`, its top `depth` re-ranked at each cross-encoder weight:
    {weight: ((Q, 100) scores, rows)}."""
    scores, rows = ranked(c, convex(c, fusion_weight, norm), TOP_K)  # (Q, 100) each
    valid = rows[:, :depth] >= 0
    logits = scorer(rows[:, :depth])  # (Q, depth)
    return {w: reorder_top(rows, mixed(logits, scores[:, :depth], valid, w), depth) for w in weights}


def weight_curve(
    c: Candidates, fusion_weight: float, norm: str, scorer: Scorer, data: IRDataset, depth: int
) -> dict[float, np.ndarray]:
    """Each question's NDCG@10 on `data` at each cross-encoder weight of WEIGHT_GRID: {weight: (Q,)}."""
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    by_weight = reranked_rankings(c, fusion_weight, norm, scorer, depth)
    return {w: score_ranking(*ranking, data, qrels).per_query["ndcg@10"] for w, ranking in by_weight.items()}


def one_standard_error_weight(curve: dict[float, np.ndarray]) -> float:
    """The lowest weight whose mean is within one standard error of the best weight's, the error of
    the per-question paired difference (the one-standard-error rule, Hastie, Tibshirani and Friedman,
    The Elements of Statistical Learning, 7.10): more cross-encoder weight than the questions can
    tell from the best is not taken. The choice leans towards the fusion (w = 0), where a wrong
    weight costs least: on ObliQA the re-ranked score falls off steeply above its best weight."""
    best = best_weight(curve)
    for w in sorted(curve):
        diff = curve[w] - curve[best]  # (Q,)
        error = float(diff.std(ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
        if float(diff.mean()) >= -error - 1e-12:
            return w
    return best  # not reached: the best weight's own difference is 0


def choose_rerank_weight(
    c: Candidates, fusion_weight: float, norm: str, scorer: Scorer, data: IRDataset, depth: int
) -> float:
    """The cross-encoder weight of WEIGHT_GRID chosen on `data`'s questions by the one-standard-error
    rule (`one_standard_error_weight`)."""
    return one_standard_error_weight(weight_curve(c, fusion_weight, norm, scorer, data, depth))


def rerank_result(
    c: Candidates, fusion_weight: float, norm: str, scorer: Scorer, data: IRDataset, depth: int, weight: float
) -> DimResult:
    """The re-ranked + fused ranking of `data`'s questions at cross-encoder weight `weight`, scored."""
    qrels = [data.qrels.get(qid, {}) for qid in data.query_ids]
    (ranking,) = reranked_rankings(c, fusion_weight, norm, scorer, depth, (weight,)).values()
    return score_ranking(*ranking, data, qrels)


@dataclass
class Fused:
    """One split's fused rankings at every dim, what a re-ranker re-orders: its questions, each
    dim's pooled candidates and dense weight, and the normalisation of the fusion."""

    data: IRDataset
    candidates: dict[int, Candidates]
    weights: dict[int, float]
    norm: str = "minmax"
    tokens: str = "words"  # BM25's tokens (lexical.tokens)
    bm25: tuple = field(default_factory=lambda: bm25_settings(LexicalConfig()))  # BM25's other settings


def bm25_settings(config: LexicalConfig) -> tuple:
    """What decides BM25's ranking besides its tokens (INDEX_SETTINGS: method, k1, b, stemmer,
    stopwords), as a tuple."""
    return tuple(getattr(config, key) for key in INDEX_SETTINGS)


def first_stage_bm25(settings: dict) -> tuple:
    """The BM25 settings a re-ranker's first stage used: those it saved (`bm25`), and for one saved
    before they were, the defaults, which its first stage always used."""
    saved, default = settings.get("bm25", {}), LexicalConfig()
    return tuple(saved.get(key, getattr(default, key)) for key in INDEX_SETTINGS)


def saved_weight(
    ce: Reranker, depth: int, norm: str, tokens: str, bm25: tuple | None = None
) -> tuple[float, str] | None:
    """The weight train_reranker.py chose on its held-out questions, and where, if it applies here:
    the same depth, the min-max fusion and BM25 (its tokens, and `bm25`, the other settings; None:
    the defaults) it was chosen with; else None."""
    held = ce.settings.get("held_out")
    if not held or depth != ce.depth or norm != "minmax" or tokens != first_stage_tokens(ce.settings):
        return None
    if (bm25 or bm25_settings(LexicalConfig())) != first_stage_bm25(ce.settings):
        return None
    first_stage = ce.settings.get("first_stage", "its first stage")
    bm25 = "BM25" if tokens == "words" else f"BM25 ({tokens} tokens)"
    return float(held["weight"]), f"chosen on {held['weight_from']} with {first_stage} + {bm25} when it was trained"


def unused_weight_note(ce: Reranker, depth: int, norm: str, tokens: str, bm25: tuple | None = None) -> str | None:
    """Why the weight a re-ranker saved does not apply here (`saved_weight`), or None when it does or
    it saved none."""
    if not ce.settings.get("held_out"):
        return None
    saved_tokens = first_stage_tokens(ce.settings)
    differ = [f"depth {ce.depth}"] if depth != ce.depth else []
    differ += ["a min-max fusion"] if norm != "minmax" else []
    differ += [f"BM25 over {saved_tokens} tokens"] if tokens != saved_tokens else []
    if (bm25 or bm25_settings(LexicalConfig())) != (saved := first_stage_bm25(ce.settings)):
        method, k1, b, stemmer, stopwords = saved
        differ += [f"BM25 {method} k1 {k1} b {b}, stemmer {stemmer}, stopwords {stopwords}"]
    if not differ:
        return None
    return f"the re-ranker's saved weight was chosen at {', '.join(differ)}: not this fusion, so it is not used"


def first_stage_tokens(settings: dict) -> str:
    """BM25's tokens in a re-ranker's first stage: saved as `bm25_tokens` when not the default words
    (re-rankers saved before the setting existed used words)."""
    return settings.get("bm25_tokens", "words")


def chosen_weights(ce: Reranker, on: Fused, depth: int) -> dict[int, float]:
    """The cross-encoder weight per dim chosen on the split of `on` (`choose_rerank_weight`)."""
    scorer = cached_scorer(ce, on.data)
    return {
        dim: choose_rerank_weight(c, on.weights[dim], on.norm, scorer, on.data, depth)
        for dim, c in on.candidates.items()
    }


def evaluate_reranked(ce: Reranker, fused: Fused, depth: int, weights: dict[int, float]) -> dict[int, DimResult]:
    """Each dim's fused ranking re-ranked over its top `depth` at that dim's cross-encoder weight."""
    scorer = cached_scorer(ce, fused.data)
    return {
        dim: rerank_result(c, fused.weights[dim], fused.norm, scorer, fused.data, depth, weights[dim])
        for dim, c in fused.candidates.items()
    }


def attach_reranked(
    results: dict[int, DimResult], fused: Fused, ce: Reranker
) -> tuple[dict[int, DimResult], dict[int, float], str]:
    """Each dim's `fused["reranked"]` and `rerank_weight`: the fusion re-ranked over the re-ranker's
    depth, at the weight it saved (chosen on its held-out questions), else one chosen on these
    questions (optimistic). Returns the re-ranked results, the weights and where they came from."""
    saved = saved_weight(ce, ce.depth, fused.norm, fused.tokens, fused.bm25)
    if saved is not None:
        weights, source = {dim: saved[0] for dim in fused.candidates}, saved[1]
    else:
        if note := unused_weight_note(ce, ce.depth, fused.norm, fused.tokens, fused.bm25):
            print(f"note: {note}")
        weights, source = chosen_weights(ce, fused, ce.depth), f"chosen on {fused.data.name} (optimistic)"
    reranked = evaluate_reranked(ce, fused, ce.depth, weights)
    for dim, result in results.items():
        result.fused["reranked"] = reranked[dim]
        result.rerank_weight = weights[dim]
    return reranked, weights, source
