"""``ablang sample MODEL [--prompts 0,1,2] [--n 4] [-o grid.png]``: images from the plain model."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ablang.commands.inspect import parse_model
from ablang.diffusion import Diffusion
from ablang.errors import AblangError
from ablang.execute import Executor, make_setup
from ablang.models.registry import load_adapter
from ablang.plan import Plan, SamplerSpec
from ablang.run import pick_device


def add_arguments(parser) -> None:
    parser.add_argument(
        "model", nargs="+", metavar="MODEL", help='as in a study: tiny, glide "base.pt", ...'
    )
    parser.add_argument(
        "--prompts", default=None, help="comma-separated (tiny: digits); default: the model's"
    )
    parser.add_argument("--n", type=int, default=4, help="images per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddpm")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("-o", "--out", type=Path, default=Path("samples.png"))


def run(args) -> int:
    from ablang.report import sample_grid

    try:
        spec = parse_model(args.model)
        prompts = tuple(p.strip() for p in args.prompts.split(",")) if args.prompts else ()
        plan = Plan(
            model=spec,
            sampler=SamplerSpec(args.sampler, args.steps, 0.0, args.guidance),
            seed=args.seed,
            samples=args.n,
            prompts=prompts,
        )
        device = pick_device(args.device)
        model = load_adapter(spec).load(device)
        diffusion = Diffusion(model.diffusion, args.steps)
        setup = make_setup(plan, model, diffusion)
        executor = Executor(model, diffusion, setup, device)
    except AblangError as e:
        print(
            f"ablang sample: error: {e.message}" + (f"\nhint: {e.hint}" if e.hint else ""),
            file=sys.stderr,
        )
        return 2
    with Progress(
        TextColumn("sampling"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task("sampling", total=len(setup.steps))
        traj = executor.baseline(lambda: progress.advance(task))
    nrow = args.n
    sample_grid(traj.xs[-1], list(setup.prompts), args.out, nrow=nrow)
    print(f"{len(setup.seeds)} images in {traj.seconds:.1f} s -> {args.out}")
    return 0
