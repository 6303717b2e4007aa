"""What a run says about the embedding space and about every eval set: results.json's `space` and
`eval_sets` sections, their Markdown, and results_map.png (a UMAP of a fixed sample of passages,
before and after, coloured by source document, the training questions' positives marked)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from common.files import write_atomic
from data import IRDataset
from retrieval.diagnostics import corpus_sample, format_space, space_map
from retrieval.metrics import DimResult
from retrieval.stats import compare_per_query, format_comparison

SET_METRICS = ("ndcg@10", "recall@10")


def space_of(results: dict[int, DimResult] | None) -> dict[int, dict[str, float]] | None:
    """Each dim's embedding-space numbers; None without results or without numbers."""
    if not results or not all(result.space for result in results.values()):
        return None
    return {dim: result.space for dim, result in results.items()}


def space_json(before: dict[int, DimResult] | None, after: dict[int, DimResult] | None) -> dict:
    return {
        label: None if space_of(res) is None else {str(d): v for d, v in space_of(res).items()}
        for label, res in (("before", before), ("after", after))
    }


def space_markdown(before: dict[int, DimResult] | None, after: dict[int, DimResult] | None) -> list[str]:
    if space_of(before) is None and space_of(after) is None:
        return []
    return [
        "## The embedding space",
        "",
        "On a fixed sample of up to 2,000 passages (the same in every run on this corpus) and the eval "
        "questions' judged pairs: alignment (mean squared distance of a question and its relevant passage, "
        "lower is closer), uniformity (log mean Gaussian potential of passage pairs, lower is more spread), "
        "anisotropy (mean cosine of two passages: 1 is one clump) and the effective rank of the passages.",
        "",
        format_space(space_of(before), space_of(after)),
        "",
    ]


def eval_sets_summary(
    sets: dict[str, tuple[IRDataset, dict[int, DimResult] | None, dict[int, DimResult] | None]],
    selected: str,
    resamples: int = 10000,
) -> dict:
    """results.json's `eval_sets`: each set (name -> (data, before, after)) with its metrics before
    and after and the paired change of NDCG@10 and Recall@10 at every dim."""
    summary = {}
    for name, (data, before, after) in sets.items():
        entry: dict = {
            "data": data.name,
            "questions": len(data.query_ids),
            "passages": len(data.corpus_ids),
            "selected": name == selected,
            "before": None if before is None else {str(d): r.metrics for d, r in before.items()},
            "after": None if after is None else {str(d): r.metrics for d, r in after.items()},
            "space": space_json(before, after),
        }
        if before and after:
            change = compare_per_query(
                {d: before[d].per_query for d in after}, {d: after[d].per_query for d in after}, SET_METRICS, resamples
            )
            entry["change"] = {str(d): by_metric for d, by_metric in change.items()}
        summary[name] = entry
    return summary


def eval_sets_markdown(summary: dict) -> list[str]:
    """One table per set of the paired change, when the run scored more than one set."""
    if len(summary) < 2:
        return []
    lines = ["## Every eval set, before and after (paired over each set's questions)", ""]
    for name, entry in summary.items():
        chosen = "; eval.select scores this set" if entry["selected"] else ""
        lines += [f"### {name}: {entry['data']}, {entry['questions']} questions, {entry['passages']} passages{chosen}"]
        if "change" in entry:
            change = {int(d): by_metric for d, by_metric in entry["change"].items()}
            lines += ["", format_comparison(change, SET_METRICS), ""]
        else:
            lines += ["", "(not scored both before and after)", ""]
    return lines


def plot_map(
    path: Path,
    before: dict[int, DimResult] | None,
    after: dict[int, DimResult] | None,
    data: IRDataset,
    marked_texts: set[str],
    title: str,
) -> Path | None:
    """results_map.png: the sample of passages laid out by UMAP before and after (each its own
    layout), coloured by source document, the passages that are a training positive ringed.
    Written atomically; None when neither side kept its sample."""
    sides = [
        (label, res[max(res)].space_sample)
        for label, res in (("before", before), ("after", after))
        if res and res[max(res)].space_sample is not None
    ]
    if not sides:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sample = corpus_sample(len(data.corpus_ids))
    groups = [data.corpus_groups[i] for i in sample] if data.corpus_groups else ["" for _ in sample]
    names = sorted(set(groups), key=lambda g: (len(g), g))
    colour = np.array([names.index(g) for g in groups])
    marked = np.array([data.corpus_texts[i] in marked_texts for i in sample])
    fig, axes = plt.subplots(1, len(sides), figsize=(6.2 * len(sides), 5.6), dpi=90, squeeze=False)
    for ax, (label, sample_emb) in zip(axes[0], sides):
        xy = space_map(sample_emb)
        ax.scatter(xy[:, 0], xy[:, 1], c=colour, cmap="nipy_spectral", s=5, alpha=0.75, linewidths=0)
        ax.scatter(xy[marked, 0], xy[marked, 1], facecolors="none", edgecolors="black", s=14, linewidths=0.5)
        ax.set_title(f"{label}: {len(sample)} passages, {marked.sum()} training positives ringed", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    coloured = f"colour: source document ({len(names)})" if data.corpus_groups else "no source documents in the corpus"
    fig.suptitle(f"{title}\nUMAP (cosine, 15 neighbours, seeded) of the largest dim; {coloured}", fontsize=9)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png")
    plt.close(fig)
    return write_atomic(path, image.getvalue())
