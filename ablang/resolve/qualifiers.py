"""Pass 4a, an intervention's qualifiers: the half of classifier-free guidance it acts on
(``on cond``, ``on uncond``) and a cache's schedule (``every N``, ``every N growing by G``,
``at step A, B``, ``at t A, B``)."""

from __future__ import annotations

from ablang import ast
from ablang.errors import Note, did_you_mean
from ablang.models.kinds import KINDS
from ablang.plan import SIDES, Intervention, Op, Side
from ablang.resolve.context import Context, count

CacheWhen = tuple[int | None, int | None, tuple[int, ...] | None]  # every, grow, at


def side_of(cx: Context, iv: ast.Intervention | ast.SearchOp) -> Side | None:
    """The side an intervention (or a search's op) acts on ("both" without ``on``). None after
    an error."""
    if iv.side is None:
        return "both"
    name = iv.side.value
    if name not in SIDES:
        cx.diag.error(
            f"unknown side `{name}`",
            iv.side.span,
            "unknown-side",
            hint=did_you_mean(name, SIDES) or "sides: cond, uncond (both is the default)",
        )
        return None
    if name != "both" and (why := unguided(cx)):
        cx.diag.error(
            f"`on {name}` acts on one half of classifier-free guidance, and {why}",
            iv.side.span,
            "side-unguided",
            hint=f"remove `on {name}`"
            + (", or set `guidance` above 1 in the sampler line" if "guidance 1" in why else ""),
        )
        return None
    return name


def search_sides(cx: Context, ops: tuple[ast.SearchOp, ...]) -> tuple[tuple[Op, Side], ...] | None:
    """The ops of a search that name a side of guidance, with it (`over drop on uncond, cache
    of ...`); one side per op for all its candidates. None after an error."""
    found: dict[Op, tuple[Side, ast.SearchOp]] = {}
    ok = True
    for op in ops:
        side = side_of(cx, op)
        if side is None:
            ok = False
        elif op.op in found and found[op.op][0] != side:
            first = found[op.op][1]
            cx.diag.error(
                f"contradictory sides for `{op.op}`: `{first.code()}` and `{op.code()}`",
                op.span,
                "contradictory-sides",
                hint="one side for all of an op's candidates; a second search can try the other",
                notes=[Note("the other one", first.span)],
            )
            ok = False
        else:
            found.setdefault(op.op, (side, op))
    return tuple((op, s) for op, (s, _) in found.items() if s != "both") if ok else None


def unguided(cx: Context) -> str | None:
    """Why this study's sampler has no unconditional half, or None when it has one. What a
    model kind can guide is the kinds table's (``models/kinds.py``); the guidance the study's."""
    kind = KINDS.get(cx.model_kind) if cx.model_kind else None
    if kind is not None and not kind.guidable:
        return f"`{kind.name}` models have none (no null class or empty prompt was trained)"
    if cx.table is not None and cx.table.prompt_kind == "none":
        return "the model is unconditional"
    if cx.guidance == 1.0:
        return "the sampler samples without it (guidance 1)"
    return None


def cache_when(cx: Context, iv: ast.Intervention) -> CacheWhen | None:
    """``every N [growing by G]`` or ``at step|t A, B, ...``, checked. None after an error."""
    if iv.at is None:
        every = count(cx.diag, iv.every, "every", minimum=1, default=0)
        grow = None
        if iv.grow is not None:
            grow = count(
                cx.diag,
                iv.grow,
                "growing by",
                minimum=1,
                default=0,
                why="`growing by 0` is plain `every N`: remove it",
            )
        return None if not every or grow == 0 else (every, grow, None)
    return None if (at := at_entries(cx, iv)) is None else (None, None, at)


def at_entries(cx: Context, iv: ast.Intervention) -> tuple[int, ...] | None:
    """The compute points of ``at``, in visiting order (steps ascending, t descending): whole
    numbers, each once, each inside the window (and the sampler's steps or the model's t)."""
    assert iv.at is not None
    var, w = iv.at_var, iv.window
    if w is not None and w.var != var:
        cx.diag.error(
            f"`at {var}` lists {'steps' if var == 'step' else 't values'} and the window is "
            f"in {'steps' if w.var == 'step' else 't'}",
            w.span,
            "mixed-windows",
            hint=f"write the window as `for {var} in ...`, so that the entries can be checked",
        )
        return None
    limit: int | None = cx.steps
    what = f"the sampler makes {cx.steps} steps (0 to {cx.steps - 1})"
    if var == "t":
        limit = cx.table.num_timesteps if cx.table else None
        what = f"this model's t runs from 0 to {limit - 1}" if limit else ""
    once = cx.diag.once("first listed here")
    out: list[int] = []
    for n in iv.at:
        v = count(cx.diag, n, f"at {var}", minimum=0, default=-1)
        if v < 0:
            return None
        if not once.add(v, n.span, f"{var} {v} is listed twice", "duplicate-entry"):
            return None
        if limit is not None and v >= limit:
            cx.diag.error(f"{var} {v} is past the end: {what}", n.span, "entry-range")
            return None
        if w is not None and not _inside(w, v):
            cx.diag.error(
                f"{var} {v} is outside the window {w.code()}",
                n.span,
                "entry-outside-window",
                hint="a cache only computes and reuses inside its window; widen it or drop "
                "the entry",
            )
            return None
        out.append(v)
    return tuple(sorted(out, reverse=var == "t"))


def _inside(w: ast.Window, v: int) -> bool:
    lo, hi = w.lo.value, w.hi.value
    return lo <= v <= hi if w.inclusive else lo <= v < hi


def same_time(cx: Context, iv: Intervention, other: Intervention) -> bool:
    """Whether two interventions on one component of one variant act on one half at once; an
    error when they do and their sides say so twice or contradict each other."""
    if {iv.side, other.side} == {"cond", "uncond"}:
        return False  # one half each: nothing shared
    if iv.op != other.op or "both" == iv.side == other.side:
        return True  # the caller's overlap check
    a, b = iv.window, other.window
    if not ("all" in (a.kind, b.kind) or (a.kind == b.kind and a.lo < b.upper and b.lo < a.upper)):
        return False
    if iv.side == other.side:
        message = f"`on {iv.side}` is given twice for {iv.op} {iv.component} at the same steps"
        code, hint = "duplicate-side", "keep one of the two lines, or give them other windows"
    else:
        one = iv.side if iv.side != "both" else other.side
        message = (
            f"contradictory sides for {iv.op} {iv.component}: one line says `on {one}`, the "
            f"other (no `on`) acts on both halves, at the same steps"
        )
        code, hint = "contradictory-sides", "keep one of the two, or give them other windows"
    cx.diag.error(message, iv.span, code, hint=hint, notes=[Note("the other one", other.span)])
    return False
