"""session: everything a plan runs on, loaded in one place.

A ``Session`` holds, for one plan on one device: the loaded model (its adapter's
``LoadedModel``), the ``Diffusion`` for the plan's sampler, the ``RunSetup`` (prompts, seeds,
steps, guidance), the ``ProgramCache`` of compiled programs, the ``Executor`` and the
``FlopCounter``. ``ablang run``, ``ablang emit``, ``ablang sample`` and ``ablang inspect`` build
it here instead of repeating the loading sequence::

    Plan --load_model(plan.model, device)---------> LoadedModel
         --Diffusion(model.diffusion, steps)------> Diffusion
         --make_setup(plan, model, diffusion)-----> RunSetup
         --ProgramCache(model.traced)-------------> ProgramCache
         --Executor(model, diffusion, setup, device, programs)
         --FlopCounter(model, programs, executor.doubled)

It needs no command line: ``Session.from_plan(plan)`` for a resolved study,
``Session.from_model(spec, ...)`` for a model line alone (``ablang sample``). The executor and the
FLOP counter are built on first use (the executor draws the noise of every seed and step up
front), so ``ablang emit`` pays only for what it uses. ``component_table(spec)`` is the light
half, for ``ablang inspect`` and ``ablang check``: the component table without the weights.
"""

from __future__ import annotations

from functools import cached_property

import torch

from ablang.compile import ProgramCache, Schedule, schedule
from ablang.components import ComponentTable
from ablang.cost import FlopCounter
from ablang.diffusion import Diffusion
from ablang.errors import AblangError
from ablang.execute import Executor, RunSetup, make_setup
from ablang.models.base import LoadedModel
from ablang.models.registry import component_table as _component_table
from ablang.models.registry import load_model
from ablang.plan import ModelSpec, Plan, SamplerSpec, Variant


def pick_device(setting: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when torch sees one) as a torch device."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise AblangError(
            "the study asks for device cuda, but torch sees no CUDA device", code="device"
        )
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def component_table(spec: ModelSpec) -> ComponentTable:
    """The component table of the model ``spec`` names, without running it; a model that is not
    at hand raises ``ModelUnavailable``, one that does not load an ``AblangError``."""
    return _component_table(spec)


class Session:
    """One plan's model, diffusion, setup, programs, executor and FLOP counter."""

    def __init__(self, plan: Plan, model: LoadedModel, device: torch.device) -> None:
        self.plan = plan
        self.model = model
        self.device = device
        if plan.sampler.steps > model.diffusion.num_timesteps:
            raise AblangError(
                f"{plan.sampler.steps} sampler steps are more than the model's "
                f"{model.diffusion.num_timesteps} training steps",
                hint=f"use 1..{model.diffusion.num_timesteps} steps",
                code="steps",
            )
        self.diffusion = Diffusion(model.diffusion, plan.sampler.steps)
        self.setup: RunSetup = make_setup(plan, model, self.diffusion)
        self.programs = ProgramCache(model.traced)
        self._schedules: dict[Variant, Schedule] = {}

    @classmethod
    def from_plan(cls, plan: Plan, device: str | torch.device | None = None) -> Session:
        """Load ``plan``'s model on ``device`` (default: the plan's ``device`` setting)."""
        if not isinstance(device, torch.device):
            device = pick_device(device or plan.device)
        return cls(plan, load_model(plan.model, device), device)

    @classmethod
    def from_model(
        cls,
        spec: ModelSpec,
        sampler: SamplerSpec | None = None,
        prompts: tuple[str, ...] = (),
        samples: int = 4,
        seed: int = 0,
        device: str | torch.device = "auto",
    ) -> Session:
        """A session for a model line alone: the plan with no variants that samples it."""
        plan = Plan(
            model=spec,
            sampler=sampler or SamplerSpec(),
            seed=seed,
            samples=samples,
            prompts=prompts,
        )
        return cls.from_plan(plan, device)

    @cached_property
    def executor(self) -> Executor:
        return Executor(self.model, self.diffusion, self.setup, self.device, self.programs)

    @cached_property
    def doubled(self) -> bool:
        """Whether guidance doubles the batch (the executor's rule, without drawing its noise)."""
        if "executor" in self.__dict__:
            return self.executor.doubled
        _, uncond = self.model.make_cond(list(self.setup.prompts[:1]), torch.device("cpu"))
        return self.setup.guidance != 1.0 and uncond is not None

    @cached_property
    def flops(self) -> FlopCounter:
        """Unet FLOPs per image; guidance by batch doubling counts two forwards per step."""
        return FlopCounter(self.model, self.programs, self.doubled)

    @property
    def images_per_forward(self) -> int:
        """Images in one Unet forward of one variant: the samples, twice with guidance."""
        return len(self.setup.seeds) * (2 if self.doubled else 1)

    @property
    def steps(self) -> list:
        """The sampler's steps in visiting order (``diffusion.Step``)."""
        return list(self.setup.steps)

    def schedule(self, variant: Variant) -> Schedule:
        """Which rule set ``variant`` runs at each of the session's steps (computed once)."""
        if variant not in self._schedules:
            self._schedules[variant] = schedule(variant, self.steps)
        return self._schedules[variant]

    def trajectory_flops(self, variant: Variant) -> float:
        """``variant``'s Unet FLOPs per image over the whole trajectory."""
        return self.flops.trajectory(self.schedule(variant))
