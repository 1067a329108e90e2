"""Pass 3, windows: checked against ``[0, T)`` or the sampler's steps; split by ``by W``."""

from __future__ import annotations

from ablang import ast
from ablang.plan import Window
from ablang.resolve.context import Context, count

MAX_WINDOWS = 10_000  # per sweep or search; a bound so that a typo cannot exhaust memory


def windows_of(cx: Context, w: ast.Window | None, split: bool) -> list[Window] | None:
    """The plan windows of ``w``: one, or with ``by W`` (only where ``split``) several.
    None after an error."""
    if w is None:
        return [Window()]
    ok = True
    for bound in (w.lo, w.hi):
        if not bound.is_int:
            cx.diag.error(
                f"window ends are whole numbers, not {bound.text}", bound.span, "bad-number"
            )
            ok = False
    if not ok:
        return None
    lo, hi = int(w.lo.value), int(w.hi.value)
    upper = hi + 1 if w.inclusive else hi
    dots = "..=" if w.inclusive else ".."
    if lo < 0:
        cx.diag.error(f"{w.var} starts at 0, not {lo}", w.lo.span, "window-range")
        return None
    if lo >= upper:
        if lo > hi:
            cx.diag.error(
                f"the window {lo}{dots}{hi} is reversed",
                w.span,
                "empty-window",
                hint=f"write {hi}{dots}{lo}",
            )
        else:
            cx.diag.error(
                f"the window {lo}..{hi} is empty ({lo} <= {w.var} < {hi})",
                w.span,
                "empty-window",
                hint=f"write {lo}..={hi} for the single {w.var} = {lo}",
            )
        return None
    if w.var == "t" and cx.table is not None and upper > cx.table.num_timesteps:
        T = cx.table.num_timesteps
        cx.diag.error(
            f"the window ends past t = {T - 1}: this model's t runs from 0 to {T - 1}",
            w.hi.span,
            "window-range",
            hint=f"write {lo}..{T}",
        )
        return None
    if w.var == "step" and upper > cx.steps:
        cx.diag.error(
            f"the window ends past step {cx.steps - 1}: the sampler makes {cx.steps} steps",
            w.hi.span,
            "window-range",
            hint=f"write {lo}..{cx.steps}",
        )
        return None
    if w.by is None:
        return [Window(w.var, lo, hi, w.inclusive, span=w.span)]
    if not split:
        cx.diag.error(
            "`by` splits a range into windows only in a sweep or a search",
            w.by.span,
            "by-outside-sweep",
            hint="remove `by ...`, or write this line as `sweep ...`",
        )
        return None
    width = count(cx.diag, w.by, "by", minimum=1, default=0)
    if not width:
        return None
    if (upper - lo) // width > MAX_WINDOWS:
        cx.diag.error(
            f"`by {width}` splits {lo}{dots}{hi} into more than {MAX_WINDOWS} windows",
            w.by.span,
            "too-many-windows",
            hint="split it into wider windows",
        )
        return None
    # Consecutive half-open windows of `width`; an inclusive range keeps its inclusive end.
    out = []
    for start in range(lo, upper, width):
        end = start + width
        if end >= upper:
            out.append(Window(w.var, start, hi, w.inclusive, span=w.span))
        else:
            out.append(Window(w.var, start, end, False, span=w.span))
    return out
