"""A diffusers scheduler as ablang's per-step sampler, with state that can be snapshotted.

For ``model diffusers "DIR"`` the sampler is the pipeline's own scheduler object (loaded from
``DIR/scheduler``), or another diffusers scheduler picked by class name and built from the same
config (``from_config``), so every scheduler diffusers has works without ablang re-implementing
it. One step is what a diffusers pipeline does inside its loop::

    x_in = scheduler.scale_model_input(x, t)                    # per step, before the Unet
    out  = unet(cat([x_in, x_in]), t, [uncond; cond])           # the runtime's job
    eps  = out_uncond + g * (out_cond - out_uncond)             # pipeline order: [uncond; cond]
    x    = scheduler.step(eps, t, x, generator=..., eta=...).prev_sample

``DiffusersSampler`` holds what every trajectory shares (the scheduler as configured for the
run's step count, its timesteps, the step keyword arguments); ``SchedulerState`` is one
trajectory: the current ``x``, the index of the next step, *its own copy of the scheduler* and
its generators. ``state.fork()`` is a snapshot: a variant that starts at step k continues from
the baseline's fork at k, with the scheduler's internal state included (DPM-Solver's and UniPC's
``model_outputs`` / ``lower_order_nums`` / ``last_sample`` / ``_step_index``, PNDM's ``ets`` /
``counter`` / ``cur_sample``, ...). ``fork`` is ``copy.deepcopy`` of the scheduler, which clones
every tensor it holds; the tests check it per scheduler against a full run, bit for bit.

**Randomness.** diffusers pipelines draw the initial latents with ``randn_tensor(shape,
generator=...)`` and ancestral schedulers draw their per-step noise from the same generator
inside ``step``. ablang's contract is "sample i of a prompt uses seed S + i, and every variant
sees the same noise". It maps onto diffusers as one CPU ``torch.Generator`` per sample, seeded
with that sample's seed, passed as a list (``randn_tensor`` then draws each sample's rows from its
own generator). Sample i is therefore exactly what
``pipe(prompt, generator=torch.Generator().manual_seed(S + i), num_images_per_prompt=1)`` makes,
whatever else is in the batch; and since the generators travel inside the state (``fork`` copies
their state), a variant started from a snapshot draws the noise the baseline drew at the same
steps. Generators live on the CPU, as ``randn_tensor`` allows, so the noise is the same on every
device.

**Time.** ``timesteps`` are the scheduler's own, in the order it visits them (noisiest first),
as Python numbers: ``int`` for the discrete schedulers, ``float`` where the scheduler's are
fractional (Euler with Karras sigmas, ...). A step index counts ``step`` calls, one per Unet
evaluation, so for second-order schedulers (Heun, KDPM2) and PNDM's Runge-Kutta warm-up a
timestep can occur twice.

The loop above is that of ``StableDiffusionPipeline``; ``DDPMPipeline`` / ``DDIMPipeline`` are the
same loop without ``scale_model_input`` and ``init_noise_sigma``, which are identity for the
schedulers those pipelines are used with (DDPM, DDIM, DPM-Solver, UniPC, PNDM, DEIS). For a
scheduler that scales its input (Euler, LMS, Heun, ...) ablang applies the scaling, as it must
for the scheduler's mathematics to hold; ``DDPMPipeline`` would not.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ablang.models import ModelUnavailable


def scheduler_config_path(root: str | Path) -> Path | None:
    """The scheduler config of a pipeline directory (``scheduler/``) or of a Unet directory
    laid out as ``google/ddpm-cifar10-32`` is (``scheduler_config.json`` beside ``config.json``)."""
    root = Path(root)
    for cand in (
        root / "scheduler" / "scheduler_config.json",
        root / "scheduler_config.json",
        root.parent / "scheduler" / "scheduler_config.json",
    ):
        if cand.is_file():
            return cand
    return None


def _diffusers():
    try:
        import diffusers
    except ImportError as e:
        raise ModelUnavailable(
            "diffusers schedulers need the diffusers package: pip install 'ablang[diffusers]'"
        ) from e
    return diffusers


def scheduler_names(own: str) -> list[str]:
    """Schedulers that can replace ``own`` with its config: diffusers' own list of compatibles
    (the "Karras" family for SD/DDPM schedulers), sorted, ``own`` included."""
    try:
        cls = getattr(_diffusers(), own)
    except (AttributeError, ImportError):
        return [own]
    # ``compatibles`` holds the classes themselves; reading it imports nothing optional
    names = {c.__name__ for c in cls().compatibles} if hasattr(cls, "compatibles") else set()
    return sorted(names | {own})


def unknown_scheduler(name: str, own: str) -> str:
    """Plain-words message for a scheduler name the directory's config cannot build."""
    names = scheduler_names(own)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"no diffusers scheduler {name!r} for this model (it has: {', '.join(names)}){hint}"


