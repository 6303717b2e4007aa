"""Writing files so that nothing half-written ever looks complete, and hashing them.

Every output of the project goes through `write_atomic` (a file) or `replace_directory` (a
directory built beside its final name): the new content is written under a temporary name in
the same folder, flushed to disk, renamed over the old one, and the folder's entry is flushed
too, so a crash at any moment leaves either the old complete version or the new complete one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_calls = itertools.count()


def fsync_directory(path: Path) -> None:
    """Flush a directory's entries (a rename is durable only once its folder is); a no-op where
    the platform cannot open directories."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, content: str | bytes | Iterable[str]) -> Path:
    """Write `content` (text, bytes, or an iterable of text lines) to `path` atomically.

    The temporary file beside it is named for this process, thread and call (so concurrent
    writers never share one), starts with a dot, and is removed if anything fails before the rename.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}-{next(_calls)}.tmp")
    binary = isinstance(content, bytes)
    try:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            if isinstance(content, (str, bytes)):
                handle.write(content)
            else:
                handle.writelines(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(path.parent)
    return path


def replace_directory(complete: Path, final: Path) -> Path:
    """Move the finished directory `complete` to `final`, replacing any directory there, so that
    there is never a moment without a complete copy: an existing `final` is first renamed aside
    (`.<name>.old-<pid>`, hidden), and removed only once the new one is in place; if the second
    rename fails, the old copy is put back. Every file and folder of `complete` is flushed first."""
    complete, final = Path(complete), Path(final)
    for path in sorted(complete.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # deepest first
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            fsync_directory(path)
    fsync_directory(complete)
    stale = final.with_name(f".{final.name}.old-{os.getpid()}")
    if stale.exists():
        shutil.rmtree(stale)  # this process's own, left by an earlier failure
    if final.exists():
        os.replace(final, stale)
    try:
        os.replace(complete, final)
    except OSError:
        if stale.exists():
            os.replace(stale, final)
        raise
    fsync_directory(final.parent)
    shutil.rmtree(stale, ignore_errors=True)
    return final


def output_problem(path: Path, directory: bool) -> str | None:
    """Why `path` cannot be written as an output (a file, or with `directory` a folder), or None;
    checked before the expensive work that ends in writing it. Missing folders are created, and a
    file is created and removed there, so a read-only filesystem is found too (as root, permission
    bits alone would say yes)."""
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        return "exists and is not a directory"
    if not directory and path.is_dir():
        return "is a directory"
    folder = path if directory else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot create the folder {err.filename or folder}: {err.strerror or err}"
    probe = folder / f".write-test-{os.getpid()}-{threading.get_ident()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return f"cannot write in {folder}: {err.strerror or err}"
    return None


def looks_local(name: str) -> bool:
    """A path, not a hub id: it starts like one, has more than one slash, or its folder exists here
    (runs/nosuch: a typo in a local path must not download whatever hub repo has that name)."""
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        return True
    parent = Path(name).expanduser().parent
    return parent != Path(".") and parent.is_dir()


def file_sha256(path: Path) -> str:
    """sha256 of the bytes of `path`, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_checksums(directory: Path, max_size: int | None = None) -> dict[str, str]:
    """sha256 of every file under `directory` (relative path -> hex), sorted; not its README.md (a
    model card may be edited), nothing in hidden folders (.git, .cache), and with `max_size` only
    files smaller than that."""
    directory = Path(directory)
    return {
        path.relative_to(directory).as_posix(): file_sha256(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
        and (max_size is None or path.stat().st_size < max_size)
        and path.name != "README.md"
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    }


MANIFEST = "complete.json"


def write_manifest(directory: Path, exclude: Iterable[str] = (), **fields) -> Path:
    """`complete.json` in `directory`: `fields` and the size and sha256 of every other file under
    it but those named in `exclude`. Written last, it is what marks the directory complete."""
    directory = Path(directory)
    skipped = {MANIFEST, *exclude}
    files = {
        path.relative_to(directory).as_posix(): {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.relative_to(directory).as_posix() not in skipped
    }
    return write_atomic(directory / MANIFEST, json.dumps({**fields, "files": files}, indent=1))


@contextmanager
def built_directory(final: Path, exclude: Iterable[str] = (), **fields) -> Iterator[Path]:
    """An empty hidden folder beside `final` (`.<name>.tmp-<pid>`) to write a directory into. When
    the block ends, its manifest is written last (`write_manifest` with `exclude` and `fields`) and
    it replaces `final` whole (`replace_directory`); if the block, the manifest or the replacement
    fails, the folder is removed and `final` is left as it was. `final`'s parent folders are
    created first (and stay)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # this process's own, left by a crash
    tmp.mkdir()
    try:
        yield tmp
        write_manifest(tmp, exclude, **fields)
        replace_directory(tmp, final)  # on failure, it puts the old `final` back before raising
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(directory: Path) -> tuple[dict | None, str | None]:
    """The manifest of `directory` and None, or None and why it cannot be read (absent, not JSON,
    `files` not a mapping of names inside the directory to sizes)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None, f"no {MANIFEST} (the save did not finish)"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError, OSError) as err:
        return None, f"{MANIFEST} is unreadable ({err})"
    if not isinstance(listed, dict):
        return None, f"{MANIFEST} is malformed (files is not a mapping)"
    for name, expected in listed.items():
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not parts:
            return None, f"{MANIFEST} names {name!r}, outside the directory"
        if not isinstance(expected, dict) or not isinstance(expected.get("size"), int):
            return None, f"{MANIFEST} is malformed at {name!r}"
    return manifest, None


def listed_files_problem(directory: Path, listed: dict, checksums: bool = True) -> str | None:
    """None when every file a manifest lists is in `directory` with its size (and, with
    `checksums`, its sha256), else the first that is not."""
    for name, expected in listed.items():
        path = Path(directory) / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["size"]:
            return f"{name} has {path.stat().st_size} bytes, {expected['size']} were written"
        if checksums and file_sha256(path) != expected.get("sha256"):
            return f"{name} does not match its checksum"
    return None


def process_alive(pid: str) -> bool:
    """Whether the process `pid` (a decimal string) is running on this machine."""
    if not pid.isdecimal():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_replaced(final: Path) -> Path | None:
    """Undo a `replace_directory(complete, final)` cut between its two renames: `final` is missing
    and `.<name>.old-<pid>` (its writer gone) holds the previous complete copy, which is put back.
    Returns the restored path, or None when there was nothing to restore. Call it before
    `remove_stale`, which would otherwise delete that only copy."""
    final = Path(final)
    if final.exists():
        return None
    olds = [p for p in final.parent.glob(f".{final.name}.old-*") if not process_alive(p.name.rsplit("-", 1)[-1])]
    if not olds:
        return None
    os.replace(max(olds, key=lambda p: p.stat().st_mtime), final)
    fsync_directory(final.parent)
    return final


def remove_stale(folder: Path, patterns: Iterable[str]) -> list[Path]:
    """Remove what a crashed writer left in `folder`: entries matching `patterns` (globs whose
    last `-`-separated part is the writer's pid, or has none) whose writer is gone."""
    removed = []
    for pattern in patterns:
        for path in Path(folder).glob(pattern):
            pid = path.name.rsplit("-", 1)[-1]
            if pid.isdecimal() and process_alive(pid) and int(pid) != os.getpid():
                continue  # another live writer's
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def count_lines(path: Path) -> int:
    """The number of newline characters in `path`."""
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def jsonl_lines(records: Iterable[dict]) -> Iterable[str]:
    """One JSON object a line, non-ASCII kept as it is."""
    return (json.dumps(record, ensure_ascii=False) + "\n" for record in records)
