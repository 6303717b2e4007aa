"""The encoder against sentence-transformers: reading its files, embedding, and saving for it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Normalize, Transformer
from sentence_transformers.sentence_transformer.modules import Pooling

from helpers import make_tiny_bert, random_texts
from model import PACKAGED_MINILM, Encoder, ModelConfig, pool

LEGAL_TEXTS = [
    "What must a Relevant Person do under regulation 11(1) of the LODR Regulations?",
    "An Authorised Person must notify the Regulator within 24 hours of becoming aware of a breach.",
    "Rule 3.2.1 applies subject to the exemptions in Chapter 9.",
    "Short.",
    "In these Rules, 'Client Money' has the meaning given in section 14 of the FSMR. " * 40,  # > 256 tokens
]


def st_model(tiny_dir: Path, pooling: str, normalize: bool, max_length: int = 64) -> SentenceTransformer:
    transformer = Transformer(str(tiny_dir), max_seq_length=max_length)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, device="cpu")


def test_pool_matches_float64_loop():
    torch.manual_seed(0)
    states = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])  # right, none, left padded
    for mode in ("cls", "mean", "lasttoken", "max"):
        got = pool(states, mask, mode)
        for row in range(3):
            real = [t for t in range(5) if mask[row, t]]
            rows = states[row].double()[real]
            want = {"cls": rows[0], "lasttoken": rows[-1], "mean": rows.sum(0) / len(real), "max": rows.max(0).values}[
                mode
            ]
            torch.testing.assert_close(got[row].double(), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "pooling,normalize,padding_side",
    [("mean", True, "right"), ("cls", False, "right"), ("lasttoken", True, "left"), ("max", False, "right")],
)
def test_reads_sentence_transformers_6_layout_and_saves_back(tmp_path, pooling, normalize, padding_side):
    tiny = make_tiny_bert(tmp_path / "tiny")
    reference = st_model(tiny, pooling, normalize, max_length=48)
    reference.tokenizer.padding_side = padding_side
    reference.save(str(tmp_path / "st"))
    encoder = Encoder.from_config(ModelConfig(tmp_path / "st"))
    assert (encoder.spec.pooling, encoder.spec.normalize, encoder.spec.max_length) == (pooling, normalize, 48)
    texts = random_texts(30, seed=2, max_words=80)  # some longer than max_length
    # Left padding shifts BERT's absolute positions, so results depend on how batches are cut:
    # compare unpadded (batch size 1) there.
    ours = encoder.encode(texts, batch_size=7 if padding_side == "right" else 1)
    want = reference.encode(texts, batch_size=4 if padding_side == "right" else 1, convert_to_tensor=True)
    torch.testing.assert_close(ours, want, rtol=0, atol=1e-5)
    encoder.save(tmp_path / "ours")
    reloaded = SentenceTransformer(str(tmp_path / "ours"), device="cpu")
    assert reloaded.max_seq_length == 48
    torch.testing.assert_close(
        reloaded.encode(texts, batch_size=1, convert_to_tensor=True),
        encoder.encode(texts, batch_size=1),
        rtol=0,
        atol=1e-5,
    )


def test_reads_older_layout_flags_prompts_and_lowercasing(tmp_path):
    """modules.json + 1_Pooling flags + sentence_bert_config.json + config_sentence_transformers.json."""
    model_dir = make_tiny_bert(tmp_path / "old")
    (model_dir / "1_Pooling").mkdir()
    files = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ],
        "1_Pooling/config.json": {
            "word_embedding_dimension": 32,
            "pooling_mode_cls_token": True,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
        "sentence_bert_config.json": {"max_seq_length": 20, "do_lower_case": True},
        "config_sentence_transformers.json": {"prompts": {"query": "w1 w2 ", "passage": "w3 "}},
    }
    for name, content in files.items():
        (model_dir / name).write_text(json.dumps(content))
    encoder = Encoder.from_config(ModelConfig(str(model_dir)))
    spec = encoder.spec
    assert (spec.pooling, spec.normalize, spec.max_length, spec.do_lower_case) == ("cls", False, 20, True)
    assert (spec.query_prompt, spec.document_prompt) == ("w1 w2 ", "w3 ")
    reference = SentenceTransformer(str(model_dir), device="cpu")
    texts = [t.upper() for t in random_texts(10, seed=3)]
    torch.testing.assert_close(
        encoder.encode_queries(texts), reference.encode_query(texts, convert_to_tensor=True), rtol=0, atol=1e-5
    )
    # A "passage" prompt is the document prompt (the e5 convention). sentence-transformers 6.x's
    # encode_document would pick its own empty default "document" prompt first, so name it.
    want = reference.encode(texts, prompt_name="passage", convert_to_tensor=True)
    torch.testing.assert_close(encoder.encode_documents(texts), want, rtol=0, atol=1e-5)


def test_config_overrides_model_files(tiny_bert):
    config = ModelConfig(tiny_bert, pooling="cls", normalize=False, max_length=16, query_prompt="w5 ")
    spec = Encoder.from_config(config).spec
    assert (spec.pooling, spec.normalize, spec.max_length, spec.query_prompt) == ("cls", False, 16, "w5 ")


def test_encode_restores_input_order(tiny_bert):
    encoder = Encoder.from_config(ModelConfig(tiny_bert))
    texts = random_texts(25, seed=4)
    together = encoder.encode(texts, batch_size=6)
    one_by_one = torch.cat([encoder.encode([t]) for t in texts])
    torch.testing.assert_close(together, one_by_one, rtol=0, atol=1e-5)


def test_minilm_matches_sentence_transformers_and_survives_save(tmp_path, minilm_dir):
    encoder = Encoder.from_config(ModelConfig(PACKAGED_MINILM, query_prompt="query: "))
    assert encoder.spec.max_length == 256  # the model's own, not the tokenizer's 512
    reference = SentenceTransformer(str(minilm_dir), device="cpu")
    ours = encoder.encode(LEGAL_TEXTS, batch_size=2)
    assert (ours - reference.encode(LEGAL_TEXTS, convert_to_tensor=True)).abs().max() < 1e-5
    encoder.save(tmp_path / "minilm")
    reloaded = SentenceTransformer(str(tmp_path / "minilm"), device="cpu")
    assert (reloaded.encode(LEGAL_TEXTS, convert_to_tensor=True) - ours).abs().max() < 1e-5
    assert reloaded.prompts["query"] == "query: " and reloaded.max_seq_length == 256
    queries = LEGAL_TEXTS[:2]
    assert (reloaded.encode_query(queries, convert_to_tensor=True) - encoder.encode_queries(queries)).abs().max() < 1e-5


def test_save_replaces_atomically_and_leaves_no_temporary(tmp_path, tiny_bert):
    encoder = Encoder.from_config(ModelConfig(tiny_bert))
    target = tmp_path / "out"
    encoder.save(target)
    encoder.spec.max_length = 17
    encoder.save(target)  # overwriting an existing model directory
    assert json.loads((target / "sentence_bert_config.json").read_text())["max_seq_length"] == 17
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("damage", ["truncated", "edited", "lost"])
def test_a_saved_model_whose_files_do_not_match_its_manifest_is_refused(tmp_path, tiny_bert, damage):
    """The manifest is written last and checked on load; the model card (README.md) may be edited."""
    target = Encoder.from_config(ModelConfig(tiny_bert)).save(tmp_path / "model")
    listed = json.loads((target / "complete.json").read_text())["files"]
    assert {"model.safetensors", "config.json", "modules.json", "1_Pooling/config.json"} <= set(listed)
    (target / "README.md").write_text("my own card")
    Encoder.from_config(ModelConfig(str(target)))  # loads: the card is not checked
    if damage == "truncated":
        weights = (target / "model.safetensors").read_bytes()
        (target / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    elif damage == "edited":
        (target / "sentence_bert_config.json").write_text('{"max_seq_length": 9, "do_lower_case": false}')
    else:
        (target / "tokenizer_config.json").unlink()
    with pytest.raises(ValueError, match="damaged or incomplete: .*(bytes|checksum|missing)"):
        Encoder.from_config(ModelConfig(str(target)))


def test_the_next_run_removes_what_a_crashed_save_left(tmp_path):
    """A crashed save's temporary model and checkpoint directories, and replaced copies, go at the
    next start; those of a live process (this test's parent shell, pid 1) stay."""
    from common.files import remove_stale
    from training.checkpoint import remove_stale_saves

    out = tmp_path / "run"
    stale = [out / ".model.tmp-999999999", out / ".model.old-999999999", out / "checkpoints" / "step-00000004.tmp"]
    stale.append(out / "checkpoints" / ".step-00000002.old-999999999")
    live = out / ".model.tmp-1"
    (out / "model").mkdir(parents=True)  # the replacements finished: the .old copies are leftovers
    (out / "checkpoints" / "step-00000002").mkdir(parents=True)
    for path in [*stale, live]:
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(b"partial")
    removed = remove_stale_saves(out) + remove_stale(out, [".model.tmp-*", ".model.old-*"])
    assert sorted(removed) == sorted(stale) and not any(p.exists() for p in stale) and live.exists()


REMOTE_CONFIG = """from transformers import BertConfig


class TinyRemoteConfig(BertConfig):
    model_type = "tiny-remote"
"""
REMOTE_MODEL = """from transformers import BertModel

from .configuration_tiny import TinyRemoteConfig


class TinyRemoteModel(BertModel):
    config_class = TinyRemoteConfig
"""


def test_remote_code_is_opt_in_and_saved_with_the_model(tmp_path):
    """A model whose code lives in its directory loads only with trust_remote_code, and save()
    writes that code beside the weights so sentence-transformers loads it from there alone."""
    model_dir = make_tiny_bert(tmp_path / "remote")
    (model_dir / "configuration_tiny.py").write_text(REMOTE_CONFIG)
    (model_dir / "modeling_tiny.py").write_text(REMOTE_MODEL)
    config = json.loads((model_dir / "config.json").read_text())
    config.update(
        model_type="tiny-remote",
        auto_map={"AutoConfig": "configuration_tiny.TinyRemoteConfig", "AutoModel": "modeling_tiny.TinyRemoteModel"},
    )
    (model_dir / "config.json").write_text(json.dumps(config))
    assert ModelConfig().trust_remote_code is False
    with pytest.raises(ValueError, match="trust_remote_code"):
        Encoder.from_config(ModelConfig(model_dir))
    encoder = Encoder.from_config(ModelConfig(model_dir, trust_remote_code=True))
    assert type(encoder.transformer).__name__ == "TinyRemoteModel"
    texts = random_texts(8, seed=9)
    ours = encoder.encode(texts)
    encoder.save(tmp_path / "saved")
    shutil.rmtree(model_dir)  # the source of the code is gone: only the saved copy remains
    assert (tmp_path / "saved" / "modeling_tiny.py").is_file()
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu", trust_remote_code=True)
    assert type(reloaded[0].auto_model).__name__ == "TinyRemoteModel"
    torch.testing.assert_close(reloaded.encode(texts, convert_to_tensor=True), ours, rtol=0, atol=1e-5)


def test_pad_pads_only_to_the_longest_in_the_batch(tiny_bert):
    encoder = Encoder.from_config(ModelConfig(tiny_bert))
    batch = encoder.pad([[2, 9, 10, 3], [2, 9, 3]])
    assert batch["input_ids"].tolist() == [[2, 9, 10, 3], [2, 9, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    encoder.tokenizer.padding_side = "left"
    assert encoder.pad([[2, 9, 10, 3], [2, 9, 3]])["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]


def test_a_replacement_cut_between_its_renames_is_undone_not_deleted(tmp_path):
    """The old copy renamed aside, the new one not yet in place: the old one is the only complete
    copy, and the next start puts it back before cleaning (model and checkpoint alike)."""
    from common.files import recover_replaced, remove_stale
    from training.checkpoint import remove_stale_saves

    out = tmp_path / "run"
    old_model, new_model = out / ".model.old-999999999", out / ".model.tmp-999999999"
    old_step = out / "checkpoints" / ".step-00000004.old-999999999"
    for path in (old_model, new_model, old_step):
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(b"complete" if path != new_model else b"part")
    assert recover_replaced(out / "model") == out / "model"
    remove_stale(out, [".model.tmp-*", ".model.old-*"])
    assert (out / "model" / "model.safetensors").read_bytes() == b"complete" and not new_model.exists()
    remove_stale_saves(out)
    assert (out / "checkpoints" / "step-00000004" / "model.safetensors").read_bytes() == b"complete"
    assert not old_step.exists() and recover_replaced(out / "model") is None  # nothing left to restore
