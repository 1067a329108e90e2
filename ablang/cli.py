"""The ``ablang`` command line. Each subcommand lives in ``ablang/commands/<name>.py`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches.

Exit status: 0 success, 1 a run failed, 2 the study or the command line is wrong.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Order is the order of ``ablang --help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("ablang.commands.run", "run a study: baseline, variants, sweeps, metrics, reports"),
    "check": ("ablang.commands.check", "check studies for errors without running anything"),
    "fmt": ("ablang.commands.fmt", "rewrite studies in the canonical layout"),
    "inspect": ("ablang.commands.inspect", "print a model's component table"),
    "emit": ("ablang.commands.emit", "write a standalone accelerated sampler for a variant"),
    "sample": ("ablang.commands.sample", "sample images from a plain model into a PNG grid"),
    "train": ("ablang.commands.train", "train the built-in model (and its digit classifier)"),
}


class _Parser(argparse.ArgumentParser):
    def error(
        self, message: str
    ) -> None:  # argparse exits 2 too; keep its wording, drop the usage spam
        self.print_usage(sys.stderr)
        self.exit(2, f"ablang: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ablang", description="Ablation studies of diffusion Unets.")
    from ablang import __version__

    parser.add_argument("--version", action="version", version=f"ablang {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
