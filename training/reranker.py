"""Training the cross-encoder re-ranker (retrieval/rerank.py) on (question, positive, negatives) groups.

The groups come from a split with judgements: for each question and each of its relevant passages,
that passage and `negatives` others drawn (seeded) from the question's top `pool` of a first stage
(a dense model fused with BM25). A passage relevant to the question, or with the text of one, is
never a negative. The loop: the listwise loss (losses.listwise_rerank_loss) over `batch` groups a
step, AdamW (no decay on biases and LayerNorm), the project's cosine schedule (`lr_at`) after a
linear warm-up, gradients clipped at 1, a stop on a non-finite loss. `held_out` draws the questions
kept out (the weight against the fused score is chosen on them), `first_stage` ranks them all.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from data import IRDataset, question_subset
from losses import listwise_rerank_loss
from model import Encoder
from retrieval.evaluation import encode_ir
from retrieval.hybrid import candidates_by_dim, choose_weight, lexical_index
from retrieval.rerank import CrossEncoder, Fused, weight_curve
from retrieval.settings import LexicalConfig
from training.schedule import lr_at

Group = tuple[str, str, list[str]]  # (question, positive passage, negative passages)


@dataclass
class RerankTraining:
    """How the re-ranker is trained: the loop's settings, saved in its reranker.json."""

    epochs: int = 2  # one more epoch over the same order: held out +0.013 NDCG@10 on ObliQA (BENCHMARKS.md)
    batch: int = 8  # groups a step
    chunk: int = 16  # pairs a forward pass (memory, not the result)
    lr: float = 4e-5
    warmup: float = 0.1  # of the steps
    seed: int = 0  # the groups' order and negatives, the fresh head, dropout


HOLDOUT, HOLDOUT_SEED = 0.1, 0  # train_reranker.py's --holdout and --holdout-seed when not given


def holdout_flags(saved: dict | None, fraction: float | None, seed: int | None) -> tuple[float, int]:
    """The held-out draw (--holdout, --holdout-seed) a saved re-ranker's questions come from: each
    flag as given, else as its `held_out` records it, else the defaults (a re-ranker saved before the
    draw was recorded: its questions are checked by their sha256 all the same)."""
    saved = saved or {}
    return (
        saved.get("fraction", HOLDOUT) if fraction is None else fraction,
        saved.get("seed", HOLDOUT_SEED) if seed is None else seed,
    )


def held_out(n_questions: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(trained on, held out): question rows, a seeded `fraction` held out (at least one when > 0)."""
    order = np.random.default_rng(seed).permutation(n_questions)
    n_held = max(1, round(fraction * n_questions)) if fraction > 0 else 0
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def first_stage(
    data: IRDataset, encoder: Encoder, trained_on: np.ndarray, batch_size: int, tokens: str = "words"
) -> Fused:
    """Each question's candidates under the dense `encoder` and BM25 (cutting text into `tokens`,
    lexical.tokens) at the model's full size, and the dense weight of their fusion, chosen on the
    questions `trained_on` (it draws their negatives and ranks the held-out questions the mixing
    weight is chosen on)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    query_emb, corpus_emb, _ = encode_ir(encoder.to(device), data, batch_size, True)
    full = corpus_emb.shape[1]
    lexical = lexical_index(data, LexicalConfig(tokens=tokens))
    c = candidates_by_dim(query_emb, corpus_emb, data, [full], lexical)[0][full]
    weight = choose_weight(c.take(trained_on), question_subset(data, trained_on, "trained on"), "minmax")
    return Fused(data, {full: c}, {full: weight}, tokens=tokens)


def held_out_part(fused: Fused, held: np.ndarray) -> Fused:
    """The fused rankings of the question rows `held` only (the held-out questions a re-ranker's
    weight is chosen on), with the first stage's dense weight."""
    ((full, c),) = fused.candidates.items()
    part = question_subset(fused.data, held, "held out")
    return Fused(part, {full: c.take(held)}, {full: fused.weights[full]}, fused.norm, fused.tokens)


def ids_sha256(query_ids: list[str]) -> str:
    """What names a set of held-out questions in reranker.json: the sha256 of their ids, one a line."""
    return hashlib.sha256("\n".join(query_ids).encode("utf-8")).hexdigest()


def same_held_out(saved: dict | None, held: Fused, depth: int) -> bool:
    """Whether a re-ranker's saved `held_out` is about the questions of `held`: their ids' sha256,
    or for a re-ranker saved before it was recorded, the same fused NDCG@10 there."""
    if not saved:
        return False
    if "question_ids_sha256" in saved:
        return saved["question_ids_sha256"] == ids_sha256(held.data.query_ids)
    return math.isclose(saved["fused"], held_out_fused(held, depth), abs_tol=1e-9)


