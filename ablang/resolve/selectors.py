"""Pass 2, selectors: ``skip[*]``, ``skip[-1]``, ``skip[2..5]``, ``level[k]`` expanded to
concrete components and checked against the table."""

from __future__ import annotations

from dataclasses import dataclass

from ablang import ast
from ablang.components import KINDS, Component
from ablang.errors import Span, did_you_mean
from ablang.plan import GUIDANCE, GUIDANCE_OPS
from ablang.resolve.context import Context
from ablang.resolve.qualifiers import unguided


@dataclass(frozen=True)
class _Picked:
    """One component a selector picked, and whether the study named it on its own."""

    name: str
    span: Span
    explicit: bool  # skip[3] or mid, not skip[*], skip[2..5] or level[1]
    component: Component | None


def select(cx: Context, targets: tuple[ast.Selector, ...]) -> list[_Picked] | None:
    """The components ``targets`` pick, in the order written. None after an error."""
    picked: list[_Picked] = []
    ok = True
    for sel in targets:
        got = select_one(cx, sel)
        if got is None:
            ok = False
        else:
            picked += got
    return picked if ok else None


# Selectors that name one thing and take no index, and what that thing is.
_SINGLE = {"mid": "a single block", GUIDANCE: "the sampler's combination of the two halves"}


def select_one(cx: Context, sel: ast.Selector) -> list[_Picked] | None:
    kind = sel.kind.value
    if kind in _SINGLE and sel.indices is not None:
        cx.diag.error(
            f"`{kind}` is {_SINGLE[kind]} and takes no index",
            sel.span,
            "selector",
            hint=f"write `{kind}`",
        )
        return None
    if kind == "mid":
        return [pick(cx, "mid", sel.span, True)]
    if kind == GUIDANCE:
        if why := unguided(cx):
            cx.diag.error(
                f"`guidance` acts on classifier-free guidance's two halves, and {why}",
                sel.span,
                "guidance-unguided",
                hint="set `guidance` above 1 in the sampler line"
                if "guidance 1" in why
                else "remove this line: only a guided sampler has an unconditional half to skip",
            )
            return None
        return [_Picked(GUIDANCE, sel.span, True, None)]
    if kind not in KINDS and kind != "level":
        hint = did_you_mean(kind, KINDS + ("level",), fmt="{}" + (sel.code()[len(kind) :]))
        cx.diag.error(
            f"no component `{sel.code()}`",
            sel.kind.span,
            "unknown-component",
            hint=hint or "components: enc[i], mid, dec[i], skip[i], level[k], guidance",
        )
        return None
    if sel.indices is None:
        cx.diag.error(
            f"`{kind}` needs an index",
            sel.span,
            "selector",
            hint=f"write {kind}[0], {kind}[-1], {kind}[2..5], {kind}[1, 4] or {kind}[*]",
        )
        return None
    n = size(cx, kind)
    out: list[_Picked] = []
    for item in sel.indices:
        idxs = indices(cx, kind, item, n)
        if idxs is None:
            return None
        explicit = isinstance(item, ast.IndexAt)
        for i in idxs:
            if isinstance(i, str):  # no table: as written
                out.append(_Picked(i, item.span, explicit, None))
            elif kind == "level" and cx.table is not None:
                out += [_Picked(c.name, item.span, False, c) for c in cx.table.at_level(i)]
            else:
                out.append(pick(cx, f"{kind}[{i}]", item.span, explicit))
    return out


def pick(cx: Context, name: str, span: Span, explicit: bool) -> _Picked:
    return _Picked(name, span, explicit, cx.by_name.get(name))


def size(cx: Context, kind: str) -> int | None:
    return cx.sizes.get(kind)


def have(cx: Context, kind: str, n: int) -> str:
    if kind == "level":
        return f"the model has levels 0 to {n - 1}" if n else "the model has no levels"
    return (
        f"the model has {kind}[0] to {kind}[{n - 1}]"
        if n
        else f"the model has no {kind} components"
    )


