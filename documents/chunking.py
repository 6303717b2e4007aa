"""Structure-aware chunking: a document's text -> passages that follow its headings and numbered provisions.

1. Lines are classified: a heading (Markdown `#`, an HTML <hN>, or a numbered line whose text is a
   short title, e.g. `2.1  Application`), the start of a numbered provision (`3.2.1  An Authorised
   Person must ...`, `SECTION III.B.2.`, `7)`, `2.1.3.Guidance.1`), or a continuation line, which
   stays with the provision above it (sub-items such as `(a)`, `(i)`, bullets, table rows).
2. Units: each heading or provision with its continuation lines, and the heading path above it (a
   heading at level d closes every open heading at level >= d; so does a provision of depth d).
3. Packing: consecutive units under the same heading path are merged while the passage stays within
   the token budget, counted with the target model's own tokenizer (special tokens and the model's
   document prompt included). A heading line opens a new passage and stays with the text below it.
4. A unit over the budget is split at line ends, then at sentence ends; only a sentence that alone
   exceeds the budget is cut inside (at token boundaries), and those are counted.

Every passage is a contiguous span of the document's text: `start`/`end` are character offsets.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from documents.readers import Document

KEYWORD = r"(?:SECTION|Section|PART|Part|CHAPTER|Chapter|ARTICLE|Article|SCHEDULE|Schedule|APPENDIX|Appendix|RULE|Rule)"
COMPONENT = r"(?:\d+[A-Z]?|[IVXLC]+|[A-Z]|\([a-z0-9]+\)|[Gg]uidance)"
PROVISION = re.compile(
    rf"^(?P<keyword>{KEYWORD}\s+)?(?P<num>(?:\d+[A-Z]?|[IVXLC]+|[A-Z])(?:\.{COMPONENT})*)"
    rf"(?P<close>\.|\))?(?P<sep>\t|[ \t]+|$)(?P<rest>.*)$"
)
MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
TITLE_MAX_WORDS = 12
# Sentence ends: . ! ? (and closing quotes/brackets), then space, then what can open a sentence.
SENTENCE_END = re.compile(r"(?<=[.!?])(?P<close>[\"”’')\]]*)\s+(?=[\"“‘'(\[]?[A-Z0-9])")
ABBREVIATIONS = {
    "e.g",
    "i.e",
    "no",
    "nos",
    "art",
    "arts",
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "co",
    "ltd",
    "inc",
    "etc",
    "viz",
    "cf",
    "para",
    "paras",
    "s",
    "ss",
    "sch",
    "reg",
    "regs",
    "vol",
    "pp",
    "p",
    "u.s",
    "u.k",
    "u.a.e",
    "cl",
    "sec",
    "ch",
    "fig",
    "approx",
    "incl",
    "pty",
    "corp",
    "jr",
    "sr",
    "vs",
}


@dataclass
class Line:
    start: int
    end: int  # exclusive, before the newline
    kind: str  # heading | provision | text | blank
    level: int = 0  # heading level, or a provision's depth (number of components)
    label: str = ""  # a heading's text, or a provision's number
    numbered: bool = False  # its level comes from a number (3.2.1), not from Markdown or HTML


@dataclass
class Unit:
    start: int
    end: int
    path: tuple[str, ...]  # the open headings above (and, for a heading unit, including) it
    is_heading: bool
    number: str = ""
    lines: list[Line] = field(default_factory=list)


@dataclass
class Passage:
    id: str
    source: str
    title: str  # the heading path, embedded with the text as "title text" (BEIR)
    text: str  # document.text[start:end]
    start: int
    end: int
    provisions: str  # the numbers it holds, e.g. "3.2.1–3.2.4"
    tokens: int  # of "title text" with the special tokens and the document prompt

    def full_text(self) -> str:
        return f"{self.title} {self.text}" if self.title else self.text


@dataclass
class ChunkStats:
    documents: int = 0
    passages: int = 0
    split_units: int = 0  # provisions longer than the budget, split at line or sentence ends
    cut_sentences: int = 0  # sentences longer than the budget alone, cut inside

    def summary(self) -> str:
        return (
            f"{self.passages} passages from {self.documents} documents; {self.split_units} provisions over "
            f"the budget were split at line or sentence ends; {self.cut_sentences} sentences longer than "
            f"the budget were cut inside"
        )


# ---------------------------------------------------------------- lines


class Numbered(NamedTuple):
    label: str  # "3.2.1", "SECTION III.B.2.", "7)"
    depth: int  # components: 3 for 3.2.1
    rest: str  # the line's text after the number
    list_item: bool  # "1)" alone: a numbered paragraph, or an item of the list above it


def provision_number(line: str) -> Numbered | None:
    """The number that opens `line` when it opens a numbered provision or heading, else None."""
    match = PROVISION.match(line)
    if not match:
        return None
    number, rest, keyword, close = match["num"], match["rest"].strip(), match["keyword"], match["close"]
    numbered = keyword or close or "." in number or match["sep"] == "\t"
    roman_or_letter = re.fullmatch(r"[IVXLC]+|[A-Z]", number.split(".")[0]) is not None
    if not numbered or (roman_or_letter and not (keyword or close or "." in number)):
        return None  # "2018 was ...", "A Relevant Person ...": a sentence, not a number
    if keyword and rest[:1].islower():
        return None  # "Section 76 of the FSMR requires ...": a sentence that cites a number
    label = (keyword or "") + number + (close or "")
    return Numbered(label, number.count(".") + 1, rest, close == ")" and "." not in number and not keyword)


def is_title(rest: str) -> bool:
    """A numbered line's text reads as a title: empty, or short with no sentence punctuation or columns."""
    return not rest or (
        len(rest.split()) <= TITLE_MAX_WORDS
        and "\t" not in rest
        and not rest.endswith((".", ";", ":", ",", "—", "–", "-"))
    )


