"""search: the fastest variant that keeps the quality bounds of a ``search`` statement.

``search speedup where ssim >= 0.90 and fid <= +10% over drop, cache of dec[*], mid for t in
0..1000 by 200`` is resolved into a ``plan.Search``; this module runs it after the study's
variants, on the same executor, baseline and metrics::

    ops x components x windows ──prune──▶ candidates ──measure alone──▶ saving, sensitivity
        (one intervention each)   (saving under (batched measure mode,      │
                                   0.1%, or no   baseline prefix shared)    ▼
                                   meaning)
                                 lazy greedy: the best saving per sensitivity next; measured with
                                 the current variant it counts with what it *adds* there, and is
                                 kept when it is still the best and every bound holds
                                                    │
                                                    ▼
                                 best variant (named after the search), path, Pareto fronts

- The objective is the FLOP-bound speedup: the baseline's Unet FLOPs per image over the whole
  trajectory divided by the variant's (``cost.FlopCounter``, counted on accelerate programs).
- A bound is absolute (``ssim >= 0.90``) or relative to the baseline's own value (``fid <= +10%``:
  at most ``fid_base + 10% * |fid_base|``).
- A candidate's *sensitivity* is the largest share of a bound's slack it uses up alone
  (``(1 - ssim) / (1 - 0.90)``; 1 = exactly at the bound); its *saving* the FLOPs it removes.
- Greedy order: saving / sensitivity, highest first; ties in grid order (op, component, window as
  written). Sensitivities do not add up: two caches that cost little alone can cost much
  together (an error in the conditional half that the unconditional half does not share is
  multiplied by the guidance scale). So the order is lazy (Minoux's accelerated greedy): the
  first candidate is measured with the current variant, and its ratio becomes its *marginal*
  one (the FLOPs it adds to the saving over the sensitivity it adds). If it is still first, it
  is accepted; if not, it is "deferred" and the new first is measured. After an acceptance,
  ratios measured before are estimates again, and a candidate is measured again when it comes
  first. A candidate not yet measured is estimated from its figures alone, or, for a cache
  whose sibling is in the current variant, from their difference. Every candidate that keeps
  the bounds with the current variant is still accepted in the end, so the order decides only
  which ones get the quality budget first.
- A candidate that breaks a bound alone, that touches a component the current variant already
  changes in an overlapping window, or that would not raise the FLOP speedup (its saving is
  already covered, e.g. a block a cache has made dead) is skipped without a measurement. The
  exception: a cache whose *sibling* (the same component, window and side with another period)
  is in the current variant is measured in its place, so a window that first took a cheap
  `cache every 2` can still move to `every 6` (candidates with no quality cost come first, and
  without this they would lock their windows).
- A combination is measured from the current variant's own state at the step where it first
  differs from it (the current variant's prefix is shared, as the baseline's is for single
  variants), so every accepted step is a real, complete measurement of the combined variant.
  One combination at a time runs the accelerate programs (its shortcuts really save time);
  ``lookahead`` > 1 measures the next candidates in order too, as chunks of one batch (measure
  mode), for GPUs; each is used once it comes first, so the decisions stay the same.
- The best variant is the fastest feasible point measured (the greedy's last accepted variant,
  unless a candidate alone beats it), less the interventions that cannot change its images
  (a cache of a block that a later block's cache makes dead at the same steps), in schedule order.
- Validation (``validate N samples [seed S]``, on by default): the greedy decides on the study's
  images only; then every measured combination that holds there, and the points that hold there
  fastest first until one holds on the validation images too, are measured again on images of
  other seeds (``ValidationSet``: the same prompts and sampler, its own baseline; relative bounds
  move with that baseline). A point is feasible only where both hold (one not measured there is
  not feasible), and the best variant is the fastest point that holds on both: the validation
  images choose among what the search found, they never steer the greedy.
- Nothing is random: the same plan on the same machine gives the same path and best variant.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ablang.compile import Mode, ProgramCache, half, schedule
from ablang.cost import FlopCounter
from ablang.diffusion import Diffusion
from ablang.execute import (
    Caches,
    Executor,
    RunSetup,
    Samples,
    Trajectory,
    batches,
    make_setup,
)
from ablang.measure import Measure, MeasureOptions
from ablang.models.base import LoadedModel
from ablang.plan import (
    GUIDANCE,
    GUIDANCE_OPS,
    Constraint,
    Intervention,
    Plan,
    Search,
    Validation,
    Variant,
    Window,
)
from ablang.results import HIGHER_IS_CLOSER, Outcome, PathStep, Point, SearchResult

if TYPE_CHECKING:
    from rich.console import Console

# Runs chunks of variants from a trajectory's states, yielding each chunk's samples as it
# completes (ablang.distributed.RayRunner.run_groups: the candidates on a Ray cluster).
GroupRunner = Callable[
    [list[list[Variant]], Trajectory, Mode, RunSetup],
    Iterable[tuple[list[Variant], list[Samples]]],
]

# Sensitivities below this count as this, so that saving / sensitivity stays finite: candidates
# that change (almost) nothing are ordered by their saving alone.
MIN_SENSITIVITY = 1e-3


@dataclass(frozen=True)
class SearchOptions:
    """How a search spends its measurements; none of these changes what a measurement means."""

    # candidates alone: "measure" batches them, "accelerate" runs them one by one
    mode: Mode = "measure"
    batch: int = 8  # measure mode: variants per batched forward
    # Combinations measured together (measure mode); the path is the same for any value, later
    # combinations of a group are simply measured again after an acceptance.
    lookahead: int = 1
    # Candidates saving less than this share of the baseline's FLOPs are not measured: they
    # could raise the speedup by less than that share.
    min_saving: float = 0.001
    max_trials: int | None = None  # greedy: stop after this many measured combinations
    # Where the candidates alone run (None: on the executor, one chunk after the other). The
    # greedy's combinations always run here: each depends on the one accepted before it.
    runner: GroupRunner | None = None


# ---------------------------------------------------------------------------- bounds


def bound(c: Constraint, baseline_value: float) -> float:
    """The bound's value: ``c.value``, or for ``+P%`` the baseline's value moved by P% of its size."""
    if not c.relative:
        return float(c.value)
    return baseline_value + abs(baseline_value) * c.value / 100.0


def holds(cmp: str, value: float, limit: float) -> bool:
    """``value CMP limit``; a missing (NaN) value never holds."""
    if value is None or math.isnan(value):
        return False
    return {
        ">=": value >= limit,
        "<=": value <= limit,
        ">": value > limit,
        "<": value < limit,
    }[cmp]


def slack_used(cmp: str, value: float, base: float, limit: float) -> float:
    """How much of the room between the baseline's value and the bound ``value`` uses up: 0 at
    the baseline's value (or better), 1 at the bound, above 1 past it.

    ``ssim >= 0.9`` with ssim 0.95: ``(1 - 0.95) / (1 - 0.9) = 0.5``. Where the baseline's value
    is infinite (psnr of identical images) the ratio ``limit / value`` plays the same part."""
    if value is None or math.isnan(value):
        return math.inf
    lower_is_worse = cmp in (">=", ">")
    if math.isinf(base):
        if value <= 0:
            return math.inf
        return max(0.0, limit / value) if lower_is_worse else max(0.0, value / limit)
    room = (base - limit) if lower_is_worse else (limit - base)
    lost = (base - value) if lower_is_worse else (value - base)
    if room <= 0:  # the baseline is at (or past) the bound: any loss breaks it
        return 0.0 if lost <= 0 else math.inf
    return max(0.0, lost / room)


def pareto_front(points: list[Point] | tuple[Point, ...], metric: str) -> tuple[int, ...]:
    """Indices of the points that no other point beats in both speedup and ``metric`` (higher
    is better for ssim, psnr, accuracy, lower for the rest), sorted by speedup."""
    sign = 1.0 if metric in HIGHER_IS_CLOSER else -1.0
    pts = [
        (p.speedup, sign * p.metrics[metric], i)
        for i, p in enumerate(points)
        if metric in p.metrics and not math.isnan(p.metrics[metric])
    ]
    front = []
    for s, q, i in pts:
        beaten = any(
            (s2 >= s and q2 >= q and (s2 > s or q2 > q)) or (s2 == s and q2 == q and j < i)
            for s2, q2, j in pts
        )
        if not beaten:
            front.append((s, i))
    return tuple(i for _, i in sorted(front))


# ---------------------------------------------------------------------------- validation


@dataclass
class ValidationSet:
    """The images a search's points are measured on again: an executor over seeds the search
    never optimises on, its own baseline (computed once), and metrics against that baseline."""

    executor: Executor
    baseline: Trajectory
    measure: Measure

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.executor.setup.seeds

    def metrics(self, ivs: tuple[Intervention, ...]) -> dict[str, float]:
        """A variant's metrics on the validation images, run from the validation baseline's
        prefix in accelerate mode (one variant)."""
        if not ivs:
            return self.measure.metrics(self.baseline.images)
        variant = Variant("validation", ivs, "search")
        (s,) = self.executor.run_batch([variant], self.baseline, "accelerate")
        return self.measure.metrics(s.images)


def validation_set(
    plan: Plan,
    validation: Validation,
    model: LoadedModel,
    diffusion: Diffusion,
    device: torch.device,
    programs: ProgramCache,
    metrics: tuple[str, ...],
    options: MeasureOptions,
) -> ValidationSet:
    """The validation images of ``validation``: the study's prompts, sampler and model, with
    ``validation.samples`` samples per prompt from ``validation.seed`` on."""
    other = dataclasses.replace(plan, seed=validation.seed, samples=validation.samples)
    ex = Executor(model, diffusion, make_setup(other, model, diffusion), device, programs)
    baseline = ex.baseline()
    return ValidationSet(ex, baseline, Measure(metrics, model, baseline.images, ex.setup.prompts))


# ---------------------------------------------------------------------------- running


def overlaps(a: Window, b: Window) -> bool:
    """Whether two windows can share a step. Windows of different kinds (t and step) are taken
    to overlap, as the resolver does for interventions on one component."""
    if a.kind == "all" or b.kind == "all" or a.kind != b.kind:
        return True
    return a.lo < b.upper and b.lo < a.upper


def conflicts(ivs: tuple[Intervention, ...], iv: Intervention) -> bool:
    """``iv`` touches a component that ``ivs`` already change in an overlapping window, on a
    half of guidance they share (as the resolver's ``overlap``: `on cond` and `on uncond` of one
    component are independent)."""
    return any(
        o.component == iv.component
        and overlaps(o.window, iv.window)
        and (o.side == iv.side or "both" in (o.side, iv.side))
        for o in ivs
    )


def sibling(a: Intervention, b: Intervention) -> bool:
    """Two caches of one component on one window and side that differ only in their schedule
    (``cache every 2`` and ``cache every 6``): the greedy may put one in the other's place."""
    return (
        a.op == b.op == "cache"
        and (a.component, a.window, a.side) == (b.component, b.window, b.side)
        and a != b
    )


