"""ablang from Python: studies from files or strings, runs, results, component tables, samplers.

::

    import ablang

    study = ablang.load("studies/quickstart.abl")      # or ablang.parse(text) in a notebook cell
    results = study.run(out="runs/quickstart")         # same files as `ablang run`
    results.table()                                    # a DataFrame, one row per variant
    results.sweep("sweep1")                            # component x window
    results.heatmap("sweep1")                          # a matplotlib Figure
    results.images("deep_cache")                       # [N x C x H x W] in [-1, 1]
    ablang.open_run("runs/quickstart")                 # the same, read back from disk
    ablang.inspect("tiny")                             # the component table
    study.emit("deep_cache", "build/fast.py")          # a standalone accelerated sampler

Every error ablang reports (a study's positioned errors, a run that cannot start, a run
directory that is not one) is raised as one type, ``StudyError``: ``.errors`` lists the
``AblangError`` s with their spans, codes and hints, and ``str()`` renders them as the CLI does.
"""

from __future__ import annotations

import hashlib
import html as _html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rich.console import Console

from ablang import html
from ablang.commands.check import Checked, check_file, component_table_or_reason
from ablang.components import ComponentTable
from ablang.errors import AblangError, AblangErrors, as_list, render_errors
from ablang.plan import Plan

if TYPE_CHECKING:
    from ablang.analysis import RunResults

__all__ = [
    "Components",
    "Emitted",
    "Study",
    "StudyError",
    "inspect",
    "load",
    "open_run",
    "parse",
]

_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")
# model label -> its component table or why it is not at hand; tracing a model once per session
_TABLES: dict = {}


class StudyError(AblangErrors):
    """Everything ablang found wrong, as one exception: ``errors`` holds each ``AblangError``
    (``message``, ``span`` with line and column, ``code``, ``hint``, ``notes``); ``str()`` renders
    them like ``ablang check``: ``study.abl:4:6: error: ...``, the line, a caret, the hint."""

    def __init__(
        self, errors: list[AblangError], text: str | None = None, path: str | None = None
    ) -> None:
        self.text = text
        self.path = path
        super().__init__(list(errors))
        self.args = (str(self),)

    def __str__(self) -> str:
        if self.path is None and all(e.span is None and e.path is None for e in self.errors):
            # not about a study's text (a run directory, a name): no file to point at
            return "\n".join(
                f"error: {e.message}" + (f"\nhint: {e.hint}" if e.hint else "") for e in self.errors
            )
        return render_errors(self.errors, self.text, self.path)

    @classmethod
    def one(cls, message: str, *, code: str = "error", hint: str | None = None) -> StudyError:
        """A ``StudyError`` of one error with no place in a study (a run, a name, a file)."""
        return cls([AblangError(message, code=code, hint=hint)])

    @classmethod
    def of(cls, exc: AblangError | AblangErrors, text: str | None = None, path: str | None = None):
        return exc if isinstance(exc, StudyError) else cls(as_list(exc), text, path)


def _console(quiet: bool) -> Console:
    """rich's own choice (a terminal, or Jupyter's display with live progress bars), else the
    CLI's 150 columns for logs and pipes rather than rich's 80."""
    if quiet:
        return Console(quiet=True)
    console = Console()
    if console.is_jupyter or console.is_terminal:
        return console
    return Console(width=150)


def _stem(plan: Plan) -> str:
    """A file-name stem for the study: its file's, or ``study`` for one given as text."""
    source = plan.source or ""
    return "study" if not source or source.startswith("<") else Path(source).stem


@dataclass(frozen=True)
class Emitted:
    """A written sampler: where, for which variant, and its Unet FLOPs per image over the
    trajectory against the baseline's (counted on the programs the sampler runs)."""

    path: Path
    variant: str
    baseline_flops: float
    flops: float

    @property
    def speedup(self) -> float:
        return self.baseline_flops / self.flops if self.flops else float("inf")

    def __fspath__(self) -> str:
        return str(self.path)


