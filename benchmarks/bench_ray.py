"""The same sweep locally and on a local Ray cluster, in one run: what Ray costs and what it buys.

    python benchmarks/bench_ray.py [--steps 10] [--by 250] [--samples 1] [--prompts 2]
                                   [--batch 1] [--workers 2] [--repeats 1] [--device cpu|cuda]

On the built-in model, ``sweep drop skip[*] for t in 0..1000 by BY`` (8 skips x 1000/BY windows),
guided DDPM. The driver runs the baseline once (as ``ablang run --ray`` does); then the variants
run as the chunks ``execute.batches`` forms (``--batch`` variants each):

- local: every chunk on this process's executor, one after the other;
- Ray, 1 worker: the same chunks through ``RayRunner`` on one worker: its wall time less the
  worker's own compute time is Ray's overhead (task submission, the baseline's states and the
  images through the object store, scheduling), printed per chunk and per variant;
- Ray, ``--workers`` workers: the same chunks spread over them, measured.

Also printed: ``ray.init`` (a local cluster's start), the workers' warm-up (process start, the
model loaded, the noise drawn), and the projected wall time on K workers:
``baseline + warm-up + ceil(chunks / K) * (compute + overhead per chunk)``, assuming K
workers each with what one worker had here (one GPU each on a GPU cluster). The images of every
way are compared with the local ones (they must be equal bit for bit). ``--device cuda``: the
driver and each worker on a GPU (one GPU per worker), against the local executor on the same GPU.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from ablang.distributed import ClusterPlan, RayRunner, connect, require_ray
from ablang.execute import batches
from ablang.parse import parse
from ablang.resolve import model_spec, resolve
from ablang.session import Session, component_table


def sweep_plan(steps: int, by: int, samples: int, prompts: int, device: str):
    digits = ", ".join(f'"{d}"' for d in range(prompts))
    text = (
        f"model tiny\nsampler ddpm steps {steps} guidance 3.0\nsamples {samples}\n"
        f"prompts {digits}\ndevice {device}\nsweep drop skip[*] for t in 0..1000 by {by}\n"
    )
    study = parse(text, "bench_ray.abl")
    spec = model_spec(study)
    assert spec is not None
    return resolve(study, component_table(spec))


def run_local(session: Session, groups, baseline) -> tuple[dict[str, torch.Tensor], float]:
    t0 = time.perf_counter()
    images = {}
    for group in groups:
        for s in session.executor.run_batch(group, baseline, "measure"):
            images[s.variant] = s.images
    return images, time.perf_counter() - t0


def run_ray(runner: RayRunner, session: Session, groups, baseline):
    """(images, wall seconds, the workers' own compute seconds summed over chunks)."""
    t0 = time.perf_counter()
    images, compute = {}, 0.0
    for group, got in runner.run_groups(groups, baseline, "measure", session.setup):
        compute += got[0].seconds * len(group)  # Samples.seconds: its share of the chunk
        for s in got:
            images[s.variant] = s.images
    return images, time.perf_counter() - t0, compute


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--by", type=int, default=250)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1, help="variants per chunk (one Ray task)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args()
    ray = require_ray()

    plan = sweep_plan(args.steps, args.by, args.samples, args.prompts, args.device)
    session = Session.from_plan(plan, args.device)
    gpus = 1 if args.device == "cuda" else 0
    t0 = time.perf_counter()
    baseline = session.executor.baseline()
    base_s = time.perf_counter() - t0
    variants = list(plan.variants[1:])
    groups = batches(variants, session.steps, args.batch)
    print(
        f"sweep: {len(variants)} variants in {len(groups)} chunks of <= {args.batch}, "
        f"{args.steps} steps, {len(session.setup.seeds)} images each, torch threads "
        f"{torch.get_num_threads()}; baseline {base_s:.2f} s"
    )

    started, init_s = connect("local")
    print(
        f"ray.init (a local cluster of {ray.cluster_resources().get('CPU', 0):.0f} CPUs): "
        f"{init_s:.2f} s"
    )
    local_s, one_s, many_s, compute_s = [], [], [], []
    warm: list[float] = []
    ok = True
    for _ in range(args.repeats):
        ref, s = run_local(session, groups, baseline)
        local_s.append(s)
        for k, walls in ((1, one_s), (args.workers, many_s)):
            t0 = time.perf_counter()
            runner = RayRunner(plan, ClusterPlan(k, gpus, args.device))
            loads = runner.warm_up()
            start_s = time.perf_counter() - t0
            warm.append(start_s)
            images, wall, compute = run_ray(runner, session, groups, baseline)
            runner.close()
            walls.append(wall)
            if k == 1:
                compute_s.append(compute)
            ok &= same(images, ref)
            print(
                f"  {k} worker{'s' * (k > 1)}: warm-up {start_s:.2f} s "
                f"(model load in the worker {max(loads):.2f} s), chunks {wall:.2f} s"
            )
    med = statistics.median
    local, one, many, compute = med(local_s), med(one_s), med(many_s), med(compute_s)
    overhead = max(0.0, one - compute)
    per_chunk = one / len(groups)
    print(f"local executor:         {local:8.2f} s  ({local / len(variants):.3f} s per variant)")
    print(f"Ray, 1 worker:          {one:8.2f} s  ({one / local:.2f}x local)")
    print(
        f"Ray, {args.workers} workers:        {many:8.2f} s  ({local / many:.2f}x faster than local)"
    )
    print(
        f"Ray overhead (1 worker, wall less the worker's compute): {overhead:.2f} s = "
        f"{1000 * overhead / len(groups):.0f} ms per chunk, "
        f"{1000 * overhead / len(variants):.0f} ms per variant"
    )
    print(f"images identical to the local run: {ok}")
    print("projected wall time (baseline + warm-up + chunks over K workers like this one):")
    for k in (1, 2, 4, 8, 16, 32, 64):
        t = base_s + med(warm) + math.ceil(len(groups) / k) * per_chunk
        print(f"  K={k:3d}: {t:8.2f} s  ({(base_s + local) / t:.2f}x the local run)")
    if started:
        ray.shutdown()


if __name__ == "__main__":
    main()