def combine(ivs: tuple[Intervention, ...], iv: Intervention) -> tuple[Intervention, ...] | None:
    """``ivs`` with ``iv``: added, or in place of its sibling (a cache of the same component,
    window and side with another period); None where it conflicts otherwise."""
    clashing = [j for j, o in enumerate(ivs) if conflicts((o,), iv)]
    if not clashing:
        return (*ivs, iv)
    if len(clashing) == 1 and sibling(ivs[clashing[0]], iv):
        j = clashing[0]
        return (*ivs[:j], iv, *ivs[j + 1 :])
    return None


def _copy(caches: Caches) -> Caches:
    """A snapshot of one chunk's cached values (``Kept`` values are never changed in place)."""
    return {h: dict(values) for h, values in caches.items()}


@dataclass
class _State:
    """The greedy's current variant: its interventions, what they cost and give, and its
    state before the steps where a combination may start (``states[k]``: the sampler's state,
    x and for a diffusers scheduler its history too, and the variant's cached values)."""

    interventions: tuple[Intervention, ...]
    point: Point
    states: dict[int, Any]


class _Search:
    def __init__(
        self,
        search: Search,
        executor: Executor,
        baseline: Trajectory,
        measure: Measure,
        flops: FlopCounter,
        options: SearchOptions,
        on_step: Callable[[str, int, int], None] | None,
        validation: ValidationSet | None = None,
    ) -> None:
        self.search, self.ex, self.baseline = search, executor, baseline
        self.validation = validation
        self.validated: dict[tuple[Intervention, ...], dict[str, float]] = {}
        self.val_base: dict[str, float] = {}  # the validation baseline's metrics, once measured
        self.val_bounds: tuple[float, ...] = ()
        self.measure, self.flops, self.options = measure, flops, options
        self.on_step = on_step or (lambda phase, done, total: None)
        self.steps = list(executor.setup.steps)
        self.base_flops = flops.trajectory(schedule(Variant("baseline"), self.steps))
        self.base_metrics = measure.metrics(baseline.images)
        self.bounds = tuple(bound(c, self.base_metrics[c.metric]) for c in search.constraints)
        self.points: list[Point] = []

    # ---- measuring

    def speedup(self, ivs: tuple[Intervention, ...]) -> float:
        f = self.flops.trajectory(schedule(Variant("v", ivs), self.steps))
        return self.base_flops / f if f else math.inf

    def feasible(self, metrics: dict[str, float], bounds: tuple[float, ...] | None = None) -> bool:
        return all(
            holds(c.cmp, metrics.get(c.metric, math.nan), b)
            for c, b in zip(self.search.constraints, self.bounds if bounds is None else bounds)
        )

    def sensitivity(self, metrics: dict[str, float]) -> float:
        used = [
            slack_used(c.cmp, metrics.get(c.metric, math.nan), self.base_metrics[c.metric], b)
            for c, b in zip(self.search.constraints, self.bounds)
        ]
        return max(used, default=0.0)

    def point(self, label, kind, ivs, images) -> Point:
        metrics = self.measure.metrics(images)
        p = Point(label, kind, ivs, self.speedup(ivs), metrics, self.feasible(metrics))
        self.points.append(p)
        return p

    def first_step(self, window: Window) -> int | None:
        for s in self.steps:
            if window.contains(s.t, s.index):
                return s.index
        return None

    def resume_step(self, ivs: tuple[Intervention, ...], new: list[Intervention]) -> int:
        """The step from which ``ivs + [one of new]`` must be run: the first step of a new
        intervention, moved back to the start of any cache window that runs across it (its
        cached value would be needed)."""
        k = min(self.first_step(iv.window) for iv in new)  # type: ignore[type-var]
        moved = True
        while moved:
            moved = False
            for iv in (*ivs, *new):
                if iv.op != "cache":
                    continue
                inside = [s.index for s in self.steps if iv.window.contains(s.t, s.index)]
                if inside and inside[0] < k <= inside[-1]:
                    k, moved = inside[0], True
        return k

    @torch.no_grad()
    def run_from(
        self, variants: list[Variant], start: int, state: Any, keep: set[int], mode: Mode
    ) -> tuple[list[torch.Tensor], list[dict[int, Any]]]:
        """Run ``variants`` as chunks of one batch from step ``start``, each from a fork of
        ``state`` (the sampler's state before that step and the values its caches hold then:
        an extrapolated line runs through computes of earlier windows); returns their images
        and their states before each step in ``keep``."""
        ex, sampler = self.ex, self.ex.sampler
        scheds = [schedule(v, self.steps) for v in variants]
        at, held = state
        states = [sampler.fork(at) for _ in variants]
        caches = [_copy(held) for _ in variants]
        kept: list[dict[int, Any]] = [{} for _ in variants]
        total = len(self.steps) - start
        for step in self.steps[start:]:
            if step.index in keep:
                for k, s in enumerate(states):
                    kept[k][step.index] = (sampler.fork(s), _copy(caches[k]))
            ex.advance(states, step, [sc.per_step[step.index] for sc in scheds], caches, mode)
            self.on_step("combinations", step.index - start + 1, total)
        return [ex.images(sampler.x(s)) for s in states], kept

    # ---- the search

    def candidates(self) -> tuple[list[Intervention], dict[str, int]]:
        s, table = self.search, self.ex.model.table
        grid = [
            Intervention(
                op, comp, w, every=every, side=s.side_of(op), extrapolate=every in s.extrapolated
            )
            for op in s.ops
            for every in (s.cache_periods if op == "cache" else (None,))
            for comp in s.components
            for w in s.windows
        ]
        counts = {"grid": len(grid), "not droppable": 0, "low saving": 0, "measured": 0}
        out = []
        for iv in grid:
            comp = table.get(iv.component)
            if iv.op == "drop" and comp is not None and not comp.droppable:
                counts["not droppable"] += 1
                continue
            if iv.component == GUIDANCE and (iv.op not in GUIDANCE_OPS or iv.side != "both"):
                counts["not droppable"] += 1  # guidance takes drop and cache, on both halves
                continue
            saving = 1.0 - 1.0 / self.speedup((iv,))
            if saving <= 0 or saving < self.options.min_saving:
                counts["low saving"] += 1
                continue
            out.append(iv)
        counts["measured"] = len(out)
        return out, counts

    def measure_alone(self, cands: list[Intervention]) -> list[Point]:
        """Every candidate alone, from the baseline's prefix, batched in measure mode."""
        variants = [Variant(f"{self.search.name}: {iv.label()}", (iv,), "search") for iv in cands]
        by_name = {v.name: iv for v, iv in zip(variants, cands)}
        mode = self.options.mode
        chunks = max(1, self.options.batch) if mode == "measure" else 1
        images: dict[str, torch.Tensor] = {}
        groups = batches(variants, self.steps, chunks)
        total = sum(len(self.steps) - schedule(g[0], self.steps).first_active for g in groups)
        done = 0
        if self.options.runner is not None:
            for group, got in self.options.runner(groups, self.baseline, mode, self.ex.setup):
                for samples in got:
                    images[samples.variant] = samples.images
                    self.ex.evaluations += samples.evaluations  # counted as if run here
                done += (len(self.steps) - got[0].start_step) * len(group)
                self.on_step("candidates", done, total)
            groups = []
        for group in groups:

            def tick() -> None:
                nonlocal done
                done += 1
                self.on_step("candidates", done, total)

            for samples in self.ex.run_batch(group, self.baseline, mode, tick):
                images[samples.variant] = samples.images
        return [
            self.point(by_name[v.name].label(), "single", (by_name[v.name],), images[v.name])
            for v in variants
        ]

    def run(self) -> SearchResult:
        started, evals = time.perf_counter(), self.ex.evaluations
        base_point = Point(
            "baseline",
            "baseline",
            (),
            1.0,
            dict(self.base_metrics),
            self.feasible(self.base_metrics),
        )
        self.points.append(base_point)
        cands, counts = self.candidates()
        alone = self.measure_alone(cands)
        current, path = self.greedy(base_point, cands, alone)
        best_point = current.point
        for p in self.points:  # a candidate alone may beat the greedy's combination
            if p.fits and p.speedup > best_point.speedup:
                best_point = p
        if self.validation is not None:
            best_point, path = self.validate(best_point, path)
        kept_ivs = self.simplify(best_point.interventions)
        best = dataclasses.replace(
            best_point,
            label=self.search.name,
            interventions=self.in_order(kept_ivs),
            speedup=self.speedup(kept_ivs),
        )
        removed = tuple(iv for iv in best_point.interventions if iv not in kept_ivs)
        pareto = {c.metric: pareto_front(self.points, c.metric) for c in self.search.constraints}
        return SearchResult(
            search=self.search,
            baseline_metrics=dict(self.base_metrics),
            bounds=self.bounds,
            best=best,
            path=tuple(path),
            points=tuple(self.points),
            pareto=pareto,
            candidates=counts,
            redundant=removed,
            evaluations=self.ex.evaluations - evals,
            seconds=time.perf_counter() - started,
            validation_seeds=self.validation.seeds if self.validation else (),
            validation_baseline=dict(self.val_base) if self.validation else None,
            validation_bounds=self.val_bounds if self.validation else None,
        )

    def greedy(
        self, base: Point, cands: list[Intervention], alone: list[Point]
    ) -> tuple[_State, list[PathStep]]:
        """The lazy greedy: the candidate with the best saving per sensitivity next, where a
        candidate measured with the current variant counts with its *marginal* figures (what it
        adds to the current variant's saving and sensitivity), the others with an estimate (alone;
        for a cache whose sibling is in the current variant, its difference from that sibling).
        A measured candidate still first is accepted; one that no longer is waits ("deferred")
        and is measured again when it comes first after an acceptance."""
        sens = [self.sensitivity(p.metrics) for p in alone]
        saving = [1.0 - 1.0 / p.speedup for p in alone]
        keep = {k for k in (self.first_step(w) for w in self.search.windows) if k is not None}
        keep |= {self.first_step(iv.window) for iv in cands}  # type: ignore[arg-type]
        current = _State(
            (),
            base,
            {k: (self.ex.start_state(self.baseline, k), self.ex.new_caches()) for k in keep},
        )
        path: list[PathStep] = []
        pending = list(range(len(cands)))
        measured_key: dict[int, float] = {}  # marginal ratio when last measured
        fresh: dict[int, tuple[Point, dict[int, Any], int]] = {}  # measured on the current
        prefetched: dict[int, tuple[torch.Tensor, dict[int, Any]]] = {}  # lookahead's extras
        trials = 0

        def estimate(i: int) -> float:
            if i in measured_key:
                return measured_key[i]
            for o in current.interventions:
                if o in cands and sibling(o, cands[i]):  # what it adds in its sibling's place
                    j = cands.index(o)
                    return (saving[i] - saving[j]) / max(sens[i] - sens[j], MIN_SENSITIVITY)
            return saving[i] / max(sens[i], MIN_SENSITIVITY)

        def step(i: int, outcome: Outcome, p: Point | None = None) -> PathStep:
            return PathStep(cands[i], outcome, alone[i], sens[i], saving[i], p)

        while pending:
            ranked = sorted(pending, key=lambda i: (-estimate(i), i))
            i = ranked[0]
            outcome = self.skip(current, cands[i], alone[i])
            if outcome is not None:
                path.append(step(i, outcome))
                pending.remove(i)
                continue
            if i in fresh:  # measured on the current variant and still first
                p, kept, row = fresh.pop(i)
                pending.remove(i)
                del path[row]  # the path lists decisions in the order they were taken
                path.append(step(i, "accepted", p))
                current = _State(p.interventions, p, kept)
                fresh.clear()  # measured on the variant before: their rows stay "deferred"
                prefetched.clear()
                continue
            if self.options.max_trials is not None and trials >= self.options.max_trials:
                break
            if i not in prefetched:
                group = [i]
                for j in ranked[1:]:
                    if len(group) >= max(1, self.options.lookahead):
                        break
                    if j not in fresh and self.skip(current, cands[j], alone[j]) is None:
                        group.append(j)
                for j, got in zip(group, self.measure_with(current, [cands[j] for j in group])):
                    prefetched[j] = got
            images, kept = prefetched.pop(i)
            trials += 1
            ivs = self.combined(current, cands[i])
            replaces = [o for o in current.interventions if o not in ivs]
            label = f"+ {cands[i].label()}" + (
                f" (in place of {replaces[0].label()})" if replaces else ""
            )
            p = self.point(label, "combination", ivs, images)
            if not (p.fits and p.speedup > current.point.speedup):
                path.append(step(i, "rejected", p))
                pending.remove(i)
                continue
            gain = 1.0 / current.point.speedup - 1.0 / p.speedup
            cost = self.sensitivity(p.metrics) - self.sensitivity(current.point.metrics)
            measured_key[i] = gain / max(cost, MIN_SENSITIVITY)
            fresh[i] = (p, kept, len(path))
            path.append(step(i, "deferred", p))  # "accepted" once it is first
        return current, path

    def measure_with(
        self, current: _State, new: list[Intervention]
    ) -> list[tuple[torch.Tensor, dict[int, Any]]]:
        """The current variant with each of ``new`` (one batch, from the earliest step where
        one of them starts to differ): each one's images and its states at the keep steps."""
        combos = [Variant(self.search.name, self.combined(current, iv), "search") for iv in new]
        start = min(self.resume_step(current.interventions, [iv]) for iv in new)
        mode: Mode = "accelerate" if len(new) == 1 else "measure"
        keep = set(current.states)
        images, kept = self.run_from(combos, start, current.states[start], keep, mode)
        return [
            (im, {k: (current.states[k] if k < start else st[k]) for k in keep})
            for im, st in zip(images, kept)
        ]

    def validate(self, best: Point, path: list[PathStep]) -> tuple[Point, list[PathStep]]:
        """Measure the reported points again on the validation images: every measured
        combination that keeps the bounds on the study's images, then the points that do, fastest
        first, until one keeps them on the validation images too; that one is the best. A point
        is feasible only where both hold, so one not measured there is not feasible."""
        assert self.validation is not None
        self.val_base = self.validation.metrics(())
        self.val_bounds = tuple(bound(c, self.val_base[c.metric]) for c in self.search.constraints)
        checked: dict[int, Point] = {}

        def check(p: Point) -> Point:
            if id(p) not in checked:
                if p.interventions not in self.validated:
                    n = len(self.validated) + 1
                    self.on_step("validation", n, n)
                    self.validated[p.interventions] = (
                        self.val_base
                        if not p.interventions
                        else self.validation.metrics(p.interventions)  # type: ignore[union-attr]
                    )
                metrics = self.validated[p.interventions]
                fits = self.feasible(metrics, self.val_bounds)
                checked[id(p)] = dataclasses.replace(
                    p,
                    feasible=p.fits and fits,
                    fits_search=p.fits,
                    validation=dict(metrics),
                    fits_validation=fits,
                )
            return checked[id(p)]

        for step in path:
            if step.combined is not None and step.combined.fits:
                check(step.combined)
        chosen = None
        # the greedy's own choice first among equals, then the rest by speedup, fastest first
        ranked = sorted(
            (p for p in self.points if p.fits),
            key=lambda p: (-p.speedup, p is not best),
        )
        for p in ranked:
            if check(p).fits_validation:
                chosen = checked[id(p)]
                break
        base = check(self.points[0])
        if chosen is None:  # not even the baseline keeps an absolute bound there
            chosen = base

        def unchecked(p: Point) -> Point:
            return dataclasses.replace(p, feasible=False, fits_search=p.fits)

        def final(p: Point) -> Point:
            return checked[id(p)] if id(p) in checked else unchecked(p)

        self.points = [final(p) for p in self.points]
        path = [
            dataclasses.replace(
                s,
                alone=final(s.alone),
                combined=final(s.combined) if s.combined is not None else None,
            )
            for s in path
        ]
        return chosen, path

    def simplify(self, ivs: tuple[Intervention, ...]) -> tuple[Intervention, ...]:
        """``ivs`` without the interventions that cannot change the images: at every step where
        one acts (a cache: where it reuses), its block is dead code given the others (a cache
        of a later block reuses at the same step, say). Removing one never adds FLOPs, so the
        speedup can only rise and the metrics stay what they were."""
        ivs = tuple(ivs)
        for iv in reversed(ivs):
            others = tuple(o for o in ivs if o is not iv)
            if self.redundant(others, iv):
                ivs = others
        return ivs

    def redundant(self, others: tuple[Intervention, ...], iv: Intervention) -> bool:
        if iv.op not in ("drop", "cache") or iv.component.startswith("skip"):
            return False
        if iv.component == GUIDANCE:  # not in any program: it idles the unconditional half
            return False
        mine = schedule(Variant("v", (iv,)), self.steps).per_step
        rest = schedule(Variant("v", others), self.steps).per_step
        sides = ("cond", "uncond") if iv.side == "both" else (iv.side,)
        for k, rules in enumerate(mine):
            if not rules or any(r.phase == "compute" for r in rules):
                continue
            for side in sides:  # dead on every half it acts on; programs are per half
                program = self.ex.programs.get(half(rest[k], side), "accelerate")
                if any(n.meta.get("ablang") == iv.component for n in program.gm.graph.nodes):
                    return False
        return True

    def in_order(self, ivs: tuple[Intervention, ...]) -> tuple[Intervention, ...]:
        """Interventions as a schedule reads: noisiest window first, then the search's order of
        components and ops."""
        comps, ops = self.search.components, self.search.ops

        def key(iv: Intervention):
            first = self.first_step(iv.window)
            return (
                len(self.steps) if first is None else first,
                comps.index(iv.component) if iv.component in comps else len(comps),
                ops.index(iv.op) if iv.op in ops else 0,
            )

        return tuple(sorted(ivs, key=key))

    def combined(self, current: _State, iv: Intervention) -> tuple[Intervention, ...]:
        ivs = combine(current.interventions, iv)
        assert ivs is not None, "skip() lets no conflicting candidate through"
        return ivs

    def skip(self, current: _State, iv: Intervention, alone: Point) -> Outcome | None:
        """Why ``iv`` is not worth measuring with the current variant, or None. A cache whose
        sibling (same component, window and side, another period) is in the current variant
        is measured in its place."""
        if not alone.fits:
            return "infeasible alone"
        ivs = combine(current.interventions, iv)
        if ivs is None:
            return "conflict"
        if self.speedup(ivs) <= current.point.speedup * (1 + 1e-9):
            return "no gain"
        return None


