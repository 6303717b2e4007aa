"""A run's state on disk, and which evaluated state is kept.

A checkpoint is a directory output.dir/checkpoints/step-NNNNNNNN holding everything a run needs to
continue exactly where it stopped: the model and optimiser (Accelerate's `save_state`), every
rank's RNG state (`rng_<rank>.json`: Python's, numpy's, torch's CPU and CUDA generators), and
`run_state.json` with its arrays in `run_state.safetensors`: the step, the sampler's position, the
evaluations so far, the best state kept, the config and a digest of the training data. It is
written under `.tmp` and renamed into place by the main process after every rank has finished,
and `complete.json` (the size and sha256 of every file) is written last: a directory without it,
or whose files do not match it, is not a checkpoint. Resume takes the newest one that verifies and
says why it skipped any other.

A checkpoint is data, never code: the run state is JSON and safetensors (rebuilt by
`common.plain`, which makes nothing but arrays and the named dataclasses), the RNG states JSON,
and the one file in pickle format, Accelerate's `optimizer.bin`, is read with
`torch.load(weights_only=True)`, which rebuilds tensors and plain containers and refuses anything
else. A checkpoint of an older version (a pickled `run_state.pt`) is refused, not loaded.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import pickle
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from common.files import (
    MANIFEST,
    directory_checksums,
    listed_files_problem,
    read_manifest,
    recover_replaced,
    remove_stale,
    replace_directory,
    write_atomic,
    write_manifest,
)
from common.plain import PlainDataError, from_plain, to_plain
from data import IRDataset, TrainTable
from retrieval.metrics import DimResult
from training.config import Config, ConfigError
from training.selection import Selection

logger = logging.getLogger("train")

SMALL_FILE = 10 << 20  # a base model's files under this size are hashed (configs, tokenizer), its weights not
RUN_STATE = "run_state.json"
RUN_ARRAYS = "run_state.safetensors"
BEST = "best.safetensors"
FORMAT = 2  # 1: run_state.pt and the sampler as pickles (refused)
PLAIN_TYPES = {"DimResult": DimResult}
RUN_STATE_KEYS = (
    "format",
    "step",
    "sampler",
    "train_seconds",
    "mined_epoch",
    "before",
    "world_size",
    "config",
    "data_digest",
    "environment",
    "selection",
)
# Keys that may change between a run and its resumption: where and how often it writes, not what it computes.
# (Batch sizes are not among them: they change embeddings in the last bits, so the evaluations and
# mined negatives of a resumed run would not be those of the run it continues.)
RESUMABLE_CHANGES = (
    "output.",
    "checkpoint.",
    "report.",
    "eval.before",
)


@dataclass
class RunState:
    """What a run has done, beyond the model, optimiser, sampler and RNGs that Accelerate saves."""

    step: int = 0
    train_seconds: float = 0.0
    mined_epoch: int = 0  # the epoch whose mined negatives are in the table (0: mined before training)
    before: dict[int, DimResult] | None = None
    selection: Selection | None = None
    before_sets: dict[str, dict[int, DimResult]] = field(default_factory=dict)  # the other data.eval sets


# ---------------------------------------------------------------- save


def save_checkpoint(accelerator: Accelerator, out: Path, state: RunState, config: Config, context: dict) -> Path:
    """Write step `state.step`'s checkpoint on every rank; the main process renames it into place
    and prunes to checkpoint.keep. `context` is what the run is checked against on resume and
    where its sampler stands: {"data_digest", "environment", "sampler"}. Returns the final path."""
    root = out / "checkpoints"
    final = root / f"step-{state.step:08d}"
    partial = root / f"{final.name}.tmp"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by a crash
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))  # model and optimiser (and Accelerate's pickled RNG file: replaced below)
    rng_file = partial / f"rng_{accelerator.process_index}.json"
    write_atomic(rng_file, json.dumps(rng_state()))
    (partial / f"random_states_{accelerator.process_index}.pkl").unlink(missing_ok=True)
    if accelerator.is_main_process:
        run_state = {
            "format": FORMAT,
            "step": state.step,
            "sampler": context["sampler"],
            "train_seconds": state.train_seconds,
            "mined_epoch": state.mined_epoch,
            "before": state.before,
            "before_sets": state.before_sets,
            "world_size": accelerator.num_processes,
            "config": asdict(config),
            "data_digest": context["data_digest"],
            "environment": context["environment"],
            "selection": state.selection.state_dict() if state.selection else None,
        }
        arrays: dict[str, torch.Tensor] = {}
        plain = to_plain(run_state, arrays)
        save_file(arrays, str(partial / RUN_ARRAYS))
        write_atomic(partial / RUN_STATE, json.dumps(plain))
        if state.selection is not None and state.selection.best_state is not None and state.selection.select != "last":
            save_file({k: v.contiguous() for k, v in state.selection.best_state.items()}, str(partial / BEST))
    accelerator.wait_for_everyone()  # every rank's RNG file is on disk
    if accelerator.is_main_process:
        write_manifest(partial, format=FORMAT, step=state.step, world_size=accelerator.num_processes)
        replace_directory(partial, final)  # never a moment without a complete copy of this step
        prune(root, config.checkpoint.keep)
    accelerator.wait_for_everyone()
    return final


def rng_state() -> dict:
    """This process's generators as plain data: Python's, numpy's global, torch's CPU and CUDA ones."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(words), gauss],
        "numpy": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict, where: Path) -> None:
    """Restore what `rng_state` saved; an unreadable state fails the resume (it would silently
    give another run)."""
    try:
        version, words, gauss = state["python"]
        name, keys, pos, has_gauss, cached = state["numpy"]
        python_state = (version, tuple(words), gauss)
        numpy_state = (name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached)
        torch_state = torch.tensor(state["torch"], dtype=torch.uint8)
        cuda = [torch.tensor(s, dtype=torch.uint8) for s in state.get("cuda", [])]
        if torch.cuda.is_available() and len(cuda) != torch.cuda.device_count():
            devices = torch.cuda.device_count()
            raise ValueError(f"{len(cuda)} CUDA generator states, this process sees {devices} devices")
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as err:
        raise ConfigError(f"--resume: {where} is not a readable RNG state ({err})") from err


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints (an incomplete one is never the only one kept)."""
    complete = [path for path in list_checkpoints(root) if verify(path, checksums=False) is None]
    for path in complete[keep:]:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- find and verify


def remove_stale_saves(out: Path) -> list[Path]:
    """What a crash during a save left under out/checkpoints: a checkpoint replaced by a re-save
    of its step and not yet renamed back is restored from its .old copy; step-N.tmp and the other
    .old copies are never checkpoints and are removed."""
    root = out / "checkpoints"
    for old in sorted(root.glob(".step-*.old-*")) if root.is_dir() else []:
        name = old.name[1:].rsplit(".old-", 1)[0]
        if recover_replaced(root / name):
            logger.warning("restored %s, whose re-save was interrupted", root / name)
    return remove_stale(root, ["step-*.tmp", ".step-*.old-*"])


def list_checkpoints(root: Path) -> list[Path]:
    """step-* directories under root, newest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdecimal()]
    return sorted(found, key=lambda p: int(p.name[5:]), reverse=True)


