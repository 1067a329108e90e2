"""Pass 4, variants: the baseline first, then one per bare intervention line, one per ``variant``
block, one per cell of each sweep, in the order of the file (searches are read in the same walk,
so that their names and the variants' share one namespace)."""

from __future__ import annotations

import dataclasses

from ablang import ast
from ablang.errors import Note, Span
from ablang.plan import Intervention, Search, Sweep, Variant, Window
from ablang.resolve.context import Context, real
from ablang.resolve.qualifiers import cache_when, same_time, side_of
from ablang.resolve.searches import search_of
from ablang.resolve.selectors import distinct, droppable, guidance_op, select
from ablang.resolve.windows import windows_of

BASELINE = "baseline"


def interventions(
    cx: Context, iv: ast.Intervention, context: str
) -> tuple[list[Intervention], list[Window]] | None:
    """The plan interventions of one line: components x windows. ``context`` is "bare",
    "variant" or "sweep"; only a sweep may split its window with ``by``."""
    picked = select(cx, iv.targets)
    windows = windows_of(cx, iv.window, split=context == "sweep")
    params = params_of(cx, iv)
    side = side_of(cx, iv)
    if picked is None or windows is None or params is None or side is None:
        return None
    if not guidance_op(cx, iv.op, side, picked, iv.span):
        return None
    errors = len(cx.diag.errors)
    picked = droppable(cx, iv.op, picked, leave_out_wildcards=context == "sweep")
    if context == "sweep":
        picked = distinct(cx, picked)
    if len(cx.diag.errors) > errors:
        return None
    if not picked:
        cx.diag.error(
            "this sweep selects no component that can be dropped",
            iv.span,
            "not-droppable",
            hint="use `zero` instead of `drop`",
        )
        return None
    factor, (every, grow, at) = params
    at_kind = iv.at_var
    out = [
        Intervention(
            iv.op,
            p.name,
            w,
            factor,
            every,
            grow,
            _inside(at, w),
            at_kind,
            side,
            span=iv.span,
            extrapolate=iv.extrapolated,
        )
        for p in picked
        for w in windows
    ]
    return out, windows


def _inside(at: tuple[int, ...] | None, w: Window) -> tuple[int, ...] | None:
    """A sweep cell keeps the ``at`` entries inside its own window (same unit: checked)."""
    return at if at is None else tuple(a for a in at if w.contains(a, a))


def params_of(
    cx: Context, iv: ast.Intervention
) -> tuple[float | None, tuple[int | None, int | None, tuple[int, ...] | None]] | None:
    """``(factor, (every, grow, at))``; None after an error."""
    if iv.op == "scale" and iv.factor is not None:
        v = real(cx.diag, iv.factor, "by", None)
        return None if v is None else (v, (None, None, None))
    if iv.op == "cache":
        when = cache_when(cx, iv)
        return None if when is None else (None, when)
    return None, (None, None, None)


def overlaps(cx: Context, interventions: list[Intervention]) -> None:
    """Two interventions on one component in one variant must not be active at once."""
    by_component: dict[str, list[Intervention]] = {}
    for iv in interventions:
        for other in by_component.get(iv.component, ()):
            if not same_time(cx, iv, other):
                continue
            a, b = other.window, iv.window
            if "all" not in (a.kind, b.kind) and a.kind != b.kind:
                cx.diag.error(
                    f"{iv.component} has a `for t` and a `for step` window in one variant",
                    iv.span,
                    "mixed-windows",
                    hint="write both windows in t or both in steps, so that they can be checked for overlap",
                    notes=[Note(f"the other one: {other.label()}", other.span)],
                )
            elif "all" in (a.kind, b.kind) or (a.lo < b.upper and b.lo < a.upper):
                cx.diag.error(
                    f"two interventions on {iv.component} overlap: {other.label()} and {iv.label()}",
                    iv.span,
                    "overlap",
                    hint="give them windows that do not overlap, or put them in different variants",
                    notes=[Note("the first one", other.span)],
                )
        by_component.setdefault(iv.component, []).append(iv)


