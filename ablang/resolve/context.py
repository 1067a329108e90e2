"""What every resolver pass shares: the study, the model's table, the diagnostics, and the
checks of single numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ablang import ast
from ablang.components import KINDS, ComponentTable
from ablang.plan import Noise
from ablang.resolve.diagnostics import Diagnostics

DEFAULT_STEPS = 100


@dataclass
class Context:
    """One resolution: ``table`` is None when the model is not at hand."""

    study: ast.Study
    table: ComponentTable | None
    diag: Diagnostics = field(default_factory=Diagnostics)
    steps: int = DEFAULT_STEPS  # the sampler's, once known; bounds `for step` windows
    seed: int = 0  # the study's, once known; a search's validation seeds follow them
    samples: int = 4
    noise: Noise = "sample"  # the study's `noise per ...`, once known; bounds its seeds
    model_kind: str | None = None  # the study's model kind, once known
    guidance: float | None = None  # the sampler's guidance (None: the model's default)

    def __post_init__(self) -> None:
        table = self.table
        self.by_name = {c.name: c for c in table.components} if table else {}
        self.sizes = (
            {k: table.count(k) for k in KINDS} | {"level": table.num_levels} if table else {}
        )


def count(
    diag: Diagnostics,
    node,
    what: str,
    *,
    minimum: int,
    default: int,
    maximum: int | None = None,
    why: str = "",
) -> int:
    """A whole-number setting (``seed 0``, ``samples 16``, ``steps 100``, ``every 2``)."""
    if node is None:
        return default
    number: ast.Number = node if isinstance(node, ast.Number) else node.value
    if not number.is_int:
        diag.error(f"`{what}` takes a whole number, not {number.text}", number.span, "bad-number")
        return default
    v = int(number.value)
    if v < minimum or (maximum is not None and v > maximum):
        bound = f"at least {minimum}" if v < minimum else f"at most {maximum}"
        diag.error(
            f"`{what}` must be {bound}, not {number.text}",
            number.span,
            "bad-number",
            hint=why or None,
        )
        return default
    return v


def _nonzero_literal(text: str) -> bool:
    """A number literal whose digits are not all 0 (``1e-400``, unlike ``0.0e5``)."""
    mantissa = text.lower().split("e", 1)[0]
    return any(c in "123456789" for c in mantissa)


def real(
    diag: Diagnostics,
    number: ast.Number,
    what: str,
    default: float | None,
    *,
    lo: float | None = None,
    hi: float | None = None,
    why: str = "",
) -> float | None:
    try:
        v = float(number.value)
    except OverflowError:  # an integer literal beyond float range
        v = math.inf
    bad = not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi)
    if bad:
        limits = [f"at least {lo:g}"] if lo is not None else []
        limits += [f"at most {hi:g}"] if hi is not None else []
        bound = " and ".join(limits) or "a finite number"
        diag.error(
            f"`{what}` must be {bound}, not {number.text}",
            number.span,
            "bad-number",
            hint=why or None,
        )
        return default
    if v == 0.0 and _nonzero_literal(number.text):
        diag.error(
            f"`{what} {number.text}` is too small for a float: it would silently become 0",
            number.span,
            "bad-number",
            hint="write 0 if 0 is meant; the smallest usable magnitude is about 1e-300",
        )
        return default
    return v
