"""The run's typed config: nested dataclasses loaded from YAML, `--section.key value` overrides,
unknown keys and wrong types rejected with the key's name, cross-field checks in one place, and
the command line (`--config`, `--resume`, `--dry-run`, `--help`)."""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import sys
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from model import POOLING_MODES, ModelConfig
from retrieval.metrics import METRICS
from retrieval.settings import LexicalConfig, MineConfig, check_lexical_config, check_mine_config, check_precision_flags


@dataclass
class EvalSetConfig:
    name: str = ""  # shown in the results; "": the directory's name
    path: str = ""  # BEIR directory or pairs dataset with a held-out split
    split: str = ""  # "": data.eval_split


@dataclass
class MixSourceConfig:
    path: str = ""  # pairs/triplets file or hub dataset id, read like data.train
    split: str | None = None  # split of a hub dataset
    weight: float = 0.0  # this share of every global batch (data.train gets what the sources leave)


@dataclass
class DataConfig:
    train: str = ""  # pairs/triplets: .jsonl/.csv/.parquet file or hub dataset id
    train_split: str | None = None  # split of a hub dataset (e.g. "train")
    # BEIR directory or pairs dataset with a held-out split, or a list of named sets
    # [{name, path, split}], each scored at every evaluation; null: no evaluation
    eval: str | list[EvalSetConfig] | None = None
    eval_split: str = "dev"
    mix: list[MixSourceConfig] = field(default_factory=list)  # [{path, weight}]: their shares of every batch
    qrels: str | None = None  # BEIR directory whose qrels/<qrels_split>.tsv adds known relevant passages
    qrels_split: str = "train"
    hard_negatives: MineConfig = field(default_factory=MineConfig)  # k > 0: mine before training
    # "": batches spread rows sharing a text apart | document: a batch keeps rows whose positive comes
    # from one source document of data.qrels' corpus together (its in-batch negatives are then topical)
    batch_by: str = ""


@dataclass
class LossConfig:
    dims: list[int] = field(default_factory=list)  # Matryoshka dims; []: full size and powers of two down to 32
    weights: list[float] = field(default_factory=list)  # one per dim; []: all 1
    temperature: float = 0.05  # logits = cos / temperature (scale 20)
    symmetric: bool = False  # add the document->query term
    gte: bool = False  # GTE's improved contrastive loss: the batch's queries and passages join each softmax
    lexical_scale: float = 0.0  # train for the hybrid: logits + this x the BM25 prior (lexical.*); 0: off
    distill: float = 0.0  # + this x KL(teacher || model): distil the teacher's ranking into the model; 0: off
    distill_teacher: str = "fused"  # fused: the base model + BM25 | reranker: distill_reranker's logits
    distill_weight: float = 0.45  # fused teacher: its dense weight (the base model's), the rest BM25's
    distill_temperature: float = 0.05  # the teacher's distribution: softmax(teacher score / this)
    distill_reranker: str = ""  # reranker teacher: a re-ranker train_reranker.py saved


@dataclass
class TrainConfig:
    epochs: int = 1
    global_batch: int = 512  # contrastive batch over all processes
    micro_batch: int = 32  # rows embedded at once (memory), per process; does not change the result
    gradient_cache: bool = True  # false: no pass without grad (less compute), all activations held at once
    lr: float = 2e-5
    warmup_ratio: float = 0.1  # warm-up steps = ceil(ratio * total steps)
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    weight_decay: float = 0.01  # AdamW; never on biases and LayerNorm
    layer_decay: float = 1.0  # layer N of L learns at lr x this^(L - 1 - N), the embeddings this^L; 1: off
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0  # null: no clipping
    seed: int = 42
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | no
    deterministic: bool = False  # deterministic CUDA algorithms (CPU runs are bitwise reproducible anyway)
    gradient_checkpointing: bool = False
    freeze: list[str] = field(default_factory=list)  # parameter name prefixes kept as loaded (say embeddings)
    drop_last: bool = True  # drop an epoch's short last batch
    optimizer: str = "adamw"  # adamw | sgd (plain SGD: for tests that must see a gradient off by a factor)