def load_scheduler(
    root: str | Path, name: str | None = None, overrides: Mapping[str, Any] | None = None
):
    """The directory's scheduler (``name`` None), or diffusers scheduler ``name`` built from the
    directory's scheduler config (``from_config``), with ``overrides`` applied to the config."""
    diffusers = _diffusers()
    path = scheduler_config_path(root)
    if path is None:
        raise ModelUnavailable(f"no scheduler config in {root} (scheduler/scheduler_config.json)")
    config = json.loads(path.read_text())
    own = config.get("_class_name", "DDPMScheduler")
    pick = own if name is None else name
    if pick not in scheduler_names(own):
        raise ModelUnavailable(f"{path}: " + unknown_scheduler(pick, own))
    config.update(overrides or {})
    try:
        return getattr(diffusers, pick).from_config(config)
    except ImportError as e:  # DPMSolverSDEScheduler needs torchsde
        raise ModelUnavailable(f"{pick} needs a package that is not installed: {e}") from e


def step_options(scheduler, eta: float | None) -> dict[str, Any]:
    """Keyword arguments for ``step`` beyond the generator, as the pipelines'
    ``prepare_extra_step_kwargs`` give them: ``eta`` only where ``step`` takes it."""
    takes = set(inspect.signature(scheduler.step).parameters)
    if eta is not None and eta != 0.0 and "eta" not in takes:
        raise ModelUnavailable(f"{type(scheduler).__name__} has no eta (DDIM's does)")
    return {"eta": float(eta or 0.0)} if "eta" in takes else {}


def _number(t: torch.Tensor) -> int | float:
    value = t.item()
    return int(value) if float(value).is_integer() else float(value)


@dataclass
class SchedulerState:
    """One trajectory: ``x`` before step ``index``, the scheduler that has seen steps
    ``0..index-1``, and one generator per sample, each advanced past the noise drawn so far."""

    x: torch.Tensor  # [N x C x H x W]
    index: int
    scheduler: Any
    generators: list[torch.Generator] = field(default_factory=list)

    def fork(self) -> SchedulerState:
        """An independent copy: stepping one leaves the other as it was."""
        gens = []
        for g in self.generators:
            h = torch.Generator(device=g.device)
            h.set_state(g.get_state())
            gens.append(h)
        return SchedulerState(self.x.clone(), self.index, copy.deepcopy(self.scheduler), gens)

    def repeat(self, k: int) -> list[SchedulerState]:
        """``k`` independent forks, e.g. one per variant of a batched chunk."""
        return [self.fork() for _ in range(k)]