class Study:
    """A checked study: ``plan`` is what a run executes. Made by ``load`` or ``parse``."""

    def __init__(self, checked: Checked) -> None:
        assert checked.plan is not None and not checked.errors
        self.path: str = checked.path
        self.text: str = checked.text
        self.plan: Plan = checked.plan
        # why the model's components could not be checked (its file or package is missing); a
        # study with this set was checked for syntax and settings only and cannot run
        self.unavailable: str | None = checked.unavailable

    @property
    def title(self) -> str:
        return self.plan.title or _stem(self.plan)

    @property
    def variants(self) -> list[str]:
        """Every variant's name, the baseline first (bare lines and sweep cells by their text)."""
        return [v.name for v in self.plan.variants]

    @property
    def sweeps(self) -> list[str]:
        return [s.name for s in self.plan.sweeps]

    def _require_model(self, doing: str) -> None:
        if self.unavailable:
            raise StudyError(
                [
                    AblangError(
                        f"cannot {doing}: the model is not available: {self.unavailable}",
                        self.plan.model.span,
                        code="model-unavailable",
                    )
                ],
                self.text,
                self.path,
            )

    def default_out(self) -> Path:
        """Where ``run`` writes when not told: as ``ablang run`` for a study file; for a study
        given as text, ``runs/study-<hash of the text>/``, so that two cells never share one."""
        from ablang.run import default_out

        if _stem(self.plan) != "study":
            return default_out(self.plan)
        return Path("runs") / f"study-{hashlib.sha256(self.text.encode()).hexdigest()[:8]}"

    def run(
        self,
        out: str | Path | None = None,
        *,
        mode: Literal["measure", "accelerate"] = "measure",
        device: Literal["cpu", "cuda", "auto"] | None = None,
        resume: bool = False,
        batch: int = 0,
        emit: bool = True,
        mlflow: str | bool | None = None,
        mlflow_experiment: str | None = None,
        ray: str | bool | None = None,
        ray_workers: int = 0,
        quiet: bool = False,
        console: Console | None = None,
    ) -> RunResults:
        """Run the study as ``ablang run`` does, with the same options (``out`` default
        ``runs/<study>/``; ``device`` None: the study's setting; ``batch`` 0: sized
        automatically; ``emit``: write the study's ``emit sampler`` files), and the same files in
        ``out``. Progress and the report go to ``console`` (default: the terminal, or the
        notebook); ``quiet=True`` shows nothing.

        ``mlflow``: a tracking URI (``"sqlite:///mlflow.db"``), or True for MLflow's default, logs
        the run there when it is done (``ablang.mlflow_log``), in ``mlflow_experiment`` (default:
        the study's file name). MLflow is checked for before anything runs.

        ``ray``: run the variants on a Ray cluster (``docs/scaling.md``), as ``--ray`` does:
        an address (``"HOST:PORT"``, ``"auto"``), True for a local one, False for none; None
        follows the study's ``ray`` setting. ``ray_workers`` 0: one per GPU, else per CPU."""
        self._require_model("run")
        from ablang.analysis import RunResults
        from ablang.run import RunOptions, run_plan
        from ablang.run_dir import RunDir

        if mlflow is not None and mlflow is not False:
            from ablang import mlflow_log

            try:
                mlflow_log.require()
            except AblangError as e:
                raise StudyError.of(e, self.text, self.path) from None
        target = Path(out) if out is not None else self.default_out()
        options = RunOptions(
            out=target,
            mode=mode,
            resume=resume,
            device=device,
            batch=batch,
            emit=emit,
            ray=("local" if ray else "off") if isinstance(ray, bool) else ray,
            ray_workers=ray_workers,
        )
        try:
            res = run_plan(self.plan, options, console or _console(quiet))
            results = RunResults(RunDir.open(target), res)
            if mlflow is not None and mlflow is not False:
                results.log_mlflow(
                    None if mlflow is True else str(mlflow), mlflow_experiment, study_text=self.text
                )
        except (AblangError, AblangErrors) as e:
            raise StudyError.of(e, self.text, self.path) from None
        return results

    def emit(
        self,
        variant: str,
        path: str | Path | None = None,
        *,
        device: Literal["cpu", "cuda", "auto"] = "cpu",
        force: bool = False,
    ) -> Emitted:
        """Write a standalone sampler for ``variant`` (by name, ``baseline`` too) to ``path``
        (default: the study's ``emit sampler`` path for it, else ``build/<study>_<variant>.py``),
        as ``ablang emit`` does. A search's best variant is emitted by a run (``emit sampler``
        lines), since it is only known after the search. ``force`` replaces a file that ablang
        did not generate."""
        self._require_model("emit")
        from ablang.commands.emit import find_variant
        from ablang.emit import emit_sampler
        from ablang.session import Session

        try:
            v = find_variant(self.plan, variant)
            if path is None:  # as `ablang emit`, with `study` as the stem of a study given as text
                named = [e.path for e in self.plan.emits if e.variant == v.name]
                path = (
                    named[0]
                    if named
                    else Path("build") / _SLUG.sub("_", f"{_stem(self.plan)}_{v.name}.py")
                )
            session = Session.from_plan(self.plan, device)
            written = emit_sampler(
                self.plan, v, session.model, Path(path), session.programs, force=force
            )
            base = session.trajectory_flops(self.plan.baseline)
            flops = session.trajectory_flops(v)
        except (AblangError, AblangErrors) as e:
            raise StudyError.of(e, self.text, self.path) from None
        return Emitted(Path(written), v.name, base, flops)

    def __repr__(self) -> str:
        p = self.plan
        return (
            f"<Study {self.title!r}: {len(p.variants) - 1} variants, {len(p.sweeps)} sweeps, "
            f"model {p.model.label()}, {p.sampler.kind} {p.sampler.steps} steps>"
        )

    def _repr_html_(self) -> str:
        p = self.plan
        s = p.sampler
        settings = (
            f"model {p.model.label()}; sampler {s.kind} {s.steps} steps"
            + (f", guidance {s.guidance:g}" if s.guidance is not None else "")
            + f"; seed {p.seed}; {p.samples} samples per prompt"
            + ("; noise per image" if p.noise == "image" else "")
            + (f" of {len(p.prompts)} prompts" if p.prompts else "")
            + f"; metrics {', '.join(p.metrics)}; device {p.device}"
        )
        rows = [
            [
                v.name if v.origin in ("baseline", "variant") else "",
                v.origin,
                "\n".join(iv.label() for iv in v.interventions) or "-",
            ]
            for v in p.variants
        ]
        caption = []
        if p.sweeps:
            caption.append(
                "sweeps: "
                + ", ".join(
                    f"{sw.name} ({len(sw.components)} components x {len(sw.windows)} windows)"
                    for sw in p.sweeps
                )
            )
        if p.searches:
            caption.append("searches: " + ", ".join(se.name for se in p.searches))
        if p.emits:
            caption.append("emits: " + ", ".join(f"{e.variant} -> {e.path}" for e in p.emits))
        if self.unavailable:
            caption.append(
                f"checked syntax and settings only: the model is not available ({self.unavailable})"
            )
        return (
            f"<p><b>{_html.escape(self.title)}</b> <small>({_html.escape(self.path)})</small><br>"
            f"{_html.escape(settings)}</p>\n"
            + html.table(
                ["variant", "origin", "interventions"], rows, caption="; ".join(caption) or None
            )
        )


