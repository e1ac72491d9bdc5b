"""benchmarks/ is a package: every module imports as ``benchmarks.<name>`` without touching sys.path, the
modules import one another without cycles, breaching's side imports only what its venv has, and the
documents name only modules and files that exist."""
import ast
import graphlib
import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "benchmarks"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if ".venv" not in p.relative_to(ROOT).parts)


MODULES = {module_name(p): p for p in sources(PACKAGE)}


def imported(path: Path, top_level_only: bool = False) -> set[str]:
    """The modules ``path`` imports (anywhere in it, or only at module level); ``from P import n`` names
    ``P.n`` where that is a module of the package."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per dot after the first
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES}
    return out


def test_every_module_imports_as_part_of_the_package():
    assert {"benchmarks", "benchmarks.cases", "benchmarks.peers", "benchmarks.bench_ops",
            "benchmarks.peers.common"} <= set(MODULES)
    for name in MODULES:
        assert importlib.import_module(name).__file__ == str(MODULES[name])


@pytest.mark.parametrize("folder", [PACKAGE, ROOT / "tests" / "benchmarks"], ids=["benchmarks", "tests"])
def test_nothing_edits_sys_path(folder):
    for path in sources(folder):
        edits = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Attribute) and node.attr == "path"
                 and isinstance(node.value, ast.Name) and node.value.id == "sys"]
        assert not edits, f"{path.relative_to(ROOT)} uses sys.path (lines {edits})"


def test_the_modules_import_one_another_without_cycles():
    graph = {name: {m for m in imported(path) if m in MODULES and m != name} for name, path in MODULES.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_a_cycle_is_found():
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()


def test_breachings_side_imports_only_the_standard_library_torch_and_its_own_modules_at_load():
    """breaching's venv has torch and breaching, not fastleak's compiled extension or its test stack: what
    its modules import when loaded (functions may import more, e.g. fastleak.models)."""
    seen, todo = set(), [m for m in MODULES if m.startswith("benchmarks.peers.breaching_")]
    assert len(todo) >= 3
    while todo:
        name = todo.pop()
        seen.add(name)
        for dep in imported(MODULES[name], top_level_only=True):
            if dep in MODULES:
                todo += [] if dep in seen else [dep]
                continue
            top = dep.split(".")[0]
            assert top in sys.stdlib_module_names or top in ("torch", "__future__"), f"{name} imports {dep}"
    assert {"benchmarks.peers.common", "benchmarks.peers.breaching_side"} <= seen
    assert not {m for m in seen if m.startswith("benchmarks.peers.fastleak_")}


def test_every_peer_module_shares_through_common():
    peers = [name for name in MODULES if name.startswith("benchmarks.peers.")
             and name not in ("benchmarks.peers", "benchmarks.peers.common")]
    assert len(peers) >= 9
    for name in peers:
        assert "benchmarks.peers.common" in imported(MODULES[name]), f"{name} does not use peers/common.py"


@pytest.mark.parametrize("document", ["README.md", "benchmarks/RESULTS.md"])
def test_documents_name_existing_benchmark_files_and_modules(document):
    text = (ROOT / document).read_text()
    assert "python benchmarks/" not in text, "a benchmark run by path: run it as python -m benchmarks.<module>"
    for module in set(re.findall(r"-m (benchmarks(?:\.\w+)+)", text)):
        assert module in MODULES, f"{document} runs {module}, which does not exist"
    for path in set(re.findall(r"(?<![\w/])benchmarks/[\w./-]*\w", text)) - {"benchmarks/peers/.venv/bin/python"}:
        assert (ROOT / path).exists(), f"{document} names {path}, which does not exist"


def test_the_published_figures_live_in_results():
    figures = [p for p in PACKAGE.iterdir() if p.suffix in (".json", ".png", ".txt", ".jsonl")]
    assert not figures, f"results beside the scripts: {figures}; published ones go to benchmarks/results/"
    cited = set(re.findall(r"benchmarks/results/[\w.-]+", (PACKAGE / "RESULTS.md").read_text()))
    assert cited == {f"benchmarks/results/{p.name}" for p in (PACKAGE / "results").iterdir()}, \
        "benchmarks/results/ holds what RESULTS.md cites, nothing else"
