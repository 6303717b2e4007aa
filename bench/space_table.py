"""The tables of BENCHMARKS.md's "The embedding space and a second eval set", from finished runs.

    python -m bench.space_table runs/space/obliqa-two-sets runs/space/obliqa-mix ...

For each run directory (a train.py output.dir with its log beside it as <dir>.log): every eval set's
NDCG@10 before and after with the paired change at 384 and 64 dims (results.json's eval_sets),
the embedding-space numbers of each set before and after, and what the evaluations cost: each
evaluation's seconds and the embedding space's share (train.py logs both), and the map's seconds.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

DIMS = ("384", "64")
SPACE = ("alignment", "uniformity", "anisotropy", "effective_rank")


def change_rows(name: str, results: dict) -> list[str]:
    rows = []
    for set_name, entry in results["eval_sets"].items():
        for dim in DIMS:
            c = entry["change"][dim]["ndcg@10"]
            chosen = " (selected)" if entry["selected"] else ""
            rows.append(
                f"| {name} | {set_name}{chosen} | {dim} | {c['base']:.4f} | {c['new']:.4f} | {c['diff']:+.4f} "
                f"| [{c['lo']:+.4f}, {c['hi']:+.4f}] | {c['p']:.3g} |"
            )
    return rows


def space_rows(name: str, results: dict) -> list[str]:
    rows = []
    for set_name, entry in results["eval_sets"].items():
        for dim in DIMS:
            before, after = entry["space"]["before"][dim], entry["space"]["after"][dim]
            cells = " | ".join(f"{before[m]:.3f} → {after[m]:.3f}" for m in SPACE)
            rows.append(f"| {name} | {set_name} | {dim} | {cells} |")
    return rows


def cost_row(name: str, log: Path) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    evals = [
        (float(a), float(b))
        for a, b in re.findall(r"evaluated in ([\d.]+) s, of which the embedding space ([\d.]+) s", text)
    ]
    maps = [float(s) for s in re.findall(r"results_map.png: ([\d.]+) s", text)]
    total, space = sum(a for a, _ in evals), sum(b for _, b in evals)
    drawn = sum(maps)
    share = (space + drawn) / total if total else float("nan")
    return (
        f"| {name} | {len(evals)} | {total:.0f} | {space:.1f} | {drawn:.1f} | {100 * share:.1f}% |"
        if evals
        else f"| {name} | (no timings in {log}) | | | | |"
    )


def main(argv: list[str]) -> None:
    runs = [Path(arg) for arg in argv]
    loaded = {run.name: json.loads((run / "results.json").read_text()) for run in runs}
    print("| run | eval set | dim | NDCG@10 before | after | change | 95% CI | p |")
    print("|---|---|---:|---:|---:|---:|:---:|---:|")
    for name, results in loaded.items():
        print("\n".join(change_rows(name, results)))
    print("\n| run | eval set | dim | " + " | ".join(f"{m} before → after" for m in SPACE) + " |")
    print("|---|---|---:|" + "---:|" * len(SPACE))
    for name, results in loaded.items():
        print("\n".join(space_rows(name, results)))
    print("\n| run | evaluations (set × step) | their seconds | embedding space s | map s | share |")
    print("|---|---:|---:|---:|---:|---:|")
    for run in runs:
        print(cost_row(run.name, run.with_suffix(".log")))
    for name, results in loaded.items():
        print(f"\n{name}: {results['steps']} steps, {results['train_seconds']:.0f} s of training")


if __name__ == "__main__":
    main(sys.argv[1:])
