"""Reading a folder of documents (.txt, .md, .html, .pdf) into plain text, and reporting what cannot be read.

Each readable file becomes a `Document`: its text (for .txt and .md the file itself, decoded as UTF-8
with a byte-order mark dropped and CRLF line ends made LF; for .html and .pdf the text extracted
from it; `converted` says the text is not the file's bytes) and the character offsets of the lines that the
source marks as headings (HTML <h1>..<h6>; Markdown `#` headings are found in the text by the
chunker). Chunk offsets point into `Document.text`. A file that cannot be used (not UTF-8, empty,
a PDF with no text layer, a PDF that will not open) becomes a `Problem` naming the file and the
reason: the caller decides whether to stop or skip, never this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")


@dataclass
class Document:
    path: Path
    name: str  # the path relative to the documents folder, with forward slashes
    text: str
    heading_levels: dict[int, int] = field(default_factory=dict)  # line start offset -> level (1 = h1)
    converted: bool = False  # text differs from the file's bytes (extracted, BOM dropped, CRLF -> LF)
    warnings: list[str] = field(default_factory=list)  # e.g. PDF pages with no text layer


@dataclass
class Problem:
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def _decode(raw: bytes) -> str:
    """UTF-8 (a BOM is dropped); raises UnicodeDecodeError naming the byte offset otherwise."""
    return raw.decode("utf-8-sig")


def read_text_file(path: Path) -> str:
    return _decode(path.read_bytes()).replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------- HTML

BLOCK_TAGS = {
    "p",
    "div",
    "section",
    "article",
    "li",
    "ul",
    "ol",
    "table",
    "tr",
    "br",
    "blockquote",
    "pre",
    "header",
    "footer",
    "dd",
    "dt",
    "dl",
    "main",
    "nav",
    "aside",
    "figure",
    "hr",
}
HEADING_TAGS = {f"h{level}": level for level in range(1, 7)}
SKIPPED_TAGS = {"script", "style", "head", "template", "noscript"}


class _HTMLText(HTMLParser):
    """Visible text with one line per block element; table cells are separated by tabs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.heading_level = 0  # inside <hN> and no text of it seen yet: N
        self.heading_starts: list[tuple[int, int]] = []  # (index into parts, level)
        self.pending_space = False  # whitespace seen since the last text, within the line

    def _break(self, mark: str) -> None:
        if self.parts and not self.parts[-1].endswith(("\n", mark)):
            self.parts.append(mark)
        self.pending_space = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in SKIPPED_TAGS:
            self.skip_depth += 1
        elif tag in HEADING_TAGS:
            self._break("\n")
            self.heading_level = HEADING_TAGS[tag]
        elif tag in BLOCK_TAGS:
            self._break("\n")
        elif tag in ("td", "th"):
            self._break("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in HEADING_TAGS or tag in BLOCK_TAGS:
            self.heading_level = 0  # a heading with no text marks nothing
            self._break("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        text = " ".join(data.split())
        if not text:
            self.pending_space = self.pending_space or bool(data)
            return
        if (self.pending_space or data[0].isspace()) and self.parts and not self.parts[-1].endswith(("\n", "\t")):
            text = " " + text  # "A <b>firm</b>": the space before the tag stays
        if self.heading_level:
            self.heading_starts.append((len(self.parts), self.heading_level))
            self.heading_level = 0
        self.parts.append(text)
        self.pending_space = data[-1].isspace()


def html_to_text(html: str) -> tuple[str, dict[int, int]]:
    """(text, {offset of each heading line: level}) from an HTML page."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    offsets, total = [], 0
    for part in parser.parts:
        offsets.append(total)
        total += len(part)
    headings = {offsets[index]: level for index, level in parser.heading_starts if index < len(offsets)}
    return "".join(parser.parts), headings


# ---------------------------------------------------------------- PDF


def pdf_to_text(path: Path) -> tuple[str, list[int]]:
    """The text layer of every page (pypdf), pages separated by a blank line; the pages with none (1-based)."""
    from pypdf import PdfReader  # imported here: only PDF users need it loaded

    reader = PdfReader(path)
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception as err:  # pypdf raises several types for this
            raise ValueError(f"encrypted PDF ({err})") from None
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    return "\n\n".join(page for page in pages if page), [i + 1 for i, page in enumerate(pages) if not page]


# ---------------------------------------------------------------- the folder


def read_document(path: Path, name: str) -> Document | Problem:
    suffix = path.suffix.lower()
    warnings: list[str] = []
    try:
        if suffix == ".pdf":
            (text, blank_pages), headings = pdf_to_text(path), {}
            if not text.strip():
                return Problem(name, "the PDF has no text layer (a scanned document?): run OCR on it first")
            if blank_pages:
                warnings.append(f"{len(blank_pages)} page(s) with no text layer, left out: {blank_pages[:20]}")
        elif suffix in (".html", ".htm"):
            text, headings = html_to_text(read_text_file(path))
        else:
            text, headings = read_text_file(path), {}
    except UnicodeDecodeError as err:
        return Problem(name, f"not UTF-8 (byte {err.start}: {err.reason}); re-save it as UTF-8")
    except Exception as err:  # a file that will not open is reported, whatever the library raised
        return Problem(name, f"could not be read: {type(err).__name__}: {err}")
    if not text.strip():
        return Problem(name, "no text")
    converted = suffix in (".pdf", ".html", ".htm") or text.encode("utf-8") != path.read_bytes()
    return Document(path, name, text, headings, converted, warnings)


def find_documents(folder: Path) -> list[Path]:
    """Every supported file under `folder`, recursively, in a stable order (hidden files skipped)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_documents(folder: Path) -> tuple[list[Document], list[Problem]]:
    """The readable documents under `folder`, and a Problem for each file that is not."""
    documents, problems = [], []
    root = folder.resolve()
    for path in find_documents(folder):
        name = path.relative_to(folder).as_posix()
        if not path.resolve().is_relative_to(root):  # a link out of the folder: never read, never sent anywhere
            problems.append(Problem(name, f"a link to {path.resolve()}, outside {folder}: not read"))
            continue
        result = read_document(path, name)
        (documents if isinstance(result, Document) else problems).append(result)
    return documents, problems
