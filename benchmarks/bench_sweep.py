"""What a sweep costs: every variant run on its own, against ablang's shared prefix and batches.

    python benchmarks/bench_sweep.py [--samples 2] [--steps 100] [--by 100] [--repeats 3]
    python benchmarks/bench_sweep.py --samples 1 --steps 10 --prompts 2 --repeats 1   # a quick look

On the built-in model, ``sweep drop skip[*] for t in 0..1000 by 100`` (8 skips x 10 windows = 80
variants), guided DDPM (guidance 3.0: two Unet rows per image), ``--samples`` images of each of
``--prompts`` digits. Both ways compute the baseline and every variant's final images in the same
process, one after the other:

- naive: the baseline, then every variant as a full trajectory from x_T, one at a time (the
  accelerate-mode programs: nothing is computed that the variant does not need);
- ablang: the baseline once, then the variants grouped by the step where their window starts,
  each group started from the baseline's x at that step (the steps before it are the
  baseline's), its variants the chunks of one batched forward (measure mode, per-chunk masks);
  as ``ablang run`` does it, with the same automatic batch size unless ``--batch`` says otherwise.

Prints the Unet image-forward evaluations of each (a batched forward of k chunks counts k
evaluations per row: batching saves wall time, not evaluations), their ratio, the wall seconds
(medians over ``--repeats``) and their ratio, and the largest difference between the two ways'
images (they compute the same images; batch sizes may change a few ULPs).

What can be shared honestly: a variant's trajectory equals the baseline's up to its window's
first step, and nothing after it (its x differs from then on). With uniform windows the share of
steps a variant runs is (1 + 2 + ... + W) / W^2 per window sweep -- 55% for 10 windows -- so the
evaluation ratio is (1 + 80 * 0.55) / 81 = 0.556 at best for this sweep.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ablang.compile import schedule
from ablang.diffusion import Diffusion
from ablang.execute import Executor, batches, make_setup
from ablang.models.registry import load_adapter
from ablang.parse import parse
from ablang.plan import ModelSpec, Variant
from ablang.resolve import resolve
from ablang.run import auto_batch

CPU = torch.device("cpu")


def sweep_plan(model, steps: int, by: int, samples: int, prompts: int):
    digits = ", ".join(f'"{d}"' for d in range(prompts))
    text = (
        f"model tiny\nsampler ddpm steps {steps} guidance 3.0\nsamples {samples}\n"
        f"prompts {digits}\nsweep drop skip[*] for t in 0..1000 by {by}\n"
    )
    return resolve(parse(text, "bench_sweep.abl"), model.table)


@torch.no_grad()
def naive(ex: Executor, variants: list[Variant]) -> tuple[dict[str, torch.Tensor], int, float]:
    """The baseline and every variant from x_T, one at a time."""
    before, t0 = ex.evaluations, time.perf_counter()
    out = {"baseline": ex.baseline().xs[-1]}
    steps = list(ex.setup.steps)
    for v in variants:
        sched = schedule(v, steps)
        x, cache = ex.x_T.to(ex.device), {}
        for step in steps:
            x = ex.forward(x, step, [sched.per_step[step.index]], [cache], "accelerate")
        out[v.name] = x.cpu()
    return out, ex.evaluations - before, time.perf_counter() - t0


@torch.no_grad()
def shared(
    ex: Executor, variants: list[Variant], chunks: int
) -> tuple[dict[str, torch.Tensor], int, float]:
    """The baseline once, then batched groups of variants from the baseline's prefix."""
    before, t0 = ex.evaluations, time.perf_counter()
    baseline = ex.baseline()
    out = {"baseline": baseline.xs[-1]}
    for group in batches(variants, list(ex.setup.steps), chunks):
        for s in ex.run_batch(group, baseline, "measure"):
            out[s.variant] = s.images
    return out, ex.evaluations - before, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2, help="images per digit")
    ap.add_argument("--prompts", type=int, default=10, help="digits 0..N-1")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--by", type=int, default=100, help="window width in t")
    ap.add_argument(
        "--repeats", type=int, default=3, help="runs of each way; wall time is the median"
    )
    ap.add_argument(
        "--batch", type=int, default=0, help="variants per batched forward (0: as ablang run)"
    )
    args = ap.parse_args()

    model = load_adapter(ModelSpec("tiny")).load(CPU)
    plan = sweep_plan(model, args.steps, args.by, args.samples, args.prompts)
    variants = list(plan.variants[1:])
    diffusion = Diffusion(model.diffusion, args.steps)
    ex = Executor(model, diffusion, make_setup(plan, model, diffusion), CPU)
    rows = ex.n * (2 if ex.doubled else 1)
    chunks = args.batch or auto_batch(model, rows)
    print(
        f"sweep drop skip[*] for t in 0..1000 by {args.by}: {len(variants)} variants on tiny, "
        f"ddpm {args.steps} steps, guidance 3, {ex.n} images ({rows} Unet rows per variant-step), "
        f"{chunks} variants per batched forward; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )

    times: dict[str, list[float]] = {"naive": [], "ablang": []}
    evals: dict[str, int] = {}
    images: dict[str, dict[str, torch.Tensor]] = {}
    for r in range(args.repeats):
        for name, fn in (
            ("naive", lambda: naive(ex, variants)),
            ("ablang", lambda: shared(ex, variants, chunks)),
        ):
            out, n, secs = fn()
            times[name].append(secs)
            evals[name] = n
            images[name] = out
            print(f"  run {r + 1}/{args.repeats} {name}: {n} evaluations, {secs:.1f} s", flush=True)

    wall = {k: statistics.median(v) for k, v in times.items()}
    diff = max(
        float((images["naive"][k] - images["ablang"][k]).abs().max()) for k in images["naive"]
    )
    print()
    print(f"{'':8}{'Unet image-forwards':>22}{'wall s (median)':>18}")
    for k in ("naive", "ablang"):
        print(f"{k:8}{evals[k]:>22,}{wall[k]:>18.1f}")
    print(
        f"{'ratio':8}{evals['ablang'] / evals['naive']:>22.3f}{wall['ablang'] / wall['naive']:>18.3f}"
    )
    steps = list(ex.setup.steps)
    share = sum(len(steps) - schedule(v, steps).first_active for v in variants) / (
        len(variants) * len(steps)
    )
    print(
        f"each variant runs {share:.1%} of the steps on average (the rest is the baseline's prefix)"
    )
    print(f"largest difference between the two ways' images: {diff:.2e}")


if __name__ == "__main__":
    main()
