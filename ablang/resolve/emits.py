"""Pass 6, emits: each ``emit sampler "PATH" from NAME`` names a variant or a search, once per path."""

from __future__ import annotations

import re

from ablang import ast
from ablang.errors import did_you_mean
from ablang.plan import Emit, Search, Variant
from ablang.resolve.context import Context


def emits(
    cx: Context, variants: tuple[Variant, ...], searches: tuple[Search, ...] = ()
) -> tuple[Emit, ...]:
    # a search's name stands for its best variant, known once the run has searched
    named = [v.name for v in variants if v.origin in ("baseline", "variant")]
    named += [s.name for s in searches]
    out: list[Emit] = []
    paths = cx.diag.once("the first one")
    for stmt in cx.study.statements:
        if not isinstance(stmt, ast.EmitStmt):
            continue
        name, path = stmt.variant.value, stmt.path.value
        if name not in named:
            cx.diag.error(
                f"no variant named `{name}`",
                stmt.variant.span,
                "unknown-variant",
                hint=did_you_mean(name, named)
                or "emit takes the name of a `variant NAME { ... }` block or of a search",
            )
        elif not path.strip():
            cx.diag.error(
                "emit needs a file name",
                stmt.path.span,
                "emit-path",
                hint='write `emit sampler "fast.py" from NAME`',
            )
        elif _escapes(path):
            cx.diag.error(
                f'emit sampler "{path}" would write outside the study\'s folder',
                stmt.path.span,
                "emit-path",
                hint="a study's emit path is relative to the study file and stays in its folder "
                'tree (write e.g. "build/fast.py"); to write elsewhere, run '
                "`ablang emit STUDY VARIANT -o PATH`",
            )
        elif paths.add(
            path, stmt.path.span, f'a second sampler is written to "{path}"', "duplicate-emit"
        ):
            out.append(Emit(path, name, span=stmt.span))
    return tuple(out)


def _escapes(path: str) -> bool:
    """An absolute path (``/etc/x``, ``C:\\x``, ``~/x``), or one whose ``..`` climb out of the
    folder it is relative to."""
    if path.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", path):
        return True
    depth = 0
    for part in re.split(r"[/\\]+", path):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False
