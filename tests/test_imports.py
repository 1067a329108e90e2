"""The import graph of ``ablang/``: no cycles, and no module imports a stage above it.

Imports are read with ``ast`` from the source, nothing is imported. The rules:

- **Acyclic at module level.** The imports that run when a module is imported (module body,
  including ``if TYPE_CHECKING:`` blocks) form no cycle. Imports inside functions are not part of
  this graph: they are how ablang defers heavy optional packages (torch-fidelity, diffusers,
  guided-diffusion) and picks a model adapter or a command on demand.
- **Layered everywhere.** Every import of an ablang module, at module level or inside a function,
  goes to the importer's own layer or one below it (``LAYERS``, lowest first). A lazy import does
  not make an upward dependency acceptable: it is still the lower stage knowing the higher one.
- **Every module has a layer.** A new module must be placed in ``LAYERS`` (and so in the
  pipeline's order) before it can be imported.

Implicit imports of a parent package (``ablang.models`` when ``ablang.models.tiny`` is imported)
are not edges: Python runs the package's ``__init__`` first whatever the importer wants.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ablang"

# Lowest first; a module may import modules of its own layer and of the layers before it.
# The order is the pipeline's: parse < resolve < compile < execute < measure < report, with the
# data types every stage shares at the bottom and the command line at the top.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "types",
        (
            "ablang",
            "ablang.errors",
            "ablang.fsio",
            "ablang.lexer",
            "ablang.ast",
            "ablang.components",
            "ablang.plan",
            "ablang.results",
            "ablang.stats",
            "ablang.models.kinds",
        ),
    ),
    ("parse", ("ablang.syntax_errors", "ablang.parse", "ablang.fmt")),
    ("resolve", ("ablang.resolve", "ablang.resolve.*", "ablang.preflight")),
    ("sampling", ("ablang.diffusion", "ablang.runtime", "ablang.trace")),
    ("models", ("ablang.models", "ablang.models.*")),
    ("compile", ("ablang.compile",)),
    (
        "execute",
        ("ablang.execute", "ablang.trajectory", "ablang.cost", "ablang.journal", "ablang.runlock"),
    ),
    ("measure", ("ablang.bands", "ablang.measure")),
    ("search", ("ablang.search",)),
    ("report", ("ablang.heatmap", "ablang.phases", "ablang.report")),
    ("emit", ("ablang.emit", "ablang.emit_diffusers")),
    ("session", ("ablang.session", "ablang.train", "ablang.distributed")),
    ("run", ("ablang.run",)),
    ("run directories", ("ablang.run_dir", "ablang.html", "ablang.mlflow_log")),
    ("cli", ("ablang.commands", "ablang.commands.*", "ablang.cli")),
    ("api", ("ablang.api", "ablang.analysis")),
)
# The package's __init__ forwards the public API (``ablang.load``...) to ``ablang.api`` on first
# use: the one import that goes up, on purpose. It is still checked for cycles.
FORWARDS_THE_API = "ablang"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    """The index of the most specific ``LAYERS`` entry naming ``module``."""
    best: tuple[int, int] | None = None  # (specificity, layer)
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            if name == module:
                spec = 2
            elif name.endswith(".*") and module.startswith(name[:-1]):
                spec = 1
            else:
                continue
            if best is None or spec > best[0]:
                best = (spec, i)
    return None if best is None else best[1]


def _target(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The ablang modules an import statement loads (``from X import Y`` counts ``X.Y`` where
    that is a module, else ``X``)."""
    out: list[str] = []
    if isinstance(node, ast.Import):
        out += [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")
            is_package = MODULES[module].name == "__init__.py"
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        for a in node.names:
            full = f"{prefix}.{a.name}"
            out.append(full if full in MODULES else prefix)
    return [m for m in out if m == "ablang" or m.startswith("ablang.")]


def imports(module: str) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions) of ``module``, as ablang module names."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top: set[str] = set()
    lazy: set[str] = set()

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (lazy if in_function else top).update(_target(module, child))
            # a function body, or an ``if TYPE_CHECKING:`` block (never run), loads nothing
            # when the module is imported
            inner = (
                in_function
                or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                or (
                    isinstance(child, ast.If)
                    and isinstance(child.test, ast.Name)
                    and child.test.id == "TYPE_CHECKING"
                )
            )
            visit(child, inner)

    visit(tree, False)
    top.discard(module)
    lazy.discard(module)
    return top, lazy


GRAPH = {m: imports(m) for m in MODULES}


def test_the_graph_is_read():
    # guards the reader itself: known edges must be found, or every other test passes vacuously
    top, lazy = GRAPH["ablang.run"]
    assert "ablang.session" in top and "ablang.measure" in top
    assert "ablang.emit" in lazy
    assert "ablang.models.tiny" in GRAPH["ablang.measure"][1]


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if layer_of(m) is None]
    assert not missing, f"place these modules in LAYERS (tests/test_imports.py): {missing}"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_no_import_cycle_at_module_level():
    cycle = find_cycle({m: top for m, (top, _) in GRAPH.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_stage_above_it(module):
    own = layer_of(module)
    if own is None:
        pytest.fail(f"{module} has no layer")
    top, lazy = GRAPH[module]
    if module == FORWARDS_THE_API:
        top, lazy = set(), set()
    upward = sorted(
        f"{m} ({LAYERS[layer_of(m)][0]})"  # type: ignore[index]
        for m in top | lazy
        if layer_of(m) is not None and layer_of(m) > own  # type: ignore[operator]
    )
    assert not upward, f"{module} ({LAYERS[own][0]}) imports a later stage: {', '.join(upward)}"


def test_the_kinds_table_matches_the_plans_model_kinds():
    from typing import get_args, get_type_hints

    from ablang.models.kinds import KINDS, adapter_class
    from ablang.plan import ModelSpec

    assert get_args(get_type_hints(ModelSpec)["kind"]) == tuple(KINDS)
    for name, kind in KINDS.items():
        assert kind.syntax.split()[:2] == ["model", name]
        assert ("PATH" in kind.syntax or "DIR" in kind.syntax) == kind.takes_path
        assert ("config" in kind.syntax) == kind.takes_config
        assert (kind.requires is None) == (kind.install is None)
    assert adapter_class("tiny").__name__ == "TinyAdapter"
    assert KINDS["tiny"].available()
