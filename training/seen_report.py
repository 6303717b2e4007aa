"""The eval questions split by whether the model trained on their answer: memory against transfer.

Sets built like ObliQA draw several questions from one passage, so many eval questions have a
relevant passage that was a training positive (on ObliQA dev, 174 of 279). On those a fine-tuned
model is partly measured on remembering the passages it trained on; on the others, on what carries
over to passages it never saw, which is what a user's next questions about the rest of the corpus
meet. A gain that lives only in the first group is memory, not a better retriever.

A question is "seen" when any of its relevant passages' texts, whitespace collapsed, equals the
text of a training row's positive (any data.train or data.mix row; mined negatives do not count);
"unseen" otherwise. results.json's `seen` section: the counts, and per group the paired changes
of the fine-tuned model against the base model and BM25, alone and fused (whichever were scored);
results.md's table; the model card's sentence.
"""

from __future__ import annotations

import numpy as np

from data import IRDataset, TrainTable
from retrieval.metrics import DimResult
from retrieval.stats import compare_per_query
from training.lexical_report import SHOWN, per_query_of

GROUPS = ("seen", "unseen")
# (name, new, base): as lexical_report.CHANGES, on each group's questions
CHANGES = (
    ("after_vs_before", ("after", "dense"), ("before", "dense")),
    ("after_fused_vs_before_fused", ("after", "convex"), ("before", "convex")),
    ("after_vs_bm25", ("after", "dense"), ("bm25", None)),
    ("after_fused_vs_bm25", ("after", "convex"), ("bm25", None)),
)
TITLES = {
    "after_vs_before": ("base", "fine-tuned"),
    "after_fused_vs_before_fused": ("base + BM25", "fine-tuned + BM25"),
    "after_vs_bm25": ("BM25", "fine-tuned"),
    "after_fused_vs_bm25": ("BM25", "fine-tuned + BM25"),
}


def collapsed(text: str) -> str:
    return " ".join(text.split())


def trained_passages(table: TrainTable) -> set[str]:
    """The texts (whitespace collapsed) of every training row's positive."""
    return {collapsed(table.passage_texts[i]) for i in np.unique(table.positive_ids)}


def seen_mask(data: IRDataset, trained: set[str]) -> np.ndarray:
    """(Q,) bool in data.query_ids' order: a relevant passage of the question is a training positive."""
    text_of = dict(zip(data.corpus_ids, data.corpus_texts))
    return np.array(
        [
            any(grade > 0 and collapsed(text_of[doc]) in trained for doc, grade in data.qrels[q].items())
            for q in data.query_ids
        ],
        dtype=bool,
    )


def _subset(per_query: dict[int, dict[str, np.ndarray]], mask: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
    return {dim: {m: np.asarray(v)[mask] for m, v in by_metric.items()} for dim, by_metric in per_query.items()}


def _bm25(results: dict[int, DimResult] | None) -> DimResult | None:
    for result in (results or {}).values():
        return result.fused.get("bm25")
    return None


def seen_summary(
    seen: np.ndarray | None,
    before: dict[int, DimResult] | None,
    after: dict[int, DimResult] | None,
    trained: int,
    resamples: int = 10000,
) -> dict | None:
    """results.json's `seen` section; None without a fine-tuned evaluation or a mask.

    seen: (Q,) bool over the evaluated questions; trained: how many distinct positives there were.
    A group with no question has no changes."""
    if seen is None or not after:
        return None
    runs = {"before": before, "after": after, "bm25": _bm25(after) or _bm25(before)}
    dims = list(after)
    summary: dict = {
        "matched_by": "a relevant passage's text equals a training positive's (whitespace collapsed)",
        "trained_passages": trained,
        "questions": {"seen": int(seen.sum()), "unseen": int((~seen).sum())},
        "changes": {},
    }
    for group, mask in zip(GROUPS, (seen, ~seen)):
        if not mask.any():
            continue
        summary["changes"][group] = {}
        for name, new, base in CHANGES:
            if (base[0] == "bm25" and runs["bm25"] is None) or (base[0] == "before" and not before):
                continue
            new_q, base_q = per_query_of(*new, runs, dims), per_query_of(*base, runs, dims)
            if new_q is None or base_q is None:
                continue
            found = compare_per_query(_subset(base_q, mask), _subset(new_q, mask), SHOWN, resamples)
            summary["changes"][group][name] = {str(d): by_metric for d, by_metric in found.items()}
    return summary


def _cell(c: dict) -> str:
    return f"{c['base']:.4f} → {c['new']:.4f}, {c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}]"


def seen_markdown(summary: dict | None) -> list[str]:
    """results.md: NDCG@10 per group and dim, each change with its paired 95% interval."""
    if not summary or not summary["changes"]:
        return []
    n = summary["questions"]
    lines = [
        "## Questions on passages it trained on, and on the others",
        "",
        f"{n['seen']} of the {n['seen'] + n['unseen']} eval questions have a relevant passage among the "
        f"{summary['trained_passages']} training positives (matched by text): there a gain is partly memory of "
        f"those passages. The {n['unseen']} others ask about passages the model never trained on: what carries "
        "over to the rest of the corpus. NDCG@10, base → new, change [paired 95% interval]:",
    ]
    names = [name for name, _, _ in CHANGES if any(name in summary["changes"][g] for g in summary["changes"])]
    for name in names:
        base, new = TITLES[name]
        lines += ["", f"| dim | {new} against {base}: seen | unseen |", "|---:|---|---|"]
        dims = next(iter(summary["changes"][g][name] for g in summary["changes"] if name in summary["changes"][g]))
        for dim in dims:
            cells = [
                _cell(summary["changes"][g][name][dim]["ndcg@10"]) if name in summary["changes"].get(g, {}) else ""
                for g in GROUPS
            ]
            lines.append(f"| {dim} | " + " | ".join(cells) + " |")
    return lines + [""]


def seen_verdict(summary: dict | None) -> list[str]:
    """The model card's sentence at full size: the change on each group, alone and fused."""
    if not summary or not summary["changes"]:
        return []
    n = summary["questions"]
    text = (
        f"{n['seen']} of the {n['seen'] + n['unseen']} eval questions have a relevant passage the model trained "
        f"on; {n['unseen']} ask about passages it never saw."
    )
    for name, what in (("after_vs_before", "alone"), ("after_fused_vs_before_fused", "fused with BM25")):
        said = []
        for group in GROUPS:
            by_dim = summary["changes"].get(group, {}).get(name)
            if by_dim:
                full = max(by_dim, key=int)
                c = by_dim[full]["ndcg@10"]
                said.append(f"{c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}] on the {group}")
        if said:
            text += f" Fine-tuning changed NDCG@10 {what} (at {full} dims) by " + " and ".join(said) + "."
    return ["## Memory or transfer", "", text + " Intervals: 95% paired bootstrap.", ""]
