"""execute: run the sampler for the baseline and every variant, with the same seeds and noise.

- The baseline trajectory is computed once and kept (``x`` before every step). A variant whose
  first active step is k starts from the baseline's ``x`` at step k: everything before is
  identical, so its images equal a full re-run's.
- Variants that start at the same step can share one batched forward (measure mode): each
  variant is a *chunk* of the batch and every rule acts through a per-element mask.
- Every finished variant is written to the journal (``journal.py``) before the next starts, so an
  interrupted run resumes where it stopped and loses nothing.

Classifier-free guidance doubles the batch as GLIDE does: ``[chunks' cond; chunks' uncond]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch

from ablang.compile import Mode, ProgramCache, Rule, RuleSet, Schedule, schedule
from ablang.diffusion import Diffusion, Step, _cat, make_noise, sample_step, steps_of
from ablang.models.base import Cond, LoadedModel
from ablang.plan import Plan, Variant


@dataclass(frozen=True)
class RunSetup:
    """The fixed inputs every variant shares: prompts and seeds per sample, the noise, steps."""

    prompts: tuple[str, ...]  # one per sample
    seeds: tuple[int, ...]  # one per sample
    steps: tuple[Step, ...]
    guidance: float
    kind: Literal["ddpm", "ddim"]
    eta: float


@dataclass
class Trajectory:
    """The baseline's states: ``xs[k]`` is x before step k, ``xs[-1]`` the final images."""

    xs: list[torch.Tensor]
    seconds: float
    step_seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Samples:
    """What execute hands to measure, per variant."""

    variant: str
    images: torch.Tensor  # [N x C x H x W] in [-1, 1], on the cpu
    start_step: int  # steps before it were shared with the baseline
    seconds: float  # wall seconds of this variant's own steps (its share of a batched run)
    evaluations: int  # Unet image-forwards spent on it (doubling for guidance counts twice)


def make_setup(plan: Plan, model: LoadedModel, diffusion: Diffusion) -> RunSetup:
    prompts = plan.prompts or model.default_prompts
    per_sample = tuple(p for p in prompts for _ in range(plan.samples))
    seeds = tuple(plan.seed + i for _ in prompts for i in range(plan.samples))
    guidance = (
        plan.sampler.guidance if plan.sampler.guidance is not None else model.default_guidance
    )
    return RunSetup(
        prompts=per_sample,
        seeds=seeds,
        steps=tuple(steps_of(diffusion)),
        guidance=float(guidance),
        kind=plan.sampler.kind,
        eta=plan.sampler.eta,
    )


