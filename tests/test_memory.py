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


def reference(queries, docs, keys, links, self_keys) -> np.ndarray:
    """(Q, N) float64: max(cosine, best cosine with a linked training question other than itself)."""
    out = queries @ docs.T
    for question, row in links:
        for q in range(len(queries)):
            if self_keys[q] != question:
                out[q, row] = max(out[q, row], float(queries[q] @ keys[question]))
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
    with pytest.raises(ValueError, match="none of its 1 positives is a passage of the corpus"):
        build_memory(["q"], ["elsewhere"], corpus, "p.jsonl")


@pytest.mark.parametrize("k", [1, 4, 9, 30])
def test_the_remembered_search_is_the_full_matrix_top_k(k):
    rng = np.random.default_rng(k)
    n, m, dim = 30, 12, 6
    queries, docs, keys = (unit(rng.normal(size=(size, dim))) for size in (9, n, m))
    docs[7] = docs[3]  # a copy: tied with row 3 everywhere, so row 3 comes first
    links = {(int(rng.integers(m)), int(rng.integers(n))) for _ in range(20)} | {(0, 3), (0, 7)}
    memory = build_memory(
        [f"q{question}" for question, _ in links],
        [f"p{row}" if row != 7 else "p3" for _, row in links],
        [f"p{row}" if row != 7 else "p3" for row in range(n)],  # row 7's text is row 3's: linked together
        "pairs",
    )
    keys_by_question = np.stack([keys[int(q[1:])] for q in memory.questions])
    query_texts = [f"q{i}" if i < 3 else f"new {i}" for i in range(9)]  # the first three are training questions
    self_keys = memory.self_keys(query_texts)
    assert (self_keys[:3] >= 0).sum() == sum(f"q{i}" in memory.questions for i in range(3))
    at = EncodedMemory(memory, keys_by_question).at(dim)
    want = reference(queries, docs, keys_by_question, zip(memory.question_of, memory.row_of), self_keys)
    want_scores, want_rows = reference_top(want, k)
    got_scores, got_rows = at.search(queries.astype(np.float32), docs.astype(np.float32), k, self_keys)
    np.testing.assert_array_equal(got_rows, want_rows)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)
    rows = np.array([[0, 3, 7, -1], [29, 1, 2, 5]] * 4 + [[-1] * 4])
    got = at.scores_at(queries.astype(np.float32), docs.astype(np.float32), rows, self_keys)
    np.testing.assert_allclose(got, np.where(rows >= 0, np.take_along_axis(want, np.maximum(rows, 0), 1), 0), atol=1e-6)


def test_a_question_is_never_its_own_memory():
    docs = unit(np.array([[1.0, 0.0], [0.0, 1.0]]))
    keys = unit(np.array([[1.0, 1.0]]))  # the training question sits between both passages
    memory = build_memory(["same question"], ["passage b"], ["passage a", "passage b"], "pairs")
    at = EncodedMemory(memory, keys).at(2)
    query = unit(np.array([[1.0, 0.9]])).astype(np.float32)  # closest to the training question
    rows_new = at.search(query, docs.astype(np.float32), 2, memory.self_keys(["another question"]))[1]
    rows_self = at.search(query, docs.astype(np.float32), 2, memory.self_keys(["same  question"]))[1]
    assert rows_new.tolist() == [[1, 0]]  # remembered: passage b first
    assert rows_self.tolist() == [[0, 1]]  # itself left out: the cosine alone, passage a first
    assert at.search(query, docs.astype(np.float32), 2)[1].tolist() == [[1, 0]]  # deployed: none left out


def test_the_hybrid_candidates_with_memory_score_the_remembered_cosine(tmp_path):
    rng = np.random.default_rng(1)
    words = ["capital", "licence", "client", "asset", "report", "fund", "rule", "market"]
    corpus_texts = [" ".join(rng.choice(words, 5)) for _ in range(40)]
    query_texts = [" ".join(rng.choice(words, 3)) for _ in range(6)]
    data = IRDataset(
        [f"d{i}" for i in range(40)],
        corpus_texts,
        [f"q{i}" for i in range(6)],
        query_texts,
        {f"q{i}": {f"d{i}": 1} for i in range(6)},
        "toy",
    )
    queries, corpus, keys = (rng.normal(size=(size, 16)).astype(np.float32) for size in (6, 40, 10))
    memory = build_memory([f"asked {i}" for i in range(10)], corpus_texts[5:15], corpus_texts, "pairs")
    encoded = EncodedMemory(memory, keys)
    index = build_index(corpus_texts, LexicalConfig())
    found, _ = candidates_by_dim(queries, corpus, data, [16, 8], index, memory=encoded)
    for dim, c in found.items():
        q, d, m = (unit(x[:, :dim].astype(np.float64)) for x in (queries, corpus, keys))
        want = reference(q, d, m, zip(memory.question_of, memory.row_of), np.full(6, -1))
        valid = c.rows >= 0
        np.testing.assert_allclose(c.dense[valid], np.take_along_axis(want, np.maximum(c.rows, 0), 1)[valid], atol=1e-5)
        top = reference_top(want, 40)[1]
        for qi in range(6):  # the dense rank of each candidate is its rank under the remembered score
            ranked = {int(row): rank + 1 for rank, row in enumerate(top[qi])}
            for row, rank in zip(c.rows[qi][valid[qi]], c.dense_rank[qi][valid[qi]]):
                assert rank == ranked[int(row)]


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
