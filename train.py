"""Fine-tune an embedding model with Matryoshka InfoNCE, gradient caching and a cosine schedule.

    python train.py --config configs/quickstart.yaml
    accelerate launch train.py --config configs/bge.yaml --train.lr 1e-5
    torchrun --nproc_per_node 8 train.py --config configs/bge.yaml
    python train.py --config configs/bge.yaml --resume          # after a crash: the newest checkpoint
    python train.py --help                                      # every key, with its default

This file wires one run: load, evaluate, train, save. The machinery lives in training/, a module
a job: config.py (the typed config and command line), schedule.py (the learning rate; when to
evaluate and save), gradcache.py (one optimiser step over a contrastive batch of any size),
distributed.py (the accelerator and the differentiable gather), table.py (the training table, with
hard negatives mined by retrieval/mining.py), checkpoint.py (exact resume), selection.py (the
evaluated state kept), report.py (results, plot, model card). The loss is losses.py, the encoder
model.py, the data data.py; evaluation at every dim and precision is retrieval/ (ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from common.files import output_problem, recover_replaced, remove_stale, write_atomic
from data import DataError, IRDataset, SpreadBatchSampler, TrainTable, load_ir, load_pairs
from losses import LossSpec
from model import Encoder, check_saved_model, resolve_model_dir
from retrieval.diagnostics import attach_space, format_space, map_problem
from retrieval.evaluation import default_dims, encode_ir, encode_queries, evaluate_embeddings
from retrieval.frontier import attach_frontier
from retrieval.hybrid import attach_fused_frontier, attach_hybrid, attach_remembered, format_hybrid, lexical_index
from retrieval.lexical import LexicalIndex, LexicalPrior
from retrieval.memory import EncodedMemory, QuestionMemory, build_memory
from retrieval.metrics import DimResult, format_table
from retrieval.rerank import Fused, Reranker, attach_reranked, bm25_settings, load_reranker
from training.checkpoint import (
    RunState,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_run_state,
    remove_stale_saves,
    run_environment,
    save_checkpoint,
    set_aside_newer,
    table_digest,
)
from training.config import Config, ConfigError, eval_sets, mix_rows, parse_command_line
from training.distributed import gathered_step_stats, make_accelerator, resolve_precision
from training.gradcache import (
    Embedder,
    StepBatch,
    direct_step_accumulating,
    gradcache_step_accumulating,
    make_step_batch,
)
from training.optim import decay_groups, layer_depths
from training.report import (
    describe_data,
    eval_scalars,
    library_versions,
    metrics_of,
    model_card,
    plot_results,
    save_results,
    step_scalars,
    tracker_config,
)
from training.schedule import is_due, lr_at
from training.seen_report import table_rows
from training.selection import Selection
from training.space_report import plot_map, space_of
from training.table import TableSource, batch_documents, document_groups, load_table, mixed_table, relevance_map
from training.teacher import FusedTeacher, RerankerTeacher, Teacher

logger = logging.getLogger("train")
TRACKER_PROJECT = "tensorboard"  # TensorBoard writes under output.dir/tensorboard; wandb's project name


@dataclass
class Hooks:
    """Where a test or tool observes a run without patching names inside the modules. Every hook
    runs on every process; the defaults do nothing."""

    accelerator_kwargs: dict = field(default_factory=dict)  # extra Accelerator(...) arguments
    prepared: Callable[[torch.nn.Module, torch.optim.Optimizer], None] | None = None  # after accelerator.prepare
    step_batch: Callable[[StepBatch, np.ndarray, TrainTable, dict], None] | None = None  # each step's share
    replay: Callable[[int, int], None] | None = None  # chunk i of n replayed with grad
    step_end: Callable[[dict], None] | None = None  # after each optimiser step, with its log record


# ---------------------------------------------------------------- set-up


def check_miner(config: Config) -> None:
    """data.hard_negatives.model, when mining names another model: found, and whole if this project
    saved it, before any model loads (it is loaded only once the table is built)."""
    hn = config.data.hard_negatives
    if not (hn.k and hn.model):
        return
    try:
        check_saved_model(resolve_model_dir(hn.model))
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data.hard_negatives.model: {err}") from None


def load_encoder(config: Config, mixed_precision: str) -> Encoder:
    """The model, with a clear error for a bad name or path. flash-attn needs bf16 activations:
    it is only chosen (auto) when the run autocasts to bf16."""
    model_config = config.model
    if model_config.attn_implementation == "flash_attention_2" and mixed_precision != "bf16":
        raise ConfigError(
            "model.attn_implementation: flash_attention_2 needs train.mixed_precision bf16 (or auto on CUDA)"
        )
    if config.train.deterministic:
        os.environ.setdefault("FLASH_ATTENTION_DETERMINISTIC", "1")  # flash-attn's backward reads it
    try:
        encoder = Encoder.from_config(model_config, "bf16" if mixed_precision == "bf16" else "no")
    except (OSError, ValueError) as err:
        raise ConfigError(f"model.name_or_path {model_config.name_or_path!r}: {err}") from None
    pooler = getattr(encoder.transformer, "pooler", None)
    if isinstance(pooler, torch.nn.Module):  # BERT's pooler is never used: DDP must not wait for its grads
        pooler.requires_grad_(False)
    freeze_parameters(encoder.transformer, config.train.freeze)
    if config.train.layer_decay != 1.0 and layer_depths(encoder)[1] == 0:  # before mining and training
        raise ConfigError(
            "train.layer_decay: no parameter name of the model shows a layer number (layer.N. or layers.N.)"
        )
    if config.train.gradient_checkpointing:
        encoder.enable_gradient_checkpointing()
    return encoder


def under(name: str, prefixes: list[str]) -> bool:
    """Whether a parameter name is one of `prefixes` or inside one (`embeddings` holds
    `embeddings.word_embeddings.weight`, not `embeddings_project.weight`)."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def freeze_parameters(model: torch.nn.Module, prefixes: list[str]) -> None:
    """Keep the parameters under each name prefix as loaded (`embeddings`, `encoder.layer.0`): no grad,
    so no optimiser state and no update. A prefix that names no parameter, or freezing them all, is an
    error naming train.freeze."""
    names = [name for name, param in model.named_parameters() if param.requires_grad]
    for prefix in prefixes:
        hit = [n for n in names if under(n, [prefix])]
        if not hit:
            tops = sorted({n.split(".")[0] for n in names})
            raise ConfigError(
                f"train.freeze: {prefix!r} names no trainable parameter of the model (its modules: {', '.join(tops)})"
            )
        for name, param in model.named_parameters():
            if name in hit:
                param.requires_grad_(False)
    if prefixes and not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"train.freeze: {prefixes} leaves no parameter to train")


