"""Training pairs from the documents' own structure, with no language model: a cold start.

Three kinds, each (query, positive text, passage id):
- heading: the passage's heading path, numbers stripped ("Client Classification: Application"), for
  the first passage under that path (later passages under it would be ambiguous answers);
- first sentence: a provision's first sentence against the rest of its passage;
- inverse cloze (Lee et al., 2019): one sentence drawn from the passage against the passage with that
  sentence removed, so the model must match the context, not copy the words.
A positive is written as the passage would be embedded ("title text"). None of these is a question a
person asked: they teach the model the corpus' vocabulary and its heading/body layout, which is what
a cold start can offer. BENCHMARKS.md measures what they are worth on real questions.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from documents.chunking import Passage, provision_number, sentence_spans

MIN_QUERY_WORDS = 6
MIN_REST_WORDS = 12
KINDS = ("heading", "first_sentence", "inverse_cloze")


@dataclass
class StructurePair:
    query: str
    positive: str
    passage_id: str
    kind: str


def heading_query(title: str) -> str:
    """The heading path without the source file and the numbers: `A > 2. B > 2.1 C` -> `B: C`."""
    parts = [numbered.rest if (numbered := provision_number(part)) else part for part in title.split(" > ")[1:]]
    words = [" ".join(p.split()) for p in parts if p and not re.fullmatch(r"[\W\d]*", p)]
    return ": ".join(w.capitalize() if w.isupper() else w for w in words[-2:])


def body_sentences(passage: Passage) -> list[str]:
    """The passage's sentences, line by line, with provision numbers and list markers dropped."""
    sentences = []
    for line in passage.text.split("\n"):
        numbered = provision_number(line.strip())
        body = numbered.rest if numbered else re.sub(r"^\s*(\([a-zA-Z0-9]+\)|[a-z0-9]{1,3}[.)]|[•\-*])\s+", "", line)
        sentences.extend(body[a:b].strip() for a, b in sentence_spans(body, 0))
    return [s for s in sentences if s]


def embedded(passage: Passage, text: str) -> str:
    return f"{passage.title} {text}" if passage.title else text


def pairs_of(passage: Passage, first_under_path: bool, rng: random.Random) -> list[StructurePair]:
    pairs = []
    query = heading_query(passage.title) if first_under_path else ""
    if len(query.split()) >= 2:
        pairs.append(StructurePair(query, passage.full_text(), passage.id, "heading"))
    sentences = body_sentences(passage)
    if len(sentences) >= 2 and len(sentences[0].split()) >= MIN_QUERY_WORDS:
        rest = " ".join(sentences[1:])
        if len(rest.split()) >= MIN_REST_WORDS:
            pairs.append(StructurePair(sentences[0], embedded(passage, rest), passage.id, "first_sentence"))
    candidates = [i for i, s in enumerate(sentences[1:], start=1) if len(s.split()) >= MIN_QUERY_WORDS]
    if candidates:
        pick = rng.choice(candidates)
        rest = " ".join(s for i, s in enumerate(sentences) if i != pick)
        if len(rest.split()) >= MIN_REST_WORDS:
            pairs.append(StructurePair(sentences[pick], embedded(passage, rest), passage.id, "inverse_cloze"))
    return pairs


def structure_pairs(passages: list[Passage], seed: int = 42) -> list[StructurePair]:
    """Pairs of every kind for every passage that yields them; a query asked twice is dropped entirely."""
    rng, seen_paths, pairs = random.Random(seed), set(), []
    for passage in passages:
        pairs.extend(pairs_of(passage, passage.title not in seen_paths, rng))
        seen_paths.add(passage.title)
    counts: dict[str, int] = {}
    for pair in pairs:
        counts[pair.query.lower()] = counts.get(pair.query.lower(), 0) + 1
    return [p for p in pairs if counts[p.query.lower()] == 1]  # "This chapter applies to ..." recurs
