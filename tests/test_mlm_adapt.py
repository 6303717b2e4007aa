"""bench/mlm_adapt.py: masked-word training on a corpus lowers the held-out loss (scored on the same
masks before and after), and the saved model is the adapted transformer under the source model's
pooling, checked against sentence-transformers and a hand-written mean pooling."""

from __future__ import annotations

import json

import pytest
import torch

from bench import mlm_adapt
from helpers import write_jsonl


def _counting_corpus(path, count=60):
    """Runs of consecutive words (w5 w6 w7 ...): every masked word follows from its neighbours."""
    rows = [
        {"_id": f"p{i}", "title": "", "text": " ".join(f"w{j}" for j in range(i % 50, i % 50 + 12 + i % 7))}
        for i in range(count)
    ]
    return write_jsonl(path / "corpus.jsonl", rows)


def _args(corpus, out, model, *extra):
    return [
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--model",
        str(model),
        "--batch-size",
        "8",
        "--max-length",
        "64",
        *extra,
    ]


def test_unique_texts_and_held_out_split():
    assert mlm_adapt.unique_texts({"a": "x y", "b": "z", "c": "x y"}) == ["x y", "z"]
    texts = [f"t{i}" for i in range(50)]
    train, held = mlm_adapt.split_held_out(texts, 0.1, seed=3)
    assert len(held) == 5 and sorted(train + held) == sorted(texts) and not set(train) & set(held)
    assert mlm_adapt.split_held_out(texts, 0.1, seed=3) == (train, held)  # seeded
    assert mlm_adapt.split_held_out(texts, 0.1, seed=4)[1] != held
    assert mlm_adapt.split_held_out(texts, 0.0, seed=3) == (texts, [])
    assert len(mlm_adapt.split_held_out(["a", "b"], 0.9, seed=0)[0]) == 1  # one left to train on


def _mean_pooled(model, tokenizer, texts):
    """Reference embedding: masked mean of the last hidden states, L2-normalised (a plain HF model's default)."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state  # (B, T, H)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)


def test_adapts_and_saves_the_trained_transformer(tmp_path, tiny_bert):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    corpus = _counting_corpus(tmp_path)
    args = mlm_adapt.parse_args(
        _args(corpus, tmp_path / "out", tiny_bert, "--epochs", "20", "--lr", "5e-3", "--head-steps", "30")
    )
    texts = mlm_adapt.unique_texts({str(i): t for i, t in enumerate(json.loads(x)["text"] for x in corpus.open())})
    train, held = mlm_adapt.split_held_out(texts, 0.1, args.seed)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForMaskedLM.from_pretrained(tiny_bert)
    record = mlm_adapt.adapt(model, tokenizer, train, held, args)
    assert record["held_out_loss_before"] < record["held_out_loss_fresh_head"]  # the head alone learned some
    assert record["held_out_loss_after"] < record["held_out_loss_before"] - 1.0  # the encoder learned the runs
    from model import Encoder, ModelConfig

    encoder = Encoder.from_config(ModelConfig(name_or_path=str(tiny_bert)), mixed_precision="no")
    assert mlm_adapt.fit_problem(encoder, model) is None
    out = mlm_adapt.save_adapted(model, encoder, tmp_path / "out", record)
    assert json.loads((out / "mlm_adapt.json").read_text())["held_out_loss_after"] == record["held_out_loss_after"]
    probe = ["w3 w4 w5 w6", "w40 w41 w42 w43 w44 w45 w46"]
    expected = _mean_pooled(model.base_model.eval(), tokenizer, probe)
    got = torch.from_numpy(SentenceTransformer(str(out), device="cpu").encode(probe))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    from transformers import AutoModel

    untouched = _mean_pooled(AutoModel.from_pretrained(tiny_bert).eval(), tokenizer, probe)
    assert (got - untouched).abs().max() > 1e-3  # the saved weights are the trained ones, not the source's


def test_held_out_masks_are_the_same_before_and_after(tmp_path, tiny_bert):
    """With learning rates too small to move anything, the losses agree: the same masks each time."""
    corpus = _counting_corpus(tmp_path)
    tiny = ["--epochs", "1", "--lr", "1e-12", "--head-lr", "1e-12", "--held-out", "0.2"]
    record = mlm_adapt.main(_args(corpus, tmp_path / "out", tiny_bert, *tiny))
    assert record["held_out"] == 12 and record["passages"] == 48
    assert record["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")  # CI: the CPU fallback
    fresh, before, after = (record[f"held_out_loss_{k}"] for k in ("fresh_head", "before", "after"))
    assert after == pytest.approx(before, abs=1e-5) and before == pytest.approx(fresh, abs=1e-5)
    assert (tmp_path / "out" / "complete.json").is_file()  # saved through Encoder.save, with its manifest


@pytest.mark.parametrize("flag, value", [("--mask-prob", "1.5"), ("--epochs", "0"), ("--held-out", "1"), ("--lr", "0")])
def test_bad_settings_are_named(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exit_info:
        mlm_adapt.main(_args(tmp_path / "missing.jsonl", tmp_path / "out", "no-such-model", flag, value))
    assert exit_info.value.code != 0 and flag in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_corpus_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match="missing.jsonl"):
        mlm_adapt.main(_args(tmp_path / "missing.jsonl", tmp_path / "out", "no-such-model"))


def test_loss_at_masked_positions_equals_the_models_own(tmp_path, tiny_bert):
    """Logits at masked positions only give the loss transformers computes over every position."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForMaskedLM.from_pretrained(tiny_bert).eval()
    assert mlm_adapt.head_of(model) is model.cls
    rows = mlm_adapt.encode_texts(tokenizer, ["w1 w2 w3 w4 w5 w6 w7 w8", "w9 w10 w11", "w12 " * 30], 64, offsets=False)
    batch = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3, seed=1)(
        mlm_adapt.pad_rows(rows, tokenizer.pad_token_id)
    )
    assert (batch["labels"] != -100).sum() > 3
    with torch.no_grad():
        expected = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss
        torch.testing.assert_close(mlm_adapt.masked_word_loss(model, batch), expected)


