"""Emitted accelerated samplers against the emitted baseline: speed and quality, in one run.

    python benchmarks/bench_accelerate.py [--study studies/accelerate.abl] [--variant NAME ...]
        [--emitted PATH.py ...] [--searched PATH.py] [--n 2] [--quality-n N] [--prompts 0,1,...,9]
        [--repeats 3] [--threads N]

For each variant of the study (default: its named variants), the study's baseline and the variant
are emitted as standalone samplers (``ablang.emit``, into a temporary directory) and imported; the
model is loaded once and handed to both. Each repeat times one ``sample()`` of the baseline and
one of the variant, alternately (baseline first on even repeats, variant first on odd ones), with
the same n, prompts and seed; speedups use the medians. One untimed run of each sampler comes
first (warm-up); its images are the ones measured.

``--emitted PATH.py`` benchmarks a sampler file written elsewhere (the result of a ``search``,
which is not among the study's variants, or any ``ablang emit`` output) against the same
baseline, instead of the study's variants; it must be for the same model, sampler and steps.

``--searched PATH.py`` is ``--emitted`` for the best variant of the study's search: its row is
named ``searched``, and unless ``--seed`` says otherwise the seeds start after every seed the
search saw (the study's and its validation seeds), so its figures are on images the search
never optimised on nor validated on. ``--quality-n N`` measures ssim and fid on N images per
prompt (the untimed warm-up run) while the timed runs keep ``--n`` (fid wants about 1,000
images; timing does not need them).

Columns:
  FLOPs x     FLOP-bound speedup: the Unet FLOPs of the baseline sampler's whole run over the
              variant's, counted by torch's FlopCounterMode on one ``sample()`` of one image (so
              guidance doubling and cache reuse count as they really run)
  base s      median seconds of the baseline sampler, var s: of the variant's
  wall x      base s / var s
  wall/FLOPs  the share of the FLOP-bound speedup the wall clock sees (target >= 0.95)
  ssim        the variant's images against the baseline's of the same seeds
  fid base    FID of the variant's images against the baseline's (tiny's classifier features)
  fid ref     FID against the 5,000 real digits (the baseline row: the baseline's own)

Timing needs a quiet machine; on small settings (``--n 1 --prompts 3 --repeats 1``) it only
checks that everything works.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ablang.commands.check import check_file
from ablang.emit import emit_sampler
from ablang.errors import render_errors
from ablang.measure import fid_from_features, image_metrics
from ablang.models.registry import load_adapter
from ablang.plan import Plan, Variant


@dataclass
class Sampler:
    """One imported sampler module and what was measured of it."""

    name: str
    path: Path
    module: object
    flops: float = 0.0
    images: torch.Tensor | None = None
    seconds: list[float] = field(default_factory=list)


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pick_variants(plan: Plan, names: list[str]) -> list[Variant]:
    if not names:
        named = [v for v in plan.variants if v.origin == "variant"]
        return named or list(plan.variants[1:])
    out = []
    for name in names:
        try:
            out.append(plan.variant(name))
        except KeyError:
            search = any(s.name == name for s in plan.searches)
            why = (
                "it is a search: emit its result and pass --emitted PATH.py"
                if search
                else ("it has: " + ", ".join(v.name for v in plan.variants))
            )
            sys.exit(f"bench_accelerate: the study has no variant {name!r}; {why}")
    return out


def unseen_seed(plan: Plan) -> int:
    """The first seed after every seed the study's searches saw: the study's own and each
    search's validation seeds."""
    last = plan.seed + plan.samples
    for search in plan.searches:
        if search.validation is not None:
            last = max(last, search.validation.seed + search.validation.samples)
    return last


def same_setting(base, other, path: Path) -> None:
    """An --emitted file must sample like the baseline: same model weights, sampler and steps."""
    for attr in ("CHECKSUM", "SAMPLER", "SCHEDULE", "GUIDANCE", "IMAGE_SHAPE"):
        if getattr(base, attr) != getattr(other, attr):
            sys.exit(
                f"bench_accelerate: {path} has {attr} = {getattr(other, attr)!r}, the study's baseline "
                f"{getattr(base, attr)!r}; emit it from the same study setting"
            )


def count_flops(module, model, prompt: str, device: str) -> float:
    """Unet FLOPs of one ``sample()`` of one image, guidance and cache reuse included."""
    counter = FlopCounterMode(display=False)
    with counter:
        module.sample(n=1, prompts=[prompt], seed=0, device=device, model=model)
    return float(counter.get_total_flops())


