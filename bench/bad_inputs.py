"""The command lines fed bad inputs: each must end in one `error:` line naming the path or key, a
non-zero exit code, and no traceback, before any expensive work.

    python -m bench.bad_inputs          # prints the Markdown table of README's "Bad input" section

`tests/test_bad_inputs.py` runs the same cases and checks each message. Every case runs in a
scratch folder holding a file (`a_file`), a folder (`a_dir`), a config that is not UTF-8
(`latin1.yaml`) and an empty `runs/` folder (so `runs/nosuch` is a local path with one slash).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = str(ROOT / "samples" / "quickstart")
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
DATA = ("--data.train", f"{SAMPLE}/train_pairs.jsonl", "--data.eval", SAMPLE)  # the config's paths are the repo's


@dataclass(frozen=True)
class Case:
    command: tuple[str, ...]  # the script and its flags, run with `python` in the scratch folder
    code: int  # the exit code expected
    message: str  # a part of the error line expected


CASES = [
    Case(("train.py", "--config", QUICKSTART, "--output.dir", "a_file"), 1, "output.dir a_file: exists and is not a"),
    Case(("train.py", "--config", QUICKSTART, "--output.dir", "a_file/run"), 1, "cannot create the folder"),
    Case(("train.py", "--config", "latin1.yaml"), 1, "latin1.yaml: not UTF-8 text"),
    Case(("train.py", "--config", QUICKSTART, *DATA, "--data.train", "runs/nosuch"), 1, "runs/nosuch: no such file or"),
    Case(("train.py", "--config", QUICKSTART, *DATA, "--model.name_or_path", "runs/x"), 1, "'runs/x': no such dir"),
    Case(("evaluate.py", "--data", SAMPLE, "--split", "dev", "--out", "a_dir"), 1, "--out a_dir: is a directory"),
    Case(("evaluate.py", "--data", SAMPLE, "--split", "dev", "--run-out", "a_file"), 1, "--run-out a_file: exists"),
    Case(("evaluate.py", "--data", SAMPLE, "--split", "dev", "--model", "/nonexistent"), 1, "no such directory"),
    Case(("evaluate.py", "--data", SAMPLE, "--split", "dev", "--model", "runs/nosuch"), 1, "no such directory"),
    Case(("evaluate.py", "--data", SAMPLE, "--split", "dev", "--stopwords", "xx"), 1, "'xx' is not a bm25s stopword"),
    Case(("evaluate.py", "--data", SAMPLE, "--split", "dev", "--out", f"{SAMPLE}/r.json"), 1, "inside --data"),
    Case(("mine.py", "--train", f"{SAMPLE}/train_pairs.jsonl", "--out", "a_file"), 1, "--out a_file: exists and is"),
    Case(
        ("search.py", "--corpus", SAMPLE, "--fusion-weight", "0.5", "--queries", "a_file", "--out", "a_file"),
        1,
        "is the --queries file",
    ),
    Case(("prepare.py", "no_such_docs", "--out", "a_dir"), 2, "no_such_docs: not a directory"),
    Case(("prepare.py", "a_dir", "--out", "a_file"), 2, "--out a_file: exists and is not a directory"),
    Case(("prepare.py", "a_dir", "--out", "a_dir/prepared"), 2, "inside the documents folder"),
    Case(
        (
            "prepare.py",
            "a_dir",
            "--out",
            "out",
            "--questions",
            "llm",
            "--llm-model",
            "m",
            "--llm-base-url",
            "file:///x",
        ),
        2,
        "must be an http:// or https:// address",
    ),
]


def scratch_folder(root: Path) -> Path:
    (root / "a_file").write_text("not a folder\n")
    (root / "a_dir").mkdir()
    (root / "a_dir" / "rules.txt").write_text("1. SCOPE\n\nThese rules apply to every firm.\n")
    (root / "latin1.yaml").write_bytes("model:\n  name_or_path: caf\xe9\n".encode("latin-1"))
    (root / "runs").mkdir()
    return root


def run_case(case: Case, folder: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / case.command[0]), *case.command[1:]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300, env=env)


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "error" in line.lower()]
    return lines[-1] if lines else (stderr.strip().splitlines() or [""])[-1]


def main() -> None:
    print("| command | exit | message |\n|---|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = scratch_folder(Path(tmp))
        for case in CASES:
            proc = run_case(case, folder)
            shown = " ".join(part.replace(str(ROOT) + "/", "") for part in case.command)
            message = error_line(proc.stderr).replace(str(ROOT) + "/", "").replace("|", "\\|")
            print(f"| `python {shown}` | {proc.returncode} | {message} |")


if __name__ == "__main__":
    main()