def run_search(
    search: Search,
    executor: Executor,
    baseline: Trajectory,
    measure: Measure,
    flops: FlopCounter,
    options: SearchOptions = SearchOptions(),
    on_step: Callable[[str, int, int], None] | None = None,
    validation: ValidationSet | None = None,
) -> SearchResult:
    """Run one ``search`` on ``executor`` (its setup, programs and device), against
    the ``baseline`` trajectory already computed; ``validation``: the images its reported points
    are measured on again (None: none). ``on_step(phase, done, total)`` reports progress
    ("candidates", then "combinations" once per sampler step of each measurement, then
    "validation" once per point measured there)."""
    return _Search(search, executor, baseline, measure, flops, options, on_step, validation).run()


def run_searches(
    plan: Plan,
    executor: Executor,
    baseline: Trajectory,
    measure: Measure,
    flops: FlopCounter,
    options: SearchOptions,
    console: Console | None = None,
    validations: Callable[[Validation], ValidationSet] | None = None,
) -> tuple[list[SearchResult], list[Samples]]:
    """Every search of ``plan``, with a progress bar each; returns the results and the samples
    of each best variant, run once more from the baseline's prefix in ``options.mode`` (one
    variant, as ``ablang run`` times every variant), for its images and wall time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    found, samples = [], []
    for search in plan.searches:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"search {search.name}", total=None)

            def on_step(phase: str, done: int, total: int, task=task, name=search.name) -> None:
                progress.update(
                    task, description=f"search {name}: {phase}", completed=done, total=total
                )

            check = None
            if search.validation is not None and validations is not None:
                progress.update(task, description=f"search {search.name}: validation baseline")
                check = validations(search.validation)
            result = run_search(search, executor, baseline, measure, flops, options, on_step, check)
        found.append(result)
        best = result.best_variant()
        if best.interventions:
            (s,) = executor.run_batch([best], baseline, options.mode)
        else:
            s = Samples(best.name, baseline.images, 0, baseline.seconds, 0)
        samples.append(s)
        if console is not None:
            validated = (
                f", validated on {len(result.validation_seeds)} other seeds"
                if result.validation_seeds
                else ""
            )
            console.print(
                f"search {search.name}: {result.best.speedup:.2f}x FLOP speedup with "
                f"{len(best.interventions)} interventions, after {len(result.points) - 1} "
                f"measurements in {result.seconds:.0f} s{validated}"
                + ("" if result.best.feasible else " (the baseline itself breaks a bound)")
            )
    return found, samples
