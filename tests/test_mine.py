"""Hard-negative mining: hand-made scores give the expected negatives and filter counts; known
relevant and filtered passages never come back; random sampling is seeded; a partial or
different mined set is never reused, a complete identical one is; the CLI end to end."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from data import DataError, PairsData, known_relevant
from helpers import make_tiny_bert, random_texts
from mine import main
from model import Encoder, ModelConfig
from retrieval.mining import mine
from retrieval.settings import MineConfig, check_mine_config

QUERY_PROMPT = "query: "
QUESTIONS = ["question A", "question B", "question C", "question D"]
# Cosine of each passage with each question, chosen by hand; every unlisted pair scores 0.
# A is asked by two rows (positives PA1, PA2); QB is relevant to B only through the qrels;
# PC is not in the corpus (the miner must encode it to know C's positive score).
SCORES = {
    "question A": {"X0": 0.97, "PA1": 0.93, "X1": 0.85, "PA2": 0.80, "X2": 0.75, "Rule 3 X3": 0.70, "X4": 0.60},
    "question B": {"PB": 0.90, "QB": 0.88, "Y1": 0.84, "Y2": 0.82, "Y3": 0.50, "Y4": 0.40},
    "question C": {"Z0": 0.55, "Z1": 0.50, "Z2": 0.45, "Z3": 0.40, "Z4": 0.35, "Z5": 0.28, "PC": 0.30},
    "question D": {"W0": 0.60, "W1": 0.50, "W2": 0.40, "W3": 0.30, "W4": 0.20, "W5": 0.15, "PD": 0.10},
}
# Corpus order differs from score order; X2 appears twice (two ids, one text); "Rule 3 X3" has a title.
CORPUS = [
    "W3",
    "PA1",
    "Y2",
    "Rule 3 X3",
    "Z0",
    "PB",
    "X0",
    "QB",
    "X2",
    "Y4",
    "Z5",
    "W0",
    "X1",
    "Z3",
    "PD",
    "Y1",
    "W5",
    "Z1",
    "X4",
    "W1",
    "X2",
    "Y3",
    "Z4",
    "PA2",
    "W4",
    "Z2",
    "W2",
    "F0",
    "F1",
]
PASSAGES = list(dict.fromkeys(CORPUS + ["PC"]))
ROWS = [("question A", "PA1"), ("question B", "PB"), ("question A", "PA2"), ("question C", "PC"), ("question D", "PD")]
OUTPUT_FILES = {"triplets.jsonl", "scores.jsonl", "filtered.jsonl", "meta.json"}


def unit_vectors() -> dict[str, np.ndarray]:
    """Question q is axis q; passage p is s_q on each question axis plus the rest of a unit length on
    an axis of its own, so its cosine with question q is exactly the hand-chosen s_q."""
    dim = len(QUESTIONS) + len(PASSAGES)
    vectors = {}
    for q, question in enumerate(QUESTIONS):
        vectors[question] = np.eye(dim)[q]
    for p, passage in enumerate(PASSAGES):
        vector = np.zeros(dim)
        for q, question in enumerate(QUESTIONS):
            vector[q] = SCORES[question].get(passage, 0.0)
        vector[len(QUESTIONS) + p] = np.sqrt(1 - (vector**2).sum())
        vectors[passage] = vector
    return vectors


class TableEncoder:
    """A stand-in encoder: embeddings looked up by the exact text encoded (prompt included)."""

    def __init__(self):
        vectors = unit_vectors()
        self.table = {(QUERY_PROMPT + text if text in QUESTIONS else text): vec for text, vec in vectors.items()}
        self.dim = len(next(iter(vectors.values())))
        self.device = torch.device("cpu")
        self.spec = SimpleNamespace(query_prompt=QUERY_PROMPT, document_prompt="")
        self.encoded: list[str] = []  # every text encoded, in order

    def encode(self, texts, batch_size=64, prompt="", show_progress=False) -> torch.Tensor:
        self.encoded += [prompt + text for text in texts]
        return torch.tensor(np.stack([self.table[prompt + text] for text in texts]), dtype=torch.float32)


@pytest.fixture
def beir(tmp_path) -> Path:
    """A BEIR directory: the corpus above, and qrels/train.tsv judging QB relevant to question B."""
    directory = tmp_path / "beir"
    (directory / "qrels").mkdir(parents=True)
    lines = []
    for i, text in enumerate(CORPUS):
        title, _, body = text.rpartition(" ") if text.startswith("Rule") else ("", "", text)
        lines.append(json.dumps({"_id": f"c{i}", "title": title, "text": body}))
    (directory / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    (directory / "queries.jsonl").write_text(json.dumps({"_id": "qB", "text": "question B"}) + "\n")
    (directory / "qrels" / "train.tsv").write_text(f"query-id\tcorpus-id\tscore\nqB\tc{CORPUS.index('QB')}\t1\n")
    return directory


def pairs() -> PairsData:
    return PairsData([q for q, _ in ROWS], [p for _, p in ROWS], [[] for _ in ROWS], source="hand")


def run(beir: Path, out: Path, encoder=None, extra=None, **settings):
    config = MineConfig(corpus=str(beir), **settings)
    relevant = known_relevant(pairs(), beir, "train")
    report = mine(encoder or TableEncoder(), pairs(), relevant, config, out, extra or {"model": "table"}, False)
    triplets = [json.loads(line) for line in (out / "triplets.jsonl").read_text().splitlines()]
    return report, triplets


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- hand-computed example


def test_filters_and_counts_on_a_hand_computed_example(beir, tmp_path):
    """k=2, ranks 2-6, 0.95 x lowest positive, max_score 0.81. By hand, per question:
    A: X0 (r1) window; PA1, PA2 relevant; X1 .85 > .95 x .80; keeps X2, X3 (the duplicate X2 is one text).
    B: PB, QB relevant (QB by qrels only); Y1 .84 > .95 x .88 (relative first, though above .81 too);
       Y2 .82 > .81; keeps Y3, Y4.
    C: Z0 window; Z1-Z4 > .95 x .30 (PC, outside the corpus); keeps Z5 .28: one of two.
    D: W0 window; W1-W5 > .95 x .10; none."""
    report, triplets = run(beir, tmp_path / "out", k=2, rank_min=2, rank_max=6, max_relative=0.95, max_score=0.81)
    assert [row["negatives"] for row in triplets] == [
        ["X2", "Rule 3 X3"],
        ["Y3", "Y4"],
        ["X2", "Rule 3 X3"],
        ["Z5"],
        [],
    ]
    assert [(row["anchor"], row["positive"]) for row in triplets] == ROWS
    assert report.counts == {
        "questions": 4,
        "rows": 5,
        "corpus": len(CORPUS) - 1,
        "negatives": 5,
        "questions_short": 2,
        "questions_none": 1,
        "rows_short": 2,
        "removed_relevant": 4,
        "removed_rank_window": 3,
        "removed_relative": 11,
        "removed_max_score": 1,
    }
    assert not report.reused and "fewer than 2" in report.format_report()
    scores = {record["question"]: record for record in read_jsonl(report.scores)}
    assert [n["rank"] for n in scores["question A"]["negatives"]] == [5, 6]
    assert [n["score"] for n in scores["question A"]["negatives"]] == pytest.approx([0.75, 0.70])
    assert scores["question A"]["positive_scores"] == pytest.approx([0.93, 0.80])
    assert scores["question B"]["positive_scores"] == pytest.approx([0.90, 0.88])
    assert scores["question C"]["positive_scores"] == pytest.approx([0.30])
    assert [n["rank"] for n in scores["question C"]["negatives"]] == [6]
    filtered = {record["question"]: record for record in read_jsonl(report.filtered)}
    expected = {
        "question A": [(3, "X1")],
        "question B": [(3, "Y1")],
        "question C": [(2, "Z1"), (3, "Z2"), (4, "Z3"), (5, "Z4")],
        "question D": [(r, f"W{r - 1}") for r in range(2, 7)],
    }
    assert {q: [(c["rank"], c["text"]) for c in r["removed"]] for q, r in filtered.items()} == expected
    thresholds = {q: r["threshold"] for q, r in filtered.items()}
    assert thresholds == pytest.approx(
        {"question A": 0.76, "question B": 0.836, "question C": 0.285, "question D": 0.095}
    )


def test_known_relevant_never_negative_even_without_value_filters(beir, tmp_path):
    """Ranks 1-4, no score filters: without the relevance check A would get PA1/PA2 (the other row's
    positive) and B would get QB (relevant by qrels only)."""
    report, triplets = run(beir, tmp_path / "out", k=4, rank_min=1, rank_max=4, max_relative=None)
    assert [row["negatives"] for row in triplets] == [
        ["X0", "X1"],
        ["Y1", "Y2"],
        ["X0", "X1"],
        ["Z0", "Z1", "Z2", "Z3"],
        ["W0", "W1", "W2", "W3"],
    ]
    relevant = {"question A": {"PA1", "PA2"}, "question B": {"PB", "QB"}, "question C": {"PC"}, "question D": {"PD"}}
    assert all(not set(row["negatives"]) & relevant[row["anchor"]] for row in triplets)
    assert report.counts["removed_relevant"] == 4 and report.counts["removed_rank_window"] == 0
    assert (report.counts["questions_short"], report.counts["rows_short"]) == (2, 3)
    assert read_jsonl(report.filtered) == []


def test_qrels_decide_relevance_only_through_the_map(beir, tmp_path):
    """The same run with the training rows' relevance only: QB is then B's hardest negative."""
    config = MineConfig(k=2, corpus=str(beir), rank_min=1, rank_max=4, max_relative=None)
    mine(TableEncoder(), pairs(), known_relevant(pairs()), config, tmp_path / "out", {}, False)
    assert read_jsonl(tmp_path / "out" / "triplets.jsonl")[1]["negatives"] == ["QB", "Y1"]


def test_rank_window(beir, tmp_path):
    """Ranks 3-5 only: A keeps X1 (r3) and X2 (r5); ranks 1-2 that are not relevant count as outside."""
    report, triplets = run(beir, tmp_path / "out", k=3, rank_min=3, rank_max=5, max_relative=None)
    assert [row["negatives"] for row in triplets] == [
        ["X1", "X2"],
        ["Y1", "Y2", "Y3"],
        ["X1", "X2"],
        ["Z2", "Z3", "Z4"],
        ["W2", "W3", "W4"],
    ]
    assert report.counts["removed_rank_window"] == 1 + 0 + 2 + 2
    assert report.counts["removed_relevant"] == 2 + 2
    ranks = [n["rank"] for record in read_jsonl(report.scores) for n in record["negatives"]]
    assert min(ranks) == 3 and max(ranks) == 5


def test_corpus_defaults_to_the_training_passages(tmp_path):
    """Training passages in first-appearance order PA1, PB, PA2, PC, PD; A scores PB, PC, PD all 0,
    and ties go to corpus order, so A's one negative is PB; B's is PA1."""
    config = MineConfig(k=1, max_relative=None)
    report = mine(TableEncoder(), pairs(), known_relevant(pairs()), config, tmp_path / "out", {}, False)
    negatives = [row["negatives"] for row in read_jsonl(tmp_path / "out" / "triplets.jsonl")]
    assert negatives == [["PB"], ["PA1"], ["PB"], ["PA1"], ["PA1"]]
    assert report.counts["corpus"] == 5


# ---------------------------------------------------------------- random sampling


def kept_by_numpy(rank_max: int) -> dict[str, list[str]]:
    """Each question's candidates with no score filter: a stable argsort of the full score matrix
    (ties in corpus order), top rank_max, known relevant removed."""
    vectors = unit_vectors()
    corpus = list(dict.fromkeys(CORPUS))
    scores = np.stack([vectors[q] for q in QUESTIONS]) @ np.stack([vectors[p] for p in corpus]).T
    relevant = {"question A": {"PA1", "PA2"}, "question B": {"PB", "QB"}, "question C": {"PC"}, "question D": {"PD"}}
    top = np.argsort(-scores.round(6), axis=1, kind="stable")[:, :rank_max]
    return {q: [corpus[j] for j in top[i] if corpus[j] not in relevant[q]] for i, q in enumerate(QUESTIONS)}


def test_random_sampling_is_seeded_and_within_the_kept_candidates(beir, tmp_path):
    kept = kept_by_numpy(rank_max=12)
    draws = {}
    for seed in (1, 2, 1):
        _, triplets = run(
            beir, tmp_path / f"out{seed}", k=3, rank_max=12, max_relative=None, sample="random", seed=seed
        )
        by_question = {row["anchor"]: row["negatives"] for row in triplets}
        for question, negatives in by_question.items():
            assert len(negatives) == 3 == len(set(negatives)) and set(negatives) <= set(kept[question])
            assert negatives == [text for text in kept[question] if text in negatives]  # rank order
        assert triplets[0]["negatives"] == triplets[2]["negatives"]  # both rows of A
        if seed in draws:
            assert by_question == draws[seed]
        draws[seed] = by_question
    assert draws[1] != draws[2]
    assert any(draw[q] != kept[q][:3] for draw in draws.values() for q in QUESTIONS)  # not simply the top 3


# ---------------------------------------------------------------- reuse and atomic writes


def test_complete_identical_run_is_reused_without_encoding(beir, tmp_path):
    out = tmp_path / "out"
    first, triplets = run(beir, out, k=2, rank_max=6)
    before = {name: (out / name).read_bytes() for name in OUTPUT_FILES}
    encoder = TableEncoder()
    again, _ = run(beir, out, encoder=encoder, k=2, rank_max=6, refresh=2)  # not in the fingerprint
    assert again.reused and encoder.encoded == [] and again.counts == first.counts
    assert {name: (out / name).read_bytes() for name in OUTPUT_FILES} == before
    meta = json.loads((out / "meta.json").read_text())
    assert meta["triplets_sha256"] == hashlib.sha256(before["triplets.jsonl"]).hexdigest()
    assert meta["rows"] == len(triplets) == len(ROWS)
    other_batch, _ = run(beir, out, encoder=TableEncoder(), k=2, rank_max=6, batch_size=3)
    assert not other_batch.reused  # the batch size changes embeddings in the last bits: mined again


@pytest.mark.parametrize("damage", ["truncate triplets", "delete meta", "corrupt meta", "change k", "change extra"])
def test_partial_or_different_run_is_mined_again(beir, tmp_path, damage):
    out = tmp_path / "out"
    _, expected = run(beir, out, k=2, rank_max=6)
    settings, extra = {"k": 2, "rank_max": 6}, {"model": "table"}
    if damage == "truncate triplets":
        lines = (out / "triplets.jsonl").read_text().splitlines(keepends=True)
        (out / "triplets.jsonl").write_text("".join(lines[:-1]))
    elif damage == "delete meta":
        (out / "meta.json").unlink()
    elif damage == "corrupt meta":
        (out / "meta.json").write_text('{"fingerprint": ')
    elif damage == "change k":
        settings["k"] = 1
        expected = [{**row, "negatives": row["negatives"][:1]} for row in expected]
    else:
        extra = {"model": "table", "epoch": 1}
    encoder = TableEncoder()
    report, triplets = run(beir, out, encoder=encoder, extra=extra, **settings)
    assert not report.reused and encoder.encoded  # encoded again
    assert triplets == expected
    assert {path.name for path in out.iterdir()} == OUTPUT_FILES  # nothing partial or temporary left


def test_cache_shares_a_complete_set_across_output_folders(beir, tmp_path):
    """A run in one folder keeps its set in the cache; a run elsewhere with the same model, data and
    settings copies it byte for byte without encoding; other settings or another model mine again."""
    cache = tmp_path / "cache"
    first, triplets = run(beir, tmp_path / "a", k=2, rank_max=6, cache=str(cache))
    assert not first.reused
    entries = [path for path in cache.iterdir()]
    assert len(entries) == 1 and {path.name for path in entries[0].iterdir()} == OUTPUT_FILES
    assert entries[0].name == json.loads((tmp_path / "a" / "meta.json").read_text())["fingerprint"]
    encoder = TableEncoder()
    copied, again = run(beir, tmp_path / "b", encoder=encoder, k=2, rank_max=6, cache=str(cache / "."))
    assert copied.reused and encoder.encoded == [] and again == triplets and copied.counts == first.counts
    for name in OUTPUT_FILES:
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
    other = TableEncoder()
    changed, _ = run(beir, tmp_path / "c", encoder=other, k=1, rank_max=6, cache=str(cache))
    assert not changed.reused and other.encoded
    model = TableEncoder()
    another_model, _ = run(
        beir, tmp_path / "d", encoder=model, extra={"model": "other"}, k=2, rank_max=6, cache=str(cache)
    )
    assert not another_model.reused and model.encoded
    assert len(list(cache.iterdir())) == 3 and not list(cache.glob(".*"))  # nothing temporary left


def test_bf16_embeddings_are_a_different_fingerprint(beir, tmp_path):
    """An encoder in bf16 ranks otherwise: a set mined in full precision is not reused by it, nor
    the other way round (float32's fingerprint is what it was before the key existed)."""
    _, _ = run(beir, tmp_path / "out", k=2, rank_max=6)
    half = TableEncoder()
    half.bf16 = True
    report, _ = run(beir, tmp_path / "out", encoder=half, k=2, rank_max=6)
    assert not report.reused and half.encoded
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["fingerprint_extra"]["bf16"] is True
    full = TableEncoder()
    again, _ = run(beir, tmp_path / "out", encoder=full, k=2, rank_max=6)
    assert not again.reused and full.encoded


def test_a_set_reused_in_its_own_folder_is_kept_in_the_cache_too(beir, tmp_path):
    run(beir, tmp_path / "a", k=2, rank_max=6)  # no cache yet
    cache = tmp_path / "cache"
    reused, _ = run(beir, tmp_path / "a", k=2, rank_max=6, cache=str(cache))
    assert reused.reused and len(list(cache.iterdir())) == 1
    encoder = TableEncoder()
    elsewhere, _ = run(beir, tmp_path / "b", encoder=encoder, k=2, rank_max=6, cache=str(cache))
    assert elsewhere.reused and encoder.encoded == []


def test_a_damaged_cache_entry_is_mined_again_and_replaced(beir, tmp_path):
    cache = tmp_path / "cache"
    _, expected = run(beir, tmp_path / "a", k=2, rank_max=6, cache=str(cache))
    (entry,) = cache.iterdir()
    lines = (entry / "triplets.jsonl").read_text().splitlines(keepends=True)
    (entry / "triplets.jsonl").write_text("".join(lines[:-1]))  # a copy cut short
    encoder = TableEncoder()
    report, triplets = run(beir, tmp_path / "b", encoder=encoder, k=2, rank_max=6, cache=str(cache))
    assert not report.reused and encoder.encoded and triplets == expected
    assert (entry / "triplets.jsonl").read_bytes() == (tmp_path / "a" / "triplets.jsonl").read_bytes()


def test_an_unwritable_cache_is_refused_before_encoding(beir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    encoder = TableEncoder()
    with pytest.raises(DataError, match=r"data.hard_negatives.cache: .*file exists and is not a directory"):
        run(beir, tmp_path / "a", encoder=encoder, k=2, rank_max=6, cache=str(blocker))
    assert encoder.encoded == []


def test_outputs_leave_no_temporary_files(beir, tmp_path):
    out = tmp_path / "nested" / "out"
    for k in (1, 2):
        run(beir, out, k=k, rank_max=6)
    assert {path.name for path in out.iterdir()} == OUTPUT_FILES


# ---------------------------------------------------------------- config and CLI


@pytest.mark.parametrize(
    "settings,key",
    [
        ({"k": -1}, "data.hard_negatives.k"),
        ({"rank_min": 0}, "data.hard_negatives.rank_min"),
        ({"rank_min": 5, "rank_max": 4}, "data.hard_negatives.rank_max"),
        ({"k": 5, "rank_min": 3, "rank_max": 6}, "data.hard_negatives.k"),
        ({"max_relative": 0.0}, "data.hard_negatives.max_relative"),
        ({"max_relative": float("nan")}, "data.hard_negatives.max_relative"),
        ({"max_relative": float("inf")}, "data.hard_negatives.max_relative"),
        ({"max_score": float("nan")}, "data.hard_negatives.max_score"),
        ({"sample": "best"}, "data.hard_negatives.sample"),
        ({"refresh": -1}, "data.hard_negatives.refresh"),
    ],
)
def test_bad_config_names_its_key(settings, key):
    with pytest.raises(ValueError, match=f"^{key}: "):
        check_mine_config(replace(MineConfig(), **settings))
    check_mine_config(MineConfig(k=4, rank_min=3, rank_max=6, max_relative=None, sample="random"))


def test_cli_with_a_real_encoder_matches_numpy(tiny_bert, tmp_path, capsys):
    """The tiny random BERT, corpus = the training passages, no score filter: each question's
    negatives are its top-ranked passages not known relevant, by a direct numpy ranking."""
    texts = random_texts(30, seed=3)
    questions = [texts[i][:40] for i in range(0, 24, 2)]
    rows = [(questions[i // 2], texts[i]) for i in range(24)]  # each question asked by two rows
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"anchor": a, "positive": p}) + "\n" for a, p in rows))
    report = main(
        [
            "--train",
            str(train),
            "--out",
            str(tmp_path / "out"),
            "--model",
            str(tiny_bert),
            "--k",
            "2",
            "--rank-max",
            "6",
            "--max-relative",
            "none",
        ]
    )
    assert "Hard negatives mined" in capsys.readouterr().out

    encoder = Encoder.from_config(ModelConfig(str(tiny_bert)))
    passages = list(dict.fromkeys(p for _, p in rows))
    q_emb = torch.nn.functional.normalize(encoder.encode(questions), dim=-1).numpy()
    p_emb = torch.nn.functional.normalize(encoder.encode(passages), dim=-1).numpy()
    order = np.argsort(-(q_emb @ p_emb.T), axis=1, kind="stable")[:, :6]  # (Q, 6)
    expected = {
        q: [passages[j] for j in order[i] if (q, passages[j]) not in set(rows)][:2] for i, q in enumerate(questions)
    }
    triplets = read_jsonl(tmp_path / "out" / "triplets.jsonl")
    assert [(row["anchor"], row["positive"]) for row in triplets] == rows
    assert all(row["negatives"] == expected[row["anchor"]] for row in triplets)
    in_top = sum((q, passages[j]) in set(rows) for i, q in enumerate(questions) for j in order[i])
    assert report.counts["removed_relevant"] == in_top


def test_cli_cache_reuses_a_set_mined_for_another_folder(tiny_bert, tmp_path, capsys):
    texts = random_texts(12, seed=5)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"anchor": t[:30], "positive": t}) + "\n" for t in texts))
    common = ["--train", str(train), "--model", str(tiny_bert), "--k", "1", "--rank-max", "4", "--cache"]
    main(common + [str(tmp_path / "cache"), "--out", str(tmp_path / "a")])
    assert "Hard negatives mined" in capsys.readouterr().out
    main(common + [str(tmp_path / "cache"), "--out", str(tmp_path / "b")])
    assert "Hard negatives reused" in capsys.readouterr().out
    assert (tmp_path / "b" / "triplets.jsonl").read_bytes() == (tmp_path / "a" / "triplets.jsonl").read_bytes()
    (tmp_path / "blocker").write_text("")
    with pytest.raises(SystemExit, match=r"^error: --cache .*blocker: exists and is not a directory"):
        main(common + [str(tmp_path / "blocker"), "--out", str(tmp_path / "c")])


