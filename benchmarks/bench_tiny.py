"""The built-in model's quality and speed, on this machine.

    python benchmarks/bench_tiny.py [--fid-samples 1000] [--runs 5]

Prints: conditional accuracy of guided samples (10 per digit, DDPM 100 steps, guidance 3.0),
FID/KID of --fid-samples guided samples against the 5,000 real digits (features of the shipped
digit classifier, through torch-fidelity), the same for as many real digits (the floor), and the
median seconds of one 100-step guided sampling run of 16 images. Writes the accuracy grid to
build/bench_tiny_grid.png.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from ablang.diffusion import Diffusion
from ablang.execute import Executor, make_setup
from ablang.measure import fid_from_features, kid_from_features
from ablang.models import tiny
from ablang.models.digits import load_mnist
from ablang.models.registry import load_adapter
from ablang.plan import ModelSpec, Plan, SamplerSpec
from ablang.report import sample_grid


def sample(model, prompts, per_prompt, seed=0, steps=100):
    plan = Plan(
        model=ModelSpec("tiny"),
        sampler=SamplerSpec("ddpm", steps, 0.0, 3.0),
        seed=seed,
        samples=per_prompt,
        prompts=tuple(prompts),
    )
    diffusion = Diffusion(model.diffusion, steps)
    setup = make_setup(plan, model, diffusion)
    ex = Executor(model, diffusion, setup, torch.device("cpu"))
    traj = ex.baseline()
    return traj.xs[-1], list(setup.prompts), traj.seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fid-samples", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_adapter(ModelSpec("tiny")).load(torch.device("cpu"))
    print(
        f"tiny: {sum(p.numel() for p in model.unet.parameters()) / 1e6:.2f} M parameters, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    times = []
    for r in range(args.runs):
        _, _, secs = sample(model, ["0", "1", "2", "3", "4", "5", "6", "7"], 2, seed=100 + r)
        times.append(secs)
    print(
        f"one 100-step guided run of 16 images: median {statistics.median(times):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in times)})"
    )

    images, prompts, _ = sample(model, [str(d) for d in range(10)], 10)
    acc = tiny.accuracy(images, prompts).float().mean().item()
    Path("build").mkdir(exist_ok=True)
    sample_grid(images, prompts, "build/bench_tiny_grid.png", nrow=10)
    print(f"conditional accuracy, 10 per digit, DDPM 100 steps, guidance 3.0: {acc:.3f}")

    per_digit = max(1, args.fid_samples // 10)
    t0 = time.perf_counter()
    images, prompts, _ = sample(model, [str(d) for d in range(10)], per_digit, seed=1000)
    ref = tiny.reference_features()
    feats = tiny.features(images)
    real, labels = load_mnist()
    pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[: len(images)]
    real_feats = tiny.features(real[pick])
    print(
        f"FID/KID of {len(images)} samples vs the 5,000 real digits ({time.perf_counter() - t0:.0f} s to sample): "
        f"FID {fid_from_features(feats, ref):.3f}, KID {kid_from_features(feats, ref):.5f}"
    )
    print(
        f"floor, {len(real_feats)} real digits vs the 5,000: FID {fid_from_features(real_feats, ref):.3f}, "
        f"KID {kid_from_features(real_feats, ref):.5f}"
    )
    acc_real = (tiny.load_classifier()(real).argmax(1) == labels).float().mean().item()
    print(f"(the classifier's own accuracy on the real digits: {acc_real:.3f})")


if __name__ == "__main__":
    main()