def verify(directory: Path, checksums: bool = True) -> str | None:
    """None when `directory` is a complete checkpoint of this version, else the reason it is not.
    Without `checksums`, only that every listed file is there with its size (cheap: for pruning)."""
    manifest, problem = read_manifest(directory)
    if problem:
        return problem
    world_size = manifest.get("world_size")
    if not isinstance(world_size, int) or world_size < 1:
        return f"{MANIFEST} is malformed (no process count)"
    if manifest.get("format") != FORMAT:
        return (
            f"written by an older train.py, whose run state is a pickle (format {manifest.get('format', 1)!r}, "
            f"not {FORMAT}); resume does not load pickles: start the run again"
        )
    for name in [RUN_STATE, RUN_ARRAYS] + [f"rng_{rank}.json" for rank in range(world_size)]:
        if name not in manifest["files"]:
            return f"{name} is missing"
    return listed_files_problem(directory, manifest["files"], checksums)


def find_checkpoint(out: Path, requested: str) -> Path:
    """The checkpoint to resume from: `requested` itself (which must verify), or for "latest" the
    newest under out/checkpoints that verifies, logging each one skipped and why."""
    if requested != "latest":
        path = Path(requested)
        reason = verify(path) if path.is_dir() else "no such directory"
        if reason:
            raise ConfigError(f"--resume {path}: not a complete checkpoint: {reason}")
        return path
    for path in list_checkpoints(out / "checkpoints"):
        reason = verify(path)
        if reason is None:
            return path
        logger.warning("resume: skipping %s: %s", path, reason)
    raise ConfigError(f"--resume: no complete checkpoint under {out / 'checkpoints'}")


