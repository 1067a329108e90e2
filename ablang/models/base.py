"""What every model adapter gives the rest of ablang: a loaded model in model-independent terms.

Everything outside ``ablang/models`` speaks only of ``LoadedModel``: a traced Unet with its
component table, the diffusion it was trained with, and how prompts become conditioning.
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ablang.components import ComponentTable
from ablang.diffusion import DiffusionSpec
from ablang.plan import ModelSpec
from ablang.trace import TracedUnet

Cond = dict[str, Any]  # keyword inputs of the traced Unet besides x and timesteps
UnetCall = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


class TrajectorySampler(Protocol):
    """How the executor advances trajectories, whatever does the stepping: ablang's own DDPM/DDIM
    table (``ablang.trajectory.TableSampler``) or a diffusers scheduler
    (``ablang.models.diffusers_sched.SchedulerTrajectory``).

    A *state* is one trajectory of the run's N samples before some step: ``x`` and whatever the
    sampler keeps besides (a multistep solver's history, its step index, the generators).
    ``stateful`` samplers keep more than ``x``: the baseline then keeps a ``fork`` of its state
    before every step, so that a variant continues from exactly that state.
    """

    stateful: bool
    halves: tuple[str, str]  # the guided batch's halves in batch order ("cond" / "uncond")

    @property
    def timesteps(self) -> tuple[int | float, ...]:
        """The time each step's Unet call sees, in visiting order (what `for t in` windows test)."""
        ...

    def start(self, device: torch.device) -> Any: ...

    def resume(self, x: torch.Tensor, k: int, device: torch.device) -> Any:
        """The state before step ``k`` from ``x`` alone (only where not ``stateful``)."""
        ...

    def fork(self, state: Any) -> Any: ...

    def x(self, state: Any) -> torch.Tensor: ...

    def model_input(self, state: Any) -> torch.Tensor:
        """The Unet's ``x`` at the state's step; called once per step."""
        ...

    def model_t(self, k: int, rows: int, device: torch.device) -> torch.Tensor: ...

    def guided_output(
        self,
        unet: UnetCall,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Any,
        uncond: Any,
        guidance: float,
        channels: int,
        channels_last: bool,
        unet_uncond: UnetCall | None = None,
    ) -> torch.Tensor:
        """The (guided) model output at one step, in the sampler's batch order for guidance.
        With ``unet_uncond`` the halves run as two calls, ``unet`` on the conditional one (an
        intervention on one side of guidance)."""
        ...

    def step(self, state: Any, out: torch.Tensor) -> None:
        """Advance ``state`` by one step given the guided model output."""
        ...


@dataclass
class LoadedModel:
    """A model ready to sample from. ``unet`` is the eager model; ablang never modifies it."""

    label: str  # as in a study's model line
    unet: nn.Module
    traced: TracedUnet
    diffusion: DiffusionSpec
    image_shape: tuple[int, int, int]  # (C, H, W) of the images it makes
    checksum: str  # sha256 of the weights file
    default_guidance: float
    default_prompts: tuple[str, ...]
    # prompts (one per sample) -> (conditional inputs, unconditional inputs or None)
    make_cond: Callable[[list[str], torch.device], tuple[Cond, Cond | None]]
    # images [N x C x H x W] in [-1, 1] and their prompts -> [N] bool: the prompt is recognised
    accuracy: Callable[[torch.Tensor, list[str]], torch.Tensor] | None = None
    # images [N x C x H x W] in [-1, 1] -> [N] predicted class (the `identity` metric)
    predict: Callable[[torch.Tensor], torch.Tensor] | None = None
    # images -> [N x D] features for fid/kid, and the real data's features (the reference)
    features: Callable[[torch.Tensor], torch.Tensor] | None = None
    reference_features: Callable[[], torch.Tensor] | None = None
    # what a generated sampler needs to rebuild this model on its own (see ablang.emit)
    emit: dict[str, Any] = field(default_factory=dict)
    # the Unet runs channels-last (inputs are fed so; an adapter whose images have one channel,
    # which fit both layouts, loads the weights so): on CPU, small convolutions run faster
    channels_last: bool = False
    # x at the end of sampling -> images [N x C x H x W] in [-1, 1] (a latent model's VAE);
    # None: x is the image
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None
    # models that sample with their own scheduler (diffusers): (scheduler name or "pipeline",
    # steps, eta, seeds) -> the sampler; None: ablang's DDPM/DDIM table
    trajectory: Callable[[str, int, float, tuple[int, ...]], TrajectorySampler] | None = None

    @property
    def table(self) -> ComponentTable:
        return self.traced.table


class ModelAdapter(ABC):
    """Loads one family of models from a study's ``model`` line."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._table: ComponentTable | None = None

    @abstractmethod
    def load(self, device: torch.device) -> LoadedModel: ...

    def component_table(self) -> ComponentTable:
        if self._table is None:
            model = self.load(torch.device("cpu"))
            # the image size lets `check` estimate a run's memory before anything runs
            self._table = dataclasses.replace(model.table, image_shape=tuple(model.image_shape))
        return self._table


def sha256_file(*paths: str | Path) -> str:
    """sha256 of the files' bytes, in the order given (a weights file, or the shards of one),
    read in chunks so that a multi-gigabyte checkpoint is not held in memory."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
