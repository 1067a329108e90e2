"""Gaussian diffusion schedules: betas, GLIDE / guided-diffusion respacing, and the per-step
coefficient tables the sampler runtime (``ablang/runtime.py``) consumes.

Conventions follow openai's improved-diffusion / guided-diffusion / GLIDE, so that ablang's
images equal each family's own sampler (``tests/test_reference_adm.py``):

- ``t`` is on the training scale, 0 (clean) .. T-1 (pure noise). The model sees the original
  ``t`` of a respaced step, or with ``rescale_timesteps`` ``float(t) * 1000 / T``.
- ``space_timesteps(1000, 100)`` is guided-diffusion's, stride accumulated in floating point:
  0, 10, ..., 989, 999.
- The model predicts epsilon. Its variance is ``learned_range`` (extra channels interpolate the
  log variance between the posterior's and beta), ``fixed_small`` (the posterior's) or
  ``fixed_large`` (beta, its first entry the posterior's). ``x0`` predictions are clipped.

All schedule arithmetic is float64 numpy, in the reference's order of operations; the runtime
rounds to float32 where the reference's ``_extract_into_tensor`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ablang.runtime import StepTable


def cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule, written as guided-diffusion writes it (same floats)."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array(
        [
            min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
            for i in range(num_timesteps)
        ],
        dtype=np.float64,
    )


def linear_betas(num_timesteps: int) -> np.ndarray:
    scale = 1000 / num_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)


def space_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """The training timesteps a respaced sampler visits, ascending: guided-diffusion's
    ``space_timesteps(num_timesteps, [steps])``, whose stride accumulates in floating point (so
    21 steps of 1000 visit t = 499, not 500)."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"cannot respace {num_timesteps} timesteps to {steps} steps")
    stride = 1.0 if steps <= 1 else (num_timesteps - 1) / (steps - 1)
    taken, at = [], 0.0
    for _ in range(steps):
        taken.append(round(at))
        at += stride
    return sorted(set(taken))


@dataclass(frozen=True)
class DiffusionSpec:
    """What a model was trained with. ``schedule`` is "cosine" or "linear".

    The defaults are the built-in model's (fixed small variance, integer timesteps); each
    adapter states its family's: guided-diffusion's ``create_model_and_diffusion`` samples
    ``learn_sigma: false`` models with the *large* fixed variance unless ``sigma_small``.
    """

    num_timesteps: int = 1000
    schedule: str = "cosine"
    learn_sigma: bool = False
    sigma_small: bool = True  # without learn_sigma: fixed_small (True) or fixed_large
    rescale_timesteps: bool = False  # the model sees float(t) * 1000 / num_timesteps

    @property
    def variance(self) -> str:
        if self.learn_sigma:
            return "learned_range"
        return "fixed_small" if self.sigma_small else "fixed_large"

    def betas(self) -> np.ndarray:
        if self.schedule == "cosine":
            return cosine_betas(self.num_timesteps)
        if self.schedule == "linear":
            return linear_betas(self.num_timesteps)
        raise ValueError(f"unknown noise schedule {self.schedule!r}")


class Diffusion:
    """Coefficients of one (possibly respaced) chain. Index ``i`` runs over the chain's own steps
    (0 = least noisy); ``timesteps[i]`` is the training ``t`` the model sees. ``steps=None`` is
    the training chain; a step count (even T) is a respaced sampling chain."""

    def __init__(self, spec: DiffusionSpec, steps: int | None = None) -> None:
        self.spec = spec
        base = spec.betas()
        acp_full = np.cumprod(1.0 - base)
        if steps is None:  # the training process itself
            self.timesteps = list(range(spec.num_timesteps))
            betas = base
        else:  # as guided-diffusion's SpacedDiffusion, even for all steps: same floats
            self.timesteps = space_timesteps(spec.num_timesteps, steps)
            last, new = 1.0, []
            for t in self.timesteps:
                new.append(1 - acp_full[t] / last)
                last = acp_full[t]
            betas = np.array(new, dtype=np.float64)
        self.betas = betas
        acp = np.cumprod(1.0 - betas)
        acp_prev = np.append(1.0, acp[:-1])
        self.alphas_cumprod, self.alphas_cumprod_prev = acp, acp_prev
        self.sqrt_recip_acp = np.sqrt(1.0 / acp)
        self.sqrt_recipm1_acp = np.sqrt(1.0 / acp - 1)
        self.post_var = post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
        # the posterior variance is 0 at the chain's start; clip the log as improved-diffusion does
        self.post_log_var = np.log(np.append(post_var[1], post_var[1:]))
        self.post_coef1 = betas * np.sqrt(acp_prev) / (1.0 - acp)
        self.post_coef2 = (1.0 - acp_prev) * np.sqrt(1.0 - betas) / (1.0 - acp)

    def __len__(self) -> int:
        return len(self.timesteps)

    @property
    def visit_order(self) -> list[int]:
        """Training timesteps in the order a sampler visits them: T-1 first, 0 last."""
        return self.timesteps[::-1]

    def q_sample(self, x0: torch.Tensor, i: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise clean images ``x0`` to chain steps ``i`` (``[N]``)."""
        acp = torch.as_tensor(self.alphas_cumprod, dtype=torch.float64)[i.cpu()]
        a = acp.sqrt().float().to(x0.device)[:, None, None, None]
        b = (1 - acp).sqrt().float().to(x0.device)[:, None, None, None]
        return a * x0 + b * noise

    def fixed_log_var(self) -> np.ndarray:
        """The fixed variance's log per chain step (guided-diffusion's p_mean_variance)."""
        if self.spec.variance == "fixed_large":
            return np.log(np.append(self.post_var[1], self.betas[1:]))
        return self.post_log_var

    def table(self, kind: str = "ddpm", eta: float = 0.0) -> StepTable:
        """The runtime's per-step numbers, in visiting order (chain index ``len - 1`` first)."""
        if kind not in ("ddpm", "ddim"):
            raise ValueError(f"unknown sampler {kind!r}")
        order = list(range(len(self) - 1, -1, -1))

        def col(values: np.ndarray) -> tuple[float, ...]:
            return tuple(float(values[i]) for i in order)

        scale = 1000.0 / self.spec.num_timesteps if self.spec.rescale_timesteps else None
        return StepTable(
            timesteps=tuple(self.timesteps[i] for i in order),
            time_scale=scale,
            kind=kind,
            eta=float(eta),
            variance=self.spec.variance,
            sqrt_recip_acp=col(self.sqrt_recip_acp),
            sqrt_recipm1_acp=col(self.sqrt_recipm1_acp),
            post_coef1=col(self.post_coef1),
            post_coef2=col(self.post_coef2),
            log_var=col(self.fixed_log_var()),
            max_log=col(np.log(self.betas)),
            acp=col(self.alphas_cumprod),
            acp_prev=col(self.alphas_cumprod_prev),
        )


@dataclass(frozen=True)
class Step:
    """One step of a sampling run: ``index`` 0 is the first (noisiest) step, ``t`` its training
    timestep, ``chain`` its index in the respaced chain (``len - 1 - index``)."""

    index: int
    t: int
    chain: int


def steps_of(diffusion: Diffusion) -> list[Step]:
    n = len(diffusion)
    return [Step(k, diffusion.timesteps[n - 1 - k], n - 1 - k) for k in range(n)]