def test_batches_group_lengths_and_keep_every_row():
    import random

    rows = [{"input_ids": [0] * n} for n in [5, 50, 6, 48, 7, 49, 8, 47]]
    groups = mlm_adapt.batches(rows, 2, random.Random(0))
    assert sorted(len(r["input_ids"]) for g in groups for r in g) == sorted(len(r["input_ids"]) for r in rows)
    spreads = [max(len(r["input_ids"]) for r in g) - min(len(r["input_ids"]) for r in g) for g in groups]
    assert max(spreads) <= 2  # short with short, long with long
    assert mlm_adapt.batches(rows, 3, None)[0] == rows[:3]  # None: corpus order


def test_a_model_that_cannot_be_loaded_is_one_line_before_training(tmp_path, capsys):
    corpus = _counting_corpus(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        mlm_adapt.main(_args(corpus, tmp_path / "out", tmp_path / "no-model"))
    message = str(exit_info.value.code)
    assert message.startswith("error: --model") and "no-model" in message and "\n" not in message
    assert not (tmp_path / "out").exists() and "passages to train on" not in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="--out .*file: exists and is not a directory"):
        mlm_adapt.main(_args(corpus, tmp_path / "file", tmp_path / "no-model"))


def test_the_head_warms_up_alone_without_the_tied_embeddings(tiny_bert):
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert)
    own = {id(p) for p in mlm_adapt.head_parameters(model)}
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight  # tied
    assert id(model.bert.embeddings.word_embeddings.weight) not in own
    assert id(model.cls.predictions.transform.dense.weight) in own and id(model.cls.predictions.bias) in own
    assert not own & {id(p) for p in model.bert.parameters()}