@dataclass
class EvalConfig:
    before: bool = True
    after: bool = True
    batch_size: int = 64
    dims: list[int] = field(default_factory=list)  # []: loss.dims
    every: str = "end"  # end | epoch | N: evaluate every N optimiser steps (and at the end)
    select: str = "ndcg@10:mean"  # the evaluated checkpoint kept: METRIC:DIM, METRIC:mean (over dims), or last
    select_set: str = ""  # the data.eval set eval.select scores (and BM25 is fused on); "": the first
    precisions: list[str] = field(
        default_factory=lambda: ["float32", "int8", "binary"]
    )  # the storage frontier; [float32]: off
    rescore: int = 0  # also rescore the top N (>= 100) binary candidates with the float32 query; 0: no
    rerank: str = ""  # a re-ranker train_reranker.py saved: each dim's fused top k re-ranked in the report too
    memory: bool = False  # the report also fuses with question memory: the training questions as keys of their passages


@dataclass
class CheckpointConfig:
    every: str = "epoch"  # epoch | N optimiser steps | no; the last step is always saved (unless no)
    keep: int = 2  # the newest K complete checkpoints are kept under output.dir/checkpoints


@dataclass
class ReportConfig:
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # tensorboard | wandb | []: none
    plot: bool = True  # results.png: NDCG@10 against dimension, before and after
    map: bool = True  # results_map.png: a UMAP of 2,000 passages before and after (needs umap-learn)
    model_card: bool = True  # README.md in the saved model (Hugging Face format)


@dataclass
class OutputConfig:
    dir: str = "runs/model"  # model/ (sentence-transformers), results.json/md/png, train_log.jsonl, checkpoints/
    overwrite: bool = False  # replace a finished model in output.dir


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    lexical: LexicalConfig = field(default_factory=LexicalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


class ConfigError(ValueError):
    """A bad config file, key or value; the message names the key."""


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (Union, UnionType) and NoneType in get_args(hint):
        rest = [arg for arg in get_args(hint) if arg is not NoneType]
        return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), True
    return hint, False


def coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` (from YAML or the command line) as type `hint`, or a ConfigError naming `key`."""
    hint, optional = _unwrap_optional(hint)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("null", "none")):
        if optional:
            return None
        raise ConfigError(f"{key}: may not be null")
    if get_origin(hint) in (Union, UnionType):  # str | list[...]: a list, or text that is not one
        text, listed = get_args(hint)
        is_list = isinstance(value, list) or (isinstance(value, str) and value.strip().startswith("["))
        return coerce(value, listed if is_list else text, key)
    if get_origin(hint) is list:
        if isinstance(value, str):
            try:
                listed = value.strip().startswith("[") or is_dataclass(get_args(hint)[0])
                value = yaml.safe_load(value) if listed else [v for v in value.split(",") if v]
            except yaml.YAMLError as err:
                raise ConfigError(f"{key}: not a YAML list ({str(err).splitlines()[0]})") from None
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item_hint = get_args(hint)[0]
        if is_dataclass(item_hint):
            return [build_config(item_hint, item, f"{key}[{i}].") for i, item in enumerate(value)]
        return [coerce(item, item_hint, f"{key}[{i}]") for i, item in enumerate(value)]
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)  # YAML reads 2e-5 as a string
        if number is not None and math.isfinite(number):
            return number
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):  # YAML 1.1 reads no/off/false as False and yes/on as True
            return "no" if not value else "yes"
        if isinstance(value, int) and not isinstance(value, bool):  # `every: 50` in YAML
            return str(value)
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def build_config(cls: type, raw: dict, prefix: str = "") -> Any:
    """A dataclass from a nested dict; unknown keys and wrong types raise ConfigError with the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = [name for name in raw if name not in names]
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in raw.items():
        hint = hints[name]
        if is_dataclass(hint):
            kwargs[name] = build_config(hint, value or {}, f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(value, hint, prefix + name)
    return cls(**kwargs)


def apply_override(raw: dict, key: str, text: str) -> None:
    """Set `raw[a][b] = text` for key 'a.b', after checking the key exists. String fields take the
    text as it is (prompts have colons); other fields parse it when the config is built."""
    cls, node, parts = Config, raw, key.split(".")
    for depth, part in enumerate(parts):
        known = {f.name: f for f in fields(cls)}
        if part not in known:
            raise ConfigError(f"unknown key {'.'.join(parts[: depth + 1])} (known: {', '.join(sorted(known))})")
        hint = get_type_hints(cls)[part]
        if depth == len(parts) - 1:
            if is_dataclass(hint):
                raise ConfigError(f"{key}: is a section; set one of its keys, e.g. --{key}.{fields(hint)[0].name}")
            node[part] = text
            return
        if not is_dataclass(hint):
            raise ConfigError(f"{'.'.join(parts[: depth + 1])}: is not a section")
        if node.get(part) is None:  # absent, or an empty section in the YAML
            node[part] = {}
        if not isinstance(node[part], dict):
            raise ConfigError(f"{'.'.join(parts[: depth + 1])}: expected a mapping, got {node[part]!r}")
        node, cls = node[part], hint


def check_config(config: Config) -> None:
    """Cross-field checks, all in one place. Model-dependent ones (dims vs. size) come after loading."""
    if not config.data.train:
        raise ConfigError("data.train: required (a pairs file or hub dataset id)")
    check_model(config.model)
    check_train(config.train)
    check_loss(config.loss)
    check_eval(config)
    check_data_sources(config)
    check_outputs(config)
    if config.data.hard_negatives.refresh and not config.data.hard_negatives.k:
        raise ConfigError("data.hard_negatives.refresh: re-mining needs data.hard_negatives.k > 0")
    if config.data.hard_negatives.refresh and config.loss.distill:
        raise ConfigError("loss.distill with data.hard_negatives.refresh: the teacher scores the table it started with")
    try:
        check_precision_flags(config.eval.precisions, config.eval.rescore, keys=("eval.precisions", "eval.rescore"))
        check_mine_config(config.data.hard_negatives, "data.hard_negatives")
        check_lexical_config(config.lexical, "lexical")
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_model(m: ModelConfig) -> None:
    if m.pooling is not None and m.pooling not in POOLING_MODES:
        raise ConfigError(
            f"model.pooling: {m.pooling!r} is not one of {', '.join(POOLING_MODES)}, or null for the model's"
        )
    if m.max_length is not None and m.max_length < 1:
        raise ConfigError(f"model.max_length: must be at least 1, or null for the model's, got {m.max_length}")


def check_train(t: TrainConfig) -> None:
    for key, value in (
        ("train.epochs", t.epochs),
        ("train.global_batch", t.global_batch),
        ("train.micro_batch", t.micro_batch),
    ):
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if t.lr <= 0 or not 0 <= t.warmup_ratio <= 1 or not 0 <= t.min_lr_ratio <= 1:
        raise ConfigError("train.lr must be > 0; train.warmup_ratio and train.min_lr_ratio in [0, 1]")
    if not 0 <= t.seed < 2**32 - 1024:  # numpy's seed range, less room for the rank each process adds
        raise ConfigError(f"train.seed: must be in [0, 2^32 - 1024), got {t.seed}")
    if t.mixed_precision not in ("auto", "bf16", "no"):
        raise ConfigError(f"train.mixed_precision: {t.mixed_precision!r} is not auto, bf16 or no")
    if t.optimizer not in ("adamw", "sgd"):
        raise ConfigError(f"train.optimizer: {t.optimizer!r} is not adamw or sgd")
    if len(t.adam_betas) != 2 or not all(0 <= beta < 1 for beta in t.adam_betas):
        raise ConfigError(f"train.adam_betas: expected two numbers in [0, 1), got {t.adam_betas}")
    if t.adam_eps <= 0 or t.weight_decay < 0:
        raise ConfigError(f"train.adam_eps must be > 0 and train.weight_decay >= 0, got {t.adam_eps}, {t.weight_decay}")
    if not 0 < t.layer_decay <= 1:
        raise ConfigError(f"train.layer_decay: must be in (0, 1] (1: off), got {t.layer_decay}")
    if t.max_grad_norm is not None and t.max_grad_norm <= 0:
        raise ConfigError(f"train.max_grad_norm: must be > 0, or null for no clipping, got {t.max_grad_norm}")


def check_loss(loss: LossConfig) -> None:
    if loss.lexical_scale < 0:
        raise ConfigError(f"loss.lexical_scale: must be >= 0 (0: off), got {loss.lexical_scale}")
    if loss.gte and (loss.symmetric or loss.distill or loss.lexical_scale):
        other = (
            "loss.symmetric (its document->query pairs are inside it)"
            if loss.symmetric
            else ("loss.distill" if loss.distill else "loss.lexical_scale")
        )
        raise ConfigError(f"loss.gte: not with {other}")
    if loss.distill < 0:
        raise ConfigError(f"loss.distill: must be >= 0 (0: off), got {loss.distill}")
    if not 0 <= loss.distill_weight <= 1:
        raise ConfigError(f"loss.distill_weight: must be in [0, 1], got {loss.distill_weight}")
    if loss.distill_temperature <= 0:
        raise ConfigError(f"loss.distill_temperature: must be > 0, got {loss.distill_temperature}")
    check_distill_teacher(loss)
    if loss.temperature <= 0:
        raise ConfigError(f"loss.temperature: must be > 0, got {loss.temperature}")
    if loss.weights and len(loss.weights) != len(loss.dims):
        raise ConfigError(f"loss.weights: {len(loss.weights)} weights for {len(loss.dims)} loss.dims")
    if loss.weights and not (all(w >= 0 for w in loss.weights) and any(w > 0 for w in loss.weights)):
        raise ConfigError(f"loss.weights: each must be >= 0, and one > 0, got {loss.weights}")
    if len(set(loss.dims)) != len(loss.dims):
        raise ConfigError(f"loss.dims: repeated dims in {loss.dims}")


def check_distill_teacher(loss: LossConfig) -> None:
    if loss.distill_teacher not in ("fused", "reranker"):
        raise ConfigError(f"loss.distill_teacher: {loss.distill_teacher!r} is not fused or reranker")
    if loss.distill_teacher == "fused":
        if loss.distill_reranker:
            raise ConfigError("loss.distill_reranker: only with loss.distill_teacher reranker")
        return
    if not loss.distill:
        raise ConfigError("loss.distill_teacher reranker: distillation is off (loss.distill 0)")
    if not loss.distill_reranker:
        raise ConfigError("loss.distill_teacher reranker: needs loss.distill_reranker (a train_reranker.py output)")
    from retrieval.rerank import saved_problem  # here: loading a config imports no torch model code

    if problem := saved_problem(Path(loss.distill_reranker)):
        raise ConfigError(f"loss.distill_reranker: {loss.distill_reranker}: {problem}")


def check_eval(config: Config) -> None:
    if config.eval.batch_size < 1:
        raise ConfigError(f"eval.batch_size: must be at least 1, got {config.eval.batch_size}")
    every = config.eval.every
    if every not in ("end", "epoch") and not (every.isdecimal() and int(every) > 0):
        raise ConfigError(f"eval.every: {every!r} is not end, epoch or a number of steps above 0")
    metric, _, dim = config.eval.select.partition(":")
    hybrid = dim.startswith("hybrid:")
    dim = dim.removeprefix("hybrid:")
    if hybrid and config.lexical.retriever == "none":
        raise ConfigError(
            f"eval.select: {config.eval.select!r} selects on the model fused with BM25: needs lexical.retriever bm25"
        )
    if config.eval.select != "last" and (metric not in METRICS or not (dim == "mean" or dim.isdecimal())):
        raise ConfigError(
            f"eval.select: {config.eval.select!r} is not last, METRIC:DIM, METRIC:mean, METRIC:hybrid:DIM or "
            "METRIC:hybrid:mean "
            f"(metrics: {', '.join(METRICS)})"
        )
    if every != "end" and not (config.eval.after and config.data.eval):
        raise ConfigError(f"eval.every: {every!r} needs data.eval and eval.after true")
    if config.eval.memory and config.lexical.retriever == "none":
        raise ConfigError("eval.memory: remembers in the model fused with BM25: needs lexical.retriever bm25")
    if config.eval.memory and not config.data.eval:
        raise ConfigError("eval.memory: links the training questions to an eval set's passages: needs data.eval")
    if config.eval.rerank:
        from retrieval.rerank import saved_problem  # here: loading a config imports no torch model code

        if config.lexical.retriever == "none":
            raise ConfigError("eval.rerank: re-ranks the model fused with BM25: needs lexical.retriever bm25")
        if problem := saved_problem(Path(config.eval.rerank)):
            raise ConfigError(f"eval.rerank: {config.eval.rerank}: {problem}")
        check_rerank_split(config)


def check_rerank_split(config: Config) -> None:
    """eval.rerank is never scored on the split it was trained on (the set eval.select scores)."""
    import json

    from data import data_path

    settings = json.loads((Path(config.eval.rerank) / "reranker.json").read_text(encoding="utf-8"))
    sets = eval_sets(config.data)
    scored = next((s for s in sets if s.name == config.eval.select_set), sets[0] if sets else None)
    if scored and (data_path(scored.path), scored.split) == (settings.get("data_path"), settings.get("split")):
        raise ConfigError(
            f"eval.rerank: {config.eval.rerank} was trained on {scored.split} of {scored.path}, the set evaluated"
        )


def eval_sets(data: DataConfig) -> list[EvalSetConfig]:
    """data.eval as named sets, names and splits filled in: a single path is one set named after
    its directory; [] without evaluation."""
    if not data.eval:
        return []
    listed = [EvalSetConfig(path=data.eval)] if isinstance(data.eval, str) else data.eval
    return [
        EvalSetConfig(
            name=entry.name or Path(entry.path.rstrip("/")).name or entry.path,
            path=entry.path,
            split=entry.split or data.eval_split,
        )
        for entry in listed
    ]


def mix_rows(config: Config) -> list[int]:
    """Rows of every global batch drawn from each data.mix source, in order (data.train gets the rest)."""
    return [round(source.weight * config.train.global_batch) for source in config.data.mix]


def check_data_sources(config: Config) -> None:
    """data.eval's sets and eval.select_set; data.mix's sources and their shares of a batch."""
    sets = eval_sets(config.data)
    names = [entry.name for entry in sets]
    for i, entry in enumerate(sets):
        if not entry.path:
            raise ConfigError(f"data.eval[{i}].path: required (a BEIR directory or pairs dataset)")
        if entry.name in names[:i]:
            raise ConfigError(f"data.eval[{i}].name: {entry.name!r} names two sets; give each its own name")
    if config.eval.select_set and config.eval.select_set not in names:
        raise ConfigError(
            f"eval.select_set: {config.eval.select_set!r} is not a data.eval set (sets: {', '.join(names) or 'none'})"
        )
    if config.data.batch_by not in ("", "document"):
        raise ConfigError(f"data.batch_by: {config.data.batch_by!r} is not '' (spread) or document")
    if config.data.batch_by and not config.data.qrels:
        raise ConfigError("data.batch_by document: needs data.qrels, a BEIR directory whose corpus gives doc_id")
    if config.data.batch_by and config.data.mix:
        raise ConfigError("data.batch_by document: not with data.mix (each batch holds each source's share)")
    if not config.data.mix:
        return
    for i, source in enumerate(config.data.mix):
        if not source.path:
            raise ConfigError(f"data.mix[{i}].path: required (a pairs file or hub dataset id)")
        if not 0 < source.weight < 1:
            raise ConfigError(f"data.mix[{i}].weight: a share of every batch in (0, 1), got {source.weight}")
    rows = mix_rows(config)
    if any(count < 1 for count in rows) or sum(rows) >= config.train.global_batch:
        raise ConfigError(
            f"data.mix: weights {[s.weight for s in config.data.mix]} give {rows} rows of each global batch of "
            f"{config.train.global_batch}; each source needs at least 1 and data.train at least 1"
        )
    if not config.train.drop_last:
        raise ConfigError("data.mix: needs train.drop_last true (every batch holds each source's share)")


def check_outputs(config: Config) -> None:
    ckpt = config.checkpoint
    if ckpt.every not in ("epoch", "no") and not (ckpt.every.isdecimal() and int(ckpt.every) > 0):
        raise ConfigError(f"checkpoint.every: {ckpt.every!r} is not epoch, no or a number of steps above 0")
    if ckpt.keep < 1:
        raise ConfigError(f"checkpoint.keep: must be at least 1, got {ckpt.keep}")
    unknown = [name for name in config.report.report_to if name not in ("tensorboard", "wandb")]
    if unknown:
        raise ConfigError(f"report.report_to: {unknown[0]!r} is not tensorboard or wandb (or [] for none)")


@dataclass
class RunOptions:
    """What the command line asks of the run besides the config."""

    resume: str | None = None  # "latest", or a checkpoint directory
    dry_run: bool = False


USAGE = """usage: python train.py --config FILE [--section.key VALUE ...] [--resume [CHECKPOINT]] [--dry-run]
       accelerate launch train.py --config FILE ...   |   torchrun --nproc_per_node N train.py --config FILE ...

  --config FILE        a YAML file of the sections below (configs/ has examples)
  --section.key VALUE  override one key (--train.lr 1e-5, --loss.dims 64,32, --model.query_prompt=null)
  --resume [DIR]       continue from the newest complete checkpoint in output.dir/checkpoints, or from DIR
  --dry-run            check the config, every data row and the model; print the data's shape; train nothing
  --help               this text

The keys, with their defaults (README.md, "Train", explains each):
"""


def field_comments(cls: type) -> dict[str, str]:
    """The `# comment` after each field of a dataclass's source: the key's help."""
    found = {}
    with contextlib.suppress(OSError, TypeError):
        for line in inspect.getsource(cls).splitlines():
            match = re.match(r"\s+(\w+): [^#]*#\s*(.*)$", line)
            if match:
                found[match.group(1)] = match.group(2)
    return found


