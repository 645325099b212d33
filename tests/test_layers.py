"""The layering, guarded: no import cycle in the engine (counting imports inside functions
and under TYPE_CHECKING, which only hide a cycle), the engine never imports Textual or the
TUI, and the torch-free layers stay torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_names(package: str) -> dict[str, Path]:
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports anywhere in its source."""
    mods = module_names(package)

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                # `from pkg import submodule` reaches the submodule; any other name, the
                # module (or package __init__) that defines it.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            for t in targets:
                o = owner(t)
                if o and o != mod:
                    graph[mod].add(o)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_engine():
    assert cycles(import_graph("cnnprobe")) == []


def test_no_import_cycle_in_the_tui():
    """tui.app <-> tui.lab was one (lab typed `self: CnnprobeApp` under TYPE_CHECKING)."""
    assert cycles(import_graph("tui")) == []


def _imports(path: Path) -> list[str]:
    """Every module a file imports, anywhere in it (functions and TYPE_CHECKING included)."""
    tree = ast.parse(path.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    return names + [n.module or "" for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and not n.level]


# What the TUI may import of cnnprobe: the service layer (runs, admission, options, studies),
# the readers (store, report, results) and the torch-free vocabulary. Never the engine
# (cnnprobe.engine) nor torch itself: what it needs of them, the service layer gives.
TUI_MAY_IMPORT = ("cnnprobe.runs", "cnnprobe.admission", "cnnprobe.options", "cnnprobe.studies",
                  "cnnprobe.store", "cnnprobe.report", "cnnprobe.results", "cnnprobe.config",
                  "cnnprobe.events", "cnnprobe.measurement", "cnnprobe.metrics",
                  "cnnprobe.models", "cnnprobe.tasks", "cnnprobe.shown", "cnnprobe.errors",
                  "cnnprobe.stopping")


def test_the_tui_reaches_the_engine_only_through_the_service_layer():
    for mod, path in module_names("tui").items():
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in ("torch", "torchvision"), (mod, name)
            if top == "cnnprobe":
                assert name.startswith(TUI_MAY_IMPORT), (mod, name)


def test_the_study_report_reads_without_the_executor():
    assert "cnnprobe.studies.runner" not in import_graph("cnnprobe")["cnnprobe.studies.report"]


def test_no_tui_method_is_typed_as_the_app():
    """The lab controller is an object the app holds, not a mixin of it."""
    for mod, path in module_names("tui").items():
        assert "self: CnnprobeApp" not in path.read_text(), mod


def test_the_engine_never_imports_the_tui_or_textual():
    for mod, path in module_names("cnnprobe").items():
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] in ("tui", "textual",
                                                           "textual_plotext")], mod


def _loaded(module: str) -> set[str]:
    code = (f"import sys, {module}; print(' '.join(m for m in ('torch', 'textual', "
            "'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["cnnprobe", "cnnprobe.config", "cnnprobe.measurement",
                                    "cnnprobe.events", "cnnprobe.store", "cnnprobe.store.bundle",
                                    "cnnprobe.report.formatting", "cnnprobe.report.summary",
                                    "cnnprobe.report.markdown", "cnnprobe.report.study",
                                    "cnnprobe.studies", "cnnprobe.studies.report",
                                    "cnnprobe.studies.live", "cnnprobe.studies.runner",
                                    "cnnprobe.studies.trial",
                                    "cnnprobe.studies.ray_backend", "tui.system",
                                    "cnnprobe.results", "cnnprobe.report.inspection",
                                    "cnnprobe.studies.stored"])
def test_torch_free_layers_import_no_torch_and_no_textual(module):
    assert _loaded(module) == set()


def test_the_whole_engine_imports_no_textual():
    assert "textual" not in _loaded("cnnprobe.runs, cnnprobe.cli, cnnprobe.report.export, "
                                    "cnnprobe.report.inspection")


def test_the_tui_scheduling_policy_is_plain_python():
    assert "textual" not in _loaded("tui.scheduler")


def test_every_test_file_has_a_layer_marker():
    from conftest import LAYER_OF, layer_of

    files = sorted(p.stem for p in (ROOT / "tests").glob("test_*.py"))
    assert [f for f in files if layer_of(f) is None] == [], "add it to tests/conftest.py LAYERS"
    assert [f for f in LAYER_OF if f not in files] == []
    assert layer_of("test_tui_new") == "tui" and layer_of("test_nothing") is None
