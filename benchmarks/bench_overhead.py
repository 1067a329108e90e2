"""ablang's sampling overhead: an empty plan through the Executor vs a plain sampler loop.

    python benchmarks/bench_overhead.py [--n 16] [--steps 100] [--repeats 7] [--device cpu]

Both sides make the same images of the built-in model (DDPM, guidance 3.0 by batch doubling,
the same noise from ``make_noise``):

- **ablang**: ``Executor.baseline()``, the path every run's baseline takes: the traced
  ``GraphModule`` from the ``ProgramCache``, the executor's batching, guidance and bookkeeping
  (it keeps ``x`` of every step for the variants that share its prefix);
- **plain**: the loop a person would write around the eager ``TinyUnet``: ``torch.cat`` for the
  guidance halves, ``Diffusion.ddpm_step``, nothing else. It feeds the Unet in the same memory
  format as ablang does (channels-last on CPU), so the ratio measures ablang's overhead only.

The two run interleaved (plain, ablang, plain, ablang, ...) after a warm-up, so that drift of
the machine hits both alike; the medians and their ratio are printed. Target: ratio <= 1.03.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from ablang.diffusion import Diffusion, make_noise, steps_of
from ablang.execute import Executor, RunSetup, make_setup
from ablang.models.base import LoadedModel
from ablang.models.registry import load_adapter
from ablang.plan import ModelSpec, Plan, SamplerSpec

GUIDANCE = 3.0
DIGITS = tuple(str(d) for d in range(10))


def make_setup_n(model: LoadedModel, diffusion: Diffusion, n: int, steps: int) -> RunSetup:
    """``n`` images: digits 0..9 in turn, image k with seed k."""
    plan = Plan(
        model=ModelSpec("tiny"), sampler=SamplerSpec("ddpm", steps, 0.0, GUIDANCE), samples=1
    )
    setup = make_setup(plan, model, diffusion)
    return dataclasses.replace(
        setup, prompts=tuple(DIGITS[k % 10] for k in range(n)), seeds=tuple(range(n))
    )


@torch.no_grad()
def plain_loop(
    model: LoadedModel,
    diffusion: Diffusion,
    prompts: list[str],
    seeds: list[int],
    device: torch.device,
) -> torch.Tensor:
    """Guided DDPM with the eager Unet: ``[N x C x H x W]`` images."""
    unet = model.unet
    n = len(seeds)
    x, noise = make_noise(model.image_shape, seeds, len(diffusion))
    x = x.to(device)
    y = torch.tensor([int(p) for p in prompts], device=device)
    y2 = torch.cat([y, torch.full_like(y, 10)])  # [cond; uncond]: 10 is the null label
    for step in steps_of(diffusion):
        t = torch.full((2 * n,), step.t, dtype=torch.long, device=device)
        xin = torch.cat([x, x])
        if model.channels_last:
            xin = xin.contiguous(memory_format=torch.channels_last)
        out = unet(xin, t, y2)  # (2N, C, H, W)
        cond, uncond = out[:n], out[n:]
        eps = uncond + GUIDANCE * (cond - uncond)
        x = diffusion.ddpm_step(x, step.chain, eps, noise[step.index].to(device))
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=16, help="images per run")
    ap.add_argument("--steps", type=int, default=100, help="DDPM steps")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs of each side")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)

    model = load_adapter(ModelSpec("tiny")).load(device)
    diffusion = Diffusion(model.diffusion, args.steps)
    setup = make_setup_n(model, diffusion, args.n, args.steps)
    prompts, seeds = list(setup.prompts), list(setup.seeds)
    executor = Executor(model, diffusion, setup, device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def time_ablang() -> tuple[float, torch.Tensor]:
        sync()
        t0 = time.perf_counter()
        images = executor.baseline().xs[-1]
        sync()
        return time.perf_counter() - t0, images

    def time_plain() -> tuple[float, torch.Tensor]:
        sync()
        t0 = time.perf_counter()
        images = plain_loop(model, diffusion, prompts, seeds, device).cpu()
        sync()
        return time.perf_counter() - t0, images

    print(
        f"tiny, {args.n} images, DDPM {args.steps} steps, guidance {GUIDANCE:g}, {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{'channels-last' if model.channels_last else 'contiguous'} inputs"
    )
    _, a = time_ablang()  # warm-up: the program is built, caches are filled
    _, p = time_plain()
    diff = (a - p).abs().max().item()
    print(f"same images: max |ablang - plain| = {diff:.2e}")
    plain, ablang = [], []
    for _ in range(args.repeats):
        plain.append(time_plain()[0])
        ablang.append(time_ablang()[0])
    mp, ma = statistics.median(plain), statistics.median(ablang)
    print(f"plain loop: median {mp:.3f} s  ({', '.join(f'{s:.3f}' for s in plain)})")
    print(f"ablang:     median {ma:.3f} s  ({', '.join(f'{s:.3f}' for s in ablang)})")
    print(f"ratio ablang / plain: {ma / mp:.3f} (target <= 1.03)")


if __name__ == "__main__":
    main()
