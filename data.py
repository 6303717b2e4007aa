"""Reading and validating data: training pairs/triplets and BEIR-format retrieval sets.

Every problem with the input raises `DataError` whose message starts with the file and the
line (or row) at fault and says what is wrong; nothing is skipped silently.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.files import looks_local

PAIR_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# Accepted column names for each role, in order of preference.
COLUMN_ALIASES = {
    "anchor": ("anchor", "query", "question"),
    "positive": ("positive", "pos", "passage", "document", "answer"),
    "negative": ("negative", "negatives", "neg"),
}
NUMBERED_NEGATIVE = re.compile(r"^(negative|neg)_?\d+$")


class DataError(ValueError):
    """Bad input data. The message names the file, the line or row, and what is wrong."""


@dataclass
class PairsData:
    """(anchor, positive, [negatives]) rows; `negatives[i]` is empty when row i has none."""

    anchors: list[str]
    positives: list[str]
    negatives: list[list[str]]
    source: str

    def __len__(self) -> int:
        return len(self.anchors)


@dataclass
class IRDataset:
    """A retrieval set: corpus, queries, and graded relevance judgements."""

    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]  # only queries with at least one relevant document
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]  # query id -> {corpus id: relevance > 0}
    name: str = ""
    corpus_groups: list[str] | None = None  # each passage's source document (doc_id or source), if given


# ---------------------------------------------------------------- rows from files


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file (a byte-order mark is allowed); bad bytes name their line."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(location, row) for each non-blank line; location is 'FILE:LINE'."""
    for number, line in _numbered_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield where, row


def _csv_rows(path: Path) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            for row in reader:
                if None in row:  # more fields than the header names
                    raise DataError(f"{path}:{reader.line_num}: more fields than the header has columns")
                if None in row.values():
                    raise DataError(f"{path}:{reader.line_num}: fewer fields than the header has columns")
                yield f"{path}:{reader.line_num}", row
        except UnicodeDecodeError as err:
            raise DataError(f"{path}:{reader.line_num + 1}: not UTF-8 text ({err.reason})") from None
        except csv.Error as err:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV ({err})") from None


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for unreadable files
        raise DataError(f"{path}: not a readable Parquet file ({err})") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield f"{path}: row {number}", row


def _hub_rows(name: str, split: str) -> Iterator[tuple[str, dict]]:
    import datasets

    try:
        rows = datasets.load_dataset(name, split=split)
    except Exception as err:  # the hub client raises many types; say which dataset and split failed
        raise DataError(f"dataset {name!r} split {split!r}: could not be loaded ({err})") from None
    for number, row in enumerate(rows, start=1):
        yield f"{name}[{split}]: row {number}", row


def read_rows(source: str | Path, split: str | None = None) -> Iterator[tuple[str, dict]]:
    """Rows of a local JSONL/CSV/Parquet file or of a Hugging Face dataset id (with `split`)."""
    path = Path(source)
    readers = {".jsonl": _jsonl_rows, ".json": _jsonl_rows, ".csv": _csv_rows, ".parquet": _parquet_rows}
    if path.suffix in readers:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        return readers[path.suffix](path)
    if path.exists():
        raise DataError(f"{path}: expected a {', '.join(PAIR_FILE_SUFFIXES)} file or a dataset id")
    if looks_local(str(source)):
        raise DataError(f"{path}: no such file or directory")
    return _hub_rows(str(source), split or "train")


# ---------------------------------------------------------------- training pairs


def _find_columns(where: str, row: dict) -> dict[str, str | list[str] | None]:
    """Map roles to this source's column names, from its first row."""
    columns: dict[str, str | list[str] | None] = {}
    for role, aliases in COLUMN_ALIASES.items():
        columns[role] = next((name for name in aliases if name in row), None)
        if columns[role] is None and role != "negative":
            raise DataError(
                f"{where}: missing column {role!r} (accepted names: {', '.join(aliases)}; found: {', '.join(row)})"
            )
    numbered = sorted(
        (name for name in row if NUMBERED_NEGATIVE.match(name)), key=lambda name: int(re.sub(r"\D", "", name))
    )
    if columns["negative"] is None and numbered:
        columns["negative"] = numbered
    return columns


