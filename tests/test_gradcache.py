"""Gradient caching, and the step without the cache, against plain backpropagation; micro-batch
order; RNG replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from accelerate import Accelerator

import train
from data import PairsData, index_texts
from helpers import random_texts
from losses import LossSpec, infonce_per_dim, matryoshka_infonce
from model import Encoder, ModelConfig
from training import gradcache
from training.config import Config, TrainConfig

DIMS, WEIGHTS = [32, 16, 8], [1.0, 0.5, 0.25]


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def tiny_encoder(tiny_bert, dropout: bool) -> Encoder:
    encoder = train.load_encoder(Config(model=ModelConfig(str(tiny_bert))), "no")
    return encoder.train(dropout)


def step_batch(encoder: Encoder, rows: int = 11, negatives: int = 1) -> gradcache.StepBatch:
    """Random texts with a repeated positive and a repeated question, so the masks are exercised."""
    anchors, positives = random_texts(rows, seed=3, max_words=10), random_texts(rows, seed=4)
    positives[5] = positives[1]
    anchors[7] = anchors[2]
    texts = random_texts(rows * negatives, seed=5)
    negs = [texts[i * negatives : (i + 1) * negatives] for i in range(rows)]
    table = index_texts(PairsData(anchors, positives, negs, "test"))
    return gradcache.make_step_batch(table, train.tokenize_table(encoder, table), np.arange(rows), 0, 1)


def reference_loss(encoder: Encoder, batch: gradcache.StepBatch, reps: torch.Tensor) -> torch.Tensor:
    b = batch.share
    d = reps[b:]  # (b + b·k, D): positives then negatives, as on one process
    per_dim = infonce_per_dim(reps[:b], d, LossSpec(DIMS), batch.labels, batch.known)
    return matryoshka_infonce(per_dim, WEIGHTS)


def grads_of(encoder: Encoder) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in encoder.parameters() if p.requires_grad])


STEPS = {"cache": gradcache.gradcache_step_accumulating, "direct": gradcache.direct_step_accumulating}


def gradcache_grads(encoder, batch, micro_batch, accelerator, step: str = "cache") -> tuple[torch.Tensor, torch.Tensor]:
    encoder.zero_grad(set_to_none=False)
    torch.manual_seed(1234)
    embedder = gradcache.Embedder(encoder, encoder, accelerator)
    loss, _ = STEPS[step](embedder, batch, LossSpec(DIMS, WEIGHTS), micro_batch)
    return loss, grads_of(encoder).clone()


def assert_grads_close(ours: torch.Tensor, want: torch.Tensor) -> None:
    scale = want.abs().max()
    assert scale > 0
    assert (ours - want).abs().max() <= 1e-5 * scale


@pytest.mark.parametrize("step", ["cache", "direct"])
@pytest.mark.parametrize("micro_batch", [4, 5, 11, 64])  # uneven last chunk, exact chunks, one chunk
def test_gradcache_equals_plain_backprop_through_the_same_micro_batches(tiny_bert, accelerator, micro_batch, step):
    """Dropout on: the reference forwards the same chunks with grad, in the same order, from the same seed."""
    encoder = tiny_encoder(tiny_bert, dropout=True)
    batch = step_batch(encoder)
    loss, ours = gradcache_grads(encoder, batch, micro_batch, accelerator, step)

    encoder.zero_grad(set_to_none=False)
    torch.manual_seed(1234)
    chunks = gradcache.plan_micro_batches([len(ids) for ids in batch.token_ids], micro_batch)
    parts = [encoder(**encoder.pad([batch.token_ids[i] for i in rows.tolist()])) for rows in chunks]
    reps = torch.cat(parts)[torch.argsort(torch.cat(chunks))]  # back to input order
    want_loss = reference_loss(encoder, batch, reps)
    want_loss.backward()
    assert loss.item() == pytest.approx(want_loss.item(), rel=1e-6)
    assert_grads_close(ours, grads_of(encoder))


@pytest.mark.parametrize("step", ["cache", "direct"])
@pytest.mark.parametrize("micro_batch", [3, 7, 11])
@pytest.mark.parametrize("negatives", [0, 2])
def test_gradcache_equals_one_full_batch_forward(tiny_bert, accelerator, micro_batch, negatives, step):
    """Dropout off (its masks depend on how the batch is cut): one forward of everything, no chunks."""
    encoder = tiny_encoder(tiny_bert, dropout=False)
    batch = step_batch(encoder, negatives=negatives)
    loss, ours = gradcache_grads(encoder, batch, micro_batch, accelerator, step)

    encoder.zero_grad(set_to_none=False)
    want_loss = reference_loss(encoder, batch, encoder(**encoder.pad(batch.token_ids)))
    want_loss.backward()
    assert loss.item() == pytest.approx(want_loss.item(), rel=1e-5)
    assert_grads_close(ours, grads_of(encoder))


@pytest.mark.parametrize("micro_batch", [4, 11])
def test_the_step_without_the_cache_draws_the_same_dropout_and_leaves_the_rng_where_the_cache_does(
    tiny_bert, accelerator, micro_batch
):
    """Dropout on: the same masks (so the same loss and gradient), and the next step draws the same."""
    encoder = tiny_encoder(tiny_bert, dropout=True)
    batch = step_batch(encoder, negatives=1)
    results = {}
    for step in STEPS:
        loss, grads = gradcache_grads(encoder, batch, micro_batch, accelerator, step)
        results[step] = loss, grads, torch.get_rng_state()
    (cache_loss, cache_grads, cache_rng), (direct_loss, direct_grads, direct_rng) = results.values()
    assert direct_loss.item() == pytest.approx(cache_loss.item(), rel=1e-6)
    assert_grads_close(direct_grads, cache_grads)
    assert torch.equal(direct_rng, cache_rng)
    torch.manual_seed(1234)
    with torch.no_grad():
        undropped = encoder.eval()(**encoder.pad(batch.token_ids[:4]))
        dropped = encoder.train()(**encoder.pad(batch.token_ids[:4]))
    assert not torch.allclose(undropped, dropped)  # dropout really is on in this model


def test_length_sorted_micro_batches_return_embeddings_in_input_order(tiny_bert, accelerator):
    encoder = tiny_encoder(tiny_bert, dropout=False)
    token_ids = encoder.tokenize(random_texts(23, seed=8))
    chunks = gradcache.plan_micro_batches([len(ids) for ids in token_ids], 4)
    lengths = [len(token_ids[i]) for rows in chunks for i in rows.tolist()]
    assert lengths == sorted(lengths, reverse=True)  # really sorted, so the test means something
    reps, _ = gradcache.embed_without_grad(gradcache.Embedder(encoder, encoder, accelerator), token_ids, chunks)
    with torch.no_grad():
        one_by_one = torch.cat([encoder(**encoder.pad([ids])) for ids in token_ids])
    torch.testing.assert_close(reps, one_by_one, rtol=1e-5, atol=1e-5)


def test_replayed_micro_batch_draws_the_same_dropout(tiny_bert):
    encoder = tiny_encoder(tiny_bert, dropout=True)
    token_ids = encoder.tokenize(random_texts(6, seed=9))
    batch = encoder.pad(token_ids)
    state = gradcache.capture_rng_state(torch.device("cpu"))
    with torch.no_grad():
        first = encoder(**batch)
    after_first = torch.get_rng_state()
    with gradcache.replayed_rng(state):
        replayed = encoder(**batch)
    with torch.no_grad():
        fresh = encoder(**batch)  # the RNG moved on: a different mask, so dropout really is on
    assert torch.equal(first, replayed.detach())
    assert not torch.equal(first, fresh)
    assert not torch.equal(after_first, torch.get_rng_state())  # `fresh` consumed; the replay did not


def test_cuda_rng_state_is_saved_and_restored(monkeypatch):
    """CI has no GPU: stub torch.cuda and check that the CUDA generator is captured and replayed."""
    cuda = torch.device("cuda", 0)
    calls = []
    fake_state = torch.tensor([7, 7, 7], dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": calls.append(("get", device)) or fake_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": calls.append(("set", state, device)))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)

    state = gradcache.capture_rng_state(cuda)
    assert state.cuda is fake_state and calls == [("get", cuda)]
    calls.clear()
    with gradcache.replayed_rng(state):
        assert any(call[0] == "set" and call[1] is fake_state for call in calls)  # the saved state is in force
    assert calls[-1][0] == "set"  # and the generator is put back afterwards
    cpu_only = gradcache.capture_rng_state(torch.device("cpu"))
    assert cpu_only.cuda is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_replay_on_cuda_draws_the_same_dropout(tiny_bert):
    encoder = tiny_encoder(tiny_bert, dropout=True).cuda()
    batch = {k: v.cuda() for k, v in encoder.pad(encoder.tokenize(random_texts(6, seed=9))).items()}
    state = gradcache.capture_rng_state(torch.device("cuda", torch.cuda.current_device()))
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        first = encoder(**batch)
    with gradcache.replayed_rng(state), torch.autocast("cuda", dtype=torch.bfloat16):
        replayed = encoder(**batch)
    assert torch.equal(first, replayed.detach())


@pytest.mark.parametrize("step", ["cache", "direct"])
def test_gradient_checkpointing_changes_memory_not_gradients(tiny_bert, accelerator, step):
    """Dropout on: checkpointing replays each layer's forward under its saved RNG state too."""
    grads = []
    for checkpointing in (False, True):
        config = Config(model=ModelConfig(str(tiny_bert)), train=TrainConfig(gradient_checkpointing=checkpointing))
        encoder = train.load_encoder(config, "no").train()
        assert encoder.transformer.is_gradient_checkpointing == checkpointing
        grads.append(gradcache_grads(encoder, step_batch(encoder), 4, accelerator, step)[1])
    assert_grads_close(grads[1], grads[0])