def resolve_dims(config: Config, full: int) -> tuple[LossSpec, list[int]]:
    """The loss (its dims and weights resolved) and the eval dims, checked against the model's
    embedding size."""
    dims = config.loss.dims or default_dims(full)
    for key, values in (("loss.dims", dims), ("eval.dims", config.eval.dims)):
        bad = [d for d in values if not 0 < d <= full]
        if bad:
            raise ConfigError(f"{key}: {bad} outside 1..{full}, the model's embedding size")
    weights = config.loss.weights or [1.0] * len(dims)
    eval_dims = config.eval.dims or dims
    select_dim = config.eval.select.rpartition(":")[2]
    if select_dim.isdecimal() and int(select_dim) not in eval_dims:
        raise ConfigError(f"eval.select: dim {select_dim} is not among the eval dims {eval_dims}")
    loss = config.loss
    spec = LossSpec(
        dims,
        weights,
        temperature=loss.temperature,
        symmetric=loss.symmetric,
        lexical_scale=loss.lexical_scale,
        distill=loss.distill,
        distill_temperature=loss.distill_temperature,
        gte=loss.gte,
    )
    return spec, eval_dims


def make_optimizer(model: torch.nn.Module, config) -> torch.optim.Optimizer:
    """AdamW with weight decay on weight matrices only: never on biases or LayerNorm; with
    train.layer_decay < 1, each group's lr scaled by its depth (training/optim.py)."""
    groups = decay_groups(model, config.weight_decay, config.layer_decay)  # load_encoder checked layer_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.adam_betas), eps=config.adam_eps)


def tokenize_table(encoder: Encoder, table: TrainTable) -> dict[str, list[list[int]]]:
    """Every distinct text tokenized once, with its prompt."""
    return {
        "anchor": encoder.tokenize(table.anchor_texts, encoder.spec.query_prompt),
        "passage": encoder.tokenize(table.passage_texts, encoder.spec.document_prompt),
        "empty": encoder.tokenize([""])[0] or [encoder.tokenizer.pad_token_id or 0],
    }  # an empty slot: masked, no gradient


def read_batch_documents(config: Config) -> dict[str, str] | None:
    """data.batch_by document's passage documents, read before any expensive work."""
    try:
        return batch_documents(config)
    except (DataError, OSError, ValueError) as err:
        raise ConfigError(str(err)) from None


