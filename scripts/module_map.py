"""The module map of ``ablang/``: modules and lines per pipeline stage, and the longest functions
and classes, for the working tree and (optionally) an earlier commit side by side.

    python scripts/module_map.py                # the working tree
    python scripts/module_map.py --before REV   # REV's map next to the working tree's

Stages are ``LAYERS`` of ``tests/test_imports.py`` (read from its source, not imported), so the
map follows the same order the import test enforces. A module of an older commit that no layer
names is listed under "(no stage)". docs/architecture.md quotes the output for round 2
(``--before 2b76e2b``, the last commit of round 1).
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_STAGE = "(no stage)"


def layers() -> list[tuple[str, tuple[str, ...]]]:
    tree = ast.parse((ROOT / "tests" / "test_imports.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "LAYERS" for t in targets):
                assert node.value is not None
                return list(ast.literal_eval(node.value))
    raise SystemExit("module_map: no LAYERS in tests/test_imports.py")


def sources(rev: str | None) -> dict[str, str]:
    """``{module name: source}`` of ``ablang/`` at ``rev`` (None: the working tree)."""
    if rev is None:
        paths = {p.relative_to(ROOT).as_posix(): p for p in sorted((ROOT / "ablang").rglob("*.py"))}
        texts = {rel: p.read_text(encoding="utf-8") for rel, p in paths.items()}
    else:

        def git(*args: str) -> str:
            return subprocess.run(
                ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
            ).stdout

        names = [n for n in git("ls-tree", "-r", "--name-only", rev, "ablang").split() if n]
        texts = {n: git("show", f"{rev}:{n}") for n in names if n.endswith(".py")}
    out = {}
    for rel, text in texts.items():
        parts = rel[: -len(".py")].split("/")
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = text
    return out


def stage_of(module: str, table: list[tuple[str, tuple[str, ...]]]) -> str:
    """The stage of the most specific ``LAYERS`` entry naming ``module`` (as the import test)."""
    best: tuple[int, str] | None = None
    for stage, names in table:
        for name in names:
            spec = (
                2
                if name == module
                else 1
                if name.endswith(".*") and module.startswith(name[:-1])
                else 0
            )
            if spec and (best is None or spec > best[0]):
                best = (spec, stage)
    return best[1] if best else NO_STAGE


def spans(module: str, text: str) -> list[tuple[int, str, str]]:
    """``(lines, kind, qualified name)`` of every function and class in ``text``."""
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                kind = "class" if isinstance(child, ast.ClassDef) else "def"
                out.append((child.end_lineno - child.lineno + 1, kind, f"{module}.{name}"))
                visit(child, name + ".")

    visit(ast.parse(text), "")
    return out


def lines(text: str) -> int:
    return len(text.splitlines())


def report(label: str, mods: dict[str, str], table, top: int) -> dict[str, tuple[int, int]]:
    """Print one revision's map; return ``{stage: (modules, lines)}``."""
    by_stage: dict[str, list[str]] = {}
    for m in mods:
        by_stage.setdefault(stage_of(m, table), []).append(m)
    order = [s for s, _ in table if s in by_stage] + ([NO_STAGE] if NO_STAGE in by_stage else [])
    print(f"## {label}: {len(mods)} modules, {sum(map(lines, mods.values()))} lines\n")
    print("| stage | lines | modules (lines) |\n|---|---:|---|")
    totals = {}
    for s in order:
        ms = sorted(by_stage[s], key=lambda m: -lines(mods[m]))
        n = sum(lines(mods[m]) for m in ms)
        totals[s] = (len(ms), n)
        listed = ", ".join(
            f"`{m.removeprefix('ablang.') or 'ablang'}` {lines(mods[m])}" for m in ms
        )
        print(f"| {s} | {n} | {listed} |")
    every = sorted((x for m, t in mods.items() for x in spans(m, t)), reverse=True)
    for kind, what in (("def", "functions"), ("class", "classes")):
        longest = [x for x in every if x[1] == kind][:top]
        print(
            f"\nLongest {what}: "
            + ", ".join(f"`{q.removeprefix('ablang.')}` {n}" for n, _, q in longest)
        )
    print()
    return totals


def _cell(x: tuple[int, int] | None) -> str:
    return f"{x[0]}, {x[1]}" if x else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", metavar="REV", help="an earlier commit to compare with")
    ap.add_argument("--top", type=int, default=5, help="longest functions and classes to list")
    args = ap.parse_args()
    table = layers()
    before = (
        report(f"before ({args.before})", sources(args.before), table, args.top)
        if args.before
        else None
    )
    now = report("now (working tree)", sources(None), table, args.top)
    if before is not None:
        print("| stage | before: modules, lines | now: modules, lines |\n|---|---:|---:|")
        for s in [s for s, _ in table] + [NO_STAGE]:
            b, n = before.get(s), now.get(s)
            if b or n:
                print(f"| {s} | {_cell(b)} | {_cell(n)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
