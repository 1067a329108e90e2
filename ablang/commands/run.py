"""``ablang run STUDY.abl [--out DIR] [--mode measure|accelerate] [--resume] [--device ...]
[--ray [ADDRESS] | --no-ray] [--ray-workers N]``."""

from __future__ import annotations

import shlex
import sys
import traceback
from pathlib import Path

from rich.console import Console

from ablang.commands.args import non_negative_int, positive_int
from ablang.commands.check import check_file, print_warnings
from ablang.errors import AblangError, render_error, render_errors
from ablang.run import RunOptions, default_out, ray_address, run_plan


def add_arguments(parser) -> None:
    parser.add_argument("study", metavar="STUDY.abl")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default runs/<study name>-<hash of its path>/)",
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
        "--batch",
        type=non_negative_int,
        default=0,
        help="measure mode: variants per batched forward (0: auto)",
    )
    parser.add_argument(
        "--no-emit", action="store_true", help="do not write the study's emit samplers"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="let the study's emits replace files that ablang did not generate",
    )
    ray = parser.add_mutually_exclusive_group()
    ray.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the variants on a Ray cluster: HOST:PORT, auto (the one `ray start` runs "
        "here), or none given: a local one; needs pip install 'ablang[ray]' (docs/scaling.md)",
    )
    ray.add_argument(
        "--no-ray",
        dest="ray",
        action="store_const",
        const="off",
        help="run here even if the study says `ray ...`",
    )
    parser.add_argument(
        "--ray-workers",
        type=positive_int,
        default=0,
        metavar="N",
        help="Ray workers (default: one per GPU of the cluster, else one per CPU)",
    )
    parser.add_argument(
        "--mlflow",
        nargs="?",
        const="",
        default=None,
        metavar="URI",
        help="log the finished run to MLflow at URI (default: MLflow's own, "
        "sqlite:///mlflow.db); needs pip install 'ablang[mlflow]'",
    )
    parser.add_argument(
        "--mlflow-experiment",
        default=None,
        metavar="NAME",
        help="the MLflow experiment (default: the study's file name)",
    )


def resume_command(args, plan) -> str:
    """The command that continues this run: every option the journal's fingerprint checks
    (the study, --mode) and where it is (--out), plus the options that shaped the run."""
    out = args.out or default_out(plan)
    words = ["ablang", "run", args.study, "--out", str(out), "--mode", args.mode]
    if args.device:
        words += ["--device", args.device]
    if args.batch:
        words += ["--batch", str(args.batch)]
    if args.no_emit:
        words.append("--no-emit")
    if getattr(args, "force", False):
        words.append("--force")
    if getattr(args, "ray", None):
        words += ["--no-ray"] if args.ray == "off" else ["--ray", args.ray]
    if getattr(args, "ray_workers", 0):
        words += ["--ray-workers", str(args.ray_workers)]
    return shlex.join(words + ["--resume"])


def run(args) -> int:
    checked = check_file(args.study)
    print_warnings(checked)
    if checked.errors:
        print(render_errors(list(checked.errors), checked.text, args.study), file=sys.stderr)
        return 2
    if checked.unavailable:
        print(
            f"{args.study}: error: cannot run: the model is not available: {checked.unavailable}",
            file=sys.stderr,
        )
        return 2
    if args.mlflow is not None:
        from ablang.mlflow_log import require

        try:
            require()  # before an hour of sampling, not after
        except AblangError as e:
            print(render_error(e, None, args.study), file=sys.stderr)
            return 2
    options = RunOptions(
        out=args.out,
        mode=args.mode,
        resume=args.resume,
        device=args.device,
        batch=args.batch,
        emit=not args.no_emit,
        force=args.force,
        ray=args.ray,
        ray_workers=args.ray_workers,
    )
    assert checked.plan is not None  # no errors, model available: resolved
    if ray_address(checked.plan, options) is not None:
        from ablang.distributed import require_ray

        try:
            require_ray()
        except AblangError as e:
            print(render_error(e, None, args.study), file=sys.stderr)
            return 2
    try:
        # logs and CI are not terminals: give the table room rather than rich's 80 columns
        console = Console() if sys.stdout.isatty() else Console(width=150)
        run_plan(checked.plan, options, console)
        if args.mlflow is not None:
            from ablang.mlflow_log import log_run

            run_id = log_run(
                args.out or default_out(checked.plan),
                study_text=checked.text,
                uri=args.mlflow or None,
                experiment=args.mlflow_experiment,
            )
            console.print(f"logged to MLflow: run {run_id}")
    except AblangError as e:
        print(render_error(e, None, args.study), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # every finished variant is already in the journal; nothing is lost
        again = resume_command(args, checked.plan)
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