def make_sampler(
    table: TrainTable, config: Config, world_size: int, documents: dict[str, str] | None = None, log: bool = False
) -> SpreadBatchSampler:
    """documents: read_batch_documents' map, for data.batch_by document."""
    try:
        groups = None if documents is None else document_groups(table, documents, log)
        return SpreadBatchSampler(
            table,
            config.train.global_batch,
            config.train.seed,
            config.train.drop_last,
            world_size,
            mix_rows(config),
            groups,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None


# ---------------------------------------------------------------- evaluate and save


def run_eval(r: Run, label: str) -> tuple[dict[int, DimResult] | None, dict[str, dict[int, DimResult]]]:
    """Every data.eval set scored at every dim: the one eval.select scores (with BM25 and the
    fused model, and the map's sample), then the others by name. Every process encodes a shard;
    the main process searches and prints and gets the results, the others (None, {})."""
    if r.eval_data is None:
        return None, {}
    results = evaluate_set(r, r.eval_data, label, selected=True)
    others = {
        name: evaluate_set(r, data, f"{label}, eval set {name}", selected=False) for name, data in r.other_sets.items()
    }
    if results is None:  # not the main process
        return None, {}
    return results, others


def evaluate_set(r: Run, data: IRDataset, label: str, selected: bool) -> dict[int, DimResult] | None:
    """One eval set at every dim and precision, with the embedding space's numbers; the selected
    set also against BM25 and fused with it, and with the map's sample kept (report.map)."""
    config, began = r.config, time.perf_counter()
    query_emb, corpus_emb, _ = encode_ir(r.encoder, data, config.eval.batch_size, r.accelerator.is_main_process)
    keys = None  # eval.memory: the training questions, encoded by the model as it is now (on every process)
    if selected and r.memory is not None:
        keys = encode_queries(r.encoder, r.memory.questions, config.eval.batch_size, False)
    r.accelerator.wait_for_everyone()
    if query_emb is None:  # not the main process
        return None
    results = evaluate_embeddings(query_emb, corpus_emb, data, r.eval_dims)
    if config.eval.precisions != ["float32"]:  # searches only: cheap beside the encoding
        attach_frontier(results, query_emb, corpus_emb, data, config.eval.precisions, config.eval.rescore)
    start = time.perf_counter()
    keep_sample = selected and config.report.map and map_problem(len(data.corpus_ids)) is None
    attach_space(results, query_emb, corpus_emb, data, keep_sample)
    print(f"\n{label} ({data.name}):\n{format_table(metrics_of(results))}", flush=True)
    seconds = time.perf_counter() - start
    print(f"\n{label}, the embedding space ({seconds:.1f} s):\n{format_space(None, space_of(results))}", flush=True)
    if selected and config.lexical.retriever != "none":
        if r.lexical is None:  # built once, on the main process: the corpus does not change
            r.lexical = lexical_index(data, config.lexical)
        hybrid = attach_hybrid(results, query_emb, corpus_emb, data, r.lexical)
        print(f"\n{label}, against BM25 and fused with it:\n{format_hybrid(hybrid, results)}", flush=True)
        if keys is not None:
            attach_remembered(results, query_emb, corpus_emb, data, r.lexical, EncodedMemory(r.memory, keys))
            table = {f"{dim} (w {x.memory_weight:.2f})": x.fused["remembered"].metrics for dim, x in results.items()}
            print(f"\n{label}, fused with BM25 and question memory:\n{format_table(table)}", flush=True)
        if config.eval.rerank:
            if r.reranker is None:  # loaded once, on the main process
                r.reranker = load_reranker(config.eval.rerank)
            lexical = config.lexical
            fused = Fused(
                data, hybrid.candidates, hybrid.weights, lexical.fusion_norm, lexical.tokens, bm25_settings(lexical)
            )
            reranked, weights, source = attach_reranked(results, fused, r.reranker)
            table = {f"{dim} (w {weights[dim]:.2f})": x.metrics for dim, x in reranked.items()}
            print(f"\n{label}, fused and re-ranked (weight {source}):\n{format_table(table)}", flush=True)
        if config.eval.precisions != ["float32"]:  # the storage frontier of the fused retriever too
            attach_fused_frontier(results, query_emb, corpus_emb, data, r.lexical, config.eval.precisions)
    logger.info(
        "%s: evaluated in %.1f s, of which the embedding space %.1f s", label, time.perf_counter() - began, seconds
    )
    return results


def save_model(out: Path, encoder: Encoder, config: Config, environment: dict) -> None:
    """The model in sentence-transformers format (written atomically), with the resolved config, the
    library versions and what it trained on (environment: the precision as resolved, the device, the
    number of processes) inside it."""
    config_text = yaml.safe_dump(
        {**asdict(config), "versions": library_versions(), "environment": environment}, sort_keys=False
    )
    encoder.save(out / "model", extra_files={"train_config.yaml": config_text})


def trained_on(r: Run) -> dict:
    """What train_config.yaml records of the machine a model trained on, as plain data."""
    return {
        "precision": r.environment.get("precision"),
        "device": r.environment.get("device"),
        "num_processes": r.accelerator.num_processes,
    }


# ---------------------------------------------------------------- the loop


@dataclass
class Run:
    """What the loop works with, built once by `set_up`."""

    config: Config
    accelerator: Accelerator
    encoder: Encoder
    model: torch.nn.Module  # the encoder as Accelerate prepared it (DDP on several processes)
    optimizer: torch.optim.Optimizer
    sampler: SpreadBatchSampler
    table: TrainTable
    loss: LossSpec
    eval_data: IRDataset | None  # the data.eval set eval.select scores
    eval_dims: list[int]
    out: Path
    hooks: Hooks
    lexical: LexicalIndex | None = None  # BM25 over the eval corpus, built at the first evaluation
    reranker: Reranker | None = None  # eval.rerank's cross-encoder, loaded at the first evaluation
    memory: QuestionMemory | None = None  # eval.memory: the table's questions linked to the eval corpus
    prior: LexicalPrior | None = None  # BM25 over the table's passages (loss.lexical_scale > 0)
    teacher: Teacher | None = None  # loss.distill > 0: the base model fused with BM25, or a re-ranker
    environment: dict = field(default_factory=dict)  # checked on resume (checkpoint.run_environment)
    eval_name: str = ""  # eval_data's name in data.eval
    other_sets: dict[str, IRDataset] = field(default_factory=dict)  # the other data.eval sets, by name

    @property
    def total_steps(self) -> int:
        return len(self.sampler) * self.config.train.epochs

    @property
    def embedder(self) -> Embedder:
        return Embedder(self.model, self.encoder, self.accelerator)

    @property
    def table_source(self) -> TableSource:
        return TableSource(self.config, self.encoder, self.accelerator, self.out)


def open_train_log(out: Path, resumed_step: int):
    """train_log.jsonl, line-buffered; a resumed run keeps the lines of the steps it restored."""
    path = out / "train_log.jsonl"
    if resumed_step and path.exists():  # rewritten whole, then renamed: a crash here loses no line
        kept = [line for line in path.read_text(encoding="utf-8").splitlines() if logged_step(line) <= resumed_step]
        write_atomic(path, [line + "\n" for line in kept])
    return open(path, "a" if resumed_step else "w", encoding="utf-8", buffering=1)


def logged_step(line: str) -> float:
    """The step of a train_log line; a torn or blank line (a crash mid-write) counts as never written."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def train_step(r: Run, global_rows: np.ndarray, tokens: dict, step: int) -> dict:
    """One optimiser step on one global batch; returns its log record."""
    start = time.perf_counter()
    rank, processes = r.accelerator.process_index, r.accelerator.num_processes
    batch = make_step_batch(r.table, tokens, global_rows, rank, processes, r.prior, r.teacher)
    if r.hooks.step_batch:
        r.hooks.step_batch(batch, global_rows, r.table, tokens)
    lr = lr_at(step, r.total_steps, r.config.train.lr, r.config.train.warmup_ratio, r.config.train.min_lr_ratio)
    for group in r.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # train.layer_decay: a share of the rate by depth
    micro_batch = r.config.train.micro_batch
    if r.config.train.gradient_cache:
        loss, per_dim = gradcache_step_accumulating(r.embedder, batch, r.loss, micro_batch, r.hooks.replay)
    else:
        loss, per_dim = direct_step_accumulating(r.embedder, batch, r.loss, micro_batch)
    params = [p for p in r.model.parameters() if p.requires_grad]
    norm = r.accelerator.clip_grad_norm_(params, r.config.train.max_grad_norm or float("inf"))
    stats = gathered_step_stats(loss, norm, per_dim, r.accelerator, step)
    r.optimizer.step()
    r.optimizer.zero_grad(set_to_none=True)
    return {
        "step": step + 1,
        "epoch": r.sampler.epoch,
        "lr": lr,
        "loss": stats.loss,
        "grad_norm": stats.grad_norm,
        "loss_by_dim": dict(zip(map(str, r.loss.dims), stats.loss_by_dim)),
        "pairs_per_s": len(global_rows) / (time.perf_counter() - start),
    }


def after_step(r: Run, state: RunState, save: bool = True) -> None:
    """What follows an optimiser step, in the order that loses least to a crash: the checkpoint,
    the model (before the final evaluation, which can still fail), then the evaluation. A resumed
    run calls it with save=False for the step its checkpoint holds: an evaluation the crash
    interrupted is made again."""
    steps_per_epoch = len(r.sampler)
    if save and is_due(state.step, r.total_steps, steps_per_epoch, r.config.checkpoint.every):
        context = {"data_digest": table_digest(r.table), "environment": r.environment}
        save_checkpoint(r.accelerator, r.out, state, r.config, {**context, "sampler": r.sampler.state_dict()})
    if state.step == r.total_steps and r.accelerator.is_main_process:
        save_model(r.out, r.encoder, r.config, trained_on(r))
    if (
        state.selection is not None
        and is_due(state.step, r.total_steps, steps_per_epoch, r.config.eval.every)
        and not state.selection.evaluated(state.step)
    ):
        label = f"After (step {state.step})" if state.step == r.total_steps else f"Step {state.step}"
        results, other_sets = run_eval(r, label)
        if results is not None:
            epoch = math.ceil(state.step / steps_per_epoch)
            state.selection.observe(state.step, epoch, results, r.encoder, other_sets)
            r.accelerator.log(eval_scalars(results, other_sets), step=state.step)
    r.model.train()


def train_loop(r: Run, state: RunState) -> None:
    """Train until train.epochs are done, from wherever `state` (and the sampler) stand."""
    tokens = tokenize_table(r.encoder, r.table)
    refresh = r.config.data.hard_negatives.refresh if r.config.data.hard_negatives.k else 0
    bar = tqdm(total=r.total_steps, initial=state.step, desc="train", disable=not r.accelerator.is_main_process)
    log = open_train_log(r.out, state.step) if r.accelerator.is_main_process else None
    r.model.train()
    if state.step:
        after_step(r, state, save=False)
    while state.step < r.total_steps:
        epoch = r.sampler.epoch
        if refresh and epoch and epoch % refresh == 0 and r.sampler.position == 0 and state.mined_epoch != epoch:
            r.sampler.table = r.table = load_table(r.table_source, epoch)
            tokens, state.mined_epoch = tokenize_table(r.encoder, r.table), epoch
            r.prior = lexical_prior(r.table, r.config)
        for global_rows in r.sampler:
            start = time.perf_counter()
            record = train_step(r, global_rows, tokens, state.step)
            state.step, state.train_seconds = state.step + 1, state.train_seconds + time.perf_counter() - start
            if log:
                log.write(json.dumps(record) + "\n")
            r.accelerator.log(step_scalars(record), step=state.step)
            bar.set_postfix(
                loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", pairs_s=f"{record['pairs_per_s']:.1f}"
            )
            bar.update()
            if r.hooks.step_end:
                r.hooks.step_end(record)
            after_step(r, state)
    bar.close()
    if log:
        log.close()


# ---------------------------------------------------------------- the run


def prepare_output(config: Config, resuming: bool) -> Path:
    """The run directory, checked writable; refuses to clobber a finished model unless
    output.overwrite (or resuming)."""
    out = Path(config.output.dir)
    problem = output_problem(out, directory=True)
    if problem:
        raise ConfigError(f"output.dir {out}: {problem}")
    cache = config.data.hard_negatives.cache
    if config.data.hard_negatives.k and cache and (problem := output_problem(Path(cache), directory=True)):
        raise ConfigError(f"data.hard_negatives.cache {cache}: {problem}")
    if (out / "model").exists() and not (config.output.overwrite or resuming):
        raise ConfigError(
            f"output.dir: {out / 'model'} exists; set output.overwrite true, choose another dir, or --resume"
        )
    if list_checkpoints(out / "checkpoints") and not (config.output.overwrite or resuming):
        raise ConfigError(
            f"output.dir: {out / 'checkpoints'} holds an earlier run's checkpoints; add --resume to "
            "continue it, or set output.overwrite true to start again"
        )
    return out


def recover_interrupted_saves(out: Path) -> None:
    """Before anything looks at the run directory: a model or checkpoint replacement that a crash
    cut between its renames is put back, and what crashed saves left is removed."""
    if recover_replaced(out / "model"):
        logger.warning("restored %s, whose replacement was interrupted", out / "model")
    for path in remove_stale_saves(out) + remove_stale(out, [".model.tmp-*", ".model.old-*"]):
        logger.info("removed %s, left by an interrupted save", path)


def dry_run(config: Config, mixed_precision: str) -> dict:
    """Check the config, every data row and the model; print what training would see; train nothing."""
    out = Path(config.output.dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output.dir {out}: exists and is not a directory")
    documents = read_batch_documents(config)
    encoder = load_encoder(config, mixed_precision)
    resolve_dims(config, encoder.dim)
    pairs = load_pairs(config.data.train, config.data.train_split)
    table = mixed_table(config, pairs, relevance_map(config, pairs), log=True)
    sampler = make_sampler(table, config, 1, documents, log=True)
    sets = load_eval_sets(config)

    def lengths(texts: list[str], prompt: str) -> np.ndarray:  # before truncation, prompt included
        ids = encoder.tokenizer([prompt + t for t in texts], truncation=False, verbose=False)["input_ids"]
        return np.array([len(x) for x in ids])

    print(f"config: ok; model: {config.model.name_or_path} ({encoder.dim} dims, max_length {encoder.spec.max_length})")
    print(
        describe_data(
            table,
            lengths(table.anchor_texts, encoder.spec.query_prompt),
            lengths(table.passage_texts, encoder.spec.document_prompt),
            encoder.spec.max_length,
            len(sampler),
            config.train.epochs,
        )
    )
    if config.data.hard_negatives.k:
        print(f"hard negatives: {config.data.hard_negatives.k} per question would be mined before training")
    if config.data.mix:
        own = config.train.global_batch - sum(mix_rows(config))
        shares = ", ".join(f"{rows} from {source.path}" for source, rows in zip(config.data.mix, mix_rows(config)))
        print(f"each global batch of {config.train.global_batch}: {own} from {config.data.train}, {shares}")
    for name, data in sets.items():
        chosen = " (eval.select scores this one)" if name == selected_set(config) else ""
        print(f"eval set {name}: {data.name}: {len(data.query_ids)} questions, {len(data.corpus_ids)} passages{chosen}")
    memory = run_memory(config, sets.get(selected_set(config)), table)
    if memory is not None:
        print(f"question memory: {len(memory.questions)} training questions linked to {len(memory.rows)} eval passages")
    return {"rows": len(table), "steps_per_epoch": len(sampler)}


def set_up(
    config: Config, accelerator: Accelerator, resume: str | None, hooks: Hooks
) -> tuple[Run, tuple[Path, dict] | None]:
    """Everything the loop works with, built once, and the checkpoint to resume with what it holds
    (None for a fresh run). A checkpoint of another config or process count is refused before the
    table is built; mining at start-up may reuse a complete earlier file."""
    seed_and_determinism(config)
    if config.train.global_batch % accelerator.num_processes:  # before any model loads or anything is mined
        raise ConfigError(
            f"train.global_batch {config.train.global_batch} does not divide over {accelerator.num_processes} processes"
        )
    documents = read_batch_documents(config)  # data.batch_by: refused before the output directory is made
    if accelerator.is_main_process:
        recover_interrupted_saves(Path(config.output.dir))
    accelerator.wait_for_everyone()  # every rank decides on the same directory
    out = prepare_output(config, resume is not None)
    checkpoint = find_checkpoint(out, resume) if resume else None
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    sets = load_eval_sets(config)
    eval_name = selected_set(config)
    eval_data = sets.get(eval_name)
    memory = run_memory(config, eval_data)  # before the model loads: a memory linking nothing is refused
    check_miner(config)
    encoder = load_encoder(config, accelerator.mixed_precision).to(accelerator.device)
    loss, eval_dims = resolve_dims(config, encoder.dim)
    environment = run_environment(accelerator, encoder.source_dir, list(sets.values()))
    saved = read_run_state(checkpoint, config, accelerator.num_processes, environment) if checkpoint else None
    table = load_table(
        TableSource(config, encoder, accelerator, out), saved["mined_epoch"] if saved else 0, resuming=saved is not None
    )
    sampler = make_sampler(table, config, accelerator.num_processes, documents, accelerator.is_main_process)
    if accelerator.is_main_process:
        logger.info(
            "%d rows, %d processes: %d steps per epoch of %d pairs (%d per process, micro-batch %d%s), %d steps",
            len(table),
            accelerator.num_processes,
            len(sampler),
            config.train.global_batch,
            config.train.global_batch // accelerator.num_processes,
            config.train.micro_batch,
            "" if config.train.gradient_cache else ", no gradient cache",
            len(sampler) * config.train.epochs,
        )
        if config.train.layer_decay != 1.0:
            _, layers = layer_depths(encoder)
            logger.info(
                "train.layer_decay %g: layer N of %d learns at lr x %g^(%d - N), the embeddings at lr x %.3g",
                config.train.layer_decay,
                layers,
                config.train.layer_decay,
                layers - 1,
                config.train.layer_decay**layers,
            )
        if config.train.freeze:
            sizes = [(n, p.numel()) for n, p in encoder.transformer.named_parameters()]
            frozen = sum(size for n, size in sizes if under(n, config.train.freeze))
            logger.info(
                "train.freeze %s: %d of %d parameters kept as loaded",
                config.train.freeze,
                frozen,
                sum(size for _, size in sizes),
            )
    prior = lexical_prior(table, config)
    teacher = None
    if config.loss.distill and config.loss.distill_teacher == "reranker":
        teacher = reranker_teacher(config, table, accelerator.device, accelerator.is_main_process)
    elif config.loss.distill:  # the model as it is now, before any step (also when resuming: weights load later)
        prior = prior or LexicalPrior(table.anchor_texts, table.passage_texts, config.lexical)
        teacher = FusedTeacher.from_model(encoder, table, prior, config.loss.distill_weight, config.eval.batch_size)
        prior = prior if config.loss.lexical_scale else None
    if accelerator.is_main_process and checkpoint is None and (out / "checkpoints").exists():
        # output.overwrite: an earlier run's, not this one's; removed only once everything above passed
        shutil.rmtree(out / "checkpoints")
    accelerator.wait_for_everyone()
    model, optimizer = accelerator.prepare(encoder, make_optimizer(encoder, config.train))
    if hooks.prepared:
        hooks.prepared(model, optimizer)
    r = Run(
        config=config,
        accelerator=accelerator,
        encoder=encoder,
        model=model,
        optimizer=optimizer,
        sampler=sampler,
        table=table,
        loss=loss,
        eval_data=eval_data,
        eval_dims=eval_dims,
        out=out,
        hooks=hooks,
        prior=prior,
        teacher=teacher,
        environment=environment,
        eval_name=eval_name,
        other_sets={name: data for name, data in sets.items() if name != eval_name},
        memory=memory,
    )
    return r, ((checkpoint, saved) if checkpoint else None)


def run_memory(config: Config, data: IRDataset | None, table: TrainTable | None = None) -> QuestionMemory | None:
    """eval.memory: every training row's question (data.train's and data.mix's) linked to the
    selected eval set's passages that hold its positive's text; the table is read without mining
    (mined negatives add no question or positive). Exits with one line when none links."""
    if not config.eval.memory or data is None:
        return None
    if table is None:
        pairs = load_pairs(config.data.train, config.data.train_split)
        table = mixed_table(config, pairs, relevance_map(config, pairs))
    anchors = [table.anchor_texts[i] for i in table.anchor_ids]
    positives = [table.passage_texts[i] for i in table.positive_ids]
    try:
        return build_memory(anchors, positives, data.corpus_texts, f"eval.memory: eval set {data.name}")
    except ValueError as err:
        sys.exit(f"error: {err}")


def reranker_teacher(config: Config, table: TrainTable, device: torch.device, show_progress: bool) -> RerankerTeacher:
    """loss.distill_reranker's logits of every training row's own candidates, scored once here."""
    ce = load_reranker(config.loss.distill_reranker, device=str(device))
    logger.info("distillation teacher: re-ranker %s scoring each row's own candidates", config.loss.distill_reranker)
    teacher = RerankerTeacher.from_reranker(ce, table, config.eval.batch_size, "teacher" if show_progress else None)
    del ce  # its weights are not needed again: the logits are kept
    return teacher


def load_eval_sets(config: Config) -> dict[str, IRDataset]:
    """Every data.eval set by name, in the config's order, read and checked before any work."""
    return {entry.name: load_ir(entry.path, entry.split) for entry in eval_sets(config.data)}


def selected_set(config: Config) -> str:
    """The name of the data.eval set that eval.select scores ("" without evaluation)."""
    sets = eval_sets(config.data)
    return config.eval.select_set or (sets[0].name if sets else "")


def lexical_prior(table: TrainTable, config: Config) -> LexicalPrior | None:
    """BM25 of the table's questions against its passages, for a loss trained for the hybrid."""
    if not config.loss.lexical_scale:
        return None
    return LexicalPrior(table.anchor_texts, table.passage_texts, config.lexical)


def seed_and_determinism(config: Config) -> None:
    """Seed every generator; with train.deterministic, deterministic algorithms for everything the
    run computes (training, and the evaluations and mining inside it), cuDNN autotuning off."""
    if config.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    set_seed(config.train.seed, device_specific=True)  # dropout differs per rank; data order does not use it


@contextlib.contextmanager
def determinism_restored():
    """Give back the process's determinism settings after a run (train.run called from a script
    or a test must not leave them changed for whatever runs next)."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
        if saved[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]


def fresh_state(r: Run) -> RunState:
    """A new run's state: the evaluation before training, and the selection that will keep a step."""
    before, before_sets = run_eval(r, "Before") if r.config.eval.before else (None, {})
    selection = Selection(r.config.eval.select) if r.eval_data is not None and r.config.eval.after else None
    return RunState(before=before, selection=selection, before_sets=before_sets)


def resumed_state(r: Run, checkpoint: Path, saved: dict) -> RunState:
    """The model, optimiser, sampler and RNGs restored from `checkpoint`, and the run's state in it;
    newer checkpoints (an abandoned continuation) are set aside."""
    state, sampler = load_checkpoint(r.accelerator, checkpoint, saved, r.config, table_digest(r.table))
    try:
        r.sampler.load_state_dict(sampler)
    except ValueError as err:
        raise ConfigError(f"resume from {checkpoint}: {err}") from None
    logger.info("resumed from %s at step %d", checkpoint, state.step)
    if r.accelerator.is_main_process:
        for path in set_aside_newer(r.out, state.step):
            logger.warning("resume: a newer checkpoint of an abandoned continuation set aside as %s", path)
    r.accelerator.wait_for_everyone()
    return state


def run(config: Config, accelerator: Accelerator, resume: str | None = None, hooks: Hooks | None = None) -> dict:
    """Set up, start (evaluating before) or resume, train (evaluating and checkpointing as
    configured), keep the selected state, save and report. Returns what results.json holds (on the
    main process; the others get the step count)."""
    with determinism_restored():
        r, checkpoint = set_up(config, accelerator, resume, hooks or Hooks())
        state = resumed_state(r, *checkpoint) if checkpoint else fresh_state(r)
        if config.report.report_to:
            accelerator.init_trackers(TRACKER_PROJECT, config=tracker_config(config))
            if state.before and not state.step:
                accelerator.log(eval_scalars(state.before, state.before_sets), step=0)
        train_loop(r, state)
        return finish(r, state)


def finish(r: Run, state: RunState) -> dict:
    """Keep the selected state (re-saving the model when it is not the last step's), write the
    results, the plot and the model card, and say where they are."""
    selection, after = state.selection, None
    if selection is not None and selection.best_state is not None:
        after = selection.best_results
        if selection.best_step != state.step:  # every process: the main one saves it
            r.encoder.load_state_dict(selection.best_state)
            if r.accelerator.is_main_process:
                save_model(r.out, r.encoder, r.config, trained_on(r))
    after_sets = selection.best_sets if selection is not None else {}
    results = {"steps": state.step, "train_seconds": state.train_seconds}
    if r.accelerator.is_main_process:
        sets = {}
        for entry in eval_sets(r.config.data):  # the config's order
            if entry.name == r.eval_name:
                sets[entry.name] = (r.eval_data, state.before, after)
            else:
                sets[entry.name] = (
                    r.other_sets[entry.name],
                    state.before_sets.get(entry.name),
                    after_sets.get(entry.name),
                )
        query_ids = r.eval_data.query_ids if r.eval_data else []
        trained = table_rows(r.table)
        results = save_results(r.out, r.config, state, after, query_ids, sets, r.eval_name, trained)
        written = [r.out / "model", r.out / "results.md"]
        title = f"{r.config.model.name_or_path} on {r.eval_data.name if r.eval_data else ''}"
        if r.config.report.plot and plot_results(
            r.out / "results.png",
            results["before"],
            results["after"],
            title,
            results["frontier"]["before"],
            results["frontier"]["after"],
            results["lexical"],
        ):
            write_atomic(r.out / "model" / "results.png", (r.out / "results.png").read_bytes())
            written.append(r.out / "results.png")
        drawn = draw_map(r, state.before, after, title)
        if drawn:
            written.append(drawn)
        if r.config.report.model_card:
            rows = r.table.source_rows or [len(r.table)]
            card = model_card(
                r.config, results, state.step, state.train_seconds, rows, drawn is not None, list(r.loss.dims)
            )
            write_atomic(r.out / "model" / "README.md", card)
            written.append(r.out / "model" / "README.md")
        if "tensorboard" in r.config.report.report_to:
            written.append(r.out / TRACKER_PROJECT)
        kept = f", step {selection.best_step} kept" if selection else ""
        print(
            f"\nsaved {r.out / 'model'} ({state.step} steps in {state.train_seconds:.0f} s{kept})\n"
            + "".join(f"  {path}\n" for path in written),
            flush=True,
        )
    r.accelerator.wait_for_everyone()
    return results


def draw_map(r: Run, before: dict | None, after: dict | None, title: str) -> Path | None:
    """results_map.png (also into model/), or one line saying why there is none; None then."""
    if not r.config.report.map or r.eval_data is None:
        return None
    problem = map_problem(len(r.eval_data.corpus_ids))
    if problem:
        print(f"no results_map.png: {problem} (report.map false turns it off)", flush=True)
        return None
    start = time.perf_counter()
    positives = {r.table.passage_texts[i] for i in np.unique(r.table.positive_ids)}
    try:
        path = plot_map(r.out / "results_map.png", before, after, r.eval_data, positives, title)
    except Exception as err:  # umap-learn and numba raise many types: the run's results stand without the map
        print(f"no results_map.png: drawing it failed ({type(err).__name__}: {err})", flush=True)
        return None
    if path is None:
        return None
    write_atomic(r.out / "model" / "results_map.png", path.read_bytes())
    logger.info("results_map.png: %.1f s", time.perf_counter() - start)
    return path


def main(argv: list[str] | None = None, hooks: Hooks | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config, options = parse_command_line(argv)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    hooks = hooks or Hooks()
    try:
        if options.dry_run:
            return dry_run(config, resolve_precision(config.train.mixed_precision))
        accelerator = make_accelerator(
            config.train.mixed_precision, config.report.report_to, config.output.dir, **hooks.accelerator_kwargs
        )
    except (ConfigError, DataError) as err:
        sys.exit(f"error: {err}")
    try:
        return run(config, accelerator, options.resume, hooks)
    except (ConfigError, DataError) as err:
        sys.exit(f"error: {err}")
    except OSError as err:  # a write failed (disk full, removed folder): what was complete before stays so
        sys.exit(f"error: {err.filename + ': ' if err.filename else ''}{err.strerror or err}")
    finally:
        accelerator.end_training()


if __name__ == "__main__":
    main()