def _check_text(text: str, name: str) -> Checked:
    """``check_file`` for a study held in a string (hashed as its UTF-8 bytes)."""
    from ablang.parse import parse as parse_study
    from ablang.resolve import model_spec, resolve

    try:
        study = parse_study(text, name)
    except AblangErrors as e:
        return Checked(name, text, errors=tuple(e.errors))
    spec = model_spec(study)
    table, unavailable = None, None
    if spec is not None:
        got = component_table_or_reason(spec, _TABLES)
        table, unavailable = (got, None) if isinstance(got, ComponentTable) else (None, got)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    try:
        plan = resolve(study, table, source_path=name, sha256=digest)
    except AblangErrors as e:
        return Checked(name, text, errors=tuple(as_list(e)), unavailable=unavailable, model=spec)
    return Checked(name, text, plan, unavailable=unavailable, model=spec)


def _study(checked: Checked) -> Study:
    if checked.errors:
        raise StudyError(list(checked.errors), checked.text, checked.path)
    return Study(checked)


def load(path: str | Path) -> Study:
    """Read and check the study file at ``path``; raises ``StudyError`` with every error found.
    The same plan ``ablang run PATH`` runs, so both write the same results.json."""
    return _study(check_file(path, _TABLES))


def parse(text: str, name: str = "<study>") -> Study:
    """Check a study given as text (a notebook cell); ``name`` stands for its file in error
    messages and in results.json. Raises ``StudyError`` with every error found."""
    return _study(_check_text(text, name))


