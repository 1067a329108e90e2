"""``ablang run STUDY.abl [--out DIR] [--mode measure|accelerate] [--resume] [--device ...]``."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from rich.console import Console

from ablang.commands.check import check_file
from ablang.errors import AblangError, render_error, render_errors
from ablang.run import RunOptions, run_plan


def add_arguments(parser) -> None:
    parser.add_argument("study", metavar="STUDY.abl")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default runs/<study name>/)"
    )
    parser.add_argument(
        "--mode",
        choices=("measure", "accelerate"),
        default="measure",
        help="measure: masks, variants batched; accelerate: specialised graphs, dead code removed",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --out"
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None)
    parser.add_argument(
        "--batch", type=int, default=0, help="measure mode: variants per batched forward (0: auto)"
    )
    parser.add_argument(
        "--no-emit", action="store_true", help="do not write the study's emit samplers"
    )


def run(args) -> int:
    checked = check_file(args.study)
    if checked.errors:
        print(render_errors(list(checked.errors), checked.text, args.study), file=sys.stderr)
        return 2
    if checked.unavailable:
        print(
            f"{args.study}: error: cannot run: the model is not available: {checked.unavailable}",
            file=sys.stderr,
        )
        return 2
    options = RunOptions(
        out=args.out,
        mode=args.mode,
        resume=args.resume,
        device=args.device,
        batch=args.batch,
        emit=not args.no_emit,
    )
    try:
        # logs and CI are not terminals: give the table room rather than rich's 80 columns
        console = Console() if sys.stdout.isatty() else Console(width=150)
        run_plan(checked.plan, options, console)
    except AblangError as e:
        print(render_error(e, None, args.study), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # every finished variant is already in the journal; nothing is lost
        again = (
            f"ablang run {args.study}" + (f" --out {args.out}" if args.out else "") + " --resume"
        )
        print(f"\ninterrupted; continue where it stopped with: {again}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a failed run: the traceback for a bug report, exit 1
        traceback.print_exc()
        print(
            f"ablang run: the run failed: {type(e).__name__}: {e}\n"
            "finished variants are kept in the journal; --resume continues after a fix",
            file=sys.stderr,
        )
        return 1
    return 0
