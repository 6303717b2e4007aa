"""retrieval/memory.py: the links from training questions to passages, the remembered search and
scores against a float64 full-matrix reference under the tie rule, a question never its own
memory, and the hybrid's candidates with memory."""

from __future__ import annotations

import numpy as np
import pytest

from data import IRDataset
from retrieval.hybrid import candidates_by_dim
from retrieval.lexical import build_index
from retrieval.memory import EncodedMemory, build_memory, load_memory
from retrieval.settings import LexicalConfig
from tests.helpers import write_jsonl


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference(queries, docs, keys, links, query_texts, key_texts) -> np.ndarray:
    """(Q, N) float64: max(cosine, best cosine with a linked training question), a question left out
    of a query whose text is its own up to whitespace. links: (key, row) pairs; key_texts[key]: a
    spelling of that key's question."""
    out = queries @ docs.T
    for key, row in links:
        for q in range(len(queries)):
            if query_texts[q].split() != key_texts[key].split():
                out[q, row] = max(out[q, row], float(queries[q] @ keys[key]))
    return out


def reference_top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Score descending, then row ascending, by a sort of (-score, row) tuples."""
    rows = [sorted(range(scores.shape[1]), key=lambda r, s=s: (-s[r], r))[:k] for s in scores]
    return np.take_along_axis(scores, np.array(rows), 1), np.array(rows)


def test_a_question_links_to_every_passage_with_its_positives_text(tmp_path):
    corpus = ["rule  one", "rule two", "rule one", "rule three"]  # rows 0 and 2 share a text
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"anchor": "a", "positive": "rule one"},
            {"anchor": "b", "positive": " rule three"},
            {"anchor": "a", "positive": "rule two"},
            {"anchor": "c", "positive": "not in the corpus"},
        ],
    )
    memory = load_memory(pairs, corpus)
    assert memory.questions == ["a", "b"]  # c links to nothing
    assert sorted(zip(memory.question_of.tolist(), memory.row_of.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 3)]
    assert memory.rows.tolist() == [0, 1, 2, 3]
    assert memory.self_keys(["b", "a  ", "z"]).tolist() == [1, 0, -1]
    with pytest.raises(ValueError, match="none of the 1 training positives is a passage of the corpus"):
        build_memory(["q"], ["elsewhere"], corpus, "p.jsonl")


@pytest.mark.parametrize(("k", "n_queries"), [(1, 9), (4, 9), (9, 9), (30, 9), (5, 300)])
def test_the_remembered_search_is_the_full_matrix_top_k(k, n_queries):
    rng = np.random.default_rng(k)
    n, m, dim = 30, 12, 6
    queries, docs, keys = (unit(rng.normal(size=(size, dim))) for size in (n_queries, n, m))
    docs[7] = docs[3]  # a copy: tied with row 3 everywhere, so row 3 comes first
    asked = {(int(rng.integers(m)), int(rng.integers(n))) for _ in range(20)} | {(0, 3)}
    text = lambda row: f"p{3 if row == 7 else row}"  # noqa: E731  row 7's text is row 3's: linked together
    anchors, positives = [f"q{key}" for key, _ in asked] + ["q0  "], [text(row) for _, row in asked] + ["p5"]
    memory = build_memory(anchors, positives, [text(row) for row in range(n)], "pairs")
    # by hand: every row holding a positive's text, and "q0  " the question q0 (whitespace aside)
    links = {(key, other) for key, row in asked for other in range(n) if text(other) == text(row)} | {(0, 5)}
    query_texts = [f"q{i}" if i < 3 else f"new {i}" for i in range(n_queries)]  # the first three are training questions
    want = reference(queries, docs, keys, links, query_texts, [f"q{key}" for key in range(m)])
    assert memory.questions.count("q0") + memory.questions.count("q0  ") == 1  # one question, one key
    at = EncodedMemory(memory, np.stack([keys[int(q.split()[0][1:])] for q in memory.questions])).at(dim)
    self_keys = memory.self_keys(query_texts)
    want_scores, want_rows = reference_top(want, k)
    got_scores, got_rows = at.search(queries.astype(np.float32), docs.astype(np.float32), k, self_keys)
    np.testing.assert_array_equal(got_rows, want_rows)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)
    rows = np.array([[0, 3, 7, -1], [29, 1, 2, 5]] * 4 + [[-1] * 4])
    got = at.scores_at(queries[:9].astype(np.float32), docs.astype(np.float32), rows, self_keys[:9])
    np.testing.assert_allclose(
        got, np.where(rows >= 0, np.take_along_axis(want[:9], np.maximum(rows, 0), 1), 0), atol=1e-6
    )


def test_a_question_is_never_its_own_memory():
    docs = unit(np.array([[1.0, 0.0], [0.0, 1.0]]))
    keys = unit(np.array([[1.0, 1.0]]))  # the training question sits between both passages
    memory = build_memory(["same question", "same  question"], ["passage b"] * 2, ["passage a", "passage b"], "p")
    assert memory.questions == ["same question"]  # the two spellings are one question
    at = EncodedMemory(memory, keys).at(2)
    query = unit(np.array([[1.0, 0.9]])).astype(np.float32)  # closest to the training question
    rows_new = at.search(query, docs.astype(np.float32), 2, memory.self_keys(["another question"]))[1]
    rows_self = at.search(query, docs.astype(np.float32), 2, memory.self_keys(["same  question"]))[1]
    assert rows_new.tolist() == [[1, 0]]  # remembered: passage b first
    assert rows_self.tolist() == [[0, 1]]  # itself left out: the cosine alone, passage a first
    assert at.search(query, docs.astype(np.float32), 2)[1].tolist() == [[1, 0]]  # deployed: none left out


def test_the_hybrid_candidates_with_memory_score_the_remembered_cosine():
    """150 passages: the dense top 100 under memory is a real selection, pooled with BM25's."""
    rng = np.random.default_rng(1)
    words = ["capital", "licence", "client", "asset", "report", "fund", "rule", "market"]
    n = 150
    corpus_texts = [" ".join(rng.choice(words, 5)) for _ in range(n)]
    query_texts = [" ".join(rng.choice(words, 3)) for _ in range(6)]
    data = IRDataset(
        [f"d{i}" for i in range(n)], corpus_texts, [f"q{i}" for i in range(6)], query_texts,
        {f"q{i}": {f"d{i}": 1} for i in range(6)}, "toy",
    )  # fmt: skip
    queries, corpus, keys = (rng.normal(size=(size, 16)).astype(np.float32) for size in (6, n, 10))
    memory = build_memory([f"asked {i}" for i in range(10)], corpus_texts[5:15], corpus_texts, "pairs")
    links = {(i, row) for i in range(10) for row in range(n) if corpus_texts[row] == corpus_texts[5 + i]}
    encoded = EncodedMemory(memory, np.stack([keys[int(q.split()[1])] for q in memory.questions]))
    index = build_index(corpus_texts, LexicalConfig())
    found, _ = candidates_by_dim(queries, corpus, data, [16, 8], index, memory=encoded)
    for dim, c in found.items():
        q, d, m = (unit(x[:, :dim].astype(np.float64)) for x in (queries, corpus, keys))
        want = reference(q, d, m, links, query_texts, [f"asked {i}" for i in range(10)])
        valid = c.rows >= 0
        np.testing.assert_allclose(c.dense[valid], np.take_along_axis(want, np.maximum(c.rows, 0), 1)[valid], atol=1e-5)
        top = reference_top(want, 100)[1]
        for qi in range(6):  # the dense top 100 is the remembered score's, each candidate at its rank
            ranks = {int(row): rank for row, rank in zip(c.rows[qi], c.dense_rank[qi]) if rank > 0}
            assert ranks == {int(row): rank + 1 for rank, row in enumerate(top[qi])}
            assert len(set(c.rows[qi][valid[qi]].tolist())) > 100  # BM25 added passages of its own


