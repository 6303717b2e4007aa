"""Passage vectors kept on disk and reused: what a command that answers questions over a corpus
saves so it encodes the corpus once (`search.py --index`).

A kept index is a folder of its own: `embeddings.npy` (N, D) float32, read without pickle, and the
project's manifest (`complete.json`: every file's size and sha256, written last) naming its kind
and the identity of the vectors: every file of the model, the encoding precision and device, the
max length and document prompt, the corpus bytes. It is reused only when all of that matches and
every file checks out; otherwise the caller encodes again and the folder is replaced whole
(`common.files.replace_directory`). A folder holding anything else is never replaced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.files import (
    MANIFEST,
    built_directory,
    directory_checksums,
    listed_files_problem,
    output_problem,
    read_manifest,
)
from model import Encoder

INDEX_KIND = "search.py passage vectors"  # in the manifest: the only folder an index replaces
INDEX_FORMAT = 1


def index_problem(index: Path) -> str | None:
    """Why `index` may not be written: not a writable folder, or a folder holding something other
    than a search.py index (it would be replaced, and what it holds lost)."""
    if problem := output_problem(index, directory=True):
        return problem
    if not index.is_dir() or not any(index.iterdir()):
        return None
    manifest, problem = read_manifest(index)
    if problem is None and manifest.get("kind") == INDEX_KIND:
        held = {p.relative_to(index).as_posix() for p in index.rglob("*") if not p.is_dir()}
        if held == {MANIFEST, *manifest["files"]}:
            return None
        return "holds files besides a search.py index; give a folder of its own (it is replaced when refreshed)"
    return "holds files that are not a search.py index; give a new or empty folder (it would be replaced)"


def index_identity(encoder: Encoder, corpus_sha256: str) -> dict:
    """What a kept index must match to be reused: every file of the model, how it encodes, the corpus."""
    return {
        "format": INDEX_FORMAT,
        "model_files": directory_checksums(encoder.source_dir),  # weights too
        "bf16": encoder.bf16,
        "device": encoder.device.type,
        "max_length": encoder.spec.max_length,
        "document_prompt": encoder.spec.document_prompt,
        "corpus_sha256": corpus_sha256,
    }


def kept_embeddings(index: Path, identity: dict, shape: tuple[int, int]) -> tuple[np.ndarray | None, str | None]:
    """(the kept vectors, None) when `index` holds a complete index of this identity and `shape`,
    else (None, why not)."""
    manifest, problem = read_manifest(index)
    if problem is None and "embeddings.npy" not in manifest["files"]:
        problem = "no embeddings.npy listed"
    problem = problem or listed_files_problem(index, manifest["files"])
    if problem is None and manifest.get("identity") != identity:
        problem = "encoded from another model, precision or corpus"
    embeddings = None
    if problem is None:
        try:
            embeddings = np.load(index / "embeddings.npy", allow_pickle=False)
        except (OSError, ValueError) as err:
            problem = f"embeddings.npy is unreadable ({err})"
    if embeddings is not None and (embeddings.dtype != np.float32 or embeddings.shape != shape):
        problem = f"vectors of shape {embeddings.shape} ({embeddings.dtype}), not {shape} float32"
    return (None, problem) if problem is not None else (embeddings, None)


def keep_embeddings(index: Path, identity: dict, embeddings: np.ndarray) -> None:
    """Write the index beside its final name, its manifest last, then move it into place: a folder
    cut short is never taken for complete, and the one it replaces stays whole until then."""
    with built_directory(index, kind=INDEX_KIND, identity=identity) as tmp:
        np.save(tmp / "embeddings.npy", embeddings, allow_pickle=False)
