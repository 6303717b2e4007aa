"""The sentence-transformers reference trainer, on the same pairs and recipe as configs/obliqa.yaml.

    python bench/st_train.py --train ../shared/data/obliqa/train_pairs.jsonl --out runs/st_obliqa --eval-base

Fine-tunes all-MiniLM-L6-v2 with sentence-transformers 6.x: CachedMultipleNegativesRankingLoss
(scale 20, GradCache mini-batches) inside MatryoshkaLoss (equal weights), one epoch, batch 512,
lr 2e-5, cosine schedule with 10% linear warmup, fp32 on the CPU, seed 42. Times `trainer.train()`,
saves the model to <out>/model, scores it (and with --eval-base the base model) with OUR
evaluate.py at every Matryoshka dim, and writes <out>/results.json.

Warmup is `warmup_steps=0.1`: in transformers 5 a float below 1 is the ratio, and the scheduler
gets ceil(0.1 * steps) warmup steps (`TrainingArguments.get_warmup_steps`); `warmup_ratio` is
deprecated there. Steps are len(train dataloader) per epoch: the trainer stops after that many
batches even when the no_duplicates sampler would yield more (see `batch_plan`).
sentence-transformers is a bench/test reference only; the project's code never imports it.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import: no hub access
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer  # noqa: E402
from sentence_transformers import SentenceTransformerTrainingArguments  # noqa: E402
from sentence_transformers.sentence_transformer.losses import (  # noqa: E402
    CachedMultipleNegativesRankingLoss,
    MatryoshkaLoss,
)

from data import load_ir, load_pairs  # noqa: E402
from evaluate import evaluate, format_table  # noqa: E402
from model import PACKAGED_MINILM, Encoder, ModelConfig, resolve_model_dir  # noqa: E402

WARMUP = 0.1  # fraction of the optimizer steps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=PACKAGED_MINILM, help="hub id or local directory (default: packaged MiniLM)")
    parser.add_argument("--train", default="../shared/data/obliqa/train_pairs.jsonl", help="pairs JSONL: anchor, positive")
    parser.add_argument("--limit", type=int, help="train on the first N pairs only (smoke tests)")
    parser.add_argument("--per-device-batch", type=int, default=512)
    parser.add_argument("--mini-batch-size", type=int, default=32, help="GradCache mini-batch of the cached loss")
    parser.add_argument("--dims", type=lambda s: [int(d) for d in s.split(",")], default=[384, 256, 128, 64, 32])
    parser.add_argument("--batch-sampler", choices=["batch_sampler", "no_duplicates"], default="no_duplicates")
    parser.add_argument("--drop-last", action="store_true", help="dataloader_drop_last (default off, as in ST)")
    parser.add_argument("--eval-data", default="../shared/data/obliqa")
    parser.add_argument("--eval-split", default="dev")
    parser.add_argument("--eval-base", action="store_true", help="also score the model before training")
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--plan-only", action="store_true", help="print the batch plan and stop, without training")
    parser.add_argument("--out", type=Path, default=Path("runs/st_obliqa"))
    return parser.parse_args(argv)


def load_train(path: str, limit: int | None) -> Dataset:
    """The pairs as a datasets.Dataset with columns anchor, positive (in that order)."""
    pairs = load_pairs(path)
    rows = [{"anchor": a, "positive": p} for a, p in zip(pairs.anchors, pairs.positives)]
    return Dataset.from_list(rows[:limit] if limit else rows)


def training_args(args: argparse.Namespace) -> SentenceTransformerTrainingArguments:
    return SentenceTransformerTrainingArguments(
        output_dir=str(args.out / "trainer"),
        num_train_epochs=1,
        per_device_train_batch_size=args.per_device_batch,
        learning_rate=2e-5,
        warmup_steps=WARMUP,  # transformers 5: a float < 1 is a ratio -> ceil(0.1 * steps)
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=42,
        data_seed=42,
        bf16=False,
        fp16=False,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        logging_first_step=True,
        dataloader_drop_last=args.drop_last,
        batch_sampler=args.batch_sampler,
    )


def batch_plan(trainer: SentenceTransformerTrainer) -> dict:
    """What epoch 0 of the training dataloader advertises (len) and what its batch sampler yields.

    Runs the sampler alone (its own generator, reseeded on every __iter__), with the global torch
    RNG saved and restored, so training afterwards sees exactly what it would have seen.
    """
    state = torch.random.get_rng_state()
    loader = trainer.get_train_dataloader()
    sampler = getattr(loader.batch_sampler, "batch_sampler", loader.batch_sampler)  # under accelerate's shard
    sampler.set_epoch(0)
    batches = list(sampler)
    torch.random.set_rng_state(state)
    steps = len(loader)
    trained = [row for batch in batches[:steps] for row in batch]
    return {"len": steps, "yielded": len(batches), "sizes": [len(batch) for batch in batches],
            "rows_trained": len(trained), "distinct_rows_trained": len(set(trained)),
            "warmup_steps": trainer.args.get_warmup_steps(steps)}


def score(model_dir: str, args: argparse.Namespace, data) -> dict[int, dict[str, float]]:
    encoder = Encoder.from_config(ModelConfig(model_dir)).to("cuda" if torch.cuda.is_available() else "cpu")
    return {dim: r.metrics for dim, r in evaluate(encoder, data, args.dims, batch_size=args.eval_batch).items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_dir = str(resolve_model_dir(args.model))  # a str: SentenceTransformer 6 rejects a Path
    train = load_train(args.train, args.limit)
    model = SentenceTransformer(model_dir)
    inner = CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=args.mini_batch_size)
    loss = MatryoshkaLoss(model, inner, matryoshka_dims=args.dims)
    trainer = SentenceTransformerTrainer(model=model, args=training_args(args), train_dataset=train, loss=loss)
    plan = batch_plan(trainer)
    print(f"{len(train)} pairs, batch {args.per_device_batch}, {args.batch_sampler}, drop_last {args.drop_last}: "
          f"{plan['len']} steps ({plan['warmup_steps']} warmup); sampler yields {plan['yielded']} batches {plan['sizes']}, "
          f"{plan['rows_trained']} rows trained ({plan['distinct_rows_trained']} distinct)", flush=True)
    if args.plan_only:
        return 0
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    steps = trainer.state.global_step
    print(f"trained {steps} steps in {seconds:.1f} s", flush=True)
    model.save(str(args.out / "model"))
    data = load_ir(args.eval_data, args.eval_split)
    results = {"train_seconds": seconds, "steps": steps, "batch_sampler": args.batch_sampler, "drop_last": args.drop_last,
               "args": {"model": args.model, "train": args.train, "limit": args.limit, "pairs": len(train),
                        "per_device_batch": args.per_device_batch, "mini_batch_size": args.mini_batch_size,
                        "dims": args.dims, "epochs": 1, "lr": 2e-5, "warmup_steps": WARMUP, "scheduler": "cosine",
                        "weight_decay": 0.0, "max_grad_norm": 1.0, "seed": 42, "scale": 20.0, "precision": "fp32",
                        "eval_data": args.eval_data, "eval_split": args.eval_split},
               "batches": plan,
               "loss": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]}
    results["after"] = score(str(args.out / "model"), args, data)
    if args.eval_base:
        results["before"] = score(model_dir, args, data)
        print(f"\n{data.name}, before\n" + format_table(results["before"]))
    print(f"\n{data.name}, after sentence-transformers training\n" + format_table(results["after"]))
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