def config_differences(saved: dict, current: dict, prefix: str = "", defaults: dict | None = None) -> list[str]:
    """Dotted keys whose values differ, except those a resumed run may change. A key the
    checkpoint does not have (written before the key existed) differs only when the current value
    is not its default (`defaults`: the default config, nested like `current`)."""
    defaults = asdict(Config()) if defaults is None else defaults
    found = []
    for key in sorted(set(saved) | set(current)):
        name = prefix + key
        a, b = saved.get(key), current.get(key)
        if key not in saved and key in defaults and b == defaults[key]:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            found += config_differences(a, b, name + ".", defaults.get(key) or {})
        elif a != b and not name.startswith(RESUMABLE_CHANGES):
            found.append(f"{name}: {a!r} in the checkpoint, {b!r} now")
    return found


def read_run_state(path: Path, config: Config, world_size: int, environment: dict) -> dict:
    """The checkpoint's run state, read once as plain data; a checkpoint of another config,
    process count, base model, precision, device or eval data (`run_environment`) is refused
    with the reason before anything is built from it."""
    try:
        plain = json.loads((path / RUN_STATE).read_text(encoding="utf-8"))
        saved = from_plain(plain, load_file(str(path / RUN_ARRAYS)), PLAIN_TYPES)
        missing = [key for key in RUN_STATE_KEYS if key not in saved]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        if not isinstance(saved["config"], dict) or not isinstance(saved["step"], int):
            raise TypeError("config is not a mapping or step is not a number")
    except (OSError, ValueError, KeyError, TypeError, PlainDataError) as err:
        raise ConfigError(f"--resume {path}: {RUN_STATE} is unreadable ({err})") from err
    differences = config_differences(saved["config"], asdict(config))
    if differences:
        raise ConfigError(f"--resume {path}: the checkpoint was trained with another config: " + "; ".join(differences))
    if saved["world_size"] != world_size:
        raise ConfigError(
            f"--resume {path}: saved by {saved['world_size']} processes, this run has "
            f"{world_size}; the batches and RNG streams would differ"
        )
    check_environment(path, saved.get("environment"), environment)
    return saved


def load_checkpoint(
    accelerator: Accelerator, path: Path, saved: dict, config: Config, data_digest: str
) -> tuple[RunState, dict]:
    """Refuse a checkpoint of other data; otherwise restore the model, optimiser (Accelerate, the
    optimiser read with weights_only) and this rank's RNGs, and return the run's state and the
    sampler's. `saved` is what read_run_state returned."""
    if saved["data_digest"] != data_digest:
        raise ConfigError(f"--resume {path}: the training data differ from the checkpoint's (rows, texts or relevance)")
    try:
        accelerator.load_state(str(path), load_kwargs={"weights_only": True})
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"--resume {path}: optimizer.bin holds something other than tensors and numbers; it was refused, "
            f"not loaded ({first})"
        ) from err
    rng_file = path / f"rng_{accelerator.process_index}.json"
    try:
        rng = json.loads(rng_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"--resume: {rng_file} is not a readable RNG state ({err})") from err
    set_rng_state(rng, rng_file)
    try:
        selection = None
        if saved["selection"] is not None:
            selection = Selection(config.eval.select)
            best = load_file(str(path / BEST)) if (path / BEST).exists() else None
            selection.load_state_dict(saved["selection"], best)
        state = RunState(
            saved["step"],
            saved["train_seconds"],
            saved["mined_epoch"],
            saved["before"],
            selection,
            saved.get("before_sets", {}),
        )
    except (KeyError, TypeError, ValueError, OSError) as err:
        raise ConfigError(f"--resume {path}: {RUN_STATE} is unreadable ({type(err).__name__}: {err})") from err
    return state, saved["sampler"]