def classify_lines(document: Document) -> list[Line]:
    lines, offset, inside_dotted = [], 0, False  # inside_dotted: the last number seen was 3.2.1-like
    for raw in document.text.split("\n"):
        start, end, stripped = offset, offset + len(raw), raw.strip()
        offset = end + 1
        numbered = provision_number(stripped) if stripped else None
        if numbered and numbered.list_item and inside_dotted:
            numbered = None  # "1)" under "3.1.1 A firm must keep:" is an item of that provision
        if not stripped:
            lines.append(Line(start, end, "blank"))
        elif start in document.heading_levels:
            lines.append(Line(start, end, "heading", document.heading_levels[start], " ".join(stripped.split())))
        elif markdown := MARKDOWN_HEADING.match(stripped):
            lines.append(Line(start, end, "heading", len(markdown[1]), " ".join(markdown[2].split())))
        elif numbered:
            kind = "heading" if is_title(numbered.rest) else "provision"
            label = " ".join(stripped.split()) if kind == "heading" else numbered.label
            lines.append(Line(start, end, kind, numbered.depth, label, numbered=True))
            inside_dotted = numbered.depth > 1
        else:
            lines.append(Line(start, end, "text"))
    return lines


def close_headings(stack: list[Line], line: Line) -> list[Line]:
    """The headings still open when `line` opens. A number of depth d closes the numbered headings of
    level >= d at the top of the stack, never a Markdown/HTML heading (the two scales do not compare);
    a Markdown/HTML heading of level L closes the numbered headings above it and those of level >= L."""
    stack = list(stack)
    if line.numbered:
        while stack and stack[-1].numbered and stack[-1].level >= line.level:
            stack.pop()
    else:
        while stack and (stack[-1].numbered or stack[-1].level >= line.level):
            stack.pop()
    return stack


def units_of(lines: list[Line]) -> list[Unit]:
    """Group lines into headings and provisions with their continuation lines, each with its path."""
    units: list[Unit] = []
    stack: list[Line] = []  # the open headings
    for line in lines:
        if line.kind == "blank":
            continue
        if line.kind in ("heading", "provision"):
            stack = close_headings(stack, line)
            if line.kind == "heading":
                stack.append(line)
            units.append(
                Unit(
                    line.start,
                    line.end,
                    tuple(h.label for h in stack),
                    line.kind == "heading",
                    line.label if line.kind == "provision" else "",
                    [line],
                )
            )
        elif units and not units[-1].is_heading:
            units[-1].end = line.end
            units[-1].lines.append(line)
        else:  # text before any provision, or right under a heading: a unit of its own
            units.append(Unit(line.start, line.end, tuple(h.label for h in stack), False, "", [line]))
    return units


# ---------------------------------------------------------------- token counting