def test_whole_words_are_masked_together_and_specials_never(minilm_dir):
    """The packaged MiniLM's word pieces: a word's pieces masked all or none, [CLS]/[SEP]/padding
    never, every masked piece [MASK]; and the masked-positions loss on such a batch is the model's own."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    texts = ["The Recognised Investment Exchange shall notify the Regulator forthwith", "Unincorporated"]
    rows = mlm_adapt.encode_texts(tokenizer, texts * 8, 64, offsets=True)
    batch = mlm_adapt.make_collator(tokenizer, 0.4, True, seed=5)(rows)
    labels, inputs = batch["labels"], batch["input_ids"]
    masked = labels != -100
    assert masked.any() and (inputs[masked] == tokenizer.mask_token_id).all()
    specials = torch.isin(labels.new_tensor(mlm_adapt.pad_rows(rows, 0)[0]["input_ids"]), labels.new_tensor([101, 102]))
    assert not masked[0][specials].any() and not masked[batch["attention_mask"] == 0].any()
    for row, row_masked in zip(rows, masked):
        words = tokenizer(tokenizer.decode(row["input_ids"][1:-1]), add_special_tokens=False).word_ids()
        pieces = row_masked[1 : len(row["input_ids"]) - 1].tolist()
        for word in set(words):
            assert len({pieces[i] for i, w in enumerate(words) if w == word}) == 1  # all or none
    assert any(len(set(tokenizer.tokenize(w))) > 1 for w in texts[0].split())  # some words are several pieces
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(minilm_dir).eval()
    with torch.no_grad():
        expected = model(input_ids=inputs, attention_mask=batch["attention_mask"], labels=labels).loss
        torch.testing.assert_close(mlm_adapt.masked_word_loss(model, batch), expected)


def test_a_batch_with_nothing_masked_is_skipped_not_nan(tiny_bert):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForMaskedLM.from_pretrained(tiny_bert)
    rows = mlm_adapt.encode_texts(tokenizer, ["w1", "w2"], 16, offsets=True)
    batch = mlm_adapt.make_collator(tokenizer, 0.01, True, seed=0)(rows)
    batch["labels"][:] = -100  # as a draw that masked nothing would leave it
    assert mlm_adapt.masked_word_loss(model, batch) is None
    assert mlm_adapt.masked_loss(model, [batch]) is None


def test_the_same_seed_gives_the_same_model_and_another_seed_another(tmp_path, tiny_bert):
    from safetensors.torch import load_file

    corpus = _counting_corpus(tmp_path)
    quick = ["--epochs", "1", "--head-steps", "3", "--held-out", "0.2"]
    runs = {
        name: mlm_adapt.main(_args(corpus, tmp_path / name, tiny_bert, *quick, "--seed", seed))
        for name, seed in [("a", "1"), ("b", "1"), ("c", "2")]
    }
    weights = {name: load_file(tmp_path / name / "model.safetensors") for name in runs}
    assert runs["a"]["held_out_loss_after"] == runs["b"]["held_out_loss_after"]
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert runs["a"]["held_out_loss_before"] != runs["c"]["held_out_loss_before"]  # another split and masks
    assert any(not torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"])


def test_decay_groups_exempt_biases_and_norms_and_list_a_tied_weight_once(tiny_bert):
    """training/optim.decay_groups, against the parameter names: decay exactly on the weight
    matrices (not biases, not LayerNorm), frozen parameters left out, the tied decoder weight once."""
    from transformers import AutoModelForMaskedLM

    from training.optim import decay_groups

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert)
    named = dict(model.named_parameters())  # unique tensors: the tied decoder weight appears once
    decayed, plain = (group["params"] for group in decay_groups(model, 0.01))
    expected_plain = {id(p) for n, p in named.items() if n.endswith("bias") or "LayerNorm" in n}
    assert {id(p) for p in plain} == expected_plain and len(plain) == len(expected_plain)
    assert {id(p) for p in decayed} == {id(p) for p in named.values()} - expected_plain
    assert len(decayed) + len(plain) == len(named)  # the tied embedding is not listed twice
    for p in model.base_model.parameters():
        p.requires_grad_(False)
    trainable = [p for group in decay_groups(model, 0.01) for p in group["params"]]
    assert {id(p) for p in trainable} == {id(p) for p in mlm_adapt.head_parameters(model)}
