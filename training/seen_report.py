"""The eval questions split by whether their answer was a training positive: memory against transfer.

Sets built like ObliQA draw several questions from one passage, so many eval questions have a
relevant passage that was a training positive (on ObliQA dev, 174 of 279). On those a fine-tuned
model is partly measured on remembering the passages it was trained to retrieve; on the others, on
what carries over to passages no training question asked for, which is what a user's next
questions about the rest of the corpus meet. A gain confined to the first group is not evidence of
a better retriever for the rest of the corpus (the groups also differ in difficulty: compare each
with its own baseline, as the tables do).

A question is "seen" when any of its relevant passages' texts, whitespace collapsed, equals the
text of a training row's positive (any data.train or data.mix row); "unseen" otherwise. An unseen
passage may still have been in training as a mined or in-batch negative. results.json's `seen`
section: the counts, and per group the paired changes of the fine-tuned model against the base
model and BM25, alone and fused (whichever were scored); results.md's table; the model card's
sentence.

Every question is also grouped by how many distinct training questions ask about its passage
(`times_asked`; groups 0, 1, 2, 3 or more; asked 0 is the unseen group): on ObliQA dev the
recipe's fused gain over the untouched model fused was +0.05 where three or more had asked, and
none where none had (BENCHMARKS.md, "How many training questions"). That split is the section's
`asked` part, with two changes per group (alone: against the base model, else BM25; fused:
against the base model fused, else BM25), and its own table and sentence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from data import IRDataset, TrainTable
from retrieval.memory import collapsed
from retrieval.metrics import DimResult
from retrieval.stats import compare_per_query
from training.lexical_report import SHOWN, bm25_of, per_query_of

GROUPS = ("seen", "unseen")
FEW = 10  # a group of fewer questions gets a warning: its bootstrap interval is too narrow to trust
# (name, new, base): as lexical_report.CHANGES, on each group's questions
CHANGES = (
    ("after_vs_before", ("after", "dense"), ("before", "dense")),
    ("after_fused_vs_before_fused", ("after", "convex"), ("before", "convex")),
    ("after_vs_bm25", ("after", "dense"), ("bm25", None)),
    ("after_fused_vs_bm25", ("after", "convex"), ("bm25", None)),
    ("after_remembered_vs_after_fused", ("after", "remembered"), ("after", "convex")),
)
# The asked groups' two changes, alone and fused: each the first of its pair that was scored (the
# base model, else BM25; evaluate.py's --baseline is scored alone, so its fused change is BM25's)
ASKED = (
    ("after_vs_before", "after_vs_bm25"),
    ("after_fused_vs_before_fused", "after_fused_vs_bm25"),
)
EDGES = (1, 2, 3)  # the asked groups: 0, 1, 2, then 3 or more training questions on the passage
TITLES = {
    "after_vs_before": ("base", "fine-tuned"),
    "after_fused_vs_before_fused": ("base + BM25", "fine-tuned + BM25"),
    "after_vs_bm25": ("BM25", "fine-tuned"),
    "after_fused_vs_bm25": ("BM25", "fine-tuned + BM25"),
    "after_remembered_vs_after_fused": ("fine-tuned + BM25", "fine-tuned + BM25 + memory"),
}


def trained_passages(positives: Iterable[str]) -> set[str]:
    """The training rows' positive texts, whitespace collapsed (PairsData.positives, or
    `table_positives` of a training table)."""
    return {collapsed(text) for text in positives}


def table_positives(table: TrainTable) -> list[str]:
    """The distinct positive texts of a training table (every source's rows)."""
    return [table.passage_texts[i] for i in np.unique(table.positive_ids)]


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


def seen_in_order(data: IRDataset, trained: set[str], query_ids: list[str]) -> np.ndarray:
    """seen_mask in query_ids' order (another file's); ValueError naming how many are not in data."""
    by_id = dict(zip(data.query_ids, seen_mask(data, trained).tolist()))
    missing = [q for q in query_ids if q not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} of the {len(query_ids)} questions are not in {data.name}'s qrels")
    return np.array([by_id[q] for q in query_ids], dtype=bool)


def times_asked(data: IRDataset, anchors: Iterable[str], positives: Iterable[str], query_ids: list[str]) -> np.ndarray:
    """(Q,) int in query_ids' order: how many distinct training questions ask about the question's
    relevant passage, the most over its relevant passages. A training question counts once per passage
    (its rows with the same anchor and positive text, both whitespace collapsed, are one); passages are
    matched as seen_mask matches them, so a count of 0 is seen_mask's unseen. ValueError naming how
    many of query_ids are not in data."""
    distinct = {(collapsed(anchor), collapsed(positive)) for anchor, positive in zip(anchors, positives)}
    asked: Counter[str] = Counter(positive for _, positive in distinct)
    text_of = dict(zip(data.corpus_ids, data.corpus_texts))
    missing = [q for q in query_ids if q not in data.qrels]
    if missing:
        raise ValueError(f"{len(missing)} of the {len(query_ids)} questions are not in {data.name}'s qrels")
    return np.array(
        [
            max((asked[collapsed(text_of[doc])] for doc, grade in data.qrels[q].items() if grade > 0), default=0)
            for q in query_ids
        ],
        dtype=np.int64,
    )


def count_groups(asked: np.ndarray, edges: Sequence[int] = EDGES) -> dict[str, np.ndarray]:
    """A mask over the questions for each range of times asked that edges (increasing whole numbers,
    each at least 1) mark off: [0, e1), [e1, e2), ..., [ek, inf), named by their counts: "asked 0",
    "asked 1", "asked 2", "asked 3+" by default; edges 1, 3 give "asked 1-2" and "asked 3+"."""
    check_edges(edges)
    groups = {}
    bounds = [0, *edges]
    for low, high in zip(bounds, [*edges, None]):
        if high is None:
            groups[f"asked {low}+"] = asked >= low
        else:
            groups[f"asked {low}" if high == low + 1 else f"asked {low}-{high - 1}"] = (asked >= low) & (asked < high)
    return groups


def check_edges(edges: Sequence[int]) -> None:
    """ValueError unless edges are increasing whole numbers from 1."""
    whole = all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in edges)
    if not edges or not whole or edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"the edges must be increasing whole numbers from 1, not {list(edges)}")


