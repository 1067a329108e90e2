"""Emitted accelerated samplers against the emitted baseline: speed and quality, in one run.

    python benchmarks/bench_accelerate.py [--study studies/accelerate.abl] [--variant NAME ...]
        [--emitted PATH.py ...] [--searched PATH.py] [--n 2] [--quality-n N] [--prompts 0,1,...,9]
        [--repeats 3] [--threads N]
    python benchmarks/bench_accelerate.py --glide [--glide-channels 64] [--steps 10] [...]

For each variant of the study (default: its named variants), the study's baseline and the variant
are emitted as standalone samplers (``ablang.emit``, into a temporary directory) and imported; the
model is loaded once and handed to both. Each repeat times one ``sample()`` of the baseline and
one of the variant, alternately (baseline first on even repeats, variant first on odd ones), with
the same n, prompts and seed; speedups use the medians. One untimed run of each sampler comes
first (warm-up); its images are the ones measured.

``--emitted PATH.py`` benchmarks a sampler file written elsewhere (the result of a ``search``,
which is not among the study's variants, or any ``ablang emit`` output) against the same
baseline, instead of the study's variants; it must be for the same model, sampler and steps.

``--glide`` is the paper's own figure on its architecture: ``studies/glide_fast.abl`` (or
``--study``) on GLIDE's base Unet with random weights (timing needs no trained ones), built by
glide-text2im at ``--glide-channels`` base width (192 is the published model; the default 64, a
ninth of its conv FLOPs, with a 4-layer text transformer 128 wide, is sized for a quiet CPU, 32
for a busy one) and sampled with ``--steps`` respaced steps (default 10) instead of the study's
100; by default one image of each of the study's first two prompts. The zero-initialised output
layers get small random values, so every block reaches the image. The paper reports about 27%
less sampling time for its accelerated sampler; the study's ``fast`` variant is that schedule.
Without glide-text2im (not on PyPI) it says so and exits 0.

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
  FLOPs -%    the FLOP-bound reduction, 1 - 1 / (FLOPs x); wall -%: the wall clock's
  base s      median seconds of the baseline sampler, var s: of the variant's
  wall x      base s / var s
  wall/FLOPs  the share of the FLOP-bound speedup the wall clock sees (target >= 0.95)
  ssim        the variant's images against the baseline's of the same seeds
  fid base    FID of the variant's images against the baseline's (tiny's classifier features)
  fid ref     FID against the 5,000 real digits (the baseline row: the baseline's own)

Under the table: each variant's ssim to four places with its 95% bootstrap interval over the
images, since a bound like ssim >= 0.90 is judged on the unrounded mean.

Timing needs a quiet machine; on small settings (``--n 1 --prompts 3 --repeats 1``) it only
checks that everything works.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import re
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
from ablang.errors import AblangErrors, render_errors
from ablang.measure import fid_from_features, per_image_change
from ablang.models import ModelUnavailable, component_table
from ablang.models.registry import load_adapter
from ablang.parse import parse
from ablang.plan import Plan, Variant
from ablang.resolve import model_spec, resolve
from ablang.stats import mean_interval

GLIDE_STUDY = "studies/glide_fast.abl"
PAPER_REDUCTION = 0.27  # the paper's accelerated GLIDE sampler: about 27% less sampling time


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
    """An --emitted file must sample like the baseline: same model weights, sampler, steps and
    noise (SEED_STRIDE: files from before `noise per image` have none, and share noise)."""
    for attr in ("CHECKSUM", "SAMPLER", "SCHEDULE", "GUIDANCE", "IMAGE_SHAPE", "SEED_STRIDE"):
        if getattr(base, attr, 0) != getattr(other, attr, 0):
            sys.exit(
                f"bench_accelerate: {path} has {attr} = {getattr(other, attr, 0)!r}, the study's "
                f"baseline {getattr(base, attr, 0)!r}; emit it from the same study setting"
            )


def glide_options(channels: int) -> dict:
    """GLIDE base's options at another width: every level, block, attention resolution and the
    64x64 image kept, so a variant's FLOP share is the published model's up to the width."""
    return {
        "num_channels": channels,
        "num_head_channels": math.gcd(64, channels),  # 64 as published, where the width allows
        "xf_width": 128,
        "xf_layers": 4,
        "xf_heads": 4,
    }


def glide_plan(study_path: str, steps: int, channels: int, out: Path) -> Plan | str:
    """The study on random weights of GLIDE's architecture, with ``steps`` sampler steps; a
    sentence saying why not when the options or the study do not fit."""
    try:
        from ablang.models.glide import build_model, options

        opts = options(glide_options(channels))
    except ModelUnavailable as e:
        return e.message
    text = Path(study_path).read_text(encoding="utf-8")
    text, found = re.subn(r"(?m)^(sampler\b[^#\n]*?\bsteps\s+)\d+", rf"\g<1>{steps}", text)
    if found != 1:
        return f"{study_path} has no `sampler ... steps N` line to set to {steps} steps"
    model = build_model(opts)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # GLIDE zero-initialises its output layers
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    torch.save(model.state_dict(), out / "glide_random.pt")
    (out / "glide_random.json").write_text(json.dumps(glide_options(channels)))
    try:
        study = parse(text, study_path)
        spec = model_spec(study)
        if spec is None or spec.kind != "glide":
            return f"{study_path} is not a study of `model glide`"
        # The study names the published checkpoint; the width lives in the config the adapter
        # reads (the study syntax has none for glide).
        spec = dataclasses.replace(
            spec, path=str(out / "glide_random.pt"), config=str(out / "glide_random.json")
        )
        plan = resolve(study, component_table(spec), source_path=study_path)
    except AblangErrors as e:
        return render_errors(list(e.errors), text, study_path)
    return dataclasses.replace(plan, model=spec)


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
    ap.add_argument("--study", default=None, help=f"default: studies/accelerate.abl, {GLIDE_STUDY}")
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
    ap.add_argument("--n", type=int, default=None, help="images per prompt (default 2, --glide 1)")
    ap.add_argument(
        "--quality-n", type=int, default=None, help="images per prompt for ssim/fid (default: --n)"
    )
    ap.add_argument(
        "--prompts",
        default=None,
        help="comma-separated (default: the study's; --glide: its first two)",
    )
    ap.add_argument("--seed", type=int, default=None, help="default: the study's")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each sampler per variant")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--glide",
        action="store_true",
        help="GLIDE's architecture with random weights (needs glide-text2im)",
    )
    ap.add_argument("--glide-channels", type=int, default=64, help="--glide: base width (192)")
    ap.add_argument("--steps", type=int, default=10, help="--glide: sampler steps")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="bench_accelerate_")
    out = Path(tmp.name)

    if args.glide:
        if importlib.util.find_spec("glide_text2im") is None:
            print(
                "bench_accelerate --glide: skipped: glide-text2im is not installed (not on PyPI: "
                "pip install git+https://github.com/openai/glide-text2im)",
                file=sys.stderr,
            )
            return 0
        args.study = args.study or GLIDE_STUDY
        got = glide_plan(args.study, args.steps, args.glide_channels, out)
        if isinstance(got, str):
            print(f"bench_accelerate --glide: {got}", file=sys.stderr)
            return 2
        plan = got
        n = args.n or 1
        prompts = args.prompts.split(",") if args.prompts else list(plan.prompts[:2])
    else:
        args.study = args.study or "studies/accelerate.abl"
        checked = check_file(args.study)
        if checked.errors or checked.plan is None:
            print(render_errors(list(checked.errors), checked.text, args.study), file=sys.stderr)
            return 2
        plan = checked.plan
        n = args.n or 2
        prompts = args.prompts.split(",") if args.prompts else list(plan.prompts)
    seed = plan.seed if args.seed is None else args.seed
    if args.searched is not None and args.seed is None:
        seed = unseen_seed(plan)
    model = load_adapter(plan.model).load(torch.device(args.device))
    from ablang.compile import ProgramCache

    programs = ProgramCache(model.traced)

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

    quality_n = args.quality_n or n
    unet = base.module.load_model(args.device)  # one model for every sampler: loading is not timed
    print(
        f"{plan.source}: {len(samplers)} samplers vs the baseline on {model.label}, "
        f"{plan.sampler.kind} {plan.sampler.steps} steps, {n} x {len(prompts)} images "
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
                secs, _ = timed(who.module, unet, n, prompts, seed, args.device)
                (pairs[s.name] if who is base else s.seconds).append(secs)
        print(f"  repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    features, reference = model.features, model.reference_features
    if len(base.images) < 2:  # fid needs a covariance: at least 2 images
        features = None
    base_feats = features(base.images) if features else None
    ref = reference() if reference and features else None
    rows = []
    intervals = []  # a bound such as ssim >= 0.90 is judged on the mean, so print it unrounded
    base_fid_ref = (
        fid_from_features(base_feats, ref) if base_feats is not None and ref is not None else None
    )
    all_base = [x for v in pairs.values() for x in v]
    rows.append(
        (
            "baseline",
            1.0,
            0.0,
            statistics.median(all_base) if all_base else None,
            None,
            1.0,
            0.0,
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
        per_image = per_image_change(("ssim",), base.images, s.images)["ssim"]
        ssim = float(per_image.mean())
        lo, hi = mean_interval(per_image)
        intervals.append(f"{s.name}: ssim {ssim:.4f}, 95% interval {lo:.4f} to {hi:.4f}")
        fid_base = fid_ref = None
        if features:
            feats = features(s.images)
            fid_base = fid_from_features(feats, base_feats)
            fid_ref = fid_from_features(feats, ref) if ref is not None else None
        rows.append(
            (
                s.name,
                flop_x,
                100 * (1 - 1 / flop_x),
                base_s,
                var_s,
                wall_x,
                100 * (1 - 1 / wall_x) if wall_x else None,
                wall_x / flop_x if wall_x else None,
                ssim,
                fid_base,
                fid_ref,
            )
        )
    print_table(rows)
    print(f"over the {len(base.images):,} images (percentile bootstrap, docs/statistics.md):")
    for line in intervals:
        print(f"  {line}")
    if args.glide:
        print(
            f"reference: the paper's accelerated GLIDE sampler, about {PAPER_REDUCTION:.0%} less "
            "sampling time (this study's `fast` variant; docs/models.md counts 27.8% fewer Unet "
            "FLOPs for it at full width and 100 steps). "
            f"Here: width {args.glide_channels} (published: 192), {plan.sampler.steps} steps, "
            "random weights, so ssim is no quality figure."
        )
    tmp.cleanup()
    return 0


def print_table(rows) -> None:
    head = (
        "sampler",
        "FLOPs x",
        "FLOPs -%",
        "base s",
        "var s",
        "wall x",
        "wall -%",
        "wall/FLOPs",
        "ssim",
        "fid base",
        "fid ref",
    )
    fmt = ("{}", "{:.2f}", "{:.1f}", "{:.2f}", "{:.2f}", "{:.2f}", "{:.1f}", "{:.2f}", "{:.3f}")
    fmt += ("{:.2f}", "{:.2f}")
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
