"""The syntax tree of a study: what ``parse`` builds and ``resolve`` and ``fmt`` read.

The tree is the study as written, nothing resolved: a selector is still ``skip[*]``, a window
still ``0..1000 by 100``, a number keeps its spelling (``0.90`` stays ``0.90``). Every node keeps
its ``span`` for error messages. Spans never take part in equality, so the tree of a study and
the tree of its formatted text compare equal.

``code()`` gives a node's canonical text, the one ``ablang fmt`` writes; ``resolve`` uses the
same text to name variants, so the name of a variant never depends on spacing.

Shapes, top down::

    Study
      statements: Title | ModelStmt | SamplerStmt | SeedStmt | SamplesStmt | PromptsStmt
                | MetricsStmt | DeviceStmt | RayStmt | BandsStmt | Intervention | VariantBlock
                | SweepStmt | SearchStmt | EmitStmt
      comments:   Comment (kept for the formatter)
    Intervention: op, targets (Selector...), factor / every [growing] / at, side, window
    Selector:     kind + indices (IndexAt | IndexRange | IndexAll), or a bare name (mid)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ablang.errors import Span

NO_SPAN = Span(0, 0, 0, 0)  # nodes built by hand (tests) have no place in a file


# ---- leaves --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A numeric literal. ``value`` is an ``int`` when the text has no fraction or exponent."""

    text: str
    value: int | float
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    @property
    def is_int(self) -> bool:
        return isinstance(self.value, int)

    def code(self) -> str:
        return self.text


@dataclass(frozen=True)
class Str:
    """A double-quoted string; ``value`` is the text between the quotes (there are no escapes)."""

    value: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f'"{self.value}"'


@dataclass(frozen=True)
class Name:
    """An identifier: a model kind, metric, device, variant name, component kind."""

    value: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return self.value


@dataclass(frozen=True)
class Comment:
    """``# text`` on a line of its own or after a statement; ``text`` includes the ``#``."""

    text: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


# ---- selectors and windows -----------------------------------------------------------------


@dataclass(frozen=True)
class IndexAt:
    """``skip[3]``, ``skip[-1]``."""

    index: Number
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return self.index.code()


@dataclass(frozen=True)
class IndexRange:
    """``skip[2..5]`` (half-open) or ``skip[2..=5]`` (inclusive)."""

    lo: Number
    hi: Number
    inclusive: bool = False
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"{self.lo.code()}{'..=' if self.inclusive else '..'}{self.hi.code()}"


@dataclass(frozen=True)
class IndexAll:
    """``skip[*]``."""

    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return "*"


Index = IndexAt | IndexRange | IndexAll


@dataclass(frozen=True)
class Selector:
    """``skip[1, 4..6]``, ``level[2]``, ``mid``. ``indices`` is None when there are no brackets."""

    kind: Name
    indices: tuple[Index, ...] | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        if self.indices is None:
            return self.kind.code()
        return f"{self.kind.code()}[{', '.join(i.code() for i in self.indices)}]"


@dataclass(frozen=True)
class Window:
    """``for t in 600..1000``, ``for step in 0..=9``, ``for t in 0..1000 by 100`` (sweeps)."""

    var: Literal["t", "step"]
    lo: Number
    hi: Number
    inclusive: bool = False
    by: Number | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        text = (
            f"for {self.var} in {self.lo.code()}{'..=' if self.inclusive else '..'}{self.hi.code()}"
        )
        return text + (f" by {self.by.code()}" if self.by is not None else "")


def _targets_code(targets: tuple[Selector, ...]) -> str:
    return ", ".join(s.code() for s in targets)


