"""GPU paths, skipped without CUDA (CI has none): run them whenever a GPU is at hand.

    python -m pytest -q tests/gpu

bf16 gradient caching against plain backprop under the same CUDA RNG (SDPA and flash-attn),
faiss-gpu search against CPU search (ties and k past 2,048 included), encoding at the run's
precision, resume on CUDA (its RNG restored), and two GPUs (NCCL) against one.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import train
from data import PairsData, index_texts
from helpers import ROOT, child_env, make_tiny_bert, random_texts
from losses import LossSpec, infonce_per_dim, matryoshka_infonce
from model import ModelConfig
from training import gradcache
from training.config import Config
from training.distributed import make_accelerator

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
DIMS, WEIGHTS = [32, 16], [1.0, 0.5]


def bf16_batch(encoder, rows: int = 12):
    anchors, positives = random_texts(rows, seed=3, max_words=10), random_texts(rows, seed=4)
    table = index_texts(PairsData(anchors, positives, [[] for _ in range(rows)], "gpu"))
    return gradcache.make_step_batch(table, train.tokenize_table(encoder, table), np.arange(rows), 0, 1)


@pytest.mark.parametrize("step", ["cache", "direct"])
@pytest.mark.parametrize("attention", ["sdpa", "flash_attention_2"])
def test_bf16_gradcache_equals_plain_backprop_under_the_same_cuda_rng(tiny_bert, attention, step):
    if attention == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        pytest.skip("flash-attn is not installed")
    config = Config(model=ModelConfig(str(tiny_bert), attn_implementation=attention))
    encoder = train.load_encoder(config, "bf16").cuda().train()  # dropout on
    accelerator = make_accelerator("bf16")
    model = accelerator.prepare(encoder)  # its forward autocasts to bf16
    batch = bf16_batch(encoder)

    encoder.zero_grad(set_to_none=False)
    torch.cuda.manual_seed(1234)
    torch.manual_seed(1234)
    step_fn = gradcache.gradcache_step_accumulating if step == "cache" else gradcache.direct_step_accumulating
    loss, _ = step_fn(gradcache.Embedder(model, encoder, accelerator), batch, LossSpec(DIMS, WEIGHTS), 5)
    ours = torch.cat([p.grad.flatten() for p in encoder.parameters() if p.requires_grad]).clone()

    encoder.zero_grad(set_to_none=False)
    torch.cuda.manual_seed(1234)
    torch.manual_seed(1234)
    chunks = gradcache.plan_micro_batches([len(ids) for ids in batch.token_ids], 5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        parts = [
            encoder(**{k: v.cuda() for k, v in encoder.pad([batch.token_ids[i] for i in rows.tolist()]).items()})
            for rows in chunks
        ]
    reps = torch.cat(parts).float()[torch.argsort(torch.cat(chunks)).cuda()]
    b = batch.share
    want = matryoshka_infonce(
        infonce_per_dim(reps[:b], reps[b:], LossSpec(DIMS), batch.labels.cuda(), batch.known.cuda()), WEIGHTS
    )
    want.backward()
    reference = torch.cat([p.grad.flatten() for p in encoder.parameters() if p.requires_grad])
    assert loss.item() == pytest.approx(want.item(), rel=1e-3)
    assert (ours - reference).abs().max() <= 2e-2 * reference.abs().max()


def test_faiss_gpu_search_equals_cpu_search():
    import faiss

    from retrieval.search import exact_search

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        pytest.skip("faiss has no GPU support here (pip install -r requirements-gpu.txt)")
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((5000, 64)).astype(np.float32)
    queries = rng.standard_normal((50, 64)).astype(np.float32)
    scores, ids = exact_search(queries, docs, 100)  # on the GPU
    cpu = faiss.IndexFlatIP(64)
    cpu.add(docs)
    want_scores, want_ids = cpu.search(queries, 100)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_train_like_one(tmp_path):
    """NCCL: step-1 gradients and losses of 2 GPUs equal 1 GPU's (fp32, dropout off)."""
    model = make_tiny_bert(tmp_path / "bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    pairs = tmp_path / "pairs.jsonl"
    questions, passages = random_texts(32, seed=1, max_words=8), random_texts(24, seed=2)
    pairs.write_text(
        "".join(json.dumps({"anchor": q, "positive": passages[i % 24]}) + "\n" for i, q in enumerate(questions))
    )
    grads = {}
    for processes in (1, 2):
        out = tmp_path / f"p{processes}"
        args = [
            "--model.name_or_path",
            str(model),
            "--data.train",
            str(pairs),
            "--train.global_batch",
            "16",
            "--train.micro_batch",
            "5",
            "--loss.dims",
            "32,8",
            "--train.optimizer",
            "sgd",
            "--train.lr",
            "1e-2",
            "--train.warmup_ratio",
            "0",
            "--train.max_grad_norm",
            "null",
            "--train.mixed_precision",
            "no",
            "--report.report_to",
            "[]",
            "--output.dir",
            str(out / "run"),
        ]
        worker = [str(ROOT / "tests" / "dist_worker.py"), "train", str(out), str(processes), "--", *args]
        launcher = (
            [sys.executable]
            if processes == 1
            else [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        )
        proc = subprocess.run(
            [*launcher, *worker],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env=child_env(),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        grads[processes] = torch.load(out / "grads.pt")
    scale = max(g.abs().max() for g in grads[1].values())
    for name, grad in grads[1].items():
        torch.testing.assert_close(grads[2][name].cpu(), grad.cpu(), rtol=1e-4, atol=1e-4 * scale)


def test_bf16_evaluation_and_mining_follow_the_runs_precision(tiny_bert):
    """On CUDA, `no` encodes in float32 (equal to the CPU's within float32 noise) and `bf16`
    autocasts (within bf16's rounding); mining and evaluation encode through the same call."""
    from model import Encoder

    texts = random_texts(32, seed=7)
    cpu = Encoder.from_config(ModelConfig(str(tiny_bert)), "no").encode(texts)
    full = Encoder.from_config(ModelConfig(str(tiny_bert)), "no").cuda().encode(texts)
    half = Encoder.from_config(ModelConfig(str(tiny_bert)), "bf16").cuda().encode(texts)
    assert torch.allclose(full, cpu, atol=1e-5)
    assert not torch.equal(half, full) and torch.allclose(half, full, atol=3e-2)


def test_faiss_gpu_ties_resolve_as_on_the_cpu():
    """3,000 equal passages: the first ten by corpus order, as the CPU search gives, even though
    faiss-gpu stops at k 2,048; and k past 2,048 is served (by the CPU copy)."""
    import faiss

    from retrieval.search import ExactIndex, exact_search

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        pytest.skip("faiss has no GPU support here (pip install -r requirements-gpu.txt)")
    docs = np.ones((3000, 16), dtype=np.float32) / 4
    queries = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    assert ExactIndex(docs).on_gpu
    _, ids = exact_search(queries, docs, 10)
    np.testing.assert_array_equal(ids, np.tile(np.arange(10), (4, 1)))
    _, deep = exact_search(queries, docs, 2500)
    np.testing.assert_array_equal(deep, np.tile(np.arange(2500), (4, 1)))


def test_resume_on_cuda_restores_the_cuda_rng(tmp_path):
    """Killed after step 3 of 6 and resumed: the same weights as a run never stopped, with dropout
    on (the CUDA generator is restored from rng_0.json, not reseeded)."""
    from safetensors.torch import load_file

    model_dir = make_tiny_bert(tmp_path / "bert")
    pairs = tmp_path / "pairs.jsonl"
    questions, passages = random_texts(24, seed=1, max_words=8), random_texts(24, seed=2)
    pairs.write_text("".join(json.dumps({"anchor": q, "positive": p}) + "\n" for q, p in zip(questions, passages)))
    base = ["--model.name_or_path", str(model_dir), "--data.train", str(pairs), "--train.global_batch", "8"]
    base += ["--train.epochs", "2", "--checkpoint.every", "3", "--report.report_to", "[]", "--loss.dims", "32"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train.main([*base, "--output.dir", str(straight)])
    stop = {"at": 4}  # step_end runs before step 4's checkpoint: the newest is step 3's

    class Stop(Exception):
        pass

    def step_end(record):
        if record["step"] == stop["at"]:
            raise Stop

    with pytest.raises(Stop):
        train.main([*base, "--output.dir", str(resumed)], train.Hooks(step_end=step_end))
    state = json.loads((resumed / "checkpoints" / "step-00000003" / "rng_0.json").read_text())
    assert state["cuda"], "the CUDA generator is saved"
    train.main([*base, "--output.dir", str(resumed), "--resume"])
    a, b = load_file(resumed / "model" / "model.safetensors"), load_file(straight / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