def open_run(path: str | Path) -> RunResults:
    """A finished run directory (``ablang run``'s ``--out``), read back without recomputing:
    results.json for the numbers, the journal's samples for the images."""
    from ablang.analysis import RunResults
    from ablang.run_dir import RunDir

    try:
        run_dir = RunDir.open(path)
        return RunResults(run_dir)
    except AblangError as e:
        raise StudyError.of(e) from None


class Components:
    """A model's component table (``ablang inspect``): iterate it, index it by name
    (``table["skip[3]"]``), ``to_frame()`` it; ``table`` is the ``ComponentTable``."""

    def __init__(self, table: ComponentTable) -> None:
        self.table = table

    @property
    def model(self) -> str:
        return self.table.model

    @property
    def names(self) -> list[str]:
        return list(self.table.names())

    def __len__(self) -> int:
        return len(self.table.components)

    def __iter__(self):
        return iter(self.table.components)

    def __getitem__(self, name: str):
        return self.table[name]

    def to_frame(self):
        """A ``pandas.DataFrame``, one row per component (index: its name), columns as
        ``ablang inspect --json`` gives them."""
        import pandas as pd

        from ablang.commands.inspect import table_json

        rows = table_json(self.table)["components"]
        return pd.DataFrame(rows).set_index("name")

    def __rich__(self):
        from ablang.commands.inspect import rich_table

        return rich_table(self.table)

    def __repr__(self) -> str:
        return (
            f"<Components of {self.model}: {len(self)} components, T = {self.table.num_timesteps}>"
        )

    def _repr_html_(self) -> str:
        rows = []
        for c in self.table.components:
            note = (
                f"into {c.feeds}"
                if c.feeds
                else ("" if c.droppable else "no drop: " + c.drop_note.split(" (")[0])
            )
            rows.append(
                [
                    c.name,
                    c.level,
                    f"{c.resolution}x{c.resolution}",
                    c.channels,
                    f"{c.params:,}" if c.params else "",
                    f"{100 * c.flops_share:.1f}%" if c.kind != "skip" else "",
                    c.module,
                    note,
                ]
            )
        header = ["name", "level", "resolution", "channels", "params", "FLOPs", "module", "note"]
        return html.table(
            header,
            rows,
            title=f"components of {self.model} (T = {self.table.num_timesteps})",
            right=(1, 2, 3, 4, 5),
            more=".to_frame() has them all",
        )


def inspect(model: str) -> Components:
    """The component table of a model written as in a study's model line: ``"tiny"``,
    ``'glide "base.pt"'``, ``'adm "model.pt" config "model.json"'``, ``'diffusers "DIR"'``."""
    from ablang import models
    from ablang.parse import parse as parse_study
    from ablang.resolve import model_spec

    line = f"model {model}"
    try:
        spec = model_spec(parse_study(line, "<model>"))
        if spec is None:
            raise AblangError(
                f"not a model: {model}",
                code="model",
                hint='write it as in a study: tiny, glide "base.pt", diffusers "DIR"',
            )
        return Components(models.component_table(spec))
    except (AblangError, AblangErrors) as e:
        raise StudyError.of(e, line, "<model>") from None