class TokenCounter:
    """Token counts with the target model's tokenizer; `budget` includes special tokens and the prompt."""

    def __init__(self, tokenizer, budget: int, prompt: str = ""):
        self.tokenizer = tokenizer
        self.overhead = len(tokenizer(prompt)["input_ids"])  # [CLS] prompt [SEP]: what every passage carries
        self.budget = budget
        if budget <= self.overhead + 8:
            raise ValueError(
                f"chunk budget {budget} tokens leaves no room for text (the model's special tokens and "
                f"document prompt take {self.overhead})"
            )

    def count(self, texts: list[str]) -> list[int]:
        """Tokens of each text alone, without special tokens."""
        if not texts:
            return []
        ids = self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]  # no length warning
        return [len(row) for row in ids]

    def fits(self, tokens: int) -> bool:
        return tokens + self.overhead <= self.budget

    def reserving(self, tokens: int) -> TokenCounter:
        """The same counter with `tokens` of the budget set aside (for a passage's title)."""
        view = copy.copy(self)
        view.budget = self.budget - tokens
        return view

    def cut(self, text: str) -> list[tuple[int, int]]:
        """Character spans of `text` holding at most the budget's worth of tokens each.

        Windows end at token starts; a window that re-tokenises longer (a cut inside a word can
        split it into more pieces) is shortened a token at a time until it fits.
        """
        room = self.budget - self.overhead
        if room < 1:
            raise ValueError(f"no room for text: a budget of {self.budget} tokens, {self.overhead} taken")
        offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
            "offset_mapping"
        ]
        token_starts = [start for start, _ in offsets] + [len(text)]
        spans, first = [], 0
        while first < len(offsets):
            last = min(first + room, len(offsets))  # the window is tokens [first, last)
            while last > first + 1 and self.count([text[token_starts[first] : token_starts[last]]])[0] > room:
                last -= 1
            spans.append((token_starts[first], token_starts[last] if last < len(offsets) else len(text)))
            first = last
        return spans


def load_counter(model: str, max_tokens: int | None = None) -> TokenCounter:
    """A counter for `model` (hub id, local path or the packaged MiniLM); budget default: its max length."""
    from transformers import AutoTokenizer

    from model import read_embedding_spec, resolve_model_dir

    spec, transformer_dir = read_embedding_spec(resolve_model_dir(model))
    if max_tokens and max_tokens > spec.max_length:
        raise ValueError(
            f"chunk budget {max_tokens} tokens: {model} reads at most {spec.max_length}; the rest of "
            "each passage would never be embedded"
        )
    tokenizer = AutoTokenizer.from_pretrained(transformer_dir)
    return TokenCounter(tokenizer, max_tokens or spec.max_length, spec.document_prompt)


# ---------------------------------------------------------------- splitting and packing


def sentence_spans(text: str, start: int) -> list[tuple[int, int]]:
    """Sentences of one line as absolute spans; a period after a known abbreviation is not an end."""
    spans, begin = [], 0
    for match in SENTENCE_END.finditer(text):
        word = re.search(r"([\w.]+)\.?[\"”’')\]]*$", text[begin : match.start()])
        token = word[1].rstrip(".") if word else ""
        if token.lower() in ABBREVIATIONS or re.fullmatch(r"[A-Z]", token):
            continue  # "e.g. The", "No. 5", an initial
        spans.append((start + begin, start + match.end("close")))  # closing quotes and brackets stay
        begin = match.end()
    spans.append((start + begin, start + len(text.rstrip())))
    return [(a, b) for a, b in spans if b > a]


def pieces_of(unit: Unit, text: str, counter: TokenCounter, stats: ChunkStats) -> list[tuple[int, int, int]]:
    """(start, end, tokens) atoms of an over-budget unit: lines, else sentences, else token windows."""
    pieces = []
    for line in unit.lines:
        line_text = text[line.start : line.end]
        (line_tokens,) = counter.count([line_text])
        if counter.fits(line_tokens):
            pieces.append((line.start, line.end, line_tokens))
            continue
        for s_start, s_end in sentence_spans(line_text, line.start):
            (tokens,) = counter.count([text[s_start:s_end]])
            if counter.fits(tokens):
                pieces.append((s_start, s_end, tokens))
                continue
            stats.cut_sentences += 1
            for a, b in counter.cut(text[s_start:s_end]):
                (window_tokens,) = counter.count([text[s_start + a : s_start + b]])
                pieces.append((s_start + a, s_start + b, window_tokens))
    return pieces