# ---- statements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Intervention:
    """``drop C [on SIDE] [window]``, ``zero C``, ``scale C by F``, ``cache C every N [growing by
    G]``, ``cache C at step A, B`` / ``at t A, B``. The side comes before the window."""

    op: Literal["drop", "zero", "scale", "cache"]
    targets: tuple[Selector, ...]
    window: Window | None = None
    factor: Number | None = None  # scale
    every: Number | None = None  # cache every N
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    grow: Number | None = None  # cache every N growing by G
    at: tuple[Number, ...] | None = None  # cache at step A, B / at t A, B
    at_var: Literal["t", "step"] = "step"
    side: Name | None = None  # on cond / on uncond
    extrapolated: bool = False  # cache ... extrapolated

    def code(self) -> str:
        text = f"{self.op} {_targets_code(self.targets)}"
        if self.factor is not None:
            text += f" by {self.factor.code()}"
        if self.every is not None:
            text += f" every {self.every.code()}"
        if self.grow is not None:
            text += f" growing by {self.grow.code()}"
        if self.at is not None:
            text += f" at {self.at_var} {', '.join(n.code() for n in self.at)}"
        if self.extrapolated:
            text += " extrapolated"
        if self.side is not None:
            text += f" on {self.side.code()}"
        return text + (f" {self.window.code()}" if self.window is not None else "")


@dataclass(frozen=True)
class Setting:
    """Base of the one-line settings; ``KEY`` is what duplicate detection compares."""

    KEY: ClassVar[str] = ""


@dataclass(frozen=True)
class Title(Setting):
    KEY: ClassVar[str] = "study"
    title: Str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"study {self.title.code()}"


@dataclass(frozen=True)
class ModelStmt(Setting):
    KEY: ClassVar[str] = "model"
    kind: Name
    path: Str | None = None
    config: Str | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        text = f"model {self.kind.code()}"
        if self.path is not None:
            text += f" {self.path.code()}"
        if self.config is not None:
            text += f" config {self.config.code()}"
        return text


@dataclass(frozen=True)
class SamplerOption:
    """``steps 100``, ``eta 0.0``, ``guidance 3.0``."""

    key: Literal["steps", "eta", "guidance"]
    value: Number
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"{self.key} {self.value.code()}"


