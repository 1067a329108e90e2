"""``ablang sample MODEL [--prompts 0,1,2] [--n 4] [-o grid.png]``: images from the plain model."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ablang.commands.args import finite_float, non_negative_int, positive_int
from ablang.commands.inspect import MODEL_HELP, parse_model
from ablang.errors import AblangError
from ablang.plan import SamplerSpec
from ablang.session import Session


def add_arguments(parser) -> None:
    parser.add_argument("model", nargs="+", metavar="MODEL", help=MODEL_HELP)
    parser.add_argument(
        "--prompts", default=None, help="comma-separated (tiny: digits); default: the model's"
    )
    parser.add_argument("--n", type=positive_int, default=4, help="images per prompt")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--sampler", choices=("ddpm", "ddim"), default="ddpm")
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=100,
        help="sampler steps, at most the model's training steps (T)",
    )
    parser.add_argument("--guidance", type=finite_float, default=None)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("-o", "--out", type=Path, default=Path("samples.png"))


def run(args) -> int:
    from ablang.report import sample_grid

    try:
        spec = parse_model(args.model)
        prompts = tuple(p.strip() for p in args.prompts.split(",")) if args.prompts else ()
        sampler = SamplerSpec(args.sampler, args.steps, 0.0, args.guidance)
        session = Session.from_model(spec, sampler, prompts, args.n, args.seed, args.device)
        setup, executor = session.setup, session.executor
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
    try:
        sample_grid(traj.images, list(setup.prompts), args.out, nrow=nrow)
    except AblangError as e:  # a read-only folder, a full disk: nothing was replaced
        print(
            f"ablang sample: error: {e.message}" + (f"\nhint: {e.hint}" if e.hint else ""),
            file=sys.stderr,
        )
        return 2
    print(f"{len(setup.seeds)} images in {traj.seconds:.1f} s -> {args.out}")
    return 0