def table_rows(table: TrainTable) -> tuple[list[str], list[str]]:
    """The (anchor, positive) texts of every row of a training table (every source's rows), for
    times_asked."""
    return (
        [table.anchor_texts[i] for i in table.anchor_ids],
        [table.passage_texts[i] for i in table.positive_ids],
    )


def subset_of(per_query: dict[int, dict[str, np.ndarray]], mask: np.ndarray) -> dict[int, dict[str, np.ndarray]]:
    return {dim: {m: np.asarray(v)[mask] for m, v in by_metric.items()} for dim, by_metric in per_query.items()}


def seen_summary(
    seen: np.ndarray | None,
    before: dict[int, DimResult] | None,
    after: dict[int, DimResult] | None,
    trained: int,
    resamples: int = 10000,
    seed: int = 0,
    asked: np.ndarray | None = None,
) -> dict | None:
    """results.json's `seen` section; None without a fine-tuned evaluation or a mask.

    seen: (Q,) bool over the evaluated questions; trained: how many distinct positives there were;
    asked: (Q,) times_asked of each question, which adds the `asked` part. A group with no
    question, or nothing to compare (no before, no BM25), has no changes."""
    if seen is None or not after:
        return None
    runs = {"before": before, "after": after, "bm25": bm25_of(before, after)}
    dims = list(after)
    summary: dict = {
        "matched_by": "a relevant passage's text equals a training positive's (whitespace collapsed)",
        "trained_passages": trained,
        "questions": {"seen": int(seen.sum()), "unseen": int((~seen).sum())},
        "changes": {},
    }
    for group, mask in zip(GROUPS, (seen, ~seen)):
        changes = _group_changes(mask, [name for name, _, _ in CHANGES], runs, dims, resamples, seed)
        if changes:
            summary["changes"][group] = changes
    if asked is not None:
        groups = count_groups(asked)
        summary["asked"] = {
            "matched_by": "distinct training questions on the passage, the most over its relevant passages",
            "questions": {group: int(mask.sum()) for group, mask in groups.items()},
            "changes": {},
        }
        for group, mask in groups.items():
            changes = {}
            for pair in ASKED:  # alone, fused: the first of each pair that was scored
                for name in pair:
                    found = _group_changes(mask, [name], runs, dims, resamples, seed)
                    if found:
                        changes |= found
                        break
            if changes:
                summary["asked"]["changes"][group] = changes
    return summary


def _group_changes(mask: np.ndarray, names: list[str], runs: dict, dims: list[int], resamples: int, seed: int) -> dict:
    """{name: {dim: {metric: change}}} of CHANGES' named ones on mask's questions, those that were scored."""
    changes: dict = {}
    if not mask.any():
        return changes
    for name, new, base in CHANGES:
        if (
            name not in names
            or (base[0] == "bm25" and runs["bm25"] is None)
            or (base[0] == "before" and not runs["before"])
        ):
            continue
        new_q, base_q = per_query_of(*new, runs, dims), per_query_of(*base, runs, dims)
        if new_q is None or base_q is None:
            continue
        found = compare_per_query(subset_of(base_q, mask), subset_of(new_q, mask), SHOWN, resamples, seed)
        changes[name] = {str(d): by_metric for d, by_metric in found.items()}
    return changes


def _cell(c: dict) -> str:
    return f"{c['base']:.4f} → {c['new']:.4f}, {c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}]"


def _few_groups(section: dict) -> list[str]:
    """The groups of a `seen` or `asked` section with changes but fewer than FEW questions."""
    return [f"{g} ({section['questions'][g]})" for g in section["changes"] if section["questions"][g] < FEW]


def _too_few(few: list[str]) -> str:
    return f" Too few questions for their intervals to mean much: {', '.join(few)}." if few else ""


