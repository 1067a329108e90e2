"""``ablang inspect MODEL [--json]``: a model's component table.

MODEL is written as in a study's model line: ``tiny``, ``glide "base.pt"``,
``adm "model.pt" config "model.json"``, ``diffusers "DIR"`` (quotes optional on the shell).
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from ablang import models
from ablang.components import ComponentTable
from ablang.errors import AblangError, AblangErrors, as_list, render_errors
from ablang.parse import parse
from ablang.plan import ModelSpec
from ablang.resolve import model_spec


def add_arguments(parser) -> None:
    parser.add_argument(
        "model", nargs="+", metavar="MODEL", help='as in a study: tiny, glide "base.pt", ...'
    )
    parser.add_argument("--json", action="store_true", help="print the table as JSON")


def parse_model(words: list[str]) -> ModelSpec:
    """``["glide", "base.pt"]`` -> the ModelSpec a study line ``model glide "base.pt"`` means."""
    quoted = [words[0]] + [w if w == "config" else json.dumps(w.strip('"')) for w in words[1:]]
    line = "model " + " ".join(quoted)
    study = parse(line, "<command line>")
    spec = model_spec(study)
    if spec is None:
        raise AblangError(
            f"not a model: {' '.join(map(shlex.quote, words))}",
            code="model",
            hint='write it as in a study: tiny, glide "base.pt", diffusers "DIR"',
        )
    return spec


def table_json(table: ComponentTable) -> dict:
    return {
        "model": table.model,
        "num_timesteps": table.num_timesteps,
        "prompt_kind": table.prompt_kind,
        "components": [{"name": c.name, **asdict(c)} for c in table.components],
    }


def rich_table(table: ComponentTable) -> Table:
    t = Table(title=f"components of {table.model} (T = {table.num_timesteps})")
    for col, just in (
        ("name", "left"),
        ("level", "right"),
        ("resolution", "right"),
        ("channels", "right"),
        ("params", "right"),
        ("FLOPs", "right"),
        ("module", "left"),
        ("note", "left"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for c in table.components:
        note = (
            f"into {c.feeds}"
            if c.feeds
            else ("" if c.droppable else "no drop: " + c.drop_note.split(" (")[0])
        )
        t.add_row(
            c.name,
            str(c.level),
            f"{c.resolution}x{c.resolution}",
            str(c.channels),
            f"{c.params:,}" if c.params else "",
            f"{100 * c.flops_share:.1f}%" if c.kind != "skip" else "",
            c.module,
            note,
        )
    return t


def run(args) -> int:
    try:
        spec = parse_model(args.model)
        table = models.component_table(spec)
    except AblangErrors as e:
        print(render_errors(as_list(e)), file=sys.stderr)
        return 2
    except AblangError as e:
        print(
            f"ablang inspect: error: {e.message}" + (f"\nhint: {e.hint}" if e.hint else ""),
            file=sys.stderr,
        )
        return 2
    if args.json:
        print(json.dumps(table_json(table), indent=2))
    else:
        Console(width=None if sys.stdout.isatty() else 150).print(rich_table(table))
    return 0
