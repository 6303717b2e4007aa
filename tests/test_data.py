"""Loading pairs and BEIR sets, and the errors bad input gets: each names the file and line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data import (
    DataError,
    PairsData,
    index_texts,
    ir_from_pairs,
    known_relevant,
    load_beir,
    load_ir,
    load_pair_splits,
    load_pairs,
)
from helpers import write_jsonl


def write_beir(root: Path, qrels_lines: list[str] | None = None) -> Path:
    write_jsonl(
        root / "corpus.jsonl",
        [
            {"_id": "d1", "title": "Rule 1", "text": "A firm must keep records."},
            {"_id": "d2", "title": "", "text": "Client money is held on trust."},
            {"_id": "d3", "text": "Unjudged passage."},
        ],
    )
    write_jsonl(
        root / "queries.jsonl",
        [
            {"_id": "q1", "text": "record keeping?"},
            {"_id": "q2", "text": "client money?"},
            {"_id": "q3", "text": "only judged irrelevant"},
        ],
    )
    (root / "qrels").mkdir(exist_ok=True)
    lines = qrels_lines or ["q1\td1\t1", "q2\td2\t2", "q2\td1\t0", "q3\td3\t0"]
    (root / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n")
    return root


def test_pairs_from_jsonl_csv_parquet_with_aliases(tmp_path):
    write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"query": "q1", "passage": "p1", "negatives": ["n1", "n2"]},
            {"query": "q2", "passage": "p2", "negatives": ["n3"]},
        ],
    )
    (tmp_path / "b.csv").write_text('question,answer,negative\nq1,"p1, with comma",n1\nq2,p2,n2\n')
    pq.write_table(pa.table({"anchor": ["q1"], "positive": ["p1"]}), tmp_path / "c.parquet")
    (tmp_path / "d.csv").write_text("anchor,pos,negative_1,negative_2\nq1,p1,n1,n2\n")
    a = load_pairs(tmp_path / "a.jsonl")
    assert (a.anchors, a.positives, a.negatives) == (["q1", "q2"], ["p1", "p2"], [["n1", "n2"], ["n3"]])
    b = load_pairs(tmp_path / "b.csv")
    assert (b.anchors, b.positives, b.negatives) == (["q1", "q2"], ["p1, with comma", "p2"], [["n1"], ["n2"]])
    c = load_pairs(tmp_path / "c.parquet")
    assert (c.anchors, c.positives, c.negatives) == (["q1"], ["p1"], [[]])
    assert load_pairs(tmp_path / "d.csv").negatives == [["n1", "n2"]]


@pytest.mark.parametrize(
    "rows,line,message",
    [
        ([{"anchor": "q", "positive": "p"}, "{not json"], 2, "malformed JSON"),
        ([{"anchor": "q", "positive": "p"}, {"anchor": "q2"}], 2, "missing column 'positive'"),
        ([{"anchor": "q", "positive": "p"}, {"anchor": "  ", "positive": "p"}], 2, "empty text in column 'anchor'"),
        ([{"anchor": "q", "positive": "p"}, "", {"anchor": "q", "positive": 3}], 3, "must be text"),
        ([{"question": "q", "text": "p"}], 1, "missing column 'positive'"),
        (["[1, 2]"], 1, "expected a JSON object"),
    ],
)
def test_bad_pairs_name_file_and_line(tmp_path, rows, line, message):
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError, match=message) as err:
        load_pairs(path)
    assert str(err.value).startswith(f"{path}:{line}:")


@pytest.mark.parametrize(
    "text,line,message",
    [
        ("anchor,positive\nq1,p1\nq2,\n", 3, "empty text in column 'positive'"),
        ("anchor,positive\nq1,p1\nq2\n", 3, "fewer fields"),
        ("anchor,positive\nq1,p1,extra\n", 2, "more fields"),
    ],
)
def test_bad_csv_names_line(tmp_path, text, line, message):
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as err:
        load_pairs(path)
    assert str(err.value).startswith(f"{path}:{line}:")


def test_negatives_appearing_after_the_first_row_are_an_error(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl", [{"anchor": "q", "positive": "p"}, {"anchor": "q", "positive": "p", "negative": "n"}]
    )
    with pytest.raises(DataError, match=rf"^{path}:2: has a negative column"):
        load_pairs(path)


def test_not_utf8_and_bad_parquet_rows_are_named(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"anchor": "q", "positive": "p"}\n{"anchor": "\xff", "positive": "p"}\n')
    with pytest.raises(DataError, match=rf"^{path}:2: not UTF-8"):
        load_pairs(path)
    pq.write_table(pa.table({"anchor": ["q1", "q2"], "positive": ["p1", ""]}), tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p\.parquet: row 2: empty text in column 'positive'"):
        load_pairs(tmp_path / "p.parquet")


def test_beir_loader(tmp_path):
    data = load_beir(write_beir(tmp_path), "dev")
    assert data.corpus_ids == ["d1", "d2", "d3"]
    assert data.corpus_texts[0] == "Rule 1 A firm must keep records."  # title prepended
    assert data.query_ids == ["q1", "q2"]  # q3 has no relevant document
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}


@pytest.mark.parametrize(
    "qrels_line,message",
    [
        ("q9\td1\t1", "query id 'q9' is not in queries.jsonl"),
        ("q1\td9\t1", "corpus id 'd9' is not in corpus.jsonl"),
        ("q1\td1", "expected 3 tab-separated fields"),
        ("q1\td1\thigh", "score 'high' is not an integer"),
        ("q1\td1\t0.5", "score '0.5' is not an integer"),
        ("q1\td1\t1", "duplicate judgement"),
    ],
)
def test_bad_qrels_name_file_and_line(tmp_path, qrels_line, message):
    root = write_beir(tmp_path, ["q1\td1\t1", qrels_line])
    with pytest.raises(DataError, match=message) as err:
        load_beir(root, "dev")
    assert str(err.value).startswith(f"{root / 'qrels' / 'dev.tsv'}:3:")


@pytest.mark.parametrize(
    "corpus_rows,line,message",
    [
        ([{"_id": "d1", "text": "x"}, {"_id": "d1", "text": "y"}], 2, "duplicate '_id'"),
        ([{"_id": "d1", "text": "x"}, {"text": "y"}], 2, "missing or empty '_id'"),
        ([{"_id": "d1", "title": "", "text": ""}], 1, "empty text"),
        ([{"_id": "d1"}], 1, "missing column 'text'"),
        ([{"_id": "d1", "text": "x"}, '{"_id": "d2", "text": "y"'], 2, "malformed JSON"),
    ],
)
def test_bad_corpus_names_file_and_line(tmp_path, corpus_rows, line, message):
    root = write_beir(tmp_path)
    write_jsonl(root / "corpus.jsonl", corpus_rows)
    with pytest.raises(DataError, match=message) as err:
        load_beir(root, "dev")
    assert str(err.value).startswith(f"{root / 'corpus.jsonl'}:{line}:")


def test_missing_split_file_is_named(tmp_path):
    root = write_beir(tmp_path)
    with pytest.raises(DataError, match=r"qrels/test\.tsv: no such file"):
        load_beir(root, "test")


def test_ir_from_pairs_like_the_study(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"anchor": "a1", "positive": "p1"}, {"anchor": "a2", "positive": "p2"}])
    write_jsonl(
        tmp_path / "test.jsonl",
        [{"anchor": "t1", "positive": "p3"}, {"anchor": "t1", "positive": "p1"}, {"anchor": "t2", "positive": "p3"}],
    )
    data = load_ir(tmp_path, "test")
    assert sorted(data.corpus_texts) == ["p1", "p2", "p3"]  # every positive of every split, once
    assert data.query_texts == ["t1", "t2"]  # a repeated question is one query
    qrels = {
        data.query_texts[i]: {data.corpus_texts[data.corpus_ids.index(d)] for d in data.qrels[q]}
        for i, q in enumerate(data.query_ids)
    }
    assert qrels == {"t1": {"p3", "p1"}, "t2": {"p3"}}
    with pytest.raises(DataError, match="split 'dev' not found"):
        ir_from_pairs(load_pair_splits(tmp_path), "dev")


def test_rows_with_fewer_negatives_get_empty_slots(tmp_path):
    """Mined files give a question fewer negatives when too few candidates survive the filters."""
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"anchor": "q1", "positive": "p1", "negatives": ["n1", "n2"]},
            {"anchor": "q2", "positive": "p2", "negatives": []},
            {"anchor": "q3", "positive": "p3", "negatives": ["p1"]},
        ],
    )
    table = index_texts(load_pairs(path))
    texts = [[table.passage_texts[i] if i >= 0 else None for i in row] for row in table.negative_ids]
    assert texts == [["n1", "n2"], [None, None], ["p1", None]]


def test_known_relevant_spans_the_table_and_the_qrels(tmp_path):
    root = write_beir(tmp_path)
    (root / "qrels" / "train.tsv").write_text("q1\td2\t1\nq2\td3\t0\n")
    pairs = PairsData(["record keeping?", "other", "record keeping?"], ["p1", "p2", "p3"], [[], [], []], "t")
    relevant = known_relevant(pairs, root, "train")
    assert relevant == {"record keeping?": {"p1", "p3", "Client money is held on trust."}, "other": {"p2"}}
    assert known_relevant(pairs) == {"record keeping?": {"p1", "p3"}, "other": {"p2"}}


def test_known_mask_against_a_direct_loop():
    """Every (row, candidate) of a global batch: masked iff the candidate's text is known relevant to
    the row's question (anywhere in the table, or via `relevant`), or the slot is empty."""
    rng = np.random.default_rng(0)
    questions = [f"q{i}" for i in rng.integers(0, 6, 30)]
    positives = [f"p{i}" for i in rng.integers(0, 12, 30)]
    negatives = [[f"p{i}" for i in rng.integers(0, 15, rng.integers(0, 3))] for _ in range(30)]
    relevant = known_relevant(PairsData(questions, positives, negatives, "t"))
    relevant["q1"].add("p14")  # known from elsewhere (e.g. qrels)
    relevant["q99"] = {"p1"}  # a question not in the table changes nothing
    table = index_texts(PairsData(questions, positives, negatives, "t"), relevant)
    rows = rng.permutation(30)[:10]
    k = table.negative_ids.shape[1]
    candidates = [positives[r] for r in rows] + [
        negatives[r][j] if j < len(negatives[r]) else None for r in rows for j in range(k)
    ]
    want = np.array([[c is None or c in relevant[questions[r]] for c in candidates] for r in rows])
    assert want.any() and not want.all()
    assert np.array_equal(table.known_mask(rows), want)