def _text(where: str, row: dict, column: str) -> str:
    if column not in row:
        raise DataError(f"{where}: missing column {column!r}")
    value = row[column]
    if not isinstance(value, str):
        raise DataError(f"{where}: column {column!r} must be text, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: empty text in column {column!r}")
    return value


def _negatives(where: str, row: dict, column: str | list[str] | None) -> list[str]:
    if column is None:
        return []
    if isinstance(column, list):  # negative_1, negative_2, ... columns
        return [_text(where, row, name) for name in column]
    value = row.get(column)
    values = value if isinstance(value, list) else [value]  # a list may be short or empty (mined files)
    return [_text(where, {column: item}, column) for item in values]


def load_pairs(source: str | Path, split: str | None = None) -> PairsData:
    """Pairs or triplets from a file or hub dataset; accepts the usual column aliases."""
    anchors, positives, negatives = [], [], []
    columns = None
    for where, row in read_rows(source, split):
        columns = columns or _find_columns(where, row)
        if columns["negative"] is None and any(name in row for name in COLUMN_ALIASES["negative"]):
            raise DataError(
                f"{where}: has a negative column but the first row has none; give every row its negatives, or none"
            )
        anchors.append(_text(where, row, columns["anchor"]))
        positives.append(_text(where, row, columns["positive"]))
        negatives.append(_negatives(where, row, columns["negative"]))
    if not anchors:
        raise DataError(f"{source}: no rows")
    return PairsData(anchors, positives, negatives, source=str(source))


def load_pair_splits(source: str | Path) -> dict[str, PairsData]:
    """Every split of a pairs dataset: a directory of `<split>.jsonl|csv|parquet` files, or a hub id."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in PAIR_FILE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no corpus.jsonl (BEIR) and no <split>{'|'.join(PAIR_FILE_SUFFIXES)} pair files")
        stems = [file.stem for file in files]
        clash = sorted({stem for stem in stems if stems.count(stem) > 1})
        if clash:
            raise DataError(f"{path}: more than one file for split(s) {', '.join(clash)}")
        return {file.stem: load_pairs(file) for file in files}
    if path.exists():
        raise DataError(f"{path}: a single file has no held-out split; give a directory of <split> files")
    import datasets

    try:
        names = datasets.get_dataset_split_names(str(source))
    except Exception as err:  # the hub client raises many types
        raise DataError(f"dataset {str(source)!r}: could not be loaded ({err})") from None
    return {name: load_pairs(source, name) for name in names}


def ir_from_pairs(splits: dict[str, PairsData], eval_split: str) -> IRDataset:
    """An IR set as the legal fine-tuning study built it: corpus = every positive of every split
    (deduplicated), queries = the held-out split's anchors, qrels = their positives."""
    if eval_split not in splits:
        raise DataError(f"split {eval_split!r} not found (splits: {', '.join(splits)})")
    corpus: dict[str, str] = {}  # text -> id, in order of first appearance
    for pairs in splits.values():
        for text in pairs.positives:
            corpus.setdefault(text, f"d{len(corpus)}")
    queries: dict[str, str] = {}  # the same question asked twice is one query with both positives
    qrels: dict[str, dict[str, int]] = {}
    held_out = splits[eval_split]
    for anchor, positive in zip(held_out.anchors, held_out.positives):
        query_id = queries.setdefault(anchor, f"q{len(queries)}")
        qrels.setdefault(query_id, {})[corpus[positive]] = 1
    return IRDataset(
        corpus_ids=list(corpus.values()),
        corpus_texts=list(corpus),
        query_ids=list(queries.values()),
        query_texts=list(queries),
        qrels=qrels,
        name=f"{held_out.source} ({eval_split})",
    )


# ---------------------------------------------------------------- BEIR