def test_the_readme_example_runs_and_says_what_it_links(minilm_dir):
    """README's "Question memory" example, run as written with the packaged MiniLM in place of the
    quickstart's model: it prints ten corpus ids, and its comment's counts are the memory's."""
    import ast
    import json
    import re
    import subprocess
    import sys

    from helpers import ROOT, child_env

    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme[readme.index("**Question memory.**") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert '"runs/quickstart/model"' in code
    code = code.replace('"runs/quickstart/model"', repr(str(minilm_dir)))
    done = subprocess.run(  # read from stdin in the repository root, as a user pasting it there
        [sys.executable, "-"], input=code, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    printed = ast.literal_eval(done.stdout.strip().splitlines()[-1])  # the list of ids the example prints
    corpus = ROOT / "samples" / "quickstart" / "corpus.jsonl"
    ids = {json.loads(line)["_id"] for line in corpus.read_text("utf-8").splitlines()}
    assert len(printed) == 10 and set(printed) <= ids
    rows = [json.loads(line) for line in corpus.read_text("utf-8").splitlines()]
    memory = load_memory(
        ROOT / "samples/quickstart/train_pairs.jsonl", [f"{r.get('title', '')} {r['text']}".strip() for r in rows]
    )
    assert f"# {len(memory.questions)} questions, {len(memory.rows)} passages" in section
