"""Gaussian diffusion for sampling: schedules, GLIDE-style respacing, DDPM and DDIM steps.

Conventions follow openai's improved-diffusion / guided-diffusion / GLIDE, so that ablang's
images for GLIDE match GLIDE's own sampler:

- ``t`` is on the training scale, 0 (clean) .. T-1 (pure noise); the model is always called with
  the original ``t`` of a respaced step (``rescale_timesteps=False``, as in GLIDE).
- ``space_timesteps(1000, 100)`` keeps ``round(i * 999 / 99)``: 0, 10, ..., 989, 999.
- The model predicts epsilon; with ``learn_sigma`` its extra channels interpolate the log variance
  between the posterior variance and beta (``LEARNED_RANGE``); otherwise the variance is the
  posterior's (``FIXED_SMALL``). ``x0`` predictions are clipped to [-1, 1].
- Classifier-free guidance doubles the batch: ``[cond; uncond]``, then
  ``eps = uncond + g * (cond - uncond)``; the variance channels come from the conditional half.

The progressive loop lives with the executor; this module gives one step at a time, so the
executor can switch programs per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t) -> model output


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal's cosine schedule."""

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

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
    """The training timesteps a respaced sampler visits, ascending (GLIDE's ``space_timesteps``
    with one section)."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"cannot respace {num_timesteps} timesteps to {steps} steps")
    if steps == 1:
        return [0]
    stride = (num_timesteps - 1) / (steps - 1)
    return sorted({round(i * stride) for i in range(steps)})


@dataclass(frozen=True)
class DiffusionSpec:
    """What a model was trained with. ``schedule`` is "cosine" or "linear"."""

    num_timesteps: int = 1000
    schedule: str = "cosine"
    learn_sigma: bool = False

    def betas(self) -> np.ndarray:
        if self.schedule == "cosine":
            return cosine_betas(self.num_timesteps)
        if self.schedule == "linear":
            return linear_betas(self.num_timesteps)
        raise ValueError(f"unknown noise schedule {self.schedule!r}")


class Diffusion:
    """Coefficients of one (possibly respaced) chain. Index ``i`` runs over the chain's own steps
    (0 = least noisy); ``timesteps[i]`` is the training ``t`` the model sees."""

    def __init__(self, spec: DiffusionSpec, steps: int | None = None) -> None:
        self.spec = spec
        base = spec.betas()
        acp_full = np.cumprod(1.0 - base)
        if steps is None or steps == spec.num_timesteps:
            self.timesteps = list(range(spec.num_timesteps))
            betas = base
        else:
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
        post_var = betas * (1.0 - acp_prev) / (1.0 - acp)
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

    def _split(self, out: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.spec.learn_sigma:
            return out[:, :channels], out[:, channels:]
        return out, None

    def predict_x0(self, x: torch.Tensor, i: int, eps: torch.Tensor) -> torch.Tensor:
        return (self.sqrt_recip_acp[i] * x - self.sqrt_recipm1_acp[i] * eps).clamp(-1, 1)

    def ddpm_step(
        self, x: torch.Tensor, i: int, out: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """Ancestral step from chain step ``i`` to ``i - 1``; ``out`` is the (guided) model output."""
        eps, v = self._split(out, x.shape[1])
        x0 = self.predict_x0(x, i, eps)
        mean = self.post_coef1[i] * x0 + self.post_coef2[i] * x
        if v is None:
            log_var: torch.Tensor | float = float(self.post_log_var[i])
        else:
            frac = (v + 1) / 2
            log_var = frac * math.log(self.betas[i]) + (1 - frac) * float(self.post_log_var[i])
        if i == 0:
            return mean
        std = torch.exp(0.5 * torch.as_tensor(log_var, dtype=x.dtype))
        return mean + std * noise

    def ddim_step(
        self, x: torch.Tensor, i: int, out: torch.Tensor, noise: torch.Tensor, eta: float = 0.0
    ) -> torch.Tensor:
        eps, _ = self._split(out, x.shape[1])
        x0 = self.predict_x0(x, i, eps)
        # re-derive eps from the clipped x0, as guided-diffusion's ddim_sample does
        eps = (self.sqrt_recip_acp[i] * x - x0) / self.sqrt_recipm1_acp[i]
        a, a_prev = self.alphas_cumprod[i], self.alphas_cumprod_prev[i]
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a)) * math.sqrt(1 - a / a_prev)
        mean = x0 * math.sqrt(a_prev) + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
        if i == 0 or sigma == 0.0:
            return mean
        return mean + sigma * noise


def guided(model_fn: Callable[..., torch.Tensor], guidance: float, channels: int):
    """Wrap ``model_fn(x, t, cond)`` into classifier-free guidance by batch doubling.

    ``cond`` and ``uncond`` are whatever the model takes as conditioning (labels, tokens), each
    with ``N`` rows. With ``guidance == 1`` the unconditional half would cancel exactly, so it is
    not computed: the result is the plain conditional prediction.
    """

    def fn(x: torch.Tensor, t: torch.Tensor, cond, uncond) -> torch.Tensor:
        if guidance == 1.0 or uncond is None:
            return model_fn(x, t, cond)
        n = x.shape[0]
        out = model_fn(torch.cat([x, x]), torch.cat([t, t]), _cat(cond, uncond))
        c_out, u_out = out[:n], out[n:]
        c_eps, u_eps = c_out[:, :channels], u_out[:, :channels]
        eps = u_eps + guidance * (c_eps - u_eps)
        return torch.cat([eps, c_out[:, channels:]], dim=1)

    return fn


def _cat(a, b):
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, dict):
        return {k: _cat(a[k], b[k]) for k in a}
    if isinstance(a, (tuple, list)):
        return type(a)(_cat(x, y) for x, y in zip(a, b))
    raise TypeError(f"cannot batch conditioning of type {type(a).__name__}")


def make_noise(
    shape: tuple[int, ...], seeds: list[int], steps: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Starting noise ``[N x C x H x W]`` and per-step noise ``[steps x N x C x H x W]``.

    Sample ``n`` draws everything from its own generator seeded with ``seeds[n]``, so a sample's
    trajectory does not depend on which other samples share its batch, and every variant sees
    exactly the same noise.
    """
    xs, noises = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        xs.append(torch.randn(shape, generator=g, dtype=dtype))
        noises.append(torch.randn((steps, *shape), generator=g, dtype=dtype))
    return torch.stack(xs), torch.stack(noises, dim=1)


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


