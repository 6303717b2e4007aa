"""The decisions of the GPU paths, taken on a CPU machine (CUDA and flash-attn faked where the
decision reads them): encoding follows the run's precision, flash-attn only with bf16, cuDNN's
attention left out of the forward, each rank binds its own GPU before NCCL starts, and
train.deterministic is given back after a run. The GPU runs themselves are in tests/gpu (skipped
without CUDA)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

import model
import train
from common import processes
from helpers import random_texts
from model import Encoder, ModelConfig, pick_attn_implementation
from training.config import TrainConfig


def test_encoding_follows_the_runs_precision(tiny_bert):
    """`no` encodes in float32 even where bf16 would be the default; `bf16` autocasts (on the CPU
    too: the embeddings move by bf16's rounding, no more)."""
    texts = random_texts(12, seed=3)
    full = Encoder.from_config(ModelConfig(str(tiny_bert)), "no")
    half = Encoder.from_config(ModelConfig(str(tiny_bert)), "bf16")
    assert (full.bf16, half.bf16) == (False, True)
    a, b = full.encode(texts), half.encode(texts)
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=3e-2)
    config = train.Config(model=ModelConfig(str(tiny_bert)))
    assert train.load_encoder(config, "no").bf16 is False and train.load_encoder(config, "bf16").bf16 is True


def test_flash_attention_is_chosen_only_for_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else real_find_spec(name, *a)
    )
    assert pick_attn_implementation("auto", bf16=True) == "flash_attention_2"
    assert pick_attn_implementation("auto", bf16=False) == "sdpa"  # evaluate/mine --mixed-precision no
    assert pick_attn_implementation("auto") == "flash_attention_2"  # auto: bf16 on CUDA
    assert model.resolve_bf16("auto") and not model.resolve_bf16("no")
    with pytest.raises(ValueError, match="one of auto, bf16, no"):
        model.resolve_bf16("fp16")


def test_the_forward_leaves_cudnn_attention_out_and_restores_the_callers_setting(tiny_bert):
    """cuDNN's SDPA builds a plan for every new input shape, and each of our batches has its own
    padded length: on an H200 a first bf16 pass over a corpus ran 1.7-2.7x slower than float32.
    The transformer runs with it off (flash, memory-efficient and math kept); the caller's settings
    come back after."""
    encoder = Encoder.from_config(ModelConfig(str(tiny_bert)), "no")
    assert encoder.transformer.config._attn_implementation == "sdpa"
    backends = torch.backends.cuda
    seen = []

    def record(*_):
        seen.append((backends.cudnn_sdp_enabled(), backends.mem_efficient_sdp_enabled(), backends.flash_sdp_enabled()))

    encoder.transformer.register_forward_pre_hook(record)
    before = (backends.cudnn_sdp_enabled(), backends.mem_efficient_sdp_enabled(), backends.flash_sdp_enabled())
    assert before[0], "cuDNN attention is on by default: this test would prove nothing"
    encoder.encode(random_texts(5, seed=1), batch_size=2)
    assert seen == [(False, True, True)] * 3
    assert (backends.cudnn_sdp_enabled(), backends.mem_efficient_sdp_enabled(), backends.flash_sdp_enabled()) == before


def test_gradient_checkpointings_recompute_leaves_cudnn_attention_out_too(tiny_bert):
    """With gradient checkpointing each layer runs again in backward, outside the forward's `with`:
    the recompute must choose kernels as the forward did (cuDNN off there as well)."""
    config = train.Config(model=ModelConfig(str(tiny_bert)), train=TrainConfig(gradient_checkpointing=True))
    encoder = train.load_encoder(config, "no").train()
    assert encoder.transformer.is_gradient_checkpointing
    seen = []
    attention = encoder.transformer.encoder.layer[0].attention
    attention.register_forward_pre_hook(lambda *_: seen.append(torch.backends.cuda.cudnn_sdp_enabled()))
    batch = encoder.pad(encoder.tokenize(random_texts(4, seed=2)))
    encoder(**batch).sum().backward()
    assert seen == [False, False], "one forward and one recompute, both without cuDNN attention"
    assert torch.backends.cuda.cudnn_sdp_enabled()


def test_each_rank_binds_its_gpu_before_nccl_starts(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(processes.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(
        processes.dist, "init_process_group", lambda backend, **kw: calls.append(("init", backend, kw["device_id"]))
    )
    device = processes.start_processes()
    assert device == torch.device("cuda", 1)
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl", torch.device("cuda", 1))]


def test_train_deterministic_is_given_back_after_the_run(tiny_bert, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    questions, passages = random_texts(16, seed=5, max_words=8), random_texts(16, seed=6)
    pairs.write_text("".join(json.dumps({"anchor": q, "positive": p}) + "\n" for q, p in zip(questions, passages)))
    assert not torch.are_deterministic_algorithms_enabled()
    seen = []
    hooks = train.Hooks(prepared=lambda *_: seen.append(torch.are_deterministic_algorithms_enabled()))
    args = ["--model.name_or_path", str(tiny_bert), "--data.train", str(pairs), "--train.global_batch", "8"]
    args += ["--train.deterministic", "true", "--report.report_to", "[]", "--output.dir", str(tmp_path / "run")]
    train.main(args, hooks)
    assert seen == [True]  # on during the run (its evaluations and mining included)
    assert not torch.are_deterministic_algorithms_enabled()  # and off again after it
