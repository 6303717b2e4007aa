"""The sentence-transformers reference trainer, on the same pairs and recipe as configs/obliqa.yaml.

    python -m bench.st_train --train ../shared/data/obliqa/train_pairs.jsonl --out runs/st_obliqa --eval-base
    python -m bench.st_train --epochs 4 --lr 2e-5 --seed 43 --hard-negatives 1 --hn-relative-margin 0.05 --no-eval

Fine-tunes all-MiniLM-L6-v2 with sentence-transformers 6.x: CachedMultipleNegativesRankingLoss
(GradCache mini-batches) inside MatryoshkaLoss. The defaults are the recipe of configs/obliqa.yaml:
scale 20, equal weights, one epoch, batch 512, lr 2e-5, cosine schedule with 10% linear warmup,
weight decay 0, clipping at 1.0, fp32 on the CPU, seed 42; every one of them is a flag, so
bench/quality.py can run both the study's recipe and ours. Times `trainer.train()`, saves the model
to <out>/model, scores it (and with --eval-base the base model) with OUR evaluate.py at every
Matryoshka dim unless --no-eval, and writes <out>/results.json with every setting under "args".

Warmup is `warmup_steps=--warmup`: in transformers 5 a float below 1 is the ratio, and the
scheduler gets ceil(ratio * steps) warmup steps (`TrainingArguments.get_warmup_steps`);
`warmup_ratio` is deprecated there. Steps are len(train dataloader) per epoch: the trainer stops
after that many batches even when the no_duplicates sampler would yield more (see `batch_plan`).

--hard-negatives K mines K negatives per row with sentence-transformers' own `mine_hard_negatives`
(the base model, before training) and trains on (anchor, positive, negative_1..K) rows. Its
conventions differ from mine.py's: it searches range_max + (most positives of a question) texts,
sets every positive of the question and every filtered candidate aside, skips the first
--hn-range-min of the remaining candidates and takes K of the next (range_max - range_min); a
candidate is dropped when it scores above lowest positive - |lowest positive| x relative margin
(mine.py's max_relative x lowest positive, i.e. margin = 1 - max_relative); and a row that did
not get K negatives is dropped (mine.py keeps it with fewer). The rows dropped are printed.
sentence-transformers is a bench/test reference only; the project's code never imports it.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import: no hub access
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.sentence_transformer.losses import (
    CachedMultipleNegativesRankingLoss,
    MatryoshkaLoss,
)
from sentence_transformers.util import mine_hard_negatives

from common.files import write_atomic
from data import load_ir, load_pairs, read_id_text
from model import PACKAGED_MINILM, Encoder, ModelConfig, resolve_model_dir
from retrieval.evaluation import evaluate
from retrieval.metrics import format_table


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "null") else float(text)


def _floats(text: str) -> list[float]:
    return [float(w) for w in text.split(",")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=PACKAGED_MINILM, help="hub id or local directory (default: packaged MiniLM)")
    parser.add_argument(
        "--train", default="../shared/data/obliqa/train_pairs.jsonl", help="pairs JSONL: anchor, positive"
    )
    parser.add_argument("--train-split", help="split of a hub dataset")
    parser.add_argument("--limit", type=int, help="train on the first N pairs only (smoke tests)")
    parser.add_argument("--max-length", type=int, help="tokens per text (default: the model's own)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--per-device-batch", type=int, default=512)
    parser.add_argument("--mini-batch-size", type=int, default=32, help="GradCache mini-batch of the cached loss")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--warmup", type=float, default=0.1, help="warm-up as a fraction of the steps, in [0, 1)")
    parser.add_argument(
        "--min-lr-ratio", type=float, default=0.0, help="cosine floor as a fraction of lr (0: ST's 'cosine')"
    )
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--max-grad-norm", type=_optional_float, default=1.0, help="'none' for no clipping")
    parser.add_argument("--seed", type=int, default=42, help="training (and random hard-negative sampling) seed")
    parser.add_argument("--scale", type=float, default=20.0, help="logits = cos x scale (1 / temperature)")
    parser.add_argument("--symmetric", action="store_true", help="add the document->query term (per-direction softmax)")
    parser.add_argument("--dims", type=lambda s: [int(d) for d in s.split(",")], default=[384, 256, 128, 64, 32])
    parser.add_argument("--weights", type=_floats, help="one Matryoshka weight per dim (default all 1)")
    parser.add_argument("--batch-sampler", choices=["batch_sampler", "no_duplicates"], default="no_duplicates")
    parser.add_argument("--drop-last", action="store_true", help="dataloader_drop_last (default off, as in ST)")
    parser.add_argument("--hard-negatives", type=int, default=0, metavar="K", help="mine K negatives per row (0: off)")
    parser.add_argument("--hn-model", help="model to mine with (default: --model, untrained)")
    parser.add_argument(
        "--hn-corpus", help="BEIR directory whose corpus.jsonl is mined (default: the training positives)"
    )
    parser.add_argument("--hn-range-min", type=int, default=0, help="mine_hard_negatives range_min")
    parser.add_argument("--hn-range-max", type=int, default=30, help="mine_hard_negatives range_max")
    parser.add_argument(
        "--hn-relative-margin", type=_optional_float, default=None, help="e.g. 0.05; 'none' for no filter"
    )
    parser.add_argument("--hn-max-score", type=_optional_float, default=None)
    parser.add_argument("--hn-sampling", choices=["top", "random"], default="top")
    parser.add_argument("--eval-data", default="../shared/data/obliqa")
    parser.add_argument("--eval-split", default="dev")
    parser.add_argument("--eval-base", action="store_true", help="also score the model before training")
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument(
        "--no-eval", action="store_true", help="train and save only (bench/quality.py scores the model)"
    )
    parser.add_argument("--plan-only", action="store_true", help="print the batch plan and stop, without training")
    parser.add_argument("--out", type=Path, default=Path("runs/st_obliqa"))
    args = parser.parse_args(argv)
    if not 0 <= args.warmup < 1:  # transformers reads warmup_steps >= 1 as a step count
        parser.error(f"--warmup: a fraction in [0, 1), got {args.warmup}")
    if args.weights is not None and len(args.weights) != len(args.dims):
        parser.error(f"--weights: {len(args.weights)} weights for {len(args.dims)} dims")
    return args


def load_train(path: str, limit: int | None, split: str | None = None) -> Dataset:
    """The pairs as a datasets.Dataset with columns anchor, positive (in that order)."""
    pairs = load_pairs(path, split)
    rows = [{"anchor": a, "positive": p} for a, p in zip(pairs.anchors, pairs.positives)]
    return Dataset.from_list(rows[:limit] if limit else rows)


def load_model(model_dir: str, max_length: int | None) -> SentenceTransformer:
    model = SentenceTransformer(model_dir)
    if max_length:
        model.max_seq_length = max_length
    return model


def with_hard_negatives(train: Dataset, args: argparse.Namespace, model_dir: str) -> tuple[Dataset, dict]:
    """sentence-transformers' mine_hard_negatives on the pairs, with the untrained model, as
    (anchor, positive, negative_1..K) rows; and what it kept. Rows it found no K negatives for are gone."""
    miner = load_model(str(resolve_model_dir(args.hn_model)) if args.hn_model else model_dir, args.max_length)
    corpus = None  # as mine.py reads a corpus: 'title text'
    if args.hn_corpus:
        corpus = list(read_id_text(Path(args.hn_corpus) / "corpus.jsonl", title=True).values())
    random.seed(args.seed)  # its "random" sampling draws from Python's global generator
    mined = mine_hard_negatives(
        train,
        miner,
        corpus=corpus,
        range_min=args.hn_range_min,
        range_max=args.hn_range_max,
        relative_margin=args.hn_relative_margin,
        max_score=args.hn_max_score,
        num_negatives=args.hard_negatives,
        sampling_strategy=args.hn_sampling,
        output_format="n-tuple",
        batch_size=args.eval_batch,
    )
    report = {"rows_in": len(train), "rows_kept": len(mined), "rows_dropped": len(train) - len(mined)}
    print(
        f"mine_hard_negatives: kept {report['rows_kept']} of {report['rows_in']} rows, dropped "
        f"{report['rows_dropped']} ({report['rows_dropped'] / len(train):.1%}) for want of {args.hard_negatives} "
        f"negatives",
        flush=True,
    )
    return mined, report


def training_args(args: argparse.Namespace) -> SentenceTransformerTrainingArguments:
    return SentenceTransformerTrainingArguments(
        output_dir=str(args.out / "trainer"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.per_device_batch,
        learning_rate=args.lr,
        warmup_steps=args.warmup,  # transformers 5: a float < 1 is a ratio -> ceil(ratio * steps)
        lr_scheduler_type="cosine_with_min_lr" if args.min_lr_ratio else "cosine",
        lr_scheduler_kwargs={"min_lr_rate": args.min_lr_ratio} if args.min_lr_ratio else None,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm or 0.0,  # 0: no clipping
        seed=args.seed,
        data_seed=args.seed,
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


def make_loss(model: SentenceTransformer, args: argparse.Namespace) -> MatryoshkaLoss:
    directions = ("query_to_doc", "doc_to_query") if args.symmetric else ("query_to_doc",)
    inner = CachedMultipleNegativesRankingLoss(
        model,
        scale=args.scale,
        mini_batch_size=args.mini_batch_size,
        directions=directions,
        partition_mode="per_direction",
    )
    return MatryoshkaLoss(model, inner, matryoshka_dims=args.dims, matryoshka_weights=args.weights)


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
    return {
        "len": steps,
        "yielded": len(batches),
        "sizes": [len(batch) for batch in batches],
        "rows_trained": len(trained),
        "distinct_rows_trained": len(set(trained)),
        "warmup_steps": trainer.args.get_warmup_steps(steps),
    }


def score(model_dir: str, args: argparse.Namespace, data) -> dict[int, dict[str, float]]:
    encoder = Encoder.from_config(ModelConfig(model_dir)).to("cuda" if torch.cuda.is_available() else "cpu")
    return {dim: r.metrics for dim, r in evaluate(encoder, data, args.dims, batch_size=args.eval_batch).items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_dir = str(resolve_model_dir(args.model))  # a str: SentenceTransformer 6 rejects a Path
    train = load_train(args.train, args.limit, args.train_split)
    mining = None
    if args.hard_negatives:
        train, mining = with_hard_negatives(train, args, model_dir)
    model = load_model(model_dir, args.max_length)
    trainer = SentenceTransformerTrainer(
        model=model, args=training_args(args), train_dataset=train, loss=make_loss(model, args)
    )
    plan = batch_plan(trainer)
    print(
        f"{len(train)} rows ({', '.join(train.column_names)}), batch {args.per_device_batch}, {args.batch_sampler}, "
        f"drop_last {args.drop_last}: {plan['len']} steps an epoch ({plan['warmup_steps']} warmup of one epoch's); "
        f"sampler yields {plan['yielded']} batches {plan['sizes']}, "
        f"{plan['rows_trained']} rows trained ({plan['distinct_rows_trained']} distinct)",
        flush=True,
    )
    if args.plan_only:
        return 0
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    steps = trainer.state.global_step
    print(f"trained {steps} steps in {seconds:.1f} s", flush=True)
    if steps == 0:  # e.g. no_duplicates with drop_last found no full batch: not a trained model
        print("error: no optimizer step was taken", file=sys.stderr)
        return 1
    model.save(str(args.out / "model"))
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    results = {
        "train_seconds": seconds,
        "steps": steps,
        "batch_sampler": args.batch_sampler,
        "drop_last": args.drop_last,
        "args": {
            **settings,
            "pairs": len(train),
            "weights": args.weights or [1.0] * len(args.dims),
            "scheduler": str(trainer.args.lr_scheduler_type.value),
            "precision": "fp32",
        },
        "hard_negatives": mining,
        "batches": plan,
        "loss": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
    }
    if not args.no_eval:
        data = load_ir(args.eval_data, args.eval_split)
        results["after"] = score(str(args.out / "model"), args, data)
        if args.eval_base:
            results["before"] = score(model_dir, args, data)
            print(f"\n{data.name}, before\n" + format_table(results["before"]))
        print(f"\n{data.name}, after sentence-transformers training\n" + format_table(results["after"]))
    write_atomic(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
