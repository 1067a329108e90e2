"""Pass 5, searches: objective, quality bounds, ops, candidates and windows of each ``search``."""

from __future__ import annotations

from ablang import ast
from ablang.errors import Span, did_you_mean
from ablang.plan import QUALITY_METRICS, Constraint, Op, Search, Validation
from ablang.resolve.context import Context, count, real
from ablang.resolve.qualifiers import search_sides
from ablang.resolve.selectors import distinct, droppable, select
from ablang.resolve.settings import MAX_SEED, seed_limit, seeds_fit
from ablang.resolve.windows import windows_of

OBJECTIVES = ("speedup",)
# Metrics with a baseline value of their own; mse/psnr/ssim compare against the baseline images,
# so "+10% of the baseline's mse" has nothing to be relative to.
RELATIVE_METRICS = ("fid", "kid", "accuracy")
SEARCH_OPS = ("drop", "zero", "cache")
_EXAMPLE_BOUND = {"mse": "0.01", "psnr": "30", "ssim": "0.9"}


def search_of(
    cx: Context, stmt: ast.SearchStmt, metrics: tuple[str, ...], default_name: str
) -> Search | None:
    ok = True
    objective = stmt.objective.value
    if objective not in OBJECTIVES:
        cx.diag.error(
            f"unknown objective `{objective}`",
            stmt.objective.span,
            "unknown-objective",
            hint=did_you_mean(objective, OBJECTIVES) or "a search maximises `speedup`",
        )
        ok = False
    constraints = []
    for c in stmt.constraints:
        got = constraint(cx, c, metrics)
        ok = ok and got is not None
        if got is not None:
            constraints.append(got)
    ops: list[Op] = []
    periods: list[int] = []
    extrapolated: list[int] = []
    for op in stmt.ops:
        if op.op not in SEARCH_OPS:
            cx.diag.error(
                f"a search does not try `{op.op}`",
                op.span,
                "search-op",
                hint="a search tries drop, zero and cache; use a sweep to scale",
            )
            ok = False
        elif op.op == "cache":
            # `cache every 2, cache every 4`: each period is a candidate of its own
            every = count(cx.diag, op.every, "every", minimum=1, default=0) if op.every else 2
            if not every:
                ok = False
            elif every in periods:
                cx.diag.error(f"`cache every {every}` is listed twice", op.span, "search-op")
                ok = False
            else:
                periods.append(every)
                extrapolated += [every] if op.extrapolated else []
                ops += [] if "cache" in ops else ["cache"]
        elif op.op in ops:
            cx.diag.error(f"`{op.op}` is listed twice", op.span, "search-op")
            ok = False
        else:
            ops.append(op.op)
    sides = search_sides(cx, stmt.ops)
    picked = select(cx, stmt.targets)
    windows = windows_of(cx, stmt.window, split=True)
    valid, check = validation_of(cx, stmt.validation, stmt.span)
    if picked is None or windows is None or sides is None or not ok or not valid:
        return None
    # With other ops listed too, a block that cannot be dropped stays a candidate for those;
    # the search skips the (block, drop) pairs that the table marks not droppable.
    if ops == ["drop"]:
        picked = droppable(cx, "drop", picked, leave_out_wildcards=True)
    picked = distinct(cx, picked)
    name = stmt.name.value if stmt.name is not None else default_name
    return Search(
        name,
        objective,
        tuple(constraints),
        tuple(ops),
        tuple(p.name for p in picked),
        tuple(windows),
        periods[0] if periods else 2,
        span=stmt.span,
        periods=tuple(periods) if len(periods) > 1 else (),
        validation=check,
        sides=sides,
        extrapolated=tuple(extrapolated),
    )


def validation_of(
    cx: Context, stmt: ast.Validation | None, search: Span
) -> tuple[bool, Validation | None]:
    """Whether the clause is right, and the search's validation images: by default as many
    samples again, with the seeds that follow the study's; ``validate 0 samples`` turns it off
    (None). Errors about default seeds point at ``search``."""
    after = cx.seed + cx.samples
    if after > seed_limit(cx):
        return False, None  # the study's own seeds are out of range: its error says so
    if stmt is None:
        return seeds_fit(cx, after, cx.samples, search), Validation(cx.samples, after)
    samples = count(cx.diag, stmt.samples, "validate", minimum=0, default=-1)
    if samples < 0:
        return False, None
    if samples == 0:
        return True, None
    if stmt.seed is None:
        fits = seeds_fit(cx, after, samples, stmt.span)
        return fits, Validation(samples, after, span=stmt.span)
    seed = count(cx.diag, stmt.seed, "seed", minimum=0, default=-1, maximum=MAX_SEED)
    if seed < 0:
        return False, None
    if seed < cx.seed + cx.samples and cx.seed < seed + samples:
        last = cx.seed + cx.samples - 1
        cx.diag.error(
            f"validation seeds {seed}..{seed + samples - 1} overlap the study's seeds "
            f"{cx.seed}..{last}",
            stmt.seed.span,
            "validation-seeds",
            hint=f"validation must use images the search never saw: `seed {last + 1}` or above "
            "(or leave out the seed)",
        )
        return False, None
    if not seeds_fit(cx, seed, samples, stmt.seed.span):
        return False, None
    return True, Validation(samples, seed, span=stmt.span)


def constraint(cx: Context, c: ast.Constraint, metrics: tuple[str, ...]) -> Constraint | None:
    name = c.metric.value
    if name not in QUALITY_METRICS:
        cx.diag.error(
            f"unknown metric `{name}`",
            c.metric.span,
            "unknown-metric",
            hint=did_you_mean(name, QUALITY_METRICS) or "metrics: " + ", ".join(QUALITY_METRICS),
        )
        return None
    if name not in metrics:
        cx.diag.error(
            f"the search bounds `{name}` but the study does not measure it",
            c.metric.span,
            "metric-not-measured",
            hint=f"add {name} to the study's `metrics` line",
        )
        return None
    value = real(cx.diag, c.value, name, None)
    if value is None:
        return None
    if c.percent:
        if c.value.text[0] not in "+-":
            cx.diag.error(
                f"a change from the baseline has a sign: +{c.value.text}% or -{c.value.text}%",
                c.value.span,
                "unsigned-percent",
                hint=f"`{name} {c.cmp} +{c.value.text}%` allows {name} to rise by up to {c.value.text}%",
            )
            return None
        if name not in RELATIVE_METRICS:
            cx.diag.error(
                f"{name} is measured against the baseline's images, so it has no baseline value "
                "to change by a percentage",
                c.span,
                "relative-metric",
                hint=f"bound it by a value, such as `{name} {c.cmp} {_EXAMPLE_BOUND[name]}`",
            )
            return None
    return Constraint(name, c.cmp, value, c.percent, span=c.span)
