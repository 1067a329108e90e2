"""``ablang emit STUDY.abl VARIANT [-o OUT.py] [--device cpu|cuda|auto]``: a standalone sampler.

Checks the study, loads its model, and writes a sampler with the variant's shortcuts compiled in
(see ``ablang/emit.py``). Prints where it went and the variant's FLOP-bound speedup: the
baseline's Unet FLOPs per image over the trajectory divided by the variant's, counted on the
accelerate-mode programs the sampler runs.

Exit status 0 when written, 2 when the study, the variant or the command line is wrong.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ablang.commands.check import check_file
from ablang.errors import AblangError, did_you_mean, render_error, render_errors
from ablang.plan import Plan, Variant


def add_arguments(parser) -> None:
    parser.add_argument("study", metavar="STUDY.abl")
    parser.add_argument(
        "variant", metavar="VARIANT", help="a variant of the study, by name (`baseline` too)"
    )
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        metavar="OUT.py",
        help="where to write the sampler (default: the study's `emit sampler` path for "
        "the variant, else build/<study>_<variant>.py)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where the model is loaded while emitting (the sampler takes --device itself)",
    )


def default_path(plan: Plan, variant: str) -> Path:
    for e in plan.emits:
        if e.variant == variant:
            return Path(e.path)
    stem = Path(plan.source).stem or "study"
    return Path("build") / re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{stem}_{variant}.py")


def find_variant(plan: Plan, name: str) -> Variant:
    """The variant called ``name``; an ``AblangError`` listing the study's variants otherwise."""
    try:
        return plan.variant(name)
    except KeyError:
        pass
    names = [v.name for v in plan.variants]
    named = [v.name for v in plan.variants if v.origin in ("baseline", "variant")]
    if any(s.name == name for s in plan.searches):
        raise AblangError(
            f"`{name}` is a search: its variant is only known after the search has run",
            code="unknown-variant",
            hint=f"run the study (`ablang run {plan.source}`) to find it; the study's `emit sampler` "
            "statements are written after the run",
        )
    shown = ", ".join(named)
    others = len(names) - len(named)
    if others:
        shown += f" (and {others} bare or sweep variants, named by their text)"
    raise AblangError(
        f"the study has no variant `{name}`; it has: {shown}",
        code="unknown-variant",
        hint=did_you_mean(name, names),
    )


def flop_speedup(plan: Plan, variant: Variant, model, programs) -> tuple[float, float]:
    """(baseline, variant) Unet FLOPs per image over the whole trajectory."""
    import torch

    from ablang.compile import schedule
    from ablang.cost import FlopCounter
    from ablang.diffusion import Diffusion
    from ablang.execute import make_setup

    diffusion = Diffusion(model.diffusion, plan.sampler.steps)
    setup = make_setup(plan, model, diffusion)
    _, uncond = model.make_cond(list(setup.prompts[:1]), torch.device("cpu"))
    counter = FlopCounter(model, programs, setup.guidance != 1.0 and uncond is not None)
    steps = list(setup.steps)
    return counter.trajectory(schedule(plan.baseline, steps)), counter.trajectory(
        schedule(variant, steps)
    )


def run(args) -> int:
    checked = check_file(args.study)
    if checked.errors:
        print(render_errors(list(checked.errors), checked.text, args.study), file=sys.stderr)
        return 2
    if checked.unavailable:
        print(
            f"{args.study}: error: cannot emit: the model is not available: {checked.unavailable}",
            file=sys.stderr,
        )
        return 2
    plan = checked.plan
    try:
        variant = find_variant(plan, args.variant)
    except AblangError as e:
        print(render_error(e, None, args.study), file=sys.stderr)
        return 2

    from ablang.compile import ProgramCache
    from ablang.emit import emit_sampler
    from ablang.models.registry import load_adapter
    from ablang.run import pick_device

    out = args.out or default_path(plan, variant.name)
    try:
        model = load_adapter(plan.model).load(pick_device(args.device))
        programs = ProgramCache(model.traced)
        path = emit_sampler(plan, variant, model, out, programs)
        base, flops = flop_speedup(plan, variant, model, programs)
    except AblangError as e:
        print(render_error(e, None, args.study), file=sys.stderr)
        return 2
    print(
        f"wrote {path}: the sampler for `{variant.name}` ({plan.sampler.kind} {plan.sampler.steps} steps)"
    )
    print(
        f"FLOP-bound speedup {base / flops:.2f}x: {flops / 1e9:.3f} Unet GFLOPs per image over the "
        f"trajectory (baseline {base / 1e9:.3f})"
    )
    return 0
