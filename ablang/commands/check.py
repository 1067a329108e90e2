"""``ablang check FILE...``: every error of every study, without running anything.

Exit status 0 when all files are clean, 2 when any has an error. When a study's model cannot be
loaded here (a checkpoint or package missing), the syntax and the settings are still checked and
the output says plainly that the components were not.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ablang.components import ComponentTable
from ablang.errors import AblangError, AblangErrors, as_list, render_error, render_error_rich
from ablang.parse import decode, parse
from ablang.plan import ModelSpec, Plan
from ablang.preflight import preflight
from ablang.resolve import model_spec, resolve


@dataclass(frozen=True)
class Checked:
    """The outcome of checking one study file."""

    path: str
    text: str = ""  # the study's text ("" when it could not be read)
    plan: Plan | None = None  # None when there are errors
    errors: tuple[AblangError, ...] = ()
    unavailable: str | None = None  # why the model's components could not be checked
    model: ModelSpec | None = field(default=None, compare=False)
    warnings: tuple[AblangError, ...] = ()  # worth knowing, not stopping for (`preflight`)


def component_table_or_reason(spec: ModelSpec, cache: dict | None = None) -> ComponentTable | str:
    """The model's component table, or a sentence saying why it is not at hand."""
    key = spec.label()
    if cache is not None and key in cache:
        return cache[key]
    try:
        from ablang.models import component_table

        got: ComponentTable | str = component_table(spec)
    except AblangError as e:
        got = e.message
    except Exception as e:  # noqa: BLE001 - an adapter's failure must not stop the syntax check
        got = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    if cache is not None:
        cache[key] = got
    return got


def check_file(path: str | Path, tables: dict | None = None) -> Checked:
    """Parse and resolve one study against its model's components (when they can be had)."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return Checked(
            path,
            errors=(AblangError(f"cannot read the file: {e.strerror or e}", code="io", path=path),),
        )
    try:
        text = decode(data, path)
        study = parse(text, path)
    except AblangErrors as e:
        text = data.decode("utf-8", errors="replace")
        return Checked(path, text, errors=tuple(e.errors))
    spec = model_spec(study)
    table, unavailable = None, None
    if spec is not None:
        got = component_table_or_reason(spec, tables)
        table, unavailable = (got, None) if isinstance(got, ComponentTable) else (None, got)
    try:
        plan = resolve(study, table, source_path=path, sha256=hashlib.sha256(data).hexdigest())
    except AblangErrors as e:
        return Checked(path, text, errors=tuple(as_list(e)), unavailable=unavailable, model=spec)
    errors, warnings = preflight(study, plan, table)
    for found in errors + warnings:
        found.path = path
    if errors:
        return Checked(
            path,
            text,
            errors=tuple(errors),
            unavailable=unavailable,
            model=spec,
            warnings=tuple(warnings),
        )
    return Checked(path, text, plan, unavailable=unavailable, model=spec, warnings=tuple(warnings))


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="study files (.abl) to check")


def _summary(plan: Plan) -> str:
    parts = [f"{len(plan.variants)} variants"]
    if plan.sweeps:
        parts.append(f"{len(plan.sweeps)} sweep{'s' * (len(plan.sweeps) > 1)}")
    if plan.searches:
        parts.append(f"{len(plan.searches)} search{'es' * (len(plan.searches) > 1)}")
    if plan.emits:
        parts.append(f"{len(plan.emits)} emit{'s' * (len(plan.emits) > 1)}")
    return ", ".join(parts)


def print_warnings(checked: Checked, stream=None) -> None:
    """``study.abl:4:9: warning: ...`` for each warning, the line and a caret under it."""
    stream = stream or sys.stderr
    for w in checked.warnings:
        text = render_error(w, checked.text, checked.path)
        stream.write(text.replace(": error: ", ": warning: ", 1) + "\n")


def print_errors(checked: Checked, stream=None) -> None:
    """Every error of ``checked``, rendered for a terminal (rich) or for a file/pipe (plain)."""
    stream = stream or sys.stderr
    if stream.isatty():
        from rich.console import Console

        console = Console(file=stream, highlight=False)
        for err in checked.errors:
            console.print(render_error_rich(err, checked.text, checked.path))
    else:
        for err in checked.errors:
            stream.write(render_error(err, checked.text, checked.path) + "\n")


def run(args) -> int:
    tables: dict = {}
    failed = 0
    for path in args.files:
        checked = check_file(path, tables)
        print_errors(checked)
        print_warnings(checked)
        sys.stderr.flush()
        if checked.errors:
            failed += 1
            n = len(checked.errors)
            print(f"{path}: {n} error{'s' * (n > 1)}", file=sys.stderr)
        if checked.unavailable is not None and checked.model is not None:
            print(
                f"{path}: note: checked syntax and settings only: {checked.model.label()} not available "
                f"({checked.unavailable})"
            )
        elif checked.plan is not None:
            print(f"{path}: ok ({_summary(checked.plan)})")
        sys.stdout.flush()
    return 2 if failed else 0