def _none_seen(summary: dict) -> str:
    if summary["questions"]["seen"]:
        return ""
    return " No eval question's relevant passage matches a training positive: is the training data of this corpus?"


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
        f"those passages. The {n['unseen']} others ask about passages no training question asked for (they may "
        "have been negatives): what carries over to the rest of the corpus. NDCG@10, base → new, change "
        f"[paired 95% interval]:{_too_few(_few_groups(summary))}{_none_seen(summary)}",
    ]
    lines += _change_tables(summary["changes"], {group: group for group in GROUPS})
    return lines + [""] + asked_markdown(summary.get("asked"))


def _change_tables(changes: dict, columns: dict[str, str]) -> list[str]:
    """One table per change any group has (CHANGES' order): a row per dim, a column per group
    (columns: group -> its heading, in order), each cell base → new, change [interval]."""
    lines = []
    for name in [name for name, _, _ in CHANGES if any(name in changes.get(g, {}) for g in columns)]:
        base, new = TITLES[name]
        lines += [
            "",
            f"| dim | {new} against {base}: {' | '.join(columns.values())} |",
            "|---:|" + "---|" * len(columns),
        ]
        dims = next(changes[g][name] for g in columns if name in changes.get(g, {}))
        for dim in dims:
            cells = [_cell(changes[g][name][dim]["ndcg@10"]) if name in changes.get(g, {}) else "" for g in columns]
            lines.append(f"| {dim} | " + " | ".join(cells) + " |")
    return lines


def asked_markdown(asked: dict | None) -> list[str]:
    """results.md: NDCG@10 per asked group and dim, for the two changes (alone, fused)."""
    if not asked or not asked["changes"]:
        return []
    n = asked["questions"]
    groups = [g for g in n if g in asked["changes"]]
    empty = [g for g in n if not n[g]]
    lines = [
        "## By how many training questions asked about the passage",
        "",
        "Each eval question grouped by how many distinct training questions ask about its relevant passage "
        "(the most over its relevant passages; asked 0 is the unseen group). Where training questions asked, "
        "a gain is partly memory of the passage; asked 0 is what questions about the rest of the corpus meet."
        + (f" No question in: {', '.join(empty)}." if empty else "")
        + _too_few(_few_groups(asked))
        + " NDCG@10, base → new, change [paired 95% interval]:",
    ]
    lines += _change_tables(asked["changes"], {g: f"{g} ({n[g]})" for g in groups})
    return lines + [""]


def asked_verdict(asked: dict | None) -> str:
    """The model card's sentence: the fused change (the change alone where nothing was fused) at full
    size in each asked group."""
    if not asked or not asked["changes"]:
        return ""
    n = asked["questions"]
    for name, what in (
        ("after_fused_vs_before_fused", "fused with BM25 against the base model fused"),
        ("after_fused_vs_bm25", "fused with BM25 against BM25"),
        ("after_vs_before", "alone against the base model"),
        ("after_vs_bm25", "alone against BM25"),
    ):
        said, full = [], None
        for group, changes in asked["changes"].items():
            if name in changes:
                full = max(changes[name], key=int)
                c = changes[name][full]["ndcg@10"]
                count = group.removeprefix("asked ")
                who = "none asked, the unseen" if count == "0" else f"{count.replace('+', ' or more')} asked"
                questions = f"{n[group]} question{'s' if n[group] != 1 else ''}"
                said.append(f"{c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}] where {who} ({questions})")
        if said:
            return (
                f" Grouped by how many training questions asked about the passage, NDCG@10 {what} (at {full} dims) "
                "changed by " + ", ".join(said) + "."
            )
    return ""


def seen_verdict(summary: dict | None) -> list[str]:
    """The model card's sentence at full size: the change on each group, alone and fused."""
    if not summary or not summary["changes"]:
        return []
    n = summary["questions"]
    text = (
        f"{n['seen']} of the {n['seen'] + n['unseen']} eval questions have a relevant passage that was a training "
        f"positive; {n['unseen']} ask about passages no training question asked for."
    )
    names = [("after_vs_before", "alone"), ("after_fused_vs_before_fused", "fused with BM25")]
    if not any(name in group for group in summary["changes"].values() for name, _ in names):  # no before
        names = [("after_vs_bm25", "alone against BM25"), ("after_fused_vs_bm25", "fused with BM25 against BM25")]
    for name, what in names:
        said = []
        for group in GROUPS:
            by_dim = summary["changes"].get(group, {}).get(name)
            if by_dim:
                full = max(by_dim, key=int)
                c = by_dim[full]["ndcg@10"]
                said.append(f"{c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}] on the {group}")
        if said:
            text += f" Fine-tuning changed NDCG@10 {what} (at {full} dims) by " + " and ".join(said) + "."
    asked = summary.get("asked")
    few = _few_groups(summary) + (_few_groups(asked) if asked else [])
    text += asked_verdict(asked)
    text += " Intervals: 95% paired bootstrap." + _too_few(few) + _none_seen(summary)
    return ["## Memory or transfer", "", text, ""]
