"""trajectory: ablang's own DDPM/DDIM chain (``ablang/runtime.py``'s step table) as a
``TrajectorySampler``, the executor's view of a sampler.

Its state is ``x`` and the step index; the per-step noise is drawn up front per seed
(``runtime.make_noise``), so a state needs nothing else and a variant restarts from the
baseline's ``x`` alone (``stateful`` is False: the baseline keeps no forks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ablang import runtime
from ablang.models.base import UnetCall
from ablang.runtime import StepTable


@dataclass
class TableState:
    x: torch.Tensor
    k: int


class TableSampler:
    """``runtime``'s DDPM/DDIM steps over a ``StepTable`` with per-seed noise."""

    stateful = False
    halves = ("cond", "uncond")  # runtime.guided_output's batch: [cond; uncond]

    def __init__(self, table: StepTable, shape: Sequence[int], seeds: Sequence[int]) -> None:
        self.table = table
        self.x_T, self.noise = runtime.make_noise(shape, list(seeds), len(table))

    @property
    def timesteps(self) -> tuple[int | float, ...]:
        return tuple(self.table.timesteps)

    def start(self, device: torch.device) -> TableState:
        return TableState(self.x_T.to(device), 0)

    def resume(self, x: torch.Tensor, k: int, device: torch.device) -> TableState:
        return TableState(x.to(device), k)

    def fork(self, state: TableState) -> TableState:
        return TableState(state.x, state.k)  # steps replace x, never write into it

    def x(self, state: TableState) -> torch.Tensor:
        return state.x

    def model_input(self, state: TableState) -> torch.Tensor:
        return state.x

    def model_t(self, k: int, rows: int, device: torch.device) -> torch.Tensor:
        return runtime.model_timesteps(self.table, k, rows, device)

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
        if unet_uncond is not None:
            return runtime.guided_halves(
                unet, unet_uncond, x, t, cond, uncond, guidance, channels, channels_last
            )
        return runtime.guided_output(unet, x, t, cond, uncond, guidance, channels, channels_last)

    def step(self, state: TableState, out: torch.Tensor) -> None:
        noise = runtime.step_noise(self.noise, state.k, state.x)
        state.x = runtime.step(self.table, state.k, state.x, out, noise)
        state.k += 1