def indices(cx: Context, kind: str, item: ast.Index, n: int | None) -> list[int | str] | None:
    """Concrete indices of one bracket item; strings where only the model could tell."""
    if isinstance(item, ast.IndexAll):
        return list(range(n)) if n is not None else [f"{kind}[*]"]
    ends = [item.index] if isinstance(item, ast.IndexAt) else [item.lo, item.hi]
    for e in ends:
        if not e.is_int:
            cx.diag.error(
                f"component indices are whole numbers, not {e.text}", e.span, "bad-number"
            )
            return None
    if isinstance(item, ast.IndexAt):
        i = int(item.index.value)
        if n is None:
            return [f"{kind}[{i}]"]
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            cx.diag.error(
                f"no component {kind}[{i}]: {have(cx, kind, n)}", item.span, "index-range"
            )
            return None
        return [j]
    lo, hi = int(item.lo.value), int(item.hi.value)
    if n is not None:
        lo, hi = (lo + n if lo < 0 else lo), (hi + n if hi < 0 else hi)
    upper = hi + 1 if item.inclusive else hi
    if lo >= upper and (n is not None or (lo >= 0 and hi >= 0)):
        cx.diag.error(
            f"`{kind}[{item.code()}]` selects nothing",
            item.span,
            "empty-selection",
            hint=f"a range A..B runs from A up to B-1; write {kind}[{item.hi.text}..{item.lo.text}]"
            if lo > upper
            else None,
        )
        return None
    if n is None:
        return [f"{kind}[{item.code()}]"]  # only the model can expand it
    if lo < 0 or upper > n:
        cx.diag.error(
            f"`{kind}[{item.code()}]` reaches past the model's components: {have(cx, kind, n)}",
            item.span,
            "index-range",
        )
        return None
    return list(range(lo, upper))


def guidance_op(cx: Context, op: str, side: str, picked: list[_Picked], span: Span) -> bool:
    """``guidance`` takes ``drop`` (the conditional half alone) and ``cache`` (reuse the
    guidance term), on both halves: it is what combines them. False after an error."""
    if not any(p.name == GUIDANCE for p in picked):
        return True
    if op not in GUIDANCE_OPS:
        cx.diag.error(
            f"`{op} guidance` has no meaning",
            span,
            "guidance-op",
            hint="guidance takes `drop` (sample with the conditional half alone) and `cache` "
            "(reuse the guidance term between steps)",
        )
        return False
    if side != "both":
        cx.diag.error(
            f"`{op} guidance` acts on the combination of both halves, not on one",
            span,
            "guidance-side",
            hint=f"remove `on {side}`",
        )
        return False
    return True


def droppable(
    cx: Context, op: str, picked: list[_Picked], leave_out_wildcards: bool
) -> list[_Picked]:
    """``drop`` of a block whose output shape differs from its input and that has no shortcut
    of its own has no meaning. Named on its own it is an error; picked by a wildcard in a
    sweep or search it is left out of the grid."""
    if op != "drop":
        return picked
    out = []
    for p in picked:
        c = p.component
        if c is None or c.droppable:
            out.append(p)
        elif not (leave_out_wildcards and not p.explicit):
            where = f" ({c.module})" if c.module else ""
            why = (
                c.drop_note
                or "its output has another shape than its input and it has no shortcut path"
            )
            cx.diag.error(
                f"{c.name}{where} cannot be dropped: {why}",
                p.span,
                "not-droppable",
                hint=f"use `zero {c.name}` to replace its output with zeros",
            )
    return out


def distinct(cx: Context, picked: list[_Picked]) -> list[_Picked]:
    once = cx.diag.once("first selected here")
    return [
        p
        for p in picked
        if once.add(p.name, p.span, f"{p.name} is selected twice", "duplicate-component")
    ]
