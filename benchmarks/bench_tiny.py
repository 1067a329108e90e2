"""The built-in model's quality and speed on seeds the project never tuned on.

    python benchmarks/bench_tiny.py [--weights PATH] [--seeds 1000,2000,...] [--runs 5]
                                    [--workers N --threads 1] [--no-speed]

Conditional accuracy of guided samples (10 per digit, DDPM 100 steps, guidance 3.0) for each
study seed (seed s uses noise seeds s..s+9, as ``seed s`` with ``samples 10`` in a study), with
one grid per seed in build/bench_tiny/; FID/KID of all these samples together (10 seeds x 100 =
1,000 images) against the 5,000 real digits, with the digit classifier's features; the floors:
as many real digits against the 5,000 (same sample size, so the same small-sample bias), and one
half of the real digits against the other; and the median seconds of one 100-step guided run of
16 images through the Executor (torch's default threads: 2 on the 2-core machine).

On a busy shared machine, ``--workers 2 --threads 1`` samples the seeds in two one-thread
processes: there, 2-thread processes ran 10x slower than 1-thread ones.

The default seeds 1000, 2000, ..., 10000 are held out: the weights were chosen on seeds 0, 7 and
123, never on these. ``--weights`` measures another checkpoint (same sampler, same noise).
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

HELD_OUT = tuple(range(1000, 10001, 1000))
DIGITS = [str(d) for d in range(10)]


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


def load(weights: str | None):
    """The shipped model, or the adapter loading another checkpoint in its place."""
    if weights is not None:
        path, shipped = Path(weights).resolve(), tiny.data_path
        tiny.data_path = lambda name: path if name == tiny.WEIGHTS else shipped(name)
        tiny.CHECKSUMS[tiny.WEIGHTS] = tiny.sha256(path)
    return load_adapter(ModelSpec("tiny")).load(torch.device("cpu"))


_WORKER_MODEL = None


def _init_worker(weights: str | None, threads: int | None) -> None:
    global _WORKER_MODEL
    if threads:
        torch.set_num_threads(threads)
    _WORKER_MODEL = load(weights)


def _sample_seed(seed: int) -> torch.Tensor:
    """One study seed's accuracy grid: 10 per digit, noise seeds seed..seed+9."""
    return sample(_WORKER_MODEL, DIGITS, 10, seed=seed)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--seeds", default=",".join(map(str, HELD_OUT)))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="threads for the accuracy samples")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="sample the seeds in this many processes of --threads threads each",
    )
    ap.add_argument("--out", default="build/bench_tiny")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.manual_seed(0)
    model = load(args.weights)
    print(
        f"tiny ({args.weights or 'shipped'}, sha256 {model.checksum[:12]}): "
        f"{sum(p.numel() for p in model.unet.parameters()) / 1e6:.2f} M parameters, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    if not args.no_speed:
        times = []
        for r in range(args.runs):
            _, _, secs = sample(model, DIGITS[:8], 2, seed=100 + r)
            times.append(secs)
        print(
            f"one 100-step guided run of 16 images: median {statistics.median(times):.2f} s "
            f"(runs: {', '.join(f'{t:.2f}' for t in times)})"
        )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    prompts = [d for d in DIGITS for _ in range(10)]
    by_seed: dict[int, torch.Tensor] = {}

    def report(seed: int, images: torch.Tensor) -> None:
        by_seed[seed] = images
        ok = tiny.accuracy(images, prompts).float()
        sample_grid(images, prompts, out / f"seed{seed}.png", nrow=10)
        per_column = ok.view(10, 10).mean(0)  # column j: noise seed seed + j, every digit
        bad = [f"{seed + j} ({v:.1f})" for j, v in enumerate(per_column.tolist()) if v < 0.8]
        weak = f"  weak noise seeds: {', '.join(bad)}" if bad else ""
        print(f"seed {seed}: accuracy {ok.mean().item():.3f}{weak}", flush=True)

    if args.workers > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from multiprocessing import get_context

        with ProcessPoolExecutor(
            args.workers,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(args.weights, args.threads),
        ) as pool:
            futures = {pool.submit(_sample_seed, seed): seed for seed in seeds}
            for f in as_completed(futures):
                report(futures[f], f.result())
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        for seed in seeds:
            report(seed, sample(model, DIGITS, 10, seed=seed)[0])
    print(f"sampled {len(seeds)} seeds x 100 images in {time.perf_counter() - t0:.0f} s")
    all_images = [by_seed[seed] for seed in seeds]
    accs = [tiny.accuracy(im, prompts).float().mean().item() for im in all_images]
    print(
        f"accuracy over {len(seeds)} seeds: min {min(accs):.3f}, "
        f"median {statistics.median(accs):.3f}, mean {statistics.mean(accs):.3f}"
    )

    images = torch.cat(all_images)
    ref = tiny.reference_features()
    feats = tiny.features(images)
    real, labels = load_mnist()
    perm = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    same_size = tiny.features(real[perm[: len(images)]])
    half_a, half_b = (
        tiny.features(real[perm[: len(real) // 2]]),
        tiny.features(real[perm[len(real) // 2 :]]),
    )
    print(
        f"{len(images)} samples vs the {len(ref)} real digits: FID {fid_from_features(feats, ref):.3f}, "
        f"KID {kid_from_features(feats, ref):.5f}"
    )
    print(
        f"floor, {len(same_size)} real digits vs the {len(ref)}: FID {fid_from_features(same_size, ref):.3f}, "
        f"KID {kid_from_features(same_size, ref):.5f}"
    )
    print(
        f"floor, real half vs real half ({len(half_a)} each): FID {fid_from_features(half_a, half_b):.3f}, "
        f"KID {kid_from_features(half_a, half_b):.5f}"
    )
    acc_real = (tiny.load_classifier()(real).argmax(1) == labels).float().mean().item()
    print(f"(the classifier's own accuracy on the real digits: {acc_real:.3f})")


if __name__ == "__main__":
    main()