def pack(items: list[tuple[int, int, int]], counter: TokenCounter) -> list[tuple[int, int]]:
    """Greedily merge consecutive (start, end, tokens) items into spans within the budget."""
    spans: list[tuple[int, int]] = []
    start, end, tokens = None, None, 0
    for a, b, n in items:
        if start is not None and counter.fits(tokens + n):
            end, tokens = b, tokens + n
            continue
        if start is not None:
            spans.append((start, end))
        start, end, tokens = a, b, n
    if start is not None:
        spans.append((start, end))
    return spans


def group_units(units: list[Unit]) -> list[list[Unit]]:
    """Runs of units that may share a passage: the same heading path; headings open a run."""
    groups: list[list[Unit]] = []
    for unit in units:
        current = groups[-1] if groups else None
        headings_only = current is not None and all(u.is_heading for u in current)
        if current is not None and not unit.is_heading and (headings_only or unit.path == current[-1].path):
            current.append(unit)
        elif current is not None and unit.is_heading and headings_only:
            current.append(unit)  # a heading right under a heading: one passage opens with both
        else:
            groups.append([unit])
    return groups


def spans_of_group(group: list[Unit], text: str, counter: TokenCounter, stats: ChunkStats) -> list[tuple[int, int]]:
    counts = counter.count([text[u.start : u.end] for u in group])
    items: list[tuple[int, int, int]] = []
    for unit, tokens in zip(group, counts):
        if counter.fits(tokens):
            items.append((unit.start, unit.end, tokens))
        else:
            stats.split_units += 1
            items.extend(pieces_of(unit, text, counter, stats))
    return pack(items, counter)


def title_of(document: Document, path: tuple[str, ...], counter: TokenCounter) -> tuple[str, int]:
    """`source > heading > heading` and its tokens (with the space before the text); upper headings are
    dropped while it would take over half the budget."""
    stem = Path(document.name).stem
    room = counter.budget - counter.overhead
    for first in range(len(path) + 1):
        title = " > ".join([stem, *path[first:]])
        (tokens,) = counter.count([title + " "])
        if 2 * tokens <= room:
            return title, tokens
    while 2 * tokens > room and len(title) > 1:  # even the file's name takes over half the budget: cut it
        title = title[: max(1, len(title) * 4 // 5)]
        (tokens,) = counter.count([title + " "])
    return title, tokens


def numbers_of(group: list[Unit], start: int, end: int) -> str:
    """The provision numbers a span holds: `3.2.1`, or `3.2.1–3.2.4`."""
    numbers = [u.number for u in group if u.number and start <= u.start < end]
    if not numbers:  # a piece of a split provision
        numbers = [u.number for u in group if u.number and u.start <= start <= u.end]
    return "" if not numbers else numbers[0] if len(numbers) == 1 else f"{numbers[0]}–{numbers[-1]}"


def chunk_document(document: Document, counter: TokenCounter, stats: ChunkStats) -> list[Passage]:
    text, passages, seen = document.text, [], Counter()
    for group in group_units(units_of(classify_lines(document))):
        title, title_tokens = title_of(document, group[-1].path, counter)
        for start, end in spans_of_group(group, text, counter.reserving(title_tokens), stats):
            # whitespace at either end dropped, as a BEIR reader strips it: the pairs' positive is then
            # the corpus text exactly (relevance by text, in mining, depends on it)
            span = text[start:end]
            start, end = start + len(span) - len(span.lstrip()), start + len(span.rstrip())
            if end <= start:
                continue
            body = text[start:end]
            key = hashlib.sha1(f"{document.name}\n{body}".encode()).hexdigest()[:12]
            seen[key] += 1
            passage_id = f"{Path(document.name).stem}#{key}" + (f"-{seen[key]}" if seen[key] > 1 else "")
            passages.append(
                Passage(passage_id, document.name, title, body, start, end, numbers_of(group, start, end), 0)
            )
    for passage, tokens in zip(passages, counter.count([p.full_text() for p in passages])):
        passage.tokens = tokens + counter.overhead
    stats.documents += 1
    stats.passages += len(passages)
    return passages


def chunk_documents(documents: list[Document], counter: TokenCounter) -> tuple[list[Passage], ChunkStats]:
    stats = ChunkStats()
    passages = [p for document in documents for p in chunk_document(document, counter, stats)]
    return passages, stats