class DiffusersSampler:
    """A diffusers scheduler prepared for ``steps`` steps; makes and advances trajectories."""

    def __init__(self, scheduler, steps: int, *, eta: float | None = None) -> None:
        self.template = copy.deepcopy(scheduler)
        self.template.set_timesteps(steps)
        self.steps = steps
        self.options = step_options(self.template, eta)
        self.takes_generator = "generator" in inspect.signature(self.template.step).parameters
        self._timesteps = self.template.timesteps.detach().cpu()

    @classmethod
    def from_dir(
        cls,
        root: str | Path,
        steps: int,
        *,
        name: str | None = None,
        eta: float | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> DiffusersSampler:
        return cls(load_scheduler(root, name, overrides), steps, eta=eta)

    # ---------------------------------------------------------------- the timeline

    @property
    def name(self) -> str:
        return type(self.template).__name__

    @property
    def timesteps(self) -> tuple[int | float, ...]:
        """The scheduler's timesteps, one per step (Unet evaluation), noisiest first."""
        return tuple(_number(t) for t in self._timesteps)

    def __len__(self) -> int:
        return len(self._timesteps)

    def t(self, index: int, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The Unet's ``timesteps`` input at step ``index``: ``[batch]``, in the scheduler's dtype
        (int64, or float32 for sigma-based schedulers), as a pipeline's Unet call expands it."""
        return self._timesteps[index].reshape(1).expand(batch).to(device)

    # ---------------------------------------------------------------- trajectories

    def start(
        self,
        seeds: Sequence[int],
        shape: tuple[int, int, int],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> SchedulerState:
        """x_T for ``seeds`` (one generator each), scaled by ``init_noise_sigma``, and a fresh
        scheduler: what ``prepare_latents`` and ``set_timesteps`` give a pipeline."""
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        noise = torch.cat([torch.randn((1, *shape), generator=g, dtype=dtype) for g in gens])
        x = noise.to(device) * self.template.init_noise_sigma
        return SchedulerState(x, 0, copy.deepcopy(self.template), gens)

    def model_input(self, state: SchedulerState) -> torch.Tensor:
        """The Unet's ``x`` at the state's step (before guidance doubles it). Call it once per
        step: some schedulers record that it was called, or set their step index here."""
        return state.scheduler.scale_model_input(state.x, self._timesteps[state.index])

    def step(self, state: SchedulerState, model_output: torch.Tensor) -> SchedulerState:
        """Advance ``state`` by one step with the (guided) model output; returns it."""
        t = self._timesteps[state.index]
        kwargs = dict(self.options)
        if self.takes_generator:
            kwargs["generator"] = state.generators
        state.x = state.scheduler.step(model_output, t, state.x, **kwargs, return_dict=False)[0]
        state.index += 1
        return state


def guide(out: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance on a ``[uncond; cond]`` batch, in the pipelines' order and
    arithmetic (``uncond + g * (cond - uncond)``)."""
    uncond, cond = out.chunk(2)
    return uncond + guidance * (cond - uncond)


class SchedulerTrajectory:
    """A ``DiffusersSampler`` as the executor's ``TrajectorySampler`` (``ablang.models.base``):
    the run's seeds and the Unet's input shape bound, guidance in the pipelines' ``[uncond;
    cond]`` order. ``stateful``: the baseline keeps a fork of its state before every step."""

    stateful = True
    halves = ("uncond", "cond")  # the pipelines' batch order

    def __init__(
        self, sampler: DiffusersSampler, seeds: Sequence[int], shape: tuple[int, int, int]
    ) -> None:
        self.sampler, self.seeds, self.shape = sampler, tuple(seeds), shape

    @property
    def timesteps(self) -> tuple[int | float, ...]:
        return self.sampler.timesteps

    def start(self, device: torch.device) -> SchedulerState:
        return self.sampler.start(self.seeds, self.shape, device)

    def resume(self, x: torch.Tensor, k: int, device: torch.device) -> SchedulerState:
        raise ValueError(f"{self.sampler.name} keeps state besides x: continue from a fork")

    def fork(self, state: SchedulerState) -> SchedulerState:
        return state.fork()

    def x(self, state: SchedulerState) -> torch.Tensor:
        return state.x

    def model_input(self, state: SchedulerState) -> torch.Tensor:
        return self.sampler.model_input(state)

    def model_t(self, k: int, rows: int, device: torch.device) -> torch.Tensor:
        return self.sampler.t(k, rows, device)

    def guided_output(
        self,
        unet,
        x,
        t,
        cond,
        uncond,
        guidance: float,
        channels: int,
        channels_last: bool,
        unet_uncond=None,
    ) -> torch.Tensor:
        if unet_uncond is not None:  # the halves apart: [uncond; cond], as below
            x = _layout(x, channels_last)
            return guide(torch.cat([unet_uncond(x, t, uncond), unet(x, t, cond)]), guidance)
        if uncond is None or guidance == 1.0:
            return unet(_layout(x, channels_last), t, cond)
        x2 = _layout(torch.cat([x, x]), channels_last)
        both = {k: torch.cat([uncond[k], cond[k]]) for k in cond}
        return guide(unet(x2, torch.cat([t, t]), both), guidance)

    def step(self, state: SchedulerState, out: torch.Tensor) -> None:
        self.sampler.step(state, out)


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
