"""The resolved plan: what ``resolve`` hands to ``compile``, ``execute`` and ``emit``.

Every intervention is bound to one concrete component name (selectors and ``level[k]`` are
already expanded) and one concrete window. Spans point back into the study for error messages
and reports; they never take part in equality, so two plans that mean the same are equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ablang.errors import Span

Op = Literal["drop", "zero", "scale", "cache"]
ModelKindName = Literal["tiny", "glide", "adm", "diffusers"]  # the rows of models/kinds.py
SamplerKind = Literal["ddpm", "ddim"]
Device = Literal["cpu", "cuda", "auto"]
OPS: tuple[Op, ...] = ("drop", "zero", "scale", "cache")

# Metrics a study may ask for; cost (flops, time, speedup) is always reported.
# composition/detail/identity: see ablang/bands.py (hook of issue 15, helper "phases").
QUALITY_METRICS = (
    "mse", "psnr", "ssim", "fid", "kid", "accuracy", "composition", "detail", "identity",
)  # fmt: skip


@dataclass(frozen=True)
class Window:
    """Where an intervention is active.

    ``kind="t"``: the step's diffusion time t (training scale, 0 = clean, T-1 = noise) lies in
    ``[lo, hi)`` (``[lo, hi]`` when ``inclusive``). ``kind="step"``: the sampler step index
    (0 = first, noisiest) lies in it. ``kind="all"``: every step (no ``for`` clause).
    """

    kind: Literal["t", "step", "all"] = "all"
    lo: int = 0
    hi: int = 0
    inclusive: bool = False
    span: Span | None = field(default=None, compare=False, repr=False)

    def contains(self, t: int, step: int) -> bool:
        if self.kind == "all":
            return True
        v = t if self.kind == "t" else step
        return self.lo <= v <= self.hi if self.inclusive else self.lo <= v < self.hi

    @property
    def upper(self) -> int:
        """Exclusive upper bound, whatever the notation."""
        return self.hi + 1 if self.inclusive else self.hi

    def label(self) -> str:
        """``t in [600, 1000)``, ``step in [0, 10]`` or ``all steps``: what reports print."""
        if self.kind == "all":
            return "all steps"
        close = "]" if self.inclusive else ")"
        return f"{self.kind} in [{self.lo}, {self.hi}{close}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "lo": self.lo, "hi": self.hi, "inclusive": self.inclusive}


@dataclass(frozen=True)
class Intervention:
    """One op on one concrete component in one window."""

    op: Op
    component: str  # "skip[3]", "enc[0]", "mid", "dec[8]"
    window: Window = Window()
    factor: float | None = None  # scale C by F
    every: int | None = None  # cache C every N
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def params(self) -> dict:
        if self.op == "scale":
            return {"factor": self.factor}
        if self.op == "cache":
            return {"every": self.every}
        return {}

    def label(self) -> str:
        """Canonical text: ``drop skip[3] for t in [600, 1000)``."""
        extra = f" by {self.factor:g}" if self.op == "scale" else ""
        extra += f" every {self.every}" if self.op == "cache" else ""
        where = "" if self.window.kind == "all" else f" for {self.window.label()}"
        return f"{self.op} {self.component}{extra}{where}"

    def to_json(self) -> dict:
        return {
            "op": self.op,
            "component": self.component,
            "window": self.window.to_json(),
            "params": self.params,
        }


Origin = Literal["baseline", "bare", "variant", "sweep", "search"]  # where a variant came from


@dataclass(frozen=True)
class Variant:
    """A set of interventions applied together. The baseline is the variant with none."""

    name: str
    interventions: tuple[Intervention, ...] = ()
    origin: Origin = "bare"
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Sweep:
    """A grid of one-intervention variants: ``variants[i][j]`` is components[i] x windows[j]."""

    name: str
    op: Op
    params: tuple[tuple[str, float | int], ...]  # (("factor", 0.5),) for scale, () for drop
    components: tuple[str, ...]
    windows: tuple[Window, ...]
    variants: tuple[tuple[str, ...], ...]
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Constraint:
    """One quality bound of a search: ``ssim >= 0.90`` or ``fid <= +10%`` (relative to baseline)."""

    metric: str
    cmp: Literal[">=", "<=", ">", "<"]
    value: float
    relative: bool = False  # value is a percentage change from the baseline's value
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Search:
    """``search speedup where ... over OPS of COMPONENTS for t in A..B by W``."""

    name: str
    objective: str  # "speedup"
    constraints: tuple[Constraint, ...]
    ops: tuple[Op, ...]
    components: tuple[str, ...]
    windows: tuple[Window, ...]
    every: int = 2  # period used for cache candidates
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ModelSpec:
    """The study's model line: ``tiny``, ``glide PATH``, ``adm PATH config JSON``, ``diffusers DIR``."""

    kind: ModelKindName
    path: str | None = None
    config: str | None = None
    span: Span | None = field(default=None, compare=False, repr=False)

    def label(self) -> str:
        parts = [self.kind] + [f'"{p}"' for p in (self.path,) if p]
        if self.config:
            parts += ["config", f'"{self.config}"']
        return " ".join(parts)


@dataclass(frozen=True)
class SamplerSpec:
    kind: SamplerKind = "ddpm"
    steps: int = 100
    eta: float = 0.0  # DDIM only
    guidance: float | None = None  # None: the model's default (3.0 if conditional, else 1.0)
    # diffusers models sample with a diffusers scheduler: "pipeline" (the directory's own) or a
    # class name built from the directory's config; None: ablang's own DDPM/DDIM table
    scheduler: str | None = None


@dataclass(frozen=True)
class Emit:
    path: str
    variant: str
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BandSpec:
    """The study's ``bands`` line (ablang/bands.py, ablang/phases.py): where composition ends and
    detail begins, and when a sweep cell counts as negligible or as composition.

    ``cut``: cycles per image; None means ``min(H, W) / 8`` of the images measured (what an image
    downsampled to a quarter of its side still holds). ``floor``: a cell whose change
    (composition + detail = mse) is below it is negligible; 1e-4 is PSNR 40 dB. ``split``: a
    cell counts as composition when at least this share of its change is in the low band.
    """

    cut: float | None = None
    floor: float = 1e-4
    split: float = 0.5
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, with no reference to the study's text."""

    model: ModelSpec
    sampler: SamplerSpec = SamplerSpec()
    title: str = ""
    source: str = ""  # path of the study file
    sha256: str = ""  # of the study file's bytes
    seed: int = 0
    samples: int = 4  # per prompt
    prompts: tuple[str, ...] = ()  # () = the model's default prompts
    metrics: tuple[str, ...] = ("mse", "ssim")
    device: Device = "auto"
    variants: tuple[Variant, ...] = (Variant("baseline", (), "baseline"),)
    sweeps: tuple[Sweep, ...] = ()
    searches: tuple[Search, ...] = ()
    emits: tuple[Emit, ...] = ()
    num_timesteps: int = 1000
    bands: BandSpec = BandSpec()  # the `bands` line

    @property
    def baseline(self) -> Variant:
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)