class Executor:
    """Runs trajectories of one model for one setup. Nothing here modifies the model."""

    def __init__(
        self,
        model: LoadedModel,
        diffusion: Diffusion,
        setup: RunSetup,
        device: torch.device,
        programs: ProgramCache | None = None,
    ) -> None:
        self.model, self.diffusion, self.setup, self.device = model, diffusion, setup, device
        self.programs = programs or ProgramCache(model.traced)
        self.x_T, self.noise = make_noise(model.image_shape, list(setup.seeds), len(setup.steps))
        self.cond, self.uncond = model.make_cond(list(setup.prompts), device)
        self.doubled = setup.guidance != 1.0 and self.uncond is not None
        self.channels = model.image_shape[0]
        self.evaluations = 0  # image-forwards of the Unet, for the sweep benchmarks

    @property
    def n(self) -> int:
        return len(self.setup.seeds)

    # ---------------------------------------------------------------- one batched forward

    def _inputs(
        self, x: torch.Tensor, step: Step, chunks: int
    ) -> tuple[torch.Tensor, torch.Tensor, Cond]:
        cond = _tile(self.cond, chunks)
        if self.doubled:
            cond = _cat(cond, _tile(self.uncond, chunks))
            x = torch.cat([x, x])
        if self.model.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t = torch.full((x.shape[0],), step.t, dtype=torch.long, device=self.device)
        return x, t, cond

    def _guide(self, out: torch.Tensor, rows: int) -> torch.Tensor:
        if not self.doubled:
            return out
        c, u = out[:rows], out[rows:]
        eps = u[:, : self.channels] + self.setup.guidance * (
            c[:, : self.channels] - u[:, : self.channels]
        )
        return torch.cat([eps, c[:, self.channels :]], dim=1)

    def forward(
        self,
        x: torch.Tensor,
        step: Step,
        rules_per_chunk: list[RuleSet],
        caches: list[dict[str, torch.Tensor]],
        mode: Mode,
    ) -> torch.Tensor:
        """One sampler step for ``len(rules_per_chunk)`` chunks of ``self.n`` images each."""
        chunks = len(rules_per_chunk)
        rows = x.shape[0]
        xin, t, cond = self._inputs(x, step, chunks)
        if mode == "accelerate":
            assert chunks == 1, "accelerate mode runs one variant per batch"
            program = self.programs.get(rules_per_chunk[0], "accelerate")
            out, kept = program(xin, t, cond, cache=caches[0])
            caches[0].update(kept)
        else:
            union: RuleSet = frozenset().union(*rules_per_chunk)
            program = self.programs.get(union, "measure")
            masks = {r: self._mask([r in rs for rs in rules_per_chunk]) for r in program.mask_rules}
            cache_in = {c: self._gather(c, caches, rules_per_chunk) for c in program.cache_inputs}
            out, kept = program(xin, t, cond, cache=cache_in, masks=masks)
            for k, rs in enumerate(rules_per_chunk):
                for comp, value in kept.items():
                    if Rule(comp, "cache", phase="compute") in rs:
                        caches[k][comp] = self._slice(value, k)
        self.evaluations += xin.shape[0]
        guided = self._guide(out, rows)
        noise = self.noise[step.index].to(self.device).repeat(chunks, 1, 1, 1)
        return sample_step(self.diffusion, self.setup.kind, x, step, guided, noise, self.setup.eta)

    def _mask(self, per_chunk: list[bool]) -> torch.Tensor:
        m = torch.tensor(per_chunk, device=self.device).repeat_interleave(self.n)
        return torch.cat([m, m]) if self.doubled else m

    def _slice(self, value: torch.Tensor, k: int) -> torch.Tensor:
        """Chunk k's rows of a batched value (both guidance halves)."""
        n = self.n
        if not self.doubled:
            return value[k * n : (k + 1) * n]
        half = value.shape[0] // 2
        return torch.cat([value[k * n : (k + 1) * n], value[half + k * n : half + (k + 1) * n]])

    def _gather(
        self, comp: str, caches: list[dict[str, torch.Tensor]], rules: list[RuleSet]
    ) -> torch.Tensor:
        """The cached values of ``comp`` for a batched reuse step; chunks that are not reusing it
        get zeros (their mask ignores them)."""
        parts = []
        like = next(
            c[comp] for c, rs in zip(caches, rules) if Rule(comp, "cache", phase="reuse") in rs
        )
        for c, rs in zip(caches, rules):
            parts.append(
                c[comp] if Rule(comp, "cache", phase="reuse") in rs else torch.zeros_like(like)
            )
        if not self.doubled:
            return torch.cat(parts)
        n = self.n
        return torch.cat([p[:n] for p in parts] + [p[n:] for p in parts])

    # ---------------------------------------------------------------- trajectories

    @torch.no_grad()
    def baseline(self, on_step: Callable[[], None] | None = None) -> Trajectory:
        x = self.x_T.to(self.device)
        xs, times = [x.cpu()], []
        start = time.perf_counter()
        for step in self.setup.steps:
            t0 = time.perf_counter()
            x = self.forward(x, step, [frozenset()], [{}], "accelerate")
            times.append(time.perf_counter() - t0)
            xs.append(x.cpu())
            if on_step:
                on_step()
        return Trajectory(xs, time.perf_counter() - start, times)

    @torch.no_grad()
    def run_batch(
        self,
        variants: list[Variant],
        baseline: Trajectory,
        mode: Mode,
        on_step: Callable[[], None] | None = None,
    ) -> list[Samples]:
        """Run variants that start at the same step together (one chunk each)."""
        scheds = [schedule(v, list(self.setup.steps)) for v in variants]
        start = min(s.first_active for s in scheds)
        assert mode == "measure" or len(variants) == 1
        x = baseline.xs[start].to(self.device).repeat(len(variants), 1, 1, 1)
        caches: list[dict[str, torch.Tensor]] = [{} for _ in variants]
        before = self.evaluations
        t0 = time.perf_counter()
        for step in self.setup.steps[start:]:
            x = self.forward(x, step, [s.per_step[step.index] for s in scheds], caches, mode)
            if on_step:
                on_step()
        seconds = (time.perf_counter() - t0) / len(variants)
        evals = (self.evaluations - before) // len(variants)
        images = x.cpu().chunk(len(variants)) if len(variants) > 1 else (x.cpu(),)
        return [Samples(v.name, img, start, seconds, evals) for v, img in zip(variants, images)]


def _tile(cond: Cond, k: int) -> Cond:
    if k == 1:
        return cond
    out = cond
    for _ in range(k - 1):
        out = _cat(out, cond)
    return out


def batches(
    plan_variants: list[Variant], steps: list[Step], max_chunks: int
) -> list[list[Variant]]:
    """Group variants that start at the same step (sharing the baseline prefix), at most
    ``max_chunks`` per group, earliest start first."""
    by_start: dict[int, list[Variant]] = {}
    for v in plan_variants:
        by_start.setdefault(schedule(v, steps).first_active, []).append(v)
    groups: list[list[Variant]] = []
    for start in sorted(by_start):
        vs = by_start[start]
        groups += [vs[i : i + max_chunks] for i in range(0, len(vs), max_chunks)]
    return groups


def schedules(plan: Plan, steps: list[Step]) -> dict[str, Schedule]:
    return {v.name: schedule(v, steps) for v in plan.variants}
