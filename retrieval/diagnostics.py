"""What the embedding space looks like, beside what it retrieves: is the domain one tight clump?

Four numbers per Matryoshka dim, each on unit vectors (truncated, then re-normalised, as the
search sees them), computed in float64:
- alignment (Wang & Isola 2020, alpha 2): the mean squared distance between a question and each
  passage judged relevant to it; lower is better (0: every pair coincides);
- uniformity (Wang & Isola 2020, t 2): log of the mean Gaussian potential exp(-2 |x - y|^2) over
  the distinct pairs of a fixed sample of passages; lower is more spread out (0: all one point;
  -4 for orthogonal vectors);
- anisotropy: the mean cosine between two different passages of the sample (0 for an isotropic
  set, 1 for a collapsed one);
- effective rank (Roy & Vetterli 2007, as RankMe uses it): exp of the entropy of the sample
  matrix's normalised singular values, uncentred (1 for a collapsed set, D for D orthogonal vectors).

The sample is `corpus_sample`: a fixed seed, independent of the run's, so runs on one corpus
compare. `space_map` lays the sample out in 2-D with UMAP (umap-learn, optional: `map_problem`
says why not).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from data import IRDataset
from retrieval.search import truncate_normalize

SAMPLE = 2000  # passages: the Gram matrix of the sample is 2,000 x 2,000, milliseconds at any dim
SAMPLE_SEED = 0  # not the run's seed: every run on a corpus sees the same passages
SPACE_METRICS = ("alignment", "uniformity", "anisotropy", "effective_rank")
MAP_MIN_PASSAGES = 50


def corpus_sample(corpus_size: int, size: int = SAMPLE, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Sorted row indices of a fixed seeded sample of the corpus (all of it when smaller)."""
    if corpus_size <= size:
        return np.arange(corpus_size)
    return np.sort(np.random.default_rng(seed).choice(corpus_size, size, replace=False))


def alignment(x: np.ndarray, y: np.ndarray) -> float:
    """Mean |x_i - y_i|^2 over the rows of two (P, D) arrays of unit vectors (pair i: x_i, y_i)."""
    diff = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    return float(np.mean(np.sum(diff * diff, axis=1)))


def uniformity(x: np.ndarray, t: float = 2.0) -> float:
    """log mean_{i<j} exp(-t |x_i - x_j|^2) over the rows of an (N, D) array, N >= 2."""
    x = np.asarray(x, np.float64)
    n = len(x)
    squared = np.sum(x * x, axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * (x @ x.T), 0.0)  # (N, N)
    potential = np.exp(-t * distances)
    off_diagonal = potential.sum() - np.trace(potential)  # each pair twice
    return float(np.log(off_diagonal / (n * (n - 1))))


def anisotropy(x: np.ndarray) -> float:
    """Mean cosine between two different rows of an (N, D) array of unit vectors, N >= 2."""
    x = np.asarray(x, np.float64)
    n = len(x)
    total = x.sum(axis=0)  # sum_{i,j} x_i . x_j = |sum x|^2; the diagonal adds sum |x_i|^2
    return float((total @ total - np.sum(x * x)) / (n * (n - 1)))


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy of s / sum s), s the singular values of the (N, D) array (uncentred)."""
    singular = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
    p = singular / singular.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def positive_pairs(data: IRDataset) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, corpus rows): one pair for each passage judged relevant to each question."""
    corpus_row = {doc_id: row for row, doc_id in enumerate(data.corpus_ids)}
    pairs = [
        (q, corpus_row[doc_id]) for q, qid in enumerate(data.query_ids) for doc_id in sorted(data.qrels.get(qid, {}))
    ]
    queries, passages = zip(*pairs) if pairs else ((), ())
    return np.array(queries, dtype=np.int64), np.array(passages, dtype=np.int64)


def space_diagnostics(
    query_emb: np.ndarray, corpus_emb: np.ndarray, data: IRDataset, dims: list[int]
) -> dict[int, dict[str, float]]:
    """The four numbers at each dim; full-size (Q, D) queries and (N, D) passages."""
    sample = corpus_sample(len(corpus_emb))
    query_rows, passage_rows = positive_pairs(data)
    found = {}
    for dim in dims:
        passages = truncate_normalize(corpus_emb[sample], dim)
        values = {"alignment": float("nan"), "uniformity": float("nan"), "anisotropy": float("nan")}
        if len(query_rows):
            values["alignment"] = alignment(
                truncate_normalize(query_emb[query_rows], dim), truncate_normalize(corpus_emb[passage_rows], dim)
            )
        if len(sample) >= 2:
            values["uniformity"], values["anisotropy"] = uniformity(passages), anisotropy(passages)
        values["effective_rank"] = effective_rank(passages)
        found[dim] = values
    return found


def attach_space(
    results: dict, query_emb: np.ndarray, corpus_emb: np.ndarray, data: IRDataset, keep_sample: bool = False
) -> None:
    """Put each dim's numbers in `results[dim].space`; with keep_sample, the sample's full-size
    embeddings in the largest dim's `space_sample`, for the map drawn at the end of a run."""
    for dim, values in space_diagnostics(query_emb, corpus_emb, data, list(results)).items():
        results[dim].space = values
    if keep_sample:
        results[max(results)].space_sample = np.asarray(corpus_emb[corpus_sample(len(corpus_emb))], np.float32)


def format_space(before: dict | None, after: dict | None) -> str:
    """A Markdown table: each number at each dim, before and after (either may be None)."""
    dims = list((after or before or {}).keys())
    sides = [(label, side) for label, side in (("before", before), ("after", after)) if side]
    header = "| dim | " + " | ".join(f"{m} {label}" for m in SPACE_METRICS for label, _ in sides) + " |"
    lines = [header, "|---:|" + "---:|" * (len(SPACE_METRICS) * len(sides))]
    for dim in dims:
        cells = [f"{side[dim][m]:.4g}" if dim in side else "" for m in SPACE_METRICS for _, side in sides]
        lines.append(f"| {dim} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def map_problem(passages: int) -> str | None:
    """Why no map can be drawn, in one line; None when it can."""
    if importlib.util.find_spec("umap") is None:
        return "the embedding map needs umap-learn (pip install umap-learn, or -r requirements-dev.txt)"
    if passages < MAP_MIN_PASSAGES:
        return f"the embedding map needs at least {MAP_MIN_PASSAGES} passages, the corpus has {passages}"
    return None


def space_map(sample_emb: np.ndarray, seed: int = SAMPLE_SEED) -> np.ndarray:
    """(S, 2) float32 UMAP coordinates (cosine, 15 neighbours, seeded: the same input gives the same
    map) of (S, D) embeddings, such as a result's `space_sample`."""
    import umap  # optional: map_problem says when it is missing

    reducer = umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=seed, n_jobs=1)
    return reducer.fit_transform(np.asarray(sample_emb, np.float32)).astype(np.float32)
