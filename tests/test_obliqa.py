"""On the real regulatory set in ../shared (skipped when absent): the loader, and our metrics
against sentence-transformers' own encode + exact search on a few hundred passages."""

from __future__ import annotations

import pytest
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.util import cos_sim

from data import IRDataset, load_beir
from model import PACKAGED_MINILM, Encoder, ModelConfig
from retrieval.evaluation import evaluate
from retrieval.metrics import METRICS


def test_obliqa_dev_loads(obliqa):
    data = load_beir(obliqa, "dev")
    assert len(data.corpus_ids) == 13012 and len(data.query_ids) == 279
    assert all(docs and all(r > 0 for r in docs.values()) for docs in data.qrels.values())


def small_obliqa(obliqa, n_queries: int = 40, n_passages: int = 300) -> IRDataset:
    """The first dev queries, their relevant passages, and distractors up to `n_passages`."""
    full = load_beir(obliqa, "dev")
    query_ids = full.query_ids[:n_queries]
    keep = {doc for qid in query_ids for doc in full.qrels[qid]}
    for doc in full.corpus_ids:
        if len(keep) >= n_passages:
            break
        keep.add(doc)
    rows = [i for i, doc in enumerate(full.corpus_ids) if doc in keep]
    texts = dict(zip(full.query_ids, full.query_texts))
    return IRDataset(
        [full.corpus_ids[i] for i in rows],
        [full.corpus_texts[i] for i in rows],
        query_ids,
        [texts[q] for q in query_ids],
        {q: full.qrels[q] for q in query_ids},
    )


def test_minilm_metrics_match_sentence_transformers(obliqa, minilm_dir):
    data = small_obliqa(obliqa)
    dims = [384, 128, 32]
    ours = evaluate(Encoder.from_config(ModelConfig(PACKAGED_MINILM)), data, dims=dims, batch_size=32)
    model = SentenceTransformer(str(minilm_dir), device="cpu")
    corpus_emb = model.encode_document(data.corpus_texts, batch_size=32, convert_to_tensor=True)
    relevant = {q: set(docs) for q, docs in data.qrels.items()}
    for dim in dims:
        evaluator = InformationRetrievalEvaluator(
            dict(zip(data.query_ids, data.query_texts)),
            dict(zip(data.corpus_ids, data.corpus_texts)),
            relevant,
            mrr_at_k=[10],
            ndcg_at_k=[10],
            accuracy_at_k=[10],
            precision_recall_at_k=[10, 100],
            map_at_k=[10, 100],
            truncate_dim=dim,
            write_csv=False,
            score_functions={"cosine": cos_sim},
        )
        theirs = next(iter(evaluator.compute_all_metrics(model, corpus_embeddings=corpus_emb[:, :dim]).values()))
        for name in METRICS:
            kind, k = name.split("@")
            assert ours[dim].metrics[name] == pytest.approx(theirs[f"{kind}@k"][int(k)], abs=1e-4), (
                dim,
                name,
            )  # measured: < 5e-7
    assert 0.2 < ours[384].metrics["ndcg@10"] < 1  # a real model on real data: neither broken nor trivial


def test_the_guarded_recipe_is_the_best_one_plus_a_second_eval_set_and_a_mix(obliqa, capsys):
    """configs/obliqa-general.yaml: obliqa-best.yaml's recipe key for key, plus two eval sets and a
    mix; it dry-runs on the real data."""
    from dataclasses import asdict

    import train
    from training.config import eval_sets, load_config

    best = asdict(load_config(["--config", "configs/obliqa-best.yaml"]))
    guarded = load_config(["--config", "configs/obliqa-general.yaml"])
    plain = asdict(guarded)
    for section in ("model", "loss", "train", "lexical"):
        assert plain[section] == best[section], section
    assert {k: v for k, v in plain["data"].items() if k not in ("eval", "mix")} == {
        k: v for k, v in best["data"].items() if k not in ("eval", "mix")
    }
    assert [s.name for s in eval_sets(guarded.data)] == ["obliqa", "quickstart"]
    found = train.main(["--config", "configs/obliqa-general.yaml", "--dry-run"])
    printed = capsys.readouterr().out
    assert found["steps_per_epoch"] == 3317 // (64 - 6)
    assert "each global batch of 64: 58 from" in printed and "6 from samples/quickstart/train_pairs.jsonl" in printed