def held_out_fused(held: Fused, depth: int) -> float:
    """The held-out questions' fused NDCG@10, as mixing_weight saves it (`fused`: weight 0)."""
    ((dim, c),) = held.candidates.items()
    zero = lambda rows: np.zeros(rows.shape)  # noqa: E731  (weight 0 does not read the cross-encoder)
    return float(weight_curve(c, held.weights[dim], held.norm, zero, held.data, depth)[0.0].mean())


def training_groups(data: IRDataset, ranking_rows: np.ndarray, negatives: int, seed: int) -> list[Group]:
    """(question, positive, negatives) for each relevant passage of each question of `data`;
    negatives drawn from the question's first-stage rows `ranking_rows` (Q, pool), -1 padding
    ignored; never a passage relevant to the question, nor one with a relevant passage's text.
    A question with fewer candidates than `negatives` gets all it has; one with none gives no
    group (its positive alone would add no loss)."""
    rng = random.Random(seed)
    row_of = {cid: i for i, cid in enumerate(data.corpus_ids)}
    groups = []
    for q, qid in enumerate(data.query_ids):
        relevant = [row_of[cid] for cid, grade in sorted(data.qrels.get(qid, {}).items()) if grade > 0]
        relevant_texts = {data.corpus_texts[r] for r in relevant}
        allowed = [
            r
            for r in ranking_rows[q].tolist()
            if r >= 0 and r not in relevant and data.corpus_texts[r] not in relevant_texts
        ]
        for positive in relevant if allowed else []:
            drawn = rng.sample(allowed, min(negatives, len(allowed)))
            groups.append((data.query_texts[q], data.corpus_texts[positive], [data.corpus_texts[r] for r in drawn]))
    return groups


def group_scores(ce: CrossEncoder, groups: list[Group], chunk: int) -> torch.Tensor:
    """(G, 1 + n) logits of each group's positive then negatives, -inf where a group is short."""
    width = 1 + max(len(negs) for _, _, negs in groups)
    pairs, slots = [], []  # slots: (group, position) of each pair
    for g, (question, positive, negs) in enumerate(groups):
        for position, passage in enumerate([positive, *negs]):
            pairs.append((question, passage))
            slots.append((g, position))
    rows, cols = (torch.tensor(s, device=ce.device) for s in zip(*slots))
    empty = torch.full((len(groups), width), float("-inf"), device=ce.device)
    return empty.index_put((rows, cols), ce.logits(pairs, chunk))


def optimizer_for(model: torch.nn.Module) -> torch.optim.AdamW:
    """AdamW, weight decay 0.01 but on biases and LayerNorm weights."""
    named = list(model.named_parameters())
    plain = lambda name: name.endswith("bias") or "LayerNorm" in name  # noqa: E731
    return torch.optim.AdamW(
        [
            {"params": [p for n, p in named if not plain(n)], "weight_decay": 0.01},
            {"params": [p for n, p in named if plain(n)], "weight_decay": 0.0},
        ]
    )


def train_cross_encoder(
    ce: CrossEncoder, groups: list[Group], settings: RerankTraining, show_progress: bool = False
) -> dict:
    """settings.epochs over `groups` (seeded order), settings.batch groups a step. Returns what the
    run did: steps, seconds, pairs seen and the mean loss of the last 50 steps."""
    order = list(range(len(groups)))
    random.Random(settings.seed).shuffle(order)
    batches = [order[i : i + settings.batch] for i in range(0, len(order), settings.batch)] * settings.epochs
    optimizer = optimizer_for(ce.model)
    ce.logit_cache.clear()  # the weights change: no logit scored before holds
    ce.model.train()
    start, losses = time.perf_counter(), []
    bar = tqdm(batches, desc="re-ranker", disable=not show_progress)
    for step, batch in enumerate(bar):
        loss = listwise_rerank_loss(group_scores(ce, [groups[g] for g in batch], settings.chunk))
        value = loss.item()  # the step's one host sync: the log and the stop need the number
        if not math.isfinite(value):
            raise FloatingPointError(f"re-ranker step {step + 1}: the loss is {value}; stopping")
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, len(batches), settings.lr, settings.warmup)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ce.model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(value)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", refresh=False)
    return {
        "steps": len(batches),
        "seconds": round(time.perf_counter() - start, 1),
        "pairs": sum(1 + len(groups[g][2]) for batch in batches for g in batch),
        "last_loss": float(np.mean(losses[-50:])),
    }