@dataclass(frozen=True)
class SamplerStmt(Setting):
    KEY: ClassVar[str] = "sampler"
    kind: Name
    options: tuple[SamplerOption, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return " ".join(["sampler", self.kind.code()] + [o.code() for o in self.options])


@dataclass(frozen=True)
class SeedStmt(Setting):
    KEY: ClassVar[str] = "seed"
    value: Number
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"seed {self.value.code()}"


@dataclass(frozen=True)
class SamplesStmt(Setting):
    KEY: ClassVar[str] = "samples"
    value: Number
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"samples {self.value.code()}"


@dataclass(frozen=True)
class NoiseStmt(Setting):
    """``noise per image`` / ``noise per sample``: which images share a noise draw."""

    KEY: ClassVar[str] = "noise"
    unit: Name
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"noise per {self.unit.code()}"


@dataclass(frozen=True)
class PromptsStmt(Setting):
    KEY: ClassVar[str] = "prompts"
    prompts: tuple[Str, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return "prompts " + ", ".join(p.code() for p in self.prompts)


@dataclass(frozen=True)
class MetricsStmt(Setting):
    KEY: ClassVar[str] = "metrics"
    metrics: tuple[Name, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return "metrics " + ", ".join(m.code() for m in self.metrics)


@dataclass(frozen=True)
class DeviceStmt(Setting):
    KEY: ClassVar[str] = "device"
    device: Name
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"device {self.device.code()}"


@dataclass(frozen=True)
class RayStmt(Setting):
    """``ray local``, ``ray auto`` or ``ray "HOST:PORT"``: run the variants on a Ray cluster."""

    KEY: ClassVar[str] = "ray"
    where: Name | Str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"ray {self.where.code()}"


@dataclass(frozen=True)
class BandOption:
    """``cut 4``, ``floor 0.0001``, ``split 0.5``."""

    key: Literal["cut", "floor", "split"]
    value: Number
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"{self.key} {self.value.code()}"


@dataclass(frozen=True)
class BandsStmt(Setting):
    """``bands cut 4 floor 0.0001 split 0.5``: the band metrics' cut and the phase thresholds."""

    KEY: ClassVar[str] = "bands"
    options: tuple[BandOption, ...] = ()
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return " ".join(["bands"] + [o.code() for o in self.options])


@dataclass(frozen=True)
class VariantBlock:
    """``variant NAME { ... }``: its interventions are applied together."""

    name: Name
    body: tuple[Intervention, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        """The header line only; the formatter lays out the body and the closing brace."""
        return f"variant {self.name.code()} {{"


@dataclass(frozen=True)
class SweepStmt:
    """``sweep drop skip[*] for t in 0..1000 by 100``: one variant per component x window."""

    intervention: Intervention
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"sweep {self.intervention.code()}"


@dataclass(frozen=True)
class Constraint:
    """``ssim >= 0.90``; ``fid <= +10%`` (``percent``: relative to the baseline's value)."""

    metric: Name
    cmp: Literal[">=", "<=", ">", "<"]
    value: Number
    percent: bool = False
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"{self.metric.code()} {self.cmp} {self.value.code()}{'%' if self.percent else ''}"


@dataclass(frozen=True)
class SearchOp:
    """One op a search may try: ``drop``, ``zero``, ``cache every 3``, (``scale by F``, rejected),
    optionally on one side of guidance: ``cache every 3 on uncond``."""

    op: Literal["drop", "zero", "scale", "cache"]
    every: Number | None = None
    factor: Number | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    side: Name | None = None
    extrapolated: bool = False

    def code(self) -> str:
        side = (" extrapolated" if self.extrapolated else "") + (
            f" on {self.side.code()}" if self.side is not None else ""
        )
        if self.every is not None:
            return f"{self.op} every {self.every.code()}{side}"
        if self.factor is not None:
            return f"{self.op} by {self.factor.code()}{side}"
        return self.op + side


@dataclass(frozen=True)
class Validation:
    """``validate N samples [seed S]``: the images a search's points are measured on again."""

    samples: Number
    seed: Number | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        text = f"validate {self.samples.code()} samples"
        return text + (f" seed {self.seed.code()}" if self.seed is not None else "")


@dataclass(frozen=True)
class SearchStmt:
    """``search [NAME] speedup where C and C over OPS of SELECTORS [for t in A..B by W]``."""

    name: Name | None
    objective: Name
    constraints: tuple[Constraint, ...]
    ops: tuple[SearchOp, ...]
    targets: tuple[Selector, ...]
    window: Window | None = None
    validation: Validation | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        head = "search " + (f"{self.name.code()} " if self.name is not None else "")
        text = (
            f"{head}{self.objective.code()} where "
            + " and ".join(c.code() for c in self.constraints)
            + " over "
            + ", ".join(o.code() for o in self.ops)
            + f" of {_targets_code(self.targets)}"
        )
        text += f" {self.window.code()}" if self.window is not None else ""
        return text + (f" {self.validation.code()}" if self.validation is not None else "")


@dataclass(frozen=True)
class EmitStmt:
    """``emit sampler "PATH" from VARIANT``."""

    path: Str
    variant: Name
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def code(self) -> str:
        return f"emit sampler {self.path.code()} from {self.variant.code()}"


Statement = (
    Title
    | ModelStmt
    | SamplerStmt
    | SeedStmt
    | SamplesStmt
    | PromptsStmt
    | MetricsStmt
    | DeviceStmt
    | RayStmt
    | BandsStmt
    | Intervention
    | VariantBlock
    | SweepStmt
    | SearchStmt
    | EmitStmt
)


@dataclass(frozen=True)
class Study:
    """A whole file: its statements in order and its comments (for the formatter)."""

    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...] = ()
    path: str = field(default="<study>", compare=False)
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
