"""The run against the baseline a user already has: BM25, and the model fused with it.

results.json's `lexical` section (BM25, the base and the fine-tuned model fused with it at every
dim with the dense weight, and the paired changes that answer "did fine-tuning beat BM25, alone and
fused, and did it beat the untouched model fused?"), results.md's table of the same, and the model
card's one-paragraph verdict.
"""

from __future__ import annotations

from dataclasses import asdict

from retrieval.metrics import DimResult
from retrieval.stats import compare_per_query, format_comparison
from training.config import Config

NORMS = {  # lexical.fusion_norm, as the report says it
    "minmax": "per-query min-max-normalised scores",
    "zscore": "per-query z-score-normalised scores",
    "max": "the cosine and BM25 over the query's best score",
}
TOKENS_SAID = {"references": " (rule numbers such as 3.2.1 kept as tokens)"}  # lexical.tokens other than words
SHOWN = ("ndcg@10", "recall@10", "map@10")  # the shared task's metrics, and ours
# (name, new, base): each a (label, kind); kind "dense" is the model alone, "convex" fused with BM25
CHANGES = (
    ("after_vs_bm25", ("after", "dense"), ("bm25", None)),
    ("after_fused_vs_bm25", ("after", "convex"), ("bm25", None)),
    ("after_fused_vs_before_fused", ("after", "convex"), ("before", "convex")),
    ("before_fused_vs_bm25", ("before", "convex"), ("bm25", None)),
    # with eval.rerank: "reranked" is the convex fusion's top k re-ranked by the cross-encoder
    ("after_reranked_vs_bm25", ("after", "reranked"), ("bm25", None)),
    ("after_reranked_vs_after_fused", ("after", "reranked"), ("after", "convex")),
    ("after_reranked_vs_before_reranked", ("after", "reranked"), ("before", "reranked")),
    # with eval.memory: "remembered" is the convex fusion whose dense side remembers the training questions
    ("after_remembered_vs_bm25", ("after", "remembered"), ("bm25", None)),
    ("after_remembered_vs_after_fused", ("after", "remembered"), ("after", "convex")),
    ("after_remembered_vs_before_remembered", ("after", "remembered"), ("before", "remembered")),
)
WEIGHTS = {"convex": "fusion_weight", "reranked": "rerank_weight", "remembered": "memory_weight"}


def bm25_of(before: dict[int, DimResult] | None, after: dict[int, DimResult] | None) -> DimResult | None:
    """BM25's result on the eval questions, from whichever evaluation attached it; None when not scored."""
    for results in (after, before):
        for result in (results or {}).values():
            if "bm25" in result.fused:
                return result.fused["bm25"]
    return None


def per_query_of(label: str, kind: str | None, runs: dict, dims: list[int]) -> dict[int, dict] | None:
    """{dim: {metric: (Q,)}} of bm25, or of a label's results alone (kind dense) or fused (convex,
    reranked); None when that was not scored."""
    if label == "bm25":
        return {dim: runs["bm25"].per_query for dim in dims}
    results = runs[label]
    if not results or (kind != "dense" and any(kind not in results[dim].fused for dim in dims)):
        return None
    return {dim: (results[dim] if kind == "dense" else results[dim].fused[kind]).per_query for dim in dims}


def fused_points(r: DimResult) -> dict:
    """One dim's fused metrics: convex (with the dense weight), rrf, reranked (with the
    cross-encoder's weight) when eval.rerank re-ranked it, and remembered (with its dense weight)
    when eval.memory fused with question memory."""
    points = {"rrf": r.fused["rrf"].metrics}
    for kind, weight in WEIGHTS.items():
        if kind in r.fused:
            points[kind] = {**r.fused[kind].metrics, "weight": getattr(r, weight)}
    return {"convex": points.pop("convex"), **points}


def lexical_summary(
    config: Config, before: dict[int, DimResult] | None, after: dict[int, DimResult] | None, resamples: int = 10000
) -> dict | None:
    """results.json's `lexical` section; None when BM25 was not scored."""
    bm25 = bm25_of(before, after)
    if bm25 is None:
        return None
    summary: dict = {"bm25": bm25.metrics, "settings": asdict(config.lexical)}
    for label, results in (("before", before), ("after", after)):
        if results:
            summary[label] = {str(dim): fused_points(r) for dim, r in results.items()}
    summary["weight_chosen_on"] = (
        "given" if config.lexical.fusion_weight is not None else "chosen on the eval split (optimistic)"
    )
    runs = {"bm25": bm25, "before": before, "after": after}
    dims = list((after or before).keys())
    summary["changes"] = {}
    for name, new, base in CHANGES:
        new_q, base_q = per_query_of(*new, runs, dims), per_query_of(*base, runs, dims)
        if new_q is not None and base_q is not None:
            found = compare_per_query(base_q, new_q, SHOWN, resamples)
            summary["changes"][name] = {str(d): by_metric for d, by_metric in found.items()}
    return summary