def model_identity(model_dir: Path | None) -> dict:
    """What the base model is, beyond its name: the sha256 of its small files (configs, tokenizer,
    pooling; weights are covered by the checkpoint's own copy) and the hub revision of a snapshot."""
    if model_dir is None:
        return {}
    files = directory_checksums(model_dir, max_size=SMALL_FILE)
    revision = model_dir.name if model_dir.parent.name == "snapshots" else None  # the hub cache's layout
    return {"files": files, "revision": revision}


def run_environment(accelerator: Accelerator, model_dir: Path | None, eval_sets: list[IRDataset]) -> dict:
    """What a resumed run must share with the run it continues, beyond config and training data
    (eval_sets: every data.eval set, in order)."""
    device = accelerator.device
    kind = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    eval_digest = None
    if eval_sets:  # hashed text by text: no copy of the corpus in memory
        digest = hashlib.sha256()
        for number, eval_data in enumerate(eval_sets):
            digest.update(b"\2" if number else b"")  # one set hashes as it did before there were several
            for texts in (eval_data.corpus_ids, eval_data.corpus_texts, eval_data.query_ids, eval_data.query_texts):
                for text in texts:
                    digest.update(text.encode("utf-8") + b"\0")
                digest.update(b"\1")
            digest.update(json.dumps(eval_data.qrels, sort_keys=True).encode("utf-8"))
        eval_digest = digest.hexdigest()
    return {
        "base_model": model_identity(model_dir),
        "precision": accelerator.mixed_precision,
        "device": kind,
        "eval_data": eval_digest,
        "versions": {name: importlib.metadata.version(name) for name in ("torch", "transformers", "accelerate")},
    }


def check_environment(path: Path, saved: dict | None, current: dict) -> None:
    """Refuse a resume whose base model, precision, device or eval data differ from the run's;
    warn when only library versions do (the numbers may differ in their last bits)."""
    if not isinstance(saved, dict) or not all(key in saved for key in current):
        raise ConfigError(f"--resume {path}: {RUN_STATE} does not say what the run depends on (environment)")
    refusals = []
    if saved["base_model"] != current["base_model"]:
        was = saved["base_model"].get("files", {}) if isinstance(saved["base_model"], dict) else {}
        now = current["base_model"].get("files", {})
        changed = sorted(name for name in set(was) | set(now) if was.get(name) != now.get(name))
        what = f"files {', '.join(changed[:5])}" if changed else "hub revision"
        refusals.append(f"the base model differs ({what} changed since the run started)")
    for key, meaning in (("precision", "precision"), ("device", "device"), ("eval_data", "eval data")):
        if saved[key] != current[key]:
            refusals.append(f"{meaning}: {saved[key]!r} in the checkpoint, {current[key]!r} now")
    if refusals:
        raise ConfigError(f"--resume {path}: would not continue the same run: " + "; ".join(refusals))
    for name, version in (saved["versions"] if isinstance(saved["versions"], dict) else {}).items():
        if current["versions"].get(name) != version:
            logger.warning(
                "resume: %s %s now, %s when the checkpoint was written: later steps may differ in their last bits",
                name,
                current["versions"].get(name),
                version,
            )


def table_digest(table: TrainTable) -> str:
    """sha256 of the training table: its rows, texts and known relevant pairs."""
    digest = hashlib.sha256()
    for array in (table.anchor_ids, table.positive_ids, table.negative_ids, table.relevant_keys):
        digest.update(np.ascontiguousarray(array).tobytes())
    for text in table.anchor_texts + table.passage_texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def set_aside_newer(out: Path, step: int) -> list[Path]:
    """Rename the checkpoints of steps after `step` (an abandoned continuation, when an older one is
    resumed) to step-N.abandoned, so that neither pruning nor a later --resume takes them for this
    run's. Returns the new names."""
    moved = []
    for path in list_checkpoints(out / "checkpoints"):
        if int(path.name[5:]) > step:
            target = path.with_name(path.name + ".abandoned")
            if target.exists():
                shutil.rmtree(target)
            os.replace(path, target)
            moved.append(target)
    return moved