def read_id_text(path: Path, title: bool, groups: list[str] | None = None) -> dict[str, str]:
    """`_id` -> text of a BEIR corpus or queries file; corpus titles are prepended ('title text').
    groups: a list that gets each row's source document: its `doc_id`, else its `source` (what
    prepare.py writes), else ""."""
    texts: dict[str, str] = {}
    for where, row in _jsonl_rows(path):
        if groups is not None:
            group = row.get("doc_id", row.get("source"))  # BEIR's doc_id, or prepare.py's source file
            groups.append("" if group is None else str(group))
        doc_id = row.get("_id")
        if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or str(doc_id) == "":
            raise DataError(f"{where}: missing or empty '_id'")
        doc_id = str(doc_id)
        text = row.get("text")
        if not isinstance(text, str):
            raise DataError(f"{where}: missing column 'text' (id {doc_id!r})")
        heading = (row.get("title") or "") if title else ""
        if not isinstance(heading, str):
            raise DataError(f"{where}: 'title' must be text (id {doc_id!r})")
        full = f"{heading} {text}".strip() if heading else text
        if not full.strip():
            raise DataError(f"{where}: empty text (id {doc_id!r})")
        if doc_id in texts:
            raise DataError(f"{where}: duplicate '_id' {doc_id!r}")
        texts[doc_id] = full
    if not texts:
        raise DataError(f"{path}: no rows")
    return texts


def _read_qrels(path: Path, queries: dict[str, str], corpus: dict[str, str]) -> dict[str, dict[str, int]]:
    """query id -> {corpus id: relevance}; a header line is optional; every id must exist."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in _numbered_lines(path):
        fields = line.rstrip("\r\n").split("\t")
        where = f"{path}:{number}"
        if not line.strip() or (number == 1 and fields[0] in ("query-id", "query_id", "qid")):
            continue
        if len(fields) != 3:
            raise DataError(f"{where}: expected 3 tab-separated fields (query-id corpus-id score), got {len(fields)}")
        query_id, doc_id, score = fields
        if not re.fullmatch(r"-?\d+", score.strip()):
            raise DataError(f"{where}: score {score!r} is not an integer relevance grade")
        relevance = int(score)
        if query_id not in queries:
            raise DataError(f"{where}: query id {query_id!r} is not in queries.jsonl")
        if doc_id not in corpus:
            raise DataError(f"{where}: corpus id {doc_id!r} is not in corpus.jsonl")
        if doc_id in qrels.get(query_id, {}):
            raise DataError(f"{where}: duplicate judgement of query {query_id!r} and corpus id {doc_id!r}")
        qrels.setdefault(query_id, {})[doc_id] = relevance
    return qrels


def load_beir(directory: str | Path, split: str) -> IRDataset:
    """A BEIR directory: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.

    Only queries with at least one judgement above 0 are evaluated (as in BEIR), in the order of
    queries.jsonl. Corpus text is 'title text' when a title is present.
    """
    directory = Path(directory)
    for needed in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (directory / needed).is_file():
            raise DataError(f"{directory / needed}: no such file (expected a BEIR directory)")
    groups: list[str] = []
    corpus = read_id_text(directory / "corpus.jsonl", title=True, groups=groups)
    queries = read_id_text(directory / "queries.jsonl", title=False)
    judged = _read_qrels(directory / "qrels" / f"{split}.tsv", queries, corpus)
    qrels = {qid: {d: r for d, r in docs.items() if r > 0} for qid, docs in judged.items()}
    query_ids = [qid for qid in queries if qrels.get(qid)]
    if not query_ids:
        raise DataError(f"{directory / 'qrels' / f'{split}.tsv'}: no query has a relevant document")
    return IRDataset(
        corpus_ids=list(corpus),
        corpus_texts=list(corpus.values()),
        query_ids=query_ids,
        query_texts=[queries[qid] for qid in query_ids],
        qrels={qid: qrels[qid] for qid in query_ids},
        name=f"{directory} ({split})",
        corpus_groups=groups if any(groups) else None,
    )


def data_path(source: str | Path) -> str:
    """One spelling of a data source, to tell whether two name the same: a local path resolved, a hub id as given."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else str(source)