def describe_keys(cls: type | None = None, prefix: str = "") -> list[str]:
    """One line per key: name, default, and the comment its dataclass gives it."""
    cls = cls or Config
    lines, comments, hints = [], field_comments(cls), get_type_hints(cls)
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            lines += ["", f"{prefix}{f.name}:"] if not prefix else []
            lines += describe_keys(hints[f.name], f"{prefix}{f.name}.")
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        shown = yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        text = f"  {prefix}{f.name} = {shown}"
        comment = comments.get(f.name)
        lines.append(f"{text:<48} {comment}" if comment else text)
    return lines


def parse_command_line(argv: list[str] | None) -> tuple[Config, RunOptions]:
    """`--config FILE` plus `--a.b value` / `--a.b=value` overrides, `--resume [DIR]`, `--dry-run`;
    `--help` prints the usage and every key and exits."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(USAGE + "\n".join(describe_keys()))
        sys.exit(0)
    path, overrides, options = None, [], RunOptions()
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; use --config FILE and --section.key value (--help)")
        key, eq, value = arg[2:].partition("=")
        if key == "dry-run":
            options.dry_run = True
            continue
        if key == "resume":  # a bare --resume: the newest complete checkpoint
            options.resume = value if eq else (args.pop(0) if args and not args[0].startswith("--") else "latest")
            continue
        if not eq:
            if not args:
                raise ConfigError(f"--{key}: missing its value (--help lists the keys)")
            value = args.pop(0)
        if key == "config":
            path = value
        else:
            overrides.append((key, value))
    raw: dict = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text ({err})") from None
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: {err}") from None
    for key, value in overrides:
        apply_override(raw, key, value)
    config = build_config(Config, raw)
    check_config(config)
    return config, options


def flatten(node: dict, prefix: str = "") -> dict:
    """A nested dict (asdict(config), a read train_config.yaml) as dotted keys: {"train.lr": 1e-4, ...}."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def load_config(argv: list[str] | None) -> Config:
    """The config alone, for callers that do not run it (tests, tools)."""
    return parse_command_line(argv)[0]