def sample_step(
    diffusion: Diffusion,
    kind: str,
    x: torch.Tensor,
    step: Step,
    out: torch.Tensor,
    noise: torch.Tensor,
    eta: float = 0.0,
) -> torch.Tensor:
    """Advance ``x`` by one step given the (guided) model output ``out`` for it."""
    if kind == "ddpm":
        return diffusion.ddpm_step(x, step.chain, out, noise)
    if kind == "ddim":
        return diffusion.ddim_step(x, step.chain, out, noise, eta)
    raise ValueError(f"unknown sampler {kind!r}")


def progressive(
    eps_fn: Callable[[torch.Tensor, torch.Tensor, Step], torch.Tensor],
    diffusion: Diffusion,
    x: torch.Tensor,
    noise: torch.Tensor,
    kind: str = "ddpm",
    eta: float = 0.0,
    start: int = 0,
):
    """Yield ``(step, x_after)`` for every step from ``start`` on. ``eps_fn(x, t, step)`` is the
    (guided) model; ``noise`` is ``make_noise``'s per-step noise, ``[steps x N x ...]``."""
    for step in steps_of(diffusion)[start:]:
        t = torch.full((x.shape[0],), step.t, dtype=torch.long, device=x.device)
        out = eps_fn(x, t, step)
        x = sample_step(diffusion, kind, x, step, out, noise[step.index].to(x.device), eta)
        yield step, x