def variants(
    cx: Context, metrics: tuple[str, ...]
) -> tuple[tuple[Variant, ...], tuple[Sweep, ...], tuple[Search, ...]]:
    variants = [Variant(BASELINE, (), "baseline")]
    names = cx.diag.once("the first one")
    sweeps: list[Sweep] = []
    searches: list[Search] = []
    unnamed = 0

    def add(variant: Variant, name_span: Span) -> None:
        if variant.name == BASELINE:
            cx.diag.error(
                "`baseline` is the name of the unchanged model",
                name_span,
                "duplicate-variant",
                hint="choose another name",
            )
            return
        message = f"a second variant `{variant.name}`"
        hint = "variant names must be different"
        if names.add(variant.name, name_span, message, "duplicate-variant", hint):
            variants.append(variant)

    for stmt in cx.study.statements:
        if isinstance(stmt, ast.Intervention):
            got = interventions(cx, stmt, "bare")
            if got is not None:
                ivs, _ = got
                overlaps(cx, ivs)
                add(
                    Variant(bare_name(cx, stmt, ivs), tuple(ivs), "bare", span=stmt.span),
                    stmt.span,
                )
        elif isinstance(stmt, ast.VariantBlock):
            ivs = []
            for line in stmt.body:
                got = interventions(cx, line, "variant")
                if got is not None:
                    ivs += got[0]
            if not stmt.body:
                cx.diag.error(
                    f"variant `{stmt.name.value}` has no interventions",
                    stmt.span,
                    "empty-variant",
                    hint="add drop, zero, scale or cache lines, or remove the block",
                )
            overlaps(cx, ivs)
            # Added even when a line of it failed (the plan is not returned then), so that
            # its name still counts for duplicates and for `emit ... from`.
            add(Variant(stmt.name.value, tuple(ivs), "variant", span=stmt.span), stmt.name.span)
        elif isinstance(stmt, ast.SweepStmt):
            sweep = sweep_of(cx, stmt, f"sweep{len(sweeps) + 1}")
            if sweep is not None:
                sweep_obj, cells = sweep
                sweeps.append(sweep_obj)
                for v in cells:
                    add(v, stmt.span)
        elif isinstance(stmt, ast.SearchStmt):
            unnamed += stmt.name is None
            search = search_of(cx, stmt, metrics, default_name=_nth("search", unnamed))
            if search is not None:
                if any(s.name == search.name for s in searches):
                    cx.diag.error(
                        f"a second search `{search.name}`",
                        stmt.span,
                        "duplicate-search",
                        hint="give each search its own name: `search NAME speedup where ...`",
                    )
                else:
                    searches.append(search)
    for search in searches:  # `emit ... from NAME` must know which one NAME means
        if search.name == BASELINE or search.name in names:
            cx.diag.error(
                f"`{search.name}` names both a variant and a search",
                search.span,
                "duplicate-search",
                hint="give the search its own name: `search NAME speedup where ...`",
            )
    return tuple(variants), tuple(sweeps), tuple(searches)


def bare_name(cx: Context, stmt: ast.Intervention, ivs: list[Intervention]) -> str:
    """A bare line's variant is named after its canonical text; one component by its own
    name (``drop skip[11] ...`` for ``skip[-1]``), several by the selector as written."""
    first = ivs[0]
    if len({iv.component for iv in ivs}) == 1:
        return first.label()
    targets = ", ".join(s.code() for s in stmt.targets)
    return dataclasses.replace(first, component=targets).label()


def sweep_of(cx: Context, stmt: ast.SweepStmt, name: str) -> tuple[Sweep, list[Variant]] | None:
    iv = stmt.intervention
    got = interventions(cx, iv, "sweep")
    if got is None:
        return None
    ivs, windows = got
    components = tuple(dict.fromkeys(i.component for i in ivs))
    cells = [Variant(f"{name}: {i.label()}", (i,), "sweep", span=stmt.span) for i in ivs]
    matrix = tuple(
        tuple(cells[r * len(windows) + c].name for c in range(len(windows)))
        for r in range(len(components))
    )
    params = tuple((k, v) for k, v in ivs[0].params.items())
    sweep = Sweep(
        name, iv.op, params, components, tuple(windows), matrix, span=stmt.span, side=ivs[0].side
    )
    return sweep, cells


def _nth(name: str, k: int) -> str:
    """``search``, ``search2``, ``search3``: the names of unnamed searches in order."""
    return name if k == 1 else f"{name}{k}"
