"""Run by tests/test_distributed.py under `torchrun --nproc_per_node N` (or plain python for N = 1).

    python tests/dist_worker.py train OUT WORLD [--hook] [--kill-at STEP] -- TRAIN_ARGS...
    python tests/dist_worker.py eval OUT WORLD MODEL_DIR

Observes train.py through its hooks (train.Hooks; nothing test-only lives in train.py, and no
name inside it is replaced) and writes what it saw under OUT: the gradients of step 1 as the
optimiser sees them (after DDP's all-reduce), the DDP buckets all-reduced in each micro-batch, the
texts each process encoded, the metrics. --kill-at STEP SIGKILLs rank 0 right after that optimiser
step.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import DistributedDataParallelKwargs
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

import train  # the launcher runs it with the repository on PYTHONPATH


def live_threads() -> list[str]:
    """Names of this process's threads (Linux): gloo's are named gloo_tcp_loop and pt_gloo_runloop."""
    task = Path("/proc/self/task")
    return sorted((task / t / "comm").read_text().strip() for t in os.listdir(task)) if task.is_dir() else []


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def instrument_training(count_buckets: bool, kill_at: int | None) -> tuple[dict, train.Hooks]:
    """Hooks that record what the run does: nothing inside train.py is replaced."""
    seen = {"grads": None, "step": 0, "chunk": -1, "chunks": 0, "allreduced": [], "rows": [], "forwards": []}

    def step_batch(batch, global_rows, table, tokens):
        mine = global_rows[batch.labels.numpy()]  # the rows this rank's labels point at
        embedded = [tokens["anchor"][i] for i in table.anchor_ids[mine]] + [
            tokens["passage"][i] for i in table.positive_ids[mine]
        ]
        seen["rows"].append(
            {
                "global": global_rows.tolist(),
                "mine": mine.tolist(),
                "embeds_mine": batch.token_ids[: 2 * batch.share] == embedded,
            }
        )

    def counting_hook(state, bucket):  # fires once per bucket that DDP all-reduces
        seen["allreduced"].append(
            {"step": seen["step"], "chunk": seen["chunk"], "of": seen["chunks"], "bucket": bucket.index()}
        )
        return allreduce_hook(state, bucket)

    def prepared(model, optimizer):
        encoder = getattr(model, "module", model)  # DDP's parameter names carry a "module." prefix

        def before_step(opt, args, kwargs):  # gradients as the optimiser sees them, step 1 only
            seen["world"] = world_size()  # end_training() takes the process group down, so look now
            if seen["grads"] is None:
                seen["grads"] = {
                    n: p.grad.detach().clone() for n, p in encoder.named_parameters() if p.grad is not None
                }
            seen["step"] += 1

        optimizer.optimizer.register_step_pre_hook(before_step)
        if count_buckets and isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model.register_comm_hook(None, counting_hook)
            # Training forwards only: whether each one arms the reducer (False inside no_sync).
            model.register_forward_pre_hook(
                lambda module, args: (
                    seen["forwards"].append(module.require_backward_grad_sync) if torch.is_grad_enabled() else None
                )
            )

    def replay(i, n):
        seen["chunk"], seen["chunks"] = i, n

    def step_end(record):  # a crash, as hard as it gets: no cleanup, no flush, no atexit
        if record["step"] == kill_at and int(os.environ.get("RANK", "0")) == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    kwargs = {"kwargs_handlers": [DistributedDataParallelKwargs(bucket_cap_mb=0.02)]} if count_buckets else {}
    return seen, train.Hooks(
        accelerator_kwargs=kwargs,
        prepared=prepared,
        step_batch=step_batch,
        replay=replay,
        step_end=step_end if kill_at else None,
    )


def run_train(out: Path, expected_world: int, count_buckets: bool, kill_at: int | None, argv: list[str]) -> None:
    seen, hooks = instrument_training(count_buckets, kill_at)
    train.main(argv, hooks)
    rank = int(os.environ.get("RANK", "0"))
    if "world" in seen:  # a resumed run that had no step left to take never reaches the optimiser
        assert seen["world"] == expected_world, f"expected {expected_world} processes, got {seen['world']}"
    (out / f"threads.{rank}.json").write_text(json.dumps(live_threads()))
    (out / f"buckets.{rank}.json").write_text(json.dumps(seen["allreduced"]))
    (out / f"forwards.{rank}.json").write_text(json.dumps(seen["forwards"]))
    (out / f"rows.{rank}.json").write_text(json.dumps(seen["rows"]))
    if rank == 0 and seen["grads"] is not None:
        torch.save(seen["grads"], out / "grads.pt")


def run_eval(out: Path, expected_world: int, model_dir: str) -> None:
    from data import IRDataset
    from model import Encoder, ModelConfig
    from retrieval.evaluation import evaluate

    if expected_world > 1:
        dist.init_process_group("gloo")
    assert world_size() == expected_world
    rank = dist.get_rank() if dist.is_initialized() else 0
    encoder = Encoder.from_config(ModelConfig(model_dir))
    encoded = []
    encode = encoder.encode
    encoder.encode = lambda texts, **kw: encoded.extend(texts) or encode(texts, **kw)
    corpus = [f"w{i} w{(7 * i) % 50} w{(3 * i) % 11}" for i in range(37)]  # odd, and not a multiple of 2
    queries = [f"w{i} w{(7 * i) % 50}" for i in range(0, 37, 4)]
    data = IRDataset(
        [f"d{i}" for i in range(37)],
        corpus,
        [f"q{i}" for i in range(len(queries))],
        queries,
        {f"q{i}": {f"d{4 * i}": 1, f"d{(4 * i + 9) % 37}": 1} for i in range(len(queries))},
    )
    results = evaluate(encoder, data, [32, 8], batch_size=4)
    (out / f"encoded.{rank}.json").write_text(json.dumps(encoded))
    if rank == 0:
        (out / "metrics.json").write_text(json.dumps({d: r.metrics for d, r in results.items()}))
    else:
        assert results is None
    if dist.is_initialized():
        dist.destroy_process_group()
    (out / f"threads.{rank}.json").write_text(json.dumps(live_threads()))


if __name__ == "__main__":
    mode, out, world = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    if mode == "train":
        rest = sys.argv[4:]
        flags = rest[: rest.index("--")]
        kill_at = int(flags[flags.index("--kill-at") + 1]) if "--kill-at" in flags else None
        run_train(out, world, "--hook" in flags, kill_at, rest[rest.index("--") + 1 :])
    else:
        run_eval(out, world, sys.argv[4])