def load_ir(source: str | Path, split: str) -> IRDataset:
    """A BEIR directory, or a pairs dataset (directory of split files or hub id) with a held-out split."""
    path = Path(source)
    if (path / "corpus.jsonl").is_file():
        return load_beir(path, split)
    return ir_from_pairs(load_pair_splits(source), split)


def question_subset(data: IRDataset, rows, label: str) -> IRDataset:
    """The questions at `rows` of `data` (in that order), over the same corpus, named `data.name (label)`."""
    query_ids = [data.query_ids[i] for i in rows]
    return IRDataset(
        data.corpus_ids,
        data.corpus_texts,
        query_ids,
        [data.query_texts[i] for i in rows],
        {qid: data.qrels[qid] for qid in query_ids},
        name=f"{data.name} ({label})",
        corpus_groups=data.corpus_groups,
    )


def known_relevant(
    pairs: PairsData, beir_dir: str | Path | None = None, split: str | None = None
) -> dict[str, set[str]]:
    """Question text -> every passage text known to be relevant to it, from the whole table.

    The positives of every row that asks the question, and, given a BEIR directory, every corpus
    text that `qrels/<split>.tsv` judges relevant (grade > 0) to a query with the same text. Built
    once: a batch only knows the rows that happen to be in it.
    """
    relevant: dict[str, set[str]] = defaultdict(set)
    for anchor, positive in zip(pairs.anchors, pairs.positives):
        relevant[anchor].add(positive)
    if beir_dir is not None:
        data = load_beir(beir_dir, split or "train")
        corpus = dict(zip(data.corpus_ids, data.corpus_texts))
        for query_id, text in zip(data.query_ids, data.query_texts):
            relevant[text].update(corpus[doc_id] for doc_id in data.qrels[query_id])
    return dict(relevant)


# ---------------------------------------------------------------- training batches


@dataclass
class TrainTable:
    """Training rows as int64 text ids: equal texts get equal ids, so duplicates are found from
    the texts themselves (dropout makes the embeddings of equal texts differ)."""

    anchor_ids: np.ndarray  # (N,) into anchor_texts
    positive_ids: np.ndarray  # (N,) into passage_texts
    negative_ids: np.ndarray  # (N, k) into passage_texts, -1 for an empty slot; k = 0 without negatives
    anchor_texts: list[str]
    passage_texts: list[str]  # positives and negatives share one id space: both are candidates
    relevant_keys: np.ndarray  # sorted anchor_id * len(passage_texts) + passage_id of every known relevant pair
    source_rows: list[int] = field(default_factory=list)  # rows per source, in order (data.train, then data.mix)

    def __len__(self) -> int:
        return len(self.anchor_ids)

    def known_mask(self, global_rows: np.ndarray) -> np.ndarray:
        """(G, G·(1+k)) bool for the loss: True where candidate j (the G positives, then the G·k
        negatives, in row order) is known relevant to row g's question, or an empty slot."""
        candidates = np.concatenate([self.positive_ids[global_rows], self.negative_ids[global_rows].reshape(-1)])
        mask = np.zeros((len(global_rows), len(candidates)), dtype=bool)  # (G, M)
        mask[:, candidates < 0] = True
        # Sparse: each question's few known passages, looked up among the sorted candidates, so the
        # cost grows with G · (passages per question), not with G · M.
        order = np.argsort(candidates, kind="stable")
        ordered = candidates[order]
        base = self.anchor_ids[global_rows] * len(self.passage_texts)  # (G,)
        starts, ends = (
            np.searchsorted(self.relevant_keys, base),
            np.searchsorted(self.relevant_keys, base + len(self.passage_texts)),
        )
        for row, (start, end) in enumerate(zip(starts, ends)):
            passages = self.relevant_keys[start:end] - base[row]
            lows, highs = np.searchsorted(ordered, passages, "left"), np.searchsorted(ordered, passages, "right")
            for low, high in zip(lows, highs):
                mask[row, order[low:high]] = True
        return mask