def timed(
    module, model, n: int, prompts: list[str], seed: int, device: str
) -> tuple[float, torch.Tensor]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    images = module.sample(n=n, prompts=prompts, seed=seed, device=device, model=model)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0, images.cpu()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="studies/accelerate.abl")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="a variant of the study (repeatable; default: its named variants)",
    )
    ap.add_argument(
        "--emitted",
        action="append",
        default=[],
        type=Path,
        metavar="PATH.py",
        help="an already emitted sampler to benchmark instead of the study's variants (repeatable)",
    )
    ap.add_argument(
        "--searched",
        type=Path,
        default=None,
        metavar="PATH.py",
        help="the study's searched sampler, measured on seeds the search never saw",
    )
    ap.add_argument("--n", type=int, default=2, help="images per prompt")
    ap.add_argument(
        "--quality-n", type=int, default=None, help="images per prompt for ssim/fid (default: --n)"
    )
    ap.add_argument("--prompts", default=None, help="comma-separated (default: the study's)")
    ap.add_argument("--seed", type=int, default=None, help="default: the study's")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each sampler per variant")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    checked = check_file(args.study)
    if checked.errors or checked.plan is None:
        print(render_errors(list(checked.errors), checked.text, args.study), file=sys.stderr)
        return 2
    plan = checked.plan
    prompts = args.prompts.split(",") if args.prompts else list(plan.prompts)
    seed = plan.seed if args.seed is None else args.seed
    if args.searched is not None and args.seed is None:
        seed = unseen_seed(plan)
    model = load_adapter(plan.model).load(torch.device(args.device))
    from ablang.compile import ProgramCache

    programs = ProgramCache(model.traced)
    tmp = tempfile.TemporaryDirectory(prefix="bench_accelerate_")
    out = Path(tmp.name)

    base = Sampler(
        "baseline", emit_sampler(plan, plan.baseline, model, out / "baseline.py", programs), None
    )
    base.module = load_module(base.path, "emitted_baseline")
    samplers: list[Sampler] = []
    if args.searched is not None:
        module = load_module(args.searched, "emitted_searched")
        same_setting(base.module, module, args.searched)
        samplers.append(Sampler("searched", args.searched, module))
    if args.emitted:
        for k, path in enumerate(args.emitted):
            module = load_module(path, f"emitted_{k}")
            same_setting(base.module, module, path)
            samplers.append(Sampler(path.stem, path, module))
    elif args.searched is None:
        for k, v in enumerate(pick_variants(plan, args.variant)):
            path = emit_sampler(plan, v, model, out / f"variant_{k}.py", programs)
            samplers.append(Sampler(v.name, path, load_module(path, f"emitted_{k}")))

    quality_n = args.quality_n or args.n
    unet = base.module.load_model(args.device)  # one model for every sampler: loading is not timed
    print(
        f"{plan.source}: {len(samplers)} samplers vs the baseline on {model.label}, "
        f"{plan.sampler.kind} {plan.sampler.steps} steps, {args.n} x {len(prompts)} images "
        f"timed, {quality_n} x {len(prompts)} measured, seeds from {seed}, "
        f"{args.repeats} repeats, {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    for s in [base, *samplers]:
        s.flops = count_flops(s.module, unet, prompts[0], args.device)
        _, s.images = timed(s.module, unet, quality_n, prompts, seed, args.device)  # warm-up
    pairs: dict[str, list[float]] = {s.name: [] for s in samplers}  # baseline seconds next to each
    for r in range(args.repeats):
        for s in samplers:
            order = [base, s] if r % 2 == 0 else [s, base]
            for who in order:
                secs, _ = timed(who.module, unet, args.n, prompts, seed, args.device)
                (pairs[s.name] if who is base else s.seconds).append(secs)
        print(f"  repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    features, reference = model.features, model.reference_features
    if len(base.images) < 2:  # fid needs a covariance: at least 2 images
        features = None
    base_feats = features(base.images) if features else None
    ref = reference() if reference and features else None
    rows = []
    base_fid_ref = (
        fid_from_features(base_feats, ref) if base_feats is not None and ref is not None else None
    )
    all_base = [x for v in pairs.values() for x in v]
    rows.append(
        (
            "baseline",
            1.0,
            statistics.median(all_base) if all_base else None,
            None,
            1.0,
            None,
            1.0,
            0.0 if features else None,
            base_fid_ref,
        )
    )
    for s in samplers:
        flop_x = base.flops / s.flops
        base_s, var_s = (
            (statistics.median(pairs[s.name]), statistics.median(s.seconds))
            if s.seconds
            else (None, None)
        )
        wall_x = base_s / var_s if s.seconds else None
        ssim = image_metrics(("ssim",), base.images, s.images)["ssim"]
        fid_base = fid_ref = None
        if features:
            feats = features(s.images)
            fid_base = fid_from_features(feats, base_feats)
            fid_ref = fid_from_features(feats, ref) if ref is not None else None
        rows.append(
            (
                s.name,
                flop_x,
                base_s,
                var_s,
                wall_x,
                wall_x / flop_x if wall_x else None,
                ssim,
                fid_base,
                fid_ref,
            )
        )
    print_table(rows)
    tmp.cleanup()
    return 0


def print_table(rows) -> None:
    head = (
        "sampler",
        "FLOPs x",
        "base s",
        "var s",
        "wall x",
        "wall/FLOPs",
        "ssim",
        "fid base",
        "fid ref",
    )
    fmt = ("{}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.3f}", "{:.2f}", "{:.2f}")
    cells = [[f.format(v) if v is not None else "-" for f, v in zip(fmt, row)] for row in rows]
    widths = [max(len(h), *(len(c[k]) for c in cells)) for k, h in enumerate(head)]

    def line(cs) -> str:
        return "  ".join(
            c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(cs, widths))
        )

    print(line(head))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print(line(c))


if __name__ == "__main__":
    sys.exit(main())