def lexical_markdown(summary: dict | None) -> list[str]:
    """NDCG@10 of BM25 and of the base and fine-tuned models fused with it, per dim; the paired changes."""
    if not summary:
        return []
    dims = list(summary.get("after") or summary.get("before"))
    tokens = TOKENS_SAID.get(summary["settings"].get("tokens", "words"), "")  # results.json of earlier runs: words
    lines = [
        "## Against BM25, the baseline you already have",
        "",
        f"BM25{tokens}: NDCG@10 {summary['bm25']['ndcg@10']:.4f}, Recall@10 {summary['bm25']['recall@10']:.4f}, "
        f"MAP@10 {summary['bm25']['map@10']:.4f}. Fused: the convex combination of "
        f"{NORMS[summary['settings']['fusion_norm']]}, the dense weight w {summary['weight_chosen_on']}.",
        "",
        "NDCG@10 of the models fused with BM25 (the dense models alone are in the tables above):",
        "",
        "| dim | base + BM25 (w) | fine-tuned + BM25 (w) | base + BM25 RRF | fine-tuned + BM25 RRF |",
        "|---:|---:|---:|---:|---:|",
    ]
    for dim in dims:
        cells = []
        for kind in ("convex", "rrf"):
            for label in ("before", "after"):
                point = (summary.get(label) or {}).get(dim, {}).get(kind)
                weight = f" ({point['weight']:.2f})" if point and kind == "convex" else ""
                cells.append(f"{point['ndcg@10']:.4f}{weight}" if point else "")
        lines.append(f"| {dim} | " + " | ".join([cells[0], cells[1], cells[2], cells[3]]) + " |")
    lines += added_markdown(summary, dims, "reranked")
    lines += added_markdown(summary, dims, "remembered")
    titles = {
        "after_vs_bm25": "The fine-tuned model alone against BM25",
        "after_fused_vs_bm25": "The fine-tuned model fused with BM25 against BM25",
        "after_fused_vs_before_fused": "Fused: the fine-tuned model against the base model (the value of fine-tuning "
        "for a hybrid user)",
        "before_fused_vs_bm25": "The base model fused with BM25 against BM25",
        "after_reranked_vs_bm25": "The fine-tuned model fused with BM25 and re-ranked, against BM25",
        "after_reranked_vs_after_fused": "Re-ranked against fused (the value of the re-ranker)",
        "after_reranked_vs_before_reranked": "Fused and re-ranked: the fine-tuned model against the base model",
        "after_remembered_vs_bm25": "The fine-tuned model fused with BM25 and question memory, against BM25",
        "after_remembered_vs_after_fused": "With question memory against the fusion without it (the value of memory)",
        "after_remembered_vs_before_remembered": "Fused with question memory: the fine-tuned model against the base "
        "model",
    }
    for name, by_dim in summary["changes"].items():
        lines += ["", f"### {titles[name]}", "", format_comparison({int(d): v for d, v in by_dim.items()}, SHOWN)]
    return lines + [""]


ADDED = {  # kind: (the sentence over its table, its columns)
    "reranked": (
        "NDCG@10 of the fused top k re-ranked by eval.rerank's cross-encoder (w: its weight against the fused score):",
        "| dim | base + BM25, re-ranked (w) | fine-tuned + BM25, re-ranked (w) |",
    ),
    "remembered": (
        "NDCG@10 fused with question memory (eval.memory: the training questions as extra keys of their passages, "
        "a passage's dense score the best of its own cosine and theirs; w: the dense weight):",
        "| dim | base + BM25 + memory (w) | fine-tuned + BM25 + memory (w) |",
    ),
}


def added_markdown(summary: dict, dims: list[str], kind: str) -> list[str]:
    """With eval.rerank (reranked) or eval.memory (remembered): NDCG@10 of each such fusion, per dim,
    with its weight."""
    rows = []
    for dim in dims:
        points = [(summary.get(label) or {}).get(dim, {}).get(kind) for label in ("before", "after")]
        if any(points):
            cells = [f"{p['ndcg@10']:.4f} ({p['weight']:.2f})" if p else "" for p in points]
            rows.append(f"| {dim} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    sentence, heads = ADDED[kind]
    return ["", sentence, "", heads, "|---:|---:|---:|", *rows]


def lexical_verdict(summary: dict | None) -> list[str]:
    """The model card's paragraph: does the model beat BM25 at full size, alone and fused, with what weight."""
    if not summary or not summary.get("after"):
        return []
    changes = summary["changes"]
    full = max(summary["after"], key=int)

    chosen_here = summary["weight_chosen_on"] != "given"

    def said(name: str) -> str:
        c = changes[name][full]["ndcg@10"]
        verdict = "beats" if c["lo"] > 0 else ("falls below" if c["hi"] < 0 else "does not clearly differ from")
        if chosen_here and name != "after_vs_bm25":  # the weight was chosen on these very questions
            verdict = f"optimistically (the weight was chosen on these questions), {verdict}"
        return f"{c['new']:.4f}, {c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}]: {verdict}"

    weight = summary["after"][full]["convex"]["weight"]
    text = (
        f"On the eval set BM25 scores NDCG@10 {summary['bm25']['ndcg@10']:.4f}. At {full} dims the model alone "
        f"scores {said('after_vs_bm25')} BM25; fused with BM25 (dense weight {weight:.2f}, "
        f"{summary['weight_chosen_on']}) {said('after_fused_vs_bm25')} BM25."
    )
    if "after_fused_vs_before_fused" in changes:
        text += f" Against the base model fused the same way: {said('after_fused_vs_before_fused')} it."
    if "after_reranked_vs_after_fused" in changes:
        text += (
            f" Fused and re-ranked by the cross-encoder (weight {summary['after'][full]['reranked']['weight']:.2f}): "
            f"{said('after_reranked_vs_bm25')} BM25, and {said('after_reranked_vs_after_fused')} the fusion alone."
        )
    if "after_remembered_vs_after_fused" in changes:
        text += (
            f" Fused with question memory (the training questions as keys of their passages; dense weight "
            f"{summary['after'][full]['remembered']['weight']:.2f}): {said('after_remembered_vs_bm25')} BM25, and "
            f"{said('after_remembered_vs_after_fused')} the fusion without memory (the questions on passages it "
            "trained on and the others are paired apart in results.md)."
        )
    return ["## Against BM25", "", text + " Intervals: 95% paired bootstrap over the eval questions.", ""]