def index_texts(
    pairs: PairsData, relevant: dict[str, set[str]] | None = None, source_rows: list[int] | None = None
) -> TrainTable:
    """Give every distinct anchor and passage text an id. Rows may have fewer negatives than the
    most any row has (mined files): their empty slots are -1, and the loss masks them.

    relevant: question text -> passage texts known relevant to it (`known_relevant`); default,
    the positives of every row that asks the question. source_rows: the rows of each source when
    `pairs` joins several (data.train first, then each data.mix source); one id space for all, so a
    passage known relevant to a question is masked whichever source brought it into the batch.
    """
    relevant = known_relevant(pairs) if relevant is None else relevant
    anchors: dict[str, int] = {}
    passages: dict[str, int] = {}
    k = max(len(negatives) for negatives in pairs.negatives)
    anchor_ids = [anchors.setdefault(text, len(anchors)) for text in pairs.anchors]
    positive_ids = [passages.setdefault(text, len(passages)) for text in pairs.positives]
    negative_ids = [
        [passages.setdefault(text, len(passages)) for text in row] + [-1] * (k - len(row)) for row in pairs.negatives
    ]
    keys = [
        anchors[question] * len(passages) + passages[text]  # texts outside the table are never candidates
        for question, texts in relevant.items()
        if question in anchors
        for text in texts
        if text in passages
    ]
    return TrainTable(
        anchor_ids=np.array(anchor_ids, dtype=np.int64),
        positive_ids=np.array(positive_ids, dtype=np.int64),
        negative_ids=np.array(negative_ids, dtype=np.int64).reshape(len(pairs), k),
        anchor_texts=list(anchors),
        passage_texts=list(passages),
        relevant_keys=np.unique(np.array(keys, dtype=np.int64)),
        source_rows=list(source_rows or []),
    )


