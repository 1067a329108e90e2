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
# Which half of classifier-free guidance an intervention acts on (`on cond`, `on uncond`).
Side = Literal["both", "cond", "uncond"]
SIDES: tuple[Side, ...] = ("both", "cond", "uncond")
# The pseudo-component of `drop guidance` / `cache guidance`: the sampler's combination of the
# two halves of classifier-free guidance, not a part of the Unet.
GUIDANCE = "guidance"
GUIDANCE_OPS: tuple[Op, ...] = (
    "drop",
    "cache",
)  # sample the conditional half alone; reuse the term
ModelKindName = Literal["tiny", "glide", "adm", "diffusers"]  # the rows of models/kinds.py
SamplerKind = Literal["ddpm", "ddim"]
Device = Literal["cpu", "cuda", "auto"]
Noise = Literal["sample", "image"]  # `noise per sample` (the default) / `noise per image`
# torch's CPU generator keeps the low 32 bits of a seed (seed 2**32 + 5 draws what seed 5 does)
SEED_LIMIT = 2**32
# `noise per image`: prompt p's images use seeds offset by p * IMAGE_SEED_STRIDE. The resolver
# keeps that mode's seeds below the stride and its prompts at most SEED_LIMIT / stride (256), so
# every image's seed is distinct and below SEED_LIMIT: no two images share a draw
IMAGE_SEED_STRIDE = 2**24
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
    """One op on one concrete component in one window, on one or both halves of guidance.

    A cache's schedule inside its window: the window's first step computes; then ``every N``
    (with ``grow``: intervals N, N+G, N+2G, ...), or the steps of ``at`` compute (``at_kind``
    "step": step indices; "t": the first step at or below each t). Every other step reuses.
    """

    op: Op
    component: str  # "skip[3]", "enc[0]", "mid", "dec[8]"
    window: Window = Window()
    factor: float | None = None  # scale C by F
    every: int | None = None  # cache C every N
    grow: int | None = None  # cache C every N growing by G
    at: tuple[int, ...] | None = None  # cache C at step A, B / at t A, B
    at_kind: Literal["t", "step"] = "step"
    side: Side = "both"  # on cond / on uncond
    span: Span | None = field(default=None, compare=False, repr=False)
    extrapolate: bool = False  # cache ... extrapolated: reuse steps continue the last two values

    @property
    def params(self) -> dict:
        if self.op == "scale":
            return {"factor": self.factor}
        line = {"extrapolated": True} if self.extrapolate else {}
        if self.op == "cache" and self.at is not None:
            return {"at": self.at, "at_kind": self.at_kind} | line
        if self.op == "cache":
            return {"every": self.every} | ({"growing": self.grow} if self.grow else {}) | line
        return {}

    def schedule_label(self) -> str:
        """`` every 2``, `` every 2 growing by 1``, `` at t 900, 500``; "" for other ops."""
        if self.op != "cache":
            return ""
        line = " extrapolated" if self.extrapolate else ""
        if self.at is not None:  # a sweep cell may keep no entry: its window's first step only
            return f" at {self.at_kind} {', '.join(map(str, self.at)) or '(window start)'}{line}"
        return f" every {self.every}" + (f" growing by {self.grow}" if self.grow else "") + line

    def label(self) -> str:
        """Canonical text: ``drop skip[3] on uncond for t in [600, 1000)``."""
        extra = f" by {self.factor:g}" if self.op == "scale" else ""
        extra += self.schedule_label()
        extra += f" on {self.side}" if self.side != "both" else ""
        where = "" if self.window.kind == "all" else f" for {self.window.label()}"
        return f"{self.op} {self.component}{extra}{where}"

    def to_json(self) -> dict:
        return {
            "op": self.op,
            "component": self.component,
            "window": self.window.to_json(),
            "params": self.params,
        } | ({"side": self.side} if self.side != "both" else {})


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
    side: Side = "both"  # on cond / on uncond


@dataclass(frozen=True)
class Constraint:
    """One quality bound of a search: ``ssim >= 0.90`` or ``fid <= +10%`` (relative to baseline)."""

    metric: str
    cmp: Literal[">=", "<=", ">", "<"]
    value: float
    relative: bool = False  # value is a percentage change from the baseline's value
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Validation:
    """``validate N samples seed S``: N samples per prompt, seeds S .. S+N-1, none of them the
    study's; a search's reported points are measured again on these images."""

    samples: int
    seed: int
    span: Span | None = field(default=None, compare=False, repr=False)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.samples))


@dataclass(frozen=True)
class Search:
    """``search speedup where ... over OPS of COMPONENTS for t in A..B by W validate N samples``."""

    name: str
    objective: str  # "speedup"
    constraints: tuple[Constraint, ...]
    ops: tuple[Op, ...]
    components: tuple[str, ...]
    windows: tuple[Window, ...]
    every: int = 2  # period used for cache candidates (the first of ``periods``)
    span: Span | None = field(default=None, compare=False, repr=False)
    periods: tuple[int, ...] = ()  # every period cache candidates try; () = (every,)
    validation: Validation | None = None  # None: the points are measured on the study's images only
    sides: tuple[tuple[Op, Side], ...] = ()  # ops whose candidates act on one side of guidance
    extrapolated: tuple[int, ...] = ()  # cache periods whose candidates extrapolate

    @property
    def cache_periods(self) -> tuple[int, ...]:
        return self.periods or (self.every,)

    def side_of(self, op: Op) -> Side:
        """The side of guidance ``op``'s candidates act on (`over drop on uncond of ...`)."""
        return dict(self.sides).get(op, "both")


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
    noise: Noise = "sample"  # which images share a noise draw
    prompts: tuple[str, ...] = ()  # () = the model's default prompts
    metrics: tuple[str, ...] = ("mse", "ssim")
    device: Device = "auto"
    variants: tuple[Variant, ...] = (Variant("baseline", (), "baseline"),)
    sweeps: tuple[Sweep, ...] = ()
    searches: tuple[Search, ...] = ()
    emits: tuple[Emit, ...] = ()
    num_timesteps: int = 1000
    bands: BandSpec = BandSpec()  # the `bands` line
    # `ray local|auto|"HOST:PORT"` (ablang/distributed.py): where the variants run, never what
    # they compute, so it takes no part in equality (nor in a resumed run's fingerprint)
    ray: str | None = field(default=None, compare=False, repr=False)

    @property
    def seed_stride(self) -> int:
        """``runtime.per_sample``'s stride: how far apart two prompts' seeds are."""
        return IMAGE_SEED_STRIDE if self.noise == "image" else 0

    @property
    def baseline(self) -> Variant:
        return self.variants[0]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)