def test_cli_mines_again_when_the_model_under_that_name_was_retrained(tmp_path, capsys):
    """mine.py fingerprints the weights, not only the model's name: a model replaced in place (a
    run retrained with output.overwrite) mines again, here and through the cache."""
    texts = random_texts(12, seed=5)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"anchor": t[:30], "positive": t}) + "\n" for t in texts))
    model = tmp_path / "model"
    make_tiny_bert(model)
    common = ["--train", str(train), "--model", str(model), "--k", "1", "--rank-max", "4"]
    main([*common, "--out", str(tmp_path / "a"), "--cache", str(tmp_path / "cache")])
    assert "Hard negatives mined" in capsys.readouterr().out
    from transformers import AutoModel

    retrained = AutoModel.from_pretrained(model)  # the same architecture and name, other weights
    with torch.no_grad():
        for parameter in retrained.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    retrained.save_pretrained(model)
    main([*common, "--out", str(tmp_path / "a")])
    assert "Hard negatives mined" in capsys.readouterr().out
    main([*common, "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "cache")])
    assert "Hard negatives mined" in capsys.readouterr().out


def test_cli_bm25_tokens_decide_the_negative(tmp_path, capsys):
    """--source bm25: "Rule 3.2.1" matches the audit rule only when rule numbers are tokens. By hand:
    the first question's tokens are rule, say, record (+ 3.2.1); the records passage and the audit
    passage match rule and record alike, and the records passage, shorter, ranks first under words;
    under references the audit passage also matches 3.2.1, a token no other passage holds."""
    records, audit = "Records under Rule 5.5.5 in a register.", "Audit Rule 3.2.1 sets audit duties for records."
    rows = [
        ("What does Rule 3.2.1 say about records?", "Rule 3.2.1 requires records kept."),
        ("What does Rule 4.4.4 require for accounts?", "Rule 4.4.4 requires accounts kept."),
        ("Where is the register under 5.5.5?", records),
        ("What duties does the audit rule set?", audit),
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"anchor": a, "positive": p}) + "\n" for a, p in rows))
    common = ["--train", str(train), "--out", str(tmp_path / "out"), "--source", "bm25", "--k", "1"]
    common += ["--max-relative", "none"]
    for tokens, negative in (("words", records), ("references", audit), ("words", records)):
        main([*common, "--bm25-tokens", tokens])
        assert "Hard negatives mined" in capsys.readouterr().out  # another setting: never the other's file
        assert read_jsonl(tmp_path / "out" / "triplets.jsonl")[0]["negatives"] == [negative], tokens


@pytest.mark.parametrize(
    "args,message",
    [
        (["--train", "{tmp}/missing.jsonl"], "no such file"),
        (["--train", "{tmp}/missing.jsonl", "--rank-min", "0"], "--rank-min: 0 must be >= 1"),
        (["--train", "{tmp}/missing.jsonl", "--qrels-split", "train"], "--qrels-split needs --corpus"),
    ],
)
def test_cli_errors_exit_with_a_message(tmp_path, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(tmp=tmp_path) for arg in args] + ["--out", str(tmp_path / "out")])
    assert str(exit_info.value).startswith("error: ") and message in str(exit_info.value)