def spread_batches(
    anchor_ids: np.ndarray, positive_ids: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Cut a shuffled epoch into batches of `batch_size` (the last one holds the remainder) so that
    rows sharing an anchor or a positive text land in different batches as far as possible.

    Greedy: rows whose texts repeat most are placed first, each in the next batch with room that
    holds the fewest rows sharing its texts (round robin among equals); rows whose texts are
    unique fill the room left. Every row is placed exactly once.
    """
    n = len(anchor_ids)
    full, rest = divmod(n, batch_size)
    capacity = [batch_size] * full + ([rest] if rest else [])
    order = rng.permutation(n)
    crowd = np.maximum(np.bincount(anchor_ids)[anchor_ids], np.bincount(positive_ids)[positive_ids])[order]
    repeated, unique = order[crowd > 1], order[crowd == 1]
    repeated = repeated[np.argsort(-crowd[crowd > 1], kind="stable")]  # most repeated texts first
    batches: list[list[int]] = [[] for _ in capacity]
    in_batch: dict[tuple[str, int], Counter] = defaultdict(Counter)  # (role, text id) -> batch -> rows
    cursor = 0
    for row in repeated.tolist():
        keys = (("a", anchor_ids[row]), ("p", positive_ids[row]))
        best, best_cost = -1, None
        for step in range(len(batches)):
            b = (cursor + step) % len(batches)
            if len(batches[b]) < capacity[b]:
                cost = sum(in_batch[key][b] for key in keys)
                if best_cost is None or cost < best_cost:
                    best, best_cost = b, cost
                if cost == 0:
                    break
        batches[best].append(row)
        for key in keys:
            in_batch[key][best] += 1
        cursor = (best + 1) % len(batches)
    fill = iter(unique.tolist())
    for b, batch in enumerate(batches):
        batch.extend(next(fill) for _ in range(capacity[b] - len(batch)))
    batch_order = list(rng.permutation(full)) + ([full] if rest else [])  # the short batch stays last
    return [rng.permutation(np.array(batches[b], dtype=np.int64)) for b in batch_order]


def grouped_batches(groups: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Cut a shuffled epoch into batches of `batch_size` (the last one holds the remainder) that keep
    rows of one group together (data.batch_by: the source document of each row's positive), so a
    batch's in-batch negatives come from as few documents as the sizes allow (in the spirit of
    topic-aware sampling, Hofstätter et al., SIGIR 2021, which clusters questions instead): the
    groups in a random order, each group's rows in a random order, cut in turn; then the batches in a
    random order (the short one last) and each batch shuffled. A group larger than a batch fills
    several; a batch starting inside one group goes on into the next. Rows sharing a question or a
    passage are not spread apart as spread_batches spreads them."""
    names, group_of = np.unique(groups, return_inverse=True)
    rank = np.empty(len(names), dtype=np.int64)
    rank[rng.permutation(len(names))] = np.arange(len(names))
    order = np.lexsort((rng.random(len(groups)), rank[group_of]))  # by group rank, at random within one
    full, rest = divmod(len(groups), batch_size)
    batches = [order[i * batch_size : (i + 1) * batch_size] for i in range(full)] + (
        [order[full * batch_size :]] if rest else []
    )
    batch_order = list(rng.permutation(full)) + ([full] if rest else [])  # the short batch stays last
    return [rng.permutation(batches[b]).astype(np.int64) for b in batch_order]


def mixed_draws(size: int, per_batch: int, batches: int, epoch: int, seed: list[int]) -> np.ndarray:
    """(batches, per_batch) rows of a mixed source of `size` rows for `epoch`'s batches: one stream
    of shuffled passes over the source, seeded by `seed` and continued from epoch to epoch, so every
    row is drawn once before any is drawn again; where a pass ends inside a batch, the next pass
    puts that batch's rows last, so no row is twice in a batch (per_batch <= size)."""
    rng = np.random.default_rng(seed)
    stream: list[int] = []
    position, drawn = 0, []
    for index in range((epoch + 1) * batches):  # the epochs before this one, replayed: cheap
        batch: list[int] = []
        while len(batch) < per_batch:
            if position == len(stream):
                order, taken = rng.permutation(size).tolist(), set(batch)
                stream, position = [r for r in order if r not in taken] + [r for r in order if r in taken], 0
            batch.append(stream[position])
            position += 1
        if index >= epoch * batches:
            drawn.append(batch)
    return np.array(drawn, dtype=np.int64).reshape(batches, per_batch)


class SpreadBatchSampler:
    """Yields the global batches (row indices) of each epoch; each process then takes its own
    contiguous share. Every process holds the same sampler and agrees on the batches, which come
    from `spread_batches` seeded by (seed, epoch).

    With mix_rows (data.mix), every global batch holds mix_rows[s] rows of the table's source s + 1
    (`table.source_rows`) and data.train's rows fill the rest: an epoch is one pass over data.train,
    cut by `spread_batches`; each mixed source's rows come from its own stream of shuffled passes
    (`mixed_draws`, seeded by (seed, s + 1), continued across epochs: every row is drawn once
    before any is drawn again, and none twice in a batch), and each batch is shuffled.

    With groups (data.batch_by: one id per row), batches keep a group's rows together instead
    (`grouped_batches`, seeded the same way); rows sharing texts are then not spread apart.

    The length is exact and the same on every process. The state (epoch, position) goes into
    checkpoints: `load_state_dict` resumes at the first batch not yet trained on.
    """

    def __init__(
        self,
        table: TrainTable,
        global_batch: int,
        seed: int,
        drop_last: bool = True,
        world_size: int = 1,
        mix_rows: list[int] | None = None,
        groups: np.ndarray | None = None,
    ):
        self.mix_rows = list(mix_rows or [])
        if groups is not None and self.mix_rows:
            raise ValueError("batch groups: not with data.mix")
        if groups is not None and len(groups) != len(table):
            raise ValueError(f"batch groups: {len(groups)} for {len(table)} rows; one per row")
        self.groups = groups
        # checked on resume: the same groups give the same batches
        self.groups_digest = (
            "" if groups is None else hashlib.sha256(np.asarray(groups, np.int64).tobytes()).hexdigest()
        )
        if global_batch % world_size:
            raise ValueError(f"train.global_batch {global_batch} does not divide over {world_size} processes")
        if self.mix_rows:
            check_mix(table, global_batch, self.mix_rows, drop_last)
        elif len(table) < global_batch and drop_last:
            raise ValueError(
                f"{len(table)} training rows are fewer than train.global_batch {global_batch}; "
                "lower it or set train.drop_last false"
            )
        self.table, self.global_batch, self.seed, self.drop_last = table, global_batch, seed, drop_last
        self.world_size = world_size
        if len(self) == 0:  # drop_last off, but fewer rows than processes
            raise ValueError(f"{len(table)} training rows cannot give each of {world_size} processes a row")
        self.epoch, self.position = 0, 0
        self._cached: tuple[int, list[np.ndarray]] | None = None

    def __len__(self) -> int:
        """Batches per epoch: the full ones, plus the short one when drop_last is off."""
        if self.mix_rows:
            return self.table.source_rows[0] // (self.global_batch - sum(self.mix_rows))
        full, rest = divmod(len(self.table), self.global_batch)
        return full + int(not self.drop_last and rest >= self.world_size)

    def mixed_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches with each data.mix source's share (see the class docstring)."""
        rng = np.random.default_rng([self.seed, epoch])
        own = self.global_batch - sum(self.mix_rows)
        main = self.table.source_rows[0]
        batches = spread_batches(self.table.anchor_ids[:main], self.table.positive_ids[:main], own, rng)[: len(self)]
        offsets = np.cumsum(self.table.source_rows)[:-1]
        shares = [  # each (batches, rows)
            offset + mixed_draws(size, rows, len(self), epoch, [self.seed, s + 1])
            for s, (offset, size, rows) in enumerate(zip(offsets, self.table.source_rows[1:], self.mix_rows))
        ]
        return [
            rng.permutation(np.concatenate([batch] + [share[b] for share in shares])) for b, batch in enumerate(batches)
        ]

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        if self.mix_rows and (self._cached is None or self._cached[0] != epoch):
            self._cached = (epoch, self.mixed_batches(epoch))
        if self._cached is None or self._cached[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            if self.groups is not None:
                batches = grouped_batches(self.groups, self.global_batch, rng)
            else:
                batches = spread_batches(self.table.anchor_ids, self.table.positive_ids, self.global_batch, rng)
            short = batches[-1]
            batches[-1] = short[: len(short) - len(short) % self.world_size]  # shares of equal size
            self._cached = (epoch, batches[: len(self)])
        return self._cached[1]

    def __iter__(self) -> Iterator[np.ndarray]:
        batches = self.global_batches(self.epoch)
        while self.position < len(batches):
            self.position += 1  # counted before the caller trains on it: a saved state points past it
            yield batches[self.position - 1]
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        state = {"epoch": self.epoch, "position": self.position, "seed": self.seed}
        return state | ({"groups": self.groups_digest} if self.groups_digest else {})

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"the checkpoint was trained with seed {state['seed']}, the config says {self.seed}")
        if state.get("groups", "") != self.groups_digest:
            raise ValueError(
                "the checkpoint's batch groups (data.batch_by: each row's document) differ from this run's: "
                "the documents changed since it was saved"
            )
        self.epoch, self.position = state["epoch"], state["position"]


def check_mix(table: TrainTable, global_batch: int, mix_rows: list[int], drop_last: bool) -> None:
    """The table has data.train plus one source per mix share, and data.train a batch's worth of rows."""
    if len(table.source_rows) != 1 + len(mix_rows) or sum(table.source_rows) != len(table):
        raise ValueError(f"the table holds sources of {table.source_rows} rows, not data.train and {len(mix_rows)}")
    own = global_batch - sum(mix_rows)
    if not drop_last or own < 1 or min(mix_rows) < 1:
        raise ValueError(
            f"data.mix: {mix_rows} rows of a batch of {global_batch} leave data.train {own}, with drop_last"
        )
    for s, (size, rows) in enumerate(zip(table.source_rows[1:], mix_rows)):
        if size < rows:
            raise ValueError(f"data.mix[{s}]: {size} rows, fewer than the {rows} of every global batch drawn from it")
    if table.source_rows[0] < own:
        raise ValueError(
            f"{table.source_rows[0]} data.train rows are fewer than the {own} of each global batch "
            "that data.mix leaves it"
        )
