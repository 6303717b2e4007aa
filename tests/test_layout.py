"""The layout of ARCHITECTURE.md, checked on the source: every module's imports read with `ast` (no
import is executed), no cycle, and no import against the layer order. The checker itself is tested
on hand-made graphs with a planted upward import and a planted cycle, so it can fail."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from helpers import ROOT

# Bottom to top: a module may import from its own layer's package and from layers below it, never above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("common", ("common",)),  # file and process helpers
    ("core", ("losses", "data", "model")),  # the loss, the data, the encoder
    ("retrieval", ("retrieval",)),  # search, metrics, evaluation, quantization, frontier, stats, mining
    ("documents", ("documents",)),  # documents to training data
    ("training", ("training",)),  # the machinery train.py wires
    # the command lines: nothing imports them
    ("commands", ("train", "evaluate", "mine", "prepare", "train_reranker", "search")),
]
PACKAGES = ("common", "retrieval", "documents", "training")


def project_modules(root=ROOT) -> dict[str, object]:
    """Dotted module name -> path, for the root modules and the packages (tests and bench excluded)."""
    found = {path.stem: path for path in root.glob("*.py")}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path, name: str, modules: set[str]) -> set[str]:
    """The project modules that module `name` (file `path`) imports anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .a import b
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([p for p in parts if p] + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)  # `from training import gradcache`
    resolved = set()
    for target in targets:
        while target and target not in modules:  # `import a.b.c` also imports a and a.b
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def import_graph(root=ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: imports_of(path, name, set(modules)) for name, path in modules.items()}


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for index, (_, members) in enumerate(LAYERS):
        if top in members:
            return index
    raise KeyError(module)


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import against the layer order, and every module of no declared layer."""
    found = []
    for source, targets in sorted(graph.items()):
        try:
            here = layer_of(source)
        except KeyError:
            found.append(f"{source}: in no layer of LAYERS (add it, and to ARCHITECTURE.md)")
            continue
        for target in sorted(targets):
            try:
                there = layer_of(target)
            except KeyError:
                continue  # reported as a source of its own: every project module is a key of the graph
            commands = LAYERS[there][0] == "commands"
            same_package = source.split(".")[0] == target.split(".")[0] or LAYERS[here][0] == "core"
            if there > here or (there == here and (commands or not same_package)):
                found.append(f"{source} imports {target}: {LAYERS[here][0]} may not import {LAYERS[there][0]}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules that import each other (depth-first search)."""
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_is_in_a_layer_and_imports_only_down():
    graph = import_graph()
    assert {"train", "losses", "training.config", "retrieval.search", "common.files"} <= set(graph)
    assert "training.config" in graph["train"] and "retrieval.search" in graph["retrieval.mining"]  # really read
    assert violations(graph) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_checker_fails_on_a_planted_upward_import():
    graph = import_graph()
    graph["retrieval.search"] = graph["retrieval.search"] | {"training.config"}  # search reaching up for a constant
    assert violations(graph) == ["retrieval.search imports training.config: retrieval may not import training"]


def test_the_checker_fails_on_a_command_line_imported_for_a_helper():
    graph = import_graph()
    graph["training.report"] = graph["training.report"] | {"mine"}
    graph["train"] = graph["train"] | {"evaluate"}
    assert violations(graph) == [
        "train imports evaluate: commands may not import commands",
        "training.report imports mine: training may not import commands",
    ]


def test_the_checker_finds_a_planted_cycle_and_an_undeclared_module():
    graph = import_graph()
    graph["retrieval.metrics"] = graph["retrieval.metrics"] | {"retrieval.frontier"}  # frontier imports metrics
    assert ["retrieval.metrics", "retrieval.frontier", "retrieval.metrics"] in cycles(graph)
    graph["helpers_at_the_root"] = set()
    assert "helpers_at_the_root: in no layer of LAYERS (add it, and to ARCHITECTURE.md)" in violations(graph)


def test_imports_are_read_from_every_form(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "__init__.py").write_text("")
    (tmp_path / "training" / "a.py").write_text("from . import b\nfrom .b import x\n")
    (tmp_path / "training" / "b.py").write_text("def f():\n    import model.sub\n    from training import a\n")
    (tmp_path / "model.py").write_text("import os\n")
    for package in ("common", "retrieval", "documents"):
        (tmp_path / package).mkdir()
    graph = import_graph(tmp_path)
    assert graph["training.a"] == {"training", "training.b"}
    assert graph["training.b"] == {"model", "training", "training.a"}  # imports inside functions count too


def defined_names(path) -> set[str]:
    """The names a module defines at its top level: functions, classes, assignments and imports."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def test_every_name_imported_from_the_project_exists():
    """`from training.config import load_config` in the code, the tests and the bench scripts names
    something that module defines (or a submodule): a moved function cannot leave a caller behind."""
    modules = project_modules()
    modules.update({path.stem: path for path in (ROOT / "tests").glob("*.py")})  # helpers, conftest
    missing = []
    for path in [*ROOT.glob("*.py"), *[p for pkg in (*PACKAGES, "tests", "bench") for p in (ROOT / pkg).rglob("*.py")]]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module in modules:
                defined = defined_names(modules[node.module])
                missing += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name not in defined and f"{node.module}.{alias.name}" not in modules
                ]
    assert missing == []


@pytest.mark.parametrize("module", ["training.config", "training.gradcache"])
def test_loading_the_config_loads_neither_faiss_nor_the_miner(module):
    code = (
        f"import sys, {module}; print(sorted(m for m in sys.modules if m == 'faiss' or m.startswith('faiss.') "
        "or m in ('retrieval.mining', 'retrieval.search', 'mine', 'evaluate')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
