"""execute: run the sampler for the baseline and every variant, with the same seeds and noise.

- The baseline trajectory is computed once and kept (``x`` before every step). A variant whose
  first active step is k starts from the baseline's ``x`` at step k: everything before is
  identical, so its images equal a full re-run's.
- Variants that start at the same step can share one batched forward (measure mode): each
  variant is a *chunk* of the batch and every rule acts through a per-element mask.
- Every finished variant is written to the journal (``journal.py``) before the next starts, so an
  interrupted run resumes where it stopped and loses nothing.

Everything about the trajectory itself (noise, guidance by batch doubling, the DDPM/DDIM step,
the loop) is ``ablang/runtime.py``, the code emitted samplers ship verbatim; this module decides
which program runs for which chunk, and keeps the baseline's states. The stepping itself is a
``TrajectorySampler`` (``models/base.py``): ablang's table (``trajectory.py``) or a diffusers
scheduler. With guidance the batch is ``[chunks' cond; chunks' uncond]`` (diffusers: ``[uncond;
cond]``, the sampler's ``halves``). An intervention on one side of guidance (``on uncond``) acts
on that half's rows only: in measure mode through its mask, in accelerate mode by running the
two halves as two programs at the steps where they differ (the sampler's ``guided_output``
with ``unet_uncond``). Cached values are kept per chunk and per half (``Caches``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from ablang import runtime
from ablang.compile import (
    Mode,
    ProgramCache,
    Rule,
    RuleSet,
    Schedule,
    guidance_of,
    half,
    halves,
    schedule,
)
from ablang.diffusion import Diffusion, Step, steps_of
from ablang.errors import AblangError
from ablang.models.base import Cond, LoadedModel, TrajectorySampler
from ablang.models.kinds import SCHEDULER_OF_SAMPLER
from ablang.plan import GUIDANCE, Plan, Variant
from ablang.trajectory import TableSampler

# one chunk's cached values: half -> component -> kept; and under GUIDANCE the guidance term
# (`cache guidance`)
Caches = dict[str, dict[str, runtime.Kept]]


@dataclass(frozen=True)
class RunSetup:
    """The fixed inputs every variant shares: prompts and seeds per sample, the noise, steps."""

    prompts: tuple[str, ...]  # one per sample
    seeds: tuple[int, ...]  # one per sample
    steps: tuple[Step, ...]
    guidance: float
    kind: Literal["ddpm", "ddim"]
    eta: float
    scheduler: str | None = None  # a diffusers scheduler ("pipeline" or a class name)


@dataclass
class Trajectory:
    """The baseline's states: ``xs[k]`` is x before step k, ``xs[-1]`` the final x.

    ``images`` are the final images (``xs[-1]`` decoded, for a latent model). A stateful
    sampler's ``states[k]`` is a fork of the whole sampler state before step k (None when
    read back from a journal: the executor then samples the baseline again for them)."""

    xs: list[torch.Tensor]
    seconds: float
    step_seconds: list[float] = field(default_factory=list)
    images_: torch.Tensor | None = None
    states: list[Any] | None = field(default=None, repr=False)

    @property
    def images(self) -> torch.Tensor:
        return self.xs[-1] if self.images_ is None else self.images_


@dataclass(frozen=True)
class Samples:
    """What execute hands to measure, per variant."""

    variant: str
    images: torch.Tensor  # [N x C x H x W] in [-1, 1], on the cpu
    start_step: int  # steps before it were shared with the baseline
    seconds: float  # wall seconds of this variant's own steps (its share of a batched run)
    evaluations: int  # Unet image-forwards spent on it (doubling for guidance counts twice)


def make_setup(plan: Plan, model: LoadedModel, diffusion: Diffusion) -> RunSetup:
    per_sample, seeds = runtime.per_sample(
        plan.prompts or model.default_prompts, plan.samples, plan.seed, plan.seed_stride
    )
    guidance = (
        plan.sampler.guidance if plan.sampler.guidance is not None else model.default_guidance
    )
    scheduler = None
    steps = tuple(steps_of(diffusion))
    if model.trajectory is not None:
        # a model with its own schedulers: `ddpm` / `ddim` name diffusers' (plans built by hand)
        scheduler = plan.sampler.scheduler or SCHEDULER_OF_SAMPLER[plan.sampler.kind]
        sampler = model.trajectory(scheduler, plan.sampler.steps, plan.sampler.eta, tuple(seeds))
        ts = sampler.timesteps
        steps = tuple(Step(k, t, len(ts) - 1 - k) for k, t in enumerate(ts))  # type: ignore[arg-type]
    return RunSetup(
        prompts=tuple(per_sample),
        seeds=tuple(seeds),
        steps=steps,
        guidance=float(guidance),
        kind=plan.sampler.kind,
        eta=plan.sampler.eta,
        scheduler=scheduler,
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
        self.sampler: TrajectorySampler
        if setup.scheduler is not None and model.trajectory is not None:
            self.sampler = model.trajectory(setup.scheduler, len(diffusion), setup.eta, setup.seeds)
        else:
            self.table = diffusion.table(setup.kind, setup.eta)
            self.sampler = TableSampler(self.table, model.image_shape, setup.seeds)
            self.x_T, self.noise = self.sampler.x_T, self.sampler.noise
        self.cond, self.uncond = model.make_cond(list(setup.prompts), device)
        if setup.guidance != 1.0 and self.uncond is None:
            # never record a guidance that was not applied (the resolver reports this first)
            raise AblangError(
                f"guidance {setup.guidance:g} needs an unconditional prediction, and "
                f"{model.label} has none: only guidance 1 samples it",
                code="guidance-unavailable",
            )
        self.doubled = runtime.is_guided(setup.guidance, self.uncond)
        self.channels = model.image_shape[0]
        self.evaluations = 0  # image-forwards of the Unet, for the sweep benchmarks

    @property
    def n(self) -> int:
        return len(self.setup.seeds)

    # ---------------------------------------------------------------- one step

    def output(
        self,
        x: torch.Tensor,
        step: Step,
        rules_per_chunk: list[RuleSet],
        caches: list[Caches],
        mode: Mode,
    ) -> torch.Tensor:
        """The guided model output of one step for ``len(rules_per_chunk)`` chunks of ``self.n``
        images each: in accelerate mode one chunk's program (one per half where the halves
        differ), in measure mode the union's program with a mask per rule, chunk and half."""
        chunks = len(rules_per_chunk)
        for c in caches:  # a caller's fresh `{}` is an empty Caches
            for h in (*self.halves, GUIDANCE):
                c.setdefault(h, {})
        k = step.index
        t = self.sampler.model_t(k, x.shape[0], self.device)
        cond = runtime.tile_cond(self.cond, chunks)
        uncond = runtime.tile_cond(self.uncond, chunks) if self.doubled else None
        g, channels, last = self.setup.guidance, self.channels, self.model.channels_last
        how = [guidance_of(rs) if self.doubled else runtime.GUIDED for rs in rules_per_chunk]
        if mode == "accelerate":
            assert chunks == 1, "accelerate mode runs one variant per batch"
            cond_rules, uncond_rules = halves(rules_per_chunk[0])
            own = caches[0]
            seen: list[torch.Tensor] = []  # the conditional half's output, for the guidance term

            def cond_half(xin: torch.Tensor, t: torch.Tensor, c: Cond) -> torch.Tensor:
                seen.append(self._accelerate(cond_rules, [own["cond"]], k, xin, t, c))
                return seen[-1]

            if not runtime.both_halves(how[0]):  # `drop`/`cache guidance`: it idles
                out = self.sampler.guided_output(cond_half, x, t, cond, None, g, channels, last)
                return runtime.without_uncond(out, own[GUIDANCE].get(GUIDANCE), k, how[0])
            if self.doubled and cond_rules != uncond_rules:  # the halves by name, not position
                out = self.sampler.guided_output(
                    cond_half,
                    x,
                    t,
                    cond,
                    uncond,
                    g,
                    channels,
                    last,
                    lambda xin, t, c: self._accelerate(uncond_rules, [own["uncond"]], k, xin, t, c),
                )
            else:
                parts = [own[h] for h in self.halves]  # in the batch's order of halves
                at = self.halves.index("cond") * x.shape[0]

                def whole(xin: torch.Tensor, t: torch.Tensor, c: Cond) -> torch.Tensor:
                    both = self._accelerate(cond_rules, parts, k, xin, t, c)
                    seen.append(both[at : at + x.shape[0]])
                    return both

                out = self.sampler.guided_output(whole, x, t, cond, uncond, g, channels, last)
            if how[0] == runtime.KEEP:
                runtime.keep(own[GUIDANCE], GUIDANCE, out - seen[0], k)
            return out

        # rows, in batch order: (half, chunk) -> that chunk's side-free rules on that half
        # (an idle unconditional half's rows run the plain Unet: their output is not used)
        rows = [
            (h, i, half(rs, h) if h == "cond" or runtime.both_halves(how[i]) else frozenset())
            for h in self.halves
            for i, rs in enumerate(rules_per_chunk)
        ]
        # one program input per reused component: how a block's input is made (extrapolated or
        # not) is _gather's business, not the program's
        plain = [frozenset(replace(r, extrapolate=False) for r in rs) for _, _, rs in rows]
        union: RuleSet = frozenset().union(*plain)

        seen = []  # the whole batch's output, before guidance combines it

        def masked(xin: torch.Tensor, t: torch.Tensor, c: Cond) -> torch.Tensor:
            self.evaluations += xin.shape[0]
            program = self.programs.get(union, "measure")
            masks = {r: self._mask([r in rs for rs in plain]) for r in program.mask_rules}
            cache_in = {comp: self._gather(comp, caches, rows, k) for comp in program.cache_inputs}
            out, kept = program(xin, t, c, cache=cache_in, masks=masks)
            for j, (h, chunk, rs) in enumerate(rows):
                for comp, value in kept.items():
                    if Rule(comp, "cache", phase="compute") in rs:
                        runtime.keep(
                            caches[chunk][h], comp, value[j * self.n : (j + 1) * self.n], k
                        )
            seen.append(out)
            return out

        out = self.sampler.guided_output(masked, x, t, cond, uncond, g, channels, last)
        if all(h == runtime.GUIDED for h in how):
            return out
        # a chunk whose unconditional half idles at this step takes its conditional rows plus
        # its kept guidance term; at a compute step of `cache guidance` the term is kept
        at = self.halves.index("cond") * chunks * self.n
        parts = []
        for i, part in enumerate(out.split(self.n)):
            c = seen[0][at + i * self.n : at + (i + 1) * self.n]
            if runtime.both_halves(how[i]):
                if how[i] == runtime.KEEP:
                    runtime.keep(caches[i][GUIDANCE], GUIDANCE, part - c, k)
                parts.append(part)
            else:
                parts.append(
                    runtime.without_uncond(c, caches[i][GUIDANCE].get(GUIDANCE), k, how[i])
                )
        return torch.cat(parts)

    @property
    def halves(self) -> tuple[str, ...]:
        """The halves of a guided batch in the sampler's batch order, each with its own cached
        values; one part without guidance."""
        return self.sampler.halves if self.doubled else ("cond",)

    def new_caches(self) -> Caches:
        return {h: {} for h in (*self.halves, GUIDANCE)}

    def _accelerate(
        self,
        rules: RuleSet,
        parts: list[dict[str, runtime.Kept]],
        k: int,
        xin: torch.Tensor,
        t: torch.Tensor,
        c: Cond,
    ) -> torch.Tensor:
        """``rules``' accelerate program at step ``k`` on ``xin``, whose rows are ``len(parts)``
        equal parts, each reading and writing its own cached values."""
        self.evaluations += xin.shape[0]
        program = self.programs.get(rules, "accelerate")
        ex = program.extrapolated
        cache_in = {
            comp: torch.cat([p[comp].at(k, comp in ex) for p in parts])
            if len(parts) > 1
            else parts[0][comp].at(k, comp in ex)
            for comp in program.cache_inputs
        }
        out, kept = program(xin, t, c, cache=cache_in)
        for comp, value in kept.items():
            for p, rows in zip(parts, value.chunk(len(parts))):
                runtime.keep(p, comp, rows, k)
        return out

    def forward(
        self,
        x: torch.Tensor,
        step: Step,
        rules_per_chunk: list[RuleSet],
        caches: list[Caches],
        mode: Mode,
    ) -> torch.Tensor:
        """One step of ablang's own table for ``len(rules_per_chunk)`` chunks of ``self.n``
        images each, x alone being the state (the tests' step-by-step reference; runs and
        searches step sampler states, which works for every sampler)."""
        if self.sampler.stateful:
            raise TypeError(f"{self.setup.scheduler} keeps more state than x: step its states")
        out = self.output(x, step, rules_per_chunk, caches, mode)
        noise = runtime.step_noise(self.noise, step.index, x)
        return runtime.step(self.table, step.index, x, out, noise)

    def advance(
        self,
        states: list[Any],
        step: Step,
        rules_per_chunk: list[RuleSet],
        caches: list[Caches],
        mode: Mode,
    ) -> None:
        """One step of ``len(states)`` trajectories, each a chunk of one batch with its rules
        and caches; each state is advanced in place by its own rows of the output."""
        x = torch.cat([self.sampler.model_input(s) for s in states])
        out = self.output(x, step, rules_per_chunk, caches, mode)
        for state, part in zip(states, out.chunk(len(states))):
            self.sampler.step(state, part)

    def _mask(self, per_row: list[bool]) -> torch.Tensor:
        """A rule's mask over the batch from one flag per (half, chunk) block of ``self.n`` rows."""
        return torch.tensor(per_row, device=self.device).repeat_interleave(self.n)

    def _gather(
        self, comp: str, caches: list[Caches], rows: list[tuple[str, int, RuleSet]], k: int
    ) -> torch.Tensor:
        """The cached values of ``comp`` for a batched reuse step ``k``, per (half, chunk) block
        (extrapolated where that block's rule says so); blocks that are not reusing it get zeros
        (their mask ignores them)."""
        reuse = Rule(comp, "cache", phase="reuse")
        line = Rule(comp, "cache", phase="reuse", extrapolate=True)
        blocks = [
            caches[c][h][comp].at(k, line in rs) if reuse in rs or line in rs else None
            for h, c, rs in rows
        ]
        like = next(b for b in blocks if b is not None)
        return torch.cat([torch.zeros_like(like) if b is None else b for b in blocks])

    def check_sides(self, variant: Variant) -> None:
        """A one-sided intervention needs a guided run (the resolver reports this first)."""
        if self.doubled:
            return
        for iv in variant.interventions:
            if iv.component == GUIDANCE:
                raise AblangError(
                    f"`{iv.op} guidance` needs classifier-free guidance, and this run samples "
                    f"without it (guidance {self.setup.guidance:g})",
                    iv.span,
                    code="guidance-unguided",
                    hint="set `guidance` above 1 in the sampler line",
                )
            if iv.side != "both":
                raise AblangError(
                    f"`on {iv.side}` needs classifier-free guidance, and this run samples "
                    f"without it (guidance {self.setup.guidance:g})",
                    iv.span,
                    code="side-unguided",
                    hint="set `guidance` above 1 in the sampler line, or remove `on ...`",
                )

    # ---------------------------------------------------------------- trajectories

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Final x as images in [-1, 1] (decoded where the model samples latents), on the cpu."""
        if self.model.decode is None:
            return x.cpu()
        return torch.cat([self.model.decode(part) for part in x.split(self.n)]).cpu()

    @torch.no_grad()
    def baseline(self, on_step: Callable[[], None] | None = None) -> Trajectory:
        sampler = self.sampler
        state = sampler.start(self.device)
        xs, times = [sampler.x(state).cpu()], []
        states = [sampler.fork(state)] if sampler.stateful else None
        steps = self.setup.steps
        caches = [self.new_caches()]
        start = t0 = time.perf_counter()
        for k in range(len(steps)):
            self.advance([state], steps[k], [frozenset()], caches, "accelerate")
            times.append(time.perf_counter() - t0)
            xs.append(sampler.x(state).cpu())
            if states is not None and k + 1 < len(steps):
                states.append(sampler.fork(state))
            if on_step:
                on_step()
            t0 = time.perf_counter()
        seconds = time.perf_counter() - start
        images = self.images(sampler.x(state)) if self.model.decode is not None else None
        return Trajectory(xs, seconds, times, images, states)

    def start_state(self, baseline: Trajectory, k: int) -> Any:
        """A fresh copy of the baseline's state before step ``k``."""
        if not self.sampler.stateful:
            return self.sampler.resume(baseline.xs[k], k, self.device)
        if baseline.states is None:  # read back from a journal: the forks are not saved
            baseline.states = self.baseline().states
        assert baseline.states is not None
        return self.sampler.fork(baseline.states[k])

    @torch.no_grad()
    def run_batch(
        self,
        variants: list[Variant],
        baseline: Trajectory,
        mode: Mode,
        on_step: Callable[[], None] | None = None,
    ) -> list[Samples]:
        """Run variants that start at the same step together (one chunk each)."""
        steps = list(self.setup.steps)
        for v in variants:
            self.check_sides(v)
        scheds = [schedule(v, steps) for v in variants]
        start = min(s.first_active for s in scheds)
        assert mode == "measure" or len(variants) == 1
        # one state per chunk: a scheduler's history belongs to its own trajectory
        states = [self.start_state(baseline, start) for _ in variants]
        caches = [self.new_caches() for _ in variants]
        before = self.evaluations
        t0 = time.perf_counter()
        for k in range(start, len(steps)):
            self.advance(states, steps[k], [s.per_step[k] for s in scheds], caches, mode)
            if on_step:
                on_step()
        seconds = (time.perf_counter() - t0) / len(variants)
        evals = (self.evaluations - before) // len(variants)
        return [
            Samples(v.name, self.images(self.sampler.x(s)), start, seconds, evals)
            for v, s in zip(variants, states)
        ]


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
