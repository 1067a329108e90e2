"""results: what a run produced, as typed frozen dataclasses: the leaf every later stage shares.

``measure`` and ``search`` build these, ``report`` and ``heatmap`` read them; this module imports
nothing of ablang but the plan, so any stage can use them without an import cycle.

- ``Cost`` / ``VariantResult`` / ``Results``: one run's variants, their metrics and costs.
- ``Measurement``: one variant's metrics with their intervals and noise marks (``ablang.stats``).
- ``Point`` / ``PathStep`` / ``SearchResult``: what one ``search`` statement measured and chose.
- ``HIGHER_IS_CLOSER``, ``format_metric``, ``slug``: how metrics compare, print and name files.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from ablang.plan import Intervention, Plan, Search, Variant

# Metrics for which a higher value means closer to the baseline (or to the reference).
HIGHER_IS_CLOSER = frozenset({"ssim", "psnr", "accuracy"})
# The ones computed on features against reference data.
DISTRIBUTION_METRICS = frozenset({"fid", "kid"})


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Cost:
    """What a variant costs: Unet FLOPs per image over the whole trajectory (shared baseline
    prefix included), their ratio to the baseline's, wall seconds of its own steps, and the wall
    speedup over the baseline. Only accelerate mode's wall speedup means anything: measure mode
    computes the whole Unet for every variant, so its seconds differ by noise and batching."""

    unet_flops: float
    flops_ratio: float
    seconds: float
    wall_speedup: float

    @property
    def flop_speedup(self) -> float:
        """The FLOP-bound speedup, ``1 / flops_ratio``: what the shortcuts save at best."""
        if self.flops_ratio > 0:
            return 1.0 / self.flops_ratio
        return math.inf if self.flops_ratio == 0 else math.nan

    @property
    def speedup(self) -> float:
        """The wall speedup (its older name)."""
        return self.wall_speedup


Interval = tuple[float, float]


@dataclass(frozen=True)
class Measurement:
    """What ``measure.Measure.measure`` gives for one variant's images (docs/statistics.md).

    ``metrics``: name -> value. ``intervals``: name -> 95% bootstrap interval over images, for the
    metrics that are means over images (psnr's through the mean mse); fid and kid have none.
    ``std``: standard deviations a metric reports itself (kid's over its subsets).
    ``within_noise``: name -> whether the difference from the baseline is within noise."""

    metrics: dict[str, float]
    intervals: dict[str, Interval] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    within_noise: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class VariantResult:
    name: str
    origin: str  # "baseline", "bare", "variant", "sweep", "search"
    interventions: tuple[Intervention, ...]
    metrics: dict[str, float]  # name -> value; psnr may be inf
    cost: Cost
    start_step: int  # steps before it were shared with the baseline
    evaluations: int  # Unet image-forwards spent on it
    # the statistics of ``Measurement`` (empty for results written before they existed)
    intervals: dict[str, Interval] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    within_noise: dict[str, bool] = field(default_factory=dict)

    def noise(self, metric: str) -> bool:
        """Whether ``metric``'s difference from the baseline is within noise (False: unknown)."""
        return self.origin != "baseline" and bool(self.within_noise.get(metric, False))


@dataclass(frozen=True)
class Results:
    """Everything ``report`` needs, and everything needed to reproduce the numbers."""

    plan: Plan
    model_label: str
    model_checksum: str
    timesteps: tuple[int, ...]  # in visiting order (noisy first)
    guidance: float
    prompts: tuple[str, ...]  # one per sample
    seeds: tuple[int, ...]  # one per sample
    mode: str  # "measure" or "accelerate"
    variants: tuple[VariantResult, ...]  # baseline first
    seconds: float  # the whole run
    versions: dict[str, str]
    # one ablang.search.SearchResult per search of the plan, in its order; each best variant is
    # also in ``variants`` (origin "search", named after its search)
    searches: tuple[SearchResult, ...] = ()
    # how the intervals were drawn, fid/kid floors and warnings (``Measure.statistics``)
    statistics: dict = field(default_factory=dict)

    @property
    def baseline(self) -> VariantResult:
        return self.variants[0]

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


def cost(unet_flops: float, baseline_flops: float, seconds: float, wall_speedup: float) -> Cost:
    """``Cost`` of a variant: ``flops_ratio = unet_flops / baseline_flops`` (1 when both are 0)."""
    if baseline_flops:
        ratio = unet_flops / baseline_flops
    else:
        ratio = 1.0 if not unet_flops else math.inf
    return Cost(float(unet_flops), float(ratio), float(seconds), float(wall_speedup))


# ---------------------------------------------------------------------------- formatting


def format_metric(name: str, value: float | None) -> str:
    """A metric as reports print it: ssim 3 decimals, psnr 1, fid 2, mse 3 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if name == "ssim":
        return f"{value:.3f}"
    if name == "psnr":
        return f"{value:.1f}"
    if name == "fid":
        return f"{value:.2f}"
    if name in ("accuracy", "identity"):
        return f"{100 * value:.1f}%"
    if name in ("mse", "kid", "composition", "detail"):
        return "0" if value == 0 else (f"{value:.4f}" if abs(value) >= 1e-3 else f"{value:.2e}")
    return f"{value:.4g}"


def slug(name: str, limit: int = 80) -> str:
    """A file-name-safe form of a variant or sweep name: ``drop skip[3]`` -> ``drop-skip-3``."""
    s = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")
    s = s[:limit].rstrip("-.")
    return s or "unnamed"


# ---------------------------------------------------------------------------- searches

# "deferred": measured with the current variant and within the bounds, but what it adds per unit
# of the quality budget fell below another candidate's; measured again after the next acceptance
Outcome = Literal["accepted", "rejected", "deferred", "infeasible alone", "conflict", "no gain"]

# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Point:
    """One measured variant: the baseline, a candidate alone, or a combination the greedy tried."""

    label: str
    kind: Literal["baseline", "single", "combination"]
    interventions: tuple[Intervention, ...]
    speedup: float  # FLOP-bound
    metrics: dict[str, float]  # on the study's images (the ones the search optimises on)
    # Every bound holds: on the study's images, and where the search validates, on the
    # validation images too (a point not measured there is not feasible).
    feasible: bool
    fits_search: bool | None = None  # every bound holds on the study's images; None: = feasible
    validation: dict[str, float] | None = None  # the same metrics on the validation images
    fits_validation: bool | None = None  # every bound holds there; None: not measured there

    @property
    def fits(self) -> bool:
        """Whether every bound holds on the images the search optimises on."""
        return self.feasible if self.fits_search is None else self.fits_search

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "kind": self.kind,
            "speedup": self.speedup,
            "metrics": dict(self.metrics),
            "feasible": self.feasible,
            "fits_search": self.fits,
            "validation": dict(self.validation) if self.validation is not None else None,
            "fits_validation": self.fits_validation,
        }


@dataclass(frozen=True)
class PathStep:
    """The greedy's decision on one candidate, in the order it considered them."""

    candidate: Intervention
    outcome: Outcome
    alone: Point  # the candidate measured alone
    sensitivity: float  # of the candidate alone
    saving: float  # FLOPs per image it saves alone (share of the baseline's)
    combined: Point | None  # the current variant with it, where measured

    def to_json(self) -> dict:
        return {
            "candidate": self.candidate.label(),
            "outcome": self.outcome,
            "alone": {
                "speedup": self.alone.speedup,
                "metrics": dict(self.alone.metrics),
                "sensitivity": self.sensitivity,
                "saving": self.saving,
            },
            "speedup": self.combined.speedup if self.combined else None,
            "metrics": dict(self.combined.metrics) if self.combined else None,
            "feasible": self.combined.feasible if self.combined else None,
            "validation": self.combined.validation if self.combined else None,
        }


@dataclass(frozen=True)
class SearchResult:
    search: Search
    baseline_metrics: dict[str, float]
    bounds: tuple[float, ...]  # one per constraint, in the constraints' order
    best: Point  # label = the search's name
    path: tuple[PathStep, ...]
    points: tuple[Point, ...]  # everything measured: baseline, candidates alone, combinations
    pareto: dict[str, tuple[int, ...]]  # constrained metric -> indices into points, by speedup
    candidates: dict[str, int]  # how many: "grid", "not droppable", "low saving", "measured"
    # accepted interventions left out of the best variant: they changed nothing (see simplify)
    redundant: tuple[Intervention, ...]
    evaluations: int  # Unet image-forwards the search spent
    seconds: float
    # the validation images (None: the search does not validate): their seeds, the baseline's
    # metrics on them and the bounds there (relative bounds move with that baseline)
    validation_seeds: tuple[int, ...] = ()
    validation_baseline: dict[str, float] | None = None
    validation_bounds: tuple[float, ...] | None = None

    @property
    def name(self) -> str:
        return self.search.name

    def best_variant(self) -> Variant:
        """The best variant as a plan variant: what ``emit sampler ... from NAME`` writes."""
        return Variant(self.search.name, self.best.interventions, "search")

    def to_json(self) -> dict:
        s = self.search
        return {
            "name": s.name,
            "objective": s.objective,
            "constraints": [
                {
                    "metric": c.metric,
                    "cmp": c.cmp,
                    "value": c.value,
                    "relative": c.relative,
                    "bound": b,
                }
                for c, b in zip(s.constraints, self.bounds)
            ],
            "ops": list(s.ops),
            "components": list(s.components),
            "windows": [w.to_json() for w in s.windows],
            "every": s.every,
            "periods": list(s.cache_periods),
            "baseline": {"metrics": dict(self.baseline_metrics)},
            "validation": None
            if self.validation_baseline is None
            else {
                "samples": s.validation.samples if s.validation is not None else None,
                "seeds": list(self.validation_seeds),
                "baseline": dict(self.validation_baseline or {}),
                "bounds": list(self.validation_bounds or ()),
            },
            "candidates": dict(self.candidates),
            "best": {
                "name": s.name,
                "interventions": [iv.to_json() for iv in self.best.interventions],
                "speedup": self.best.speedup,
                "metrics": dict(self.best.metrics),
                "feasible": self.best.feasible,
                "validation": self.best.validation,
                "fits_validation": self.best.fits_validation,
                "redundant": [iv.label() for iv in self.redundant],
            },
            "path": [p.to_json() for p in self.path],
            "pareto": {
                m: [{"point": i, **self.points[i].to_json()} for i in idx]
                for m, idx in self.pareto.items()
            },
            "points": [p.to_json() for p in self.points],
            "evaluations": self.evaluations,
            "seconds": self.seconds,
        }
