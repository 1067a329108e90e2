"""``ablang run``: a study from its plan to results.json, tables, heatmaps and sample grids.

This module only wires the stages together; ``run_plan`` is the sequence of named steps
(each a small function below, each stage in its own module)::

    load_session -> open_journal -> announce -> run_baseline -> run_variants
      -> measure_variants -> run_plan_searches -> write_report / print_report -> emit_samplers
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import ablang
from ablang.compile import Mode
from ablang.errors import AblangError
from ablang.execute import Samples, Trajectory, batches
from ablang.journal import Journal
from ablang.measure import Measure, MeasureOptions, check_metrics, versions
from ablang.models.base import LoadedModel
from ablang.phases import measured_metrics
from ablang.plan import Emit, Plan, Validation, Variant
from ablang.report import print_report, write_report
from ablang.results import Cost, Measurement, Results, SearchResult, VariantResult
from ablang.runlock import lock_run_dir
from ablang.session import Session

if TYPE_CHECKING:
    from ablang.distributed import RayRunner

PROGRESS_COLUMNS = (
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
    TextColumn("left"),
    TimeRemainingColumn(),
)


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run; ``ablang run``'s flags map to these one to one."""

    out: Path | None = None  # default: runs/<study name>-<hash of its path>/
    mode: Literal["measure", "accelerate"] = "measure"
    resume: bool = False
    device: Literal["cpu", "cuda", "auto"] | None = None  # None: the study's ``device`` setting
    batch: int = 0  # measure mode: variants per batched forward (0 = sized automatically)
    emit: bool = True  # write the study's ``emit`` samplers after the run
    force: bool = False  # the emits may replace files that ablang did not generate
    # Ray (ablang/distributed.py): None: the study's `ray` setting; "off": none; "local": a Ray
    # cluster started on this machine; "auto" or "HOST:PORT": an existing one
    ray: str | None = None
    ray_workers: int = 0  # 0: one per GPU of the cluster, else one per CPU


def default_out(plan: Plan) -> Path:
    """``runs/<stem>-<8 hex digits of the study's resolved path>``: two studies of one file name
    in different folders never share (and overwrite) a run directory."""
    stem = Path(plan.source).stem if plan.source else "study"
    where = str(Path(plan.source).resolve()) if plan.source else ""
    tag = hashlib.sha256(where.encode("utf-8")).hexdigest()[:8]
    return Path("runs") / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)}-{tag}"


def variant_identity(variant: Variant) -> str:
    """What names a variant's samples file in the journal: its name and its resolved
    interventions (ops, targets, parameters, windows), never its position in the run."""
    return repr((variant.name, variant.interventions))  # spans are repr=False: layout never counts


def emit_path(plan: Plan, emit: Emit, out: Path) -> Path:
    """Where a study's ``emit sampler "PATH"`` writes: PATH relative to the study's folder, and
    (symbolic links followed) inside that folder or the run's ``out``; an ``AblangError`` at
    the emit line otherwise. ``resolve`` has already refused absolute and ``..`` paths."""
    base = Path(plan.source).parent if plan.source else Path(".")
    path = base / emit.path
    real = path.resolve()
    if not any(real.is_relative_to(root.resolve()) for root in (base, out)):
        raise AblangError(
            f'emit sampler "{emit.path}" leads outside the study\'s folder (to {real})',
            emit.span,
            code="emit-path",
            hint="a symbolic link on the way points elsewhere; use `ablang emit -o PATH` to "
            "write there on purpose",
        )
    return path


def warn_nonfinite(done: dict[str, Samples], console: Console) -> list[str]:
    """Name every variant whose images hold NaN or inf (``scale skip[0] by 1e308`` overflows):
    their metrics come out as ``-``/null, and without this the reason would be silent."""
    bad = []
    for name, s in done.items():
        finite = torch.isfinite(s.images)
        if not bool(finite.all()):
            share = 1.0 - finite.float().mean().item()
            bad.append(name)
            console.print(
                f"[yellow]warning:[/] variant {name!r} made images with NaN or inf in "
                f"{100 * share:.3g}% of pixels (the Unet overflowed); its metrics are - / null",
                highlight=False,
            )
    return bad


def fingerprint(plan: Plan, model: LoadedModel, mode: str) -> str:
    """Same study meaning, model weights and mode -> same fingerprint. The study's path, title,
    comments and layout do not count (spans never do), so a reformatted study still resumes."""
    meaning = dataclasses.replace(plan, source="", sha256="", title="")
    text = repr((meaning, model.checksum, mode, ablang.__version__))
    return hashlib.sha256(text.encode()).hexdigest()


def auto_batch(model: LoadedModel, rows_per_variant: int) -> int:
    """Variants per batched forward: about 96 rows of 32x32 images, fewer for larger images (on
    2 CPU cores larger batches cost more per row; see benchmarks/bench_sweep.py)."""
    _, h, w = model.image_shape
    budget = max(1, int(96 * (32 * 32) / (h * w)))
    return max(1, budget // max(1, rows_per_variant))


def ray_address(plan: Plan, options: RunOptions) -> str | None:
    """Where the variants run: a Ray address, or None for this process."""
    address = options.ray if options.ray is not None else plan.ray
    return None if address in (None, "off") else address


# ---------------------------------------------------------------------------- the steps


@contextmanager
def open_runner(plan: Plan, options: RunOptions, console: Console) -> Iterator[RayRunner | None]:
    """The Ray workers for the run's variants and search candidates (None: run them here); they
    load the model while this process runs the baseline, and stop when the run ends."""
    address = ray_address(plan, options)
    if address is None:
        yield None
        return
    from ablang.distributed import open_runner as start

    runner = start(plan, address, options.device or plan.device, options.ray_workers)
    console.print(
        f"Ray: {runner.cluster.describe()} on {'a local cluster' if address == 'local' else address}"
        + (f", connected in {runner.connect_seconds:.1f} s" if runner.started else "")
    )
    try:
        yield runner
    finally:
        runner.close()


@dataclass
class _Progress:
    """The run's progress bars: one for the whole study, one per baseline or variant group."""

    progress: Progress
    study: TaskID

    def task(self, label: str, total: int, weight: int = 1) -> tuple[TaskID, Callable[[], None]]:
        task = self.progress.add_task(label, total=total)

        def tick() -> None:
            self.progress.advance(task)
            self.progress.advance(self.study, weight)

        return task, tick


def load_session(plan: Plan, options: RunOptions) -> Session:
    """The model, diffusion, setup, programs and executor; fails on the metrics before sampling."""
    session = Session.from_plan(plan, options.device or plan.device)
    # fail now, not after an hour of sampling
    check_metrics(measured_metrics(plan), session.model, measure_options(plan))
    return session


def measure_options(plan: Plan) -> MeasureOptions:
    return MeasureOptions(band_cut=plan.bands.cut)


def open_journal(session: Session, out: Path, options: RunOptions, console: Console) -> Journal:
    """The run's journal; entries that fail their checks are dropped (and recomputed) with a
    warning each."""
    fp = fingerprint(session.plan, session.model, options.mode)
    journal = Journal(out, fp, options.resume)
    for warning in journal.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return journal


def announce(
    session: Session, journal: Journal, todo: list[Variant], options: RunOptions, console: Console
) -> int:
    """Print what the run will do; returns the sampler steps it has left."""
    plan, setup, steps = session.plan, session.setup, session.steps
    per_forward = session.images_per_forward
    planned = sum(len(steps) - session.schedule(v).first_active for v in todo)
    planned += 0 if journal.baseline() is not None else len(steps)
    searches = (
        f" and {len(plan.searches)} search{'es' * (len(plan.searches) > 1)}"
        if plan.searches
        else ""
    )
    console.print(
        f"[bold]{plan.title or plan.source}[/]: {len(plan.variants) - 1} variants"
        + searches
        + f" on {session.model.label}, "
        f"{len(setup.seeds)} images each, {plan.sampler.kind} {len(steps)} steps, guidance {setup.guidance:g}, "
        f"{options.mode} mode on {session.device}"
    )
    if journal.done:
        console.print(f"resuming: {len(journal.done)} variants already in {journal.path}")
    console.print(
        f"{planned} sampler steps x {per_forward} images = {planned * per_forward} Unet image-forwards to go"
    )
    return planned


def run_baseline(
    session: Session, journal: Journal, bars: _Progress, planned: int, console: Console
) -> Trajectory:
    """The baseline's trajectory: from the journal when resuming, else sampled and journaled."""
    baseline = journal.baseline()
    if baseline is not None:
        return baseline
    steps = len(session.steps)
    task, tick = bars.task("baseline", steps)
    baseline = session.executor.baseline(tick)
    journal.save_baseline(baseline)
    bars.progress.remove_task(task)
    per_step = baseline.seconds / steps
    console.print(
        f"baseline: {baseline.seconds:.1f} s; the rest takes about {per_step * (planned - steps) / 60:.1f} min"
    )
    return baseline


def run_variants(
    session: Session,
    journal: Journal,
    baseline: Trajectory,
    todo: list[Variant],
    mode: Mode,
    max_chunks: int,
    bars: _Progress,
    runner: RayRunner | None = None,
) -> None:
    """Every variant not yet journaled, in batches that share the baseline's prefix; on the Ray
    workers when there is a ``runner``, journaled here as each batch comes back."""
    steps = session.steps
    if runner is not None:
        task = bars.progress.add_task(f"variants on {runner.cluster.describe()}", total=len(todo))
        for group, got in runner.run_groups(
            batches(todo, steps, max_chunks), baseline, mode, session.setup
        ):
            for variant, s in zip(group, got):
                journal.append(s, variant_identity(variant))
            bars.progress.advance(task, len(group))
            bars.progress.advance(bars.study, (len(steps) - got[0].start_step) * len(group))
        bars.progress.remove_task(task)
        return
    for group in batches(todo, steps, max_chunks):
        label = group[0].name if len(group) == 1 else f"{group[0].name} (+{len(group) - 1} batched)"
        total = len(steps) - session.schedule(group[0]).first_active
        task, tick = bars.task(label[:60], total, len(group))
        for variant, samples in zip(group, session.executor.run_batch(group, baseline, mode, tick)):
            journal.append(samples, variant_identity(variant))
        bars.progress.remove_task(task)


def variant_result(
    session: Session,
    variant: Variant,
    samples: Samples,
    measured: Measurement,
    baseline: Trajectory,
) -> VariantResult:
    """One variant's metrics, their statistics and its cost; the steps before its start ran as
    the baseline's, so they are charged at the baseline's pace."""
    base_flops = session.trajectory_flops(session.plan.baseline)
    flops = session.trajectory_flops(variant)
    full_seconds = samples.start_step * baseline.seconds / len(session.steps) + samples.seconds
    return VariantResult(
        name=variant.name,
        origin=variant.origin,
        interventions=variant.interventions,
        metrics=measured.metrics,
        cost=Cost(flops, flops / base_flops, full_seconds, baseline.seconds / full_seconds),
        start_step=samples.start_step,
        evaluations=samples.evaluations,
        intervals=measured.intervals,
        std=measured.std,
        within_noise=measured.within_noise,
    )


def measure_variants(
    session: Session, measure: Measure, done: dict[str, Samples], baseline: Trajectory
) -> list[VariantResult]:
    return [
        variant_result(session, v, done[v.name], measure.measure(done[v.name].images), baseline)
        for v in session.plan.variants
    ]


def run_plan_searches(
    session: Session,
    journal: Journal,
    options: RunOptions,
    baseline: Trajectory,
    measure: Measure,
    max_chunks: int,
    done: dict[str, Samples],
    console: Console,
    runner: RayRunner | None = None,
) -> tuple[list[SearchResult], list[VariantResult], dict[str, Variant]]:
    """Each search of the plan, after the variants; its best variant joins the results (and
    ``done``) under the search's name, and its images the journal (``open_run`` finds them)."""
    if not session.plan.searches:
        return [], [], {}
    from ablang.search import SearchOptions, ValidationSet, run_searches, validation_set

    lookahead = 1 if session.device.type == "cpu" else max_chunks
    search_options = SearchOptions(
        mode=options.mode,
        batch=max_chunks,
        lookahead=lookahead,
        runner=runner.run_groups if runner is not None else None,
    )
    sets: dict[Validation, ValidationSet] = {}  # searches on the same seeds share one baseline

    def validations(v: Validation) -> ValidationSet:
        if v not in sets:
            sets[v] = validation_set(
                session.plan,
                v,
                session.model,
                session.diffusion,
                session.device,
                session.programs,
                measure.names,
                measure.options,
            )
        return sets[v]

    searched, best_samples = run_searches(
        session.plan,
        session.executor,
        baseline,
        measure,
        session.flops,
        search_options,
        console,
        validations,
    )
    found: dict[str, Variant] = {}
    results = []
    for r, s in zip(searched, best_samples):
        v = found[r.name] = r.best_variant()
        done[v.name] = s
        journal.append(s, variant_identity(v))
        results.append(variant_result(session, v, s, measure.measure(s.images), baseline))
    return list(searched), results, found


def emit_samplers(
    session: Session, found: dict[str, Variant], out: Path, options: RunOptions, console: Console
) -> None:
    """The study's ``emit sampler`` statements; a search's variant is its best one."""
    from ablang.emit import emit_sampler

    plan = session.plan
    for e in plan.emits:
        variant = found[e.variant] if e.variant in found else plan.variant(e.variant)
        path = emit_sampler(
            plan,
            variant,
            session.model,
            emit_path(plan, e, out),
            session.programs,
            force=options.force,
        )
        console.print(f"emitted sampler for {e.variant!r}: {path}")


def max_chunks_of(session: Session, options: RunOptions) -> int:
    """Variants per batched forward: one in accelerate mode (its shortcuts really save time)."""
    if options.mode == "accelerate":
        return 1
    return options.batch or auto_batch(session.model, session.images_per_forward)


def baseline_samples(session: Session, baseline: Trajectory) -> Samples:
    """The baseline as measure sees it. It shares no prefix: all of its steps are its own
    (start 0), else its time would count twice."""
    forwards = len(session.steps) * session.images_per_forward
    return Samples("baseline", baseline.images, 0, baseline.seconds, forwards)


def collect_results(
    session: Session,
    options: RunOptions,
    variants: list[VariantResult],
    searched: list[SearchResult],
    seconds: float,
    statistics: dict | None = None,
) -> Results:
    setup = session.setup
    return Results(
        plan=session.plan,
        model_label=session.model.label,
        model_checksum=session.model.checksum,
        timesteps=tuple(s.t for s in session.steps),
        guidance=setup.guidance,
        prompts=setup.prompts,
        seeds=setup.seeds,
        mode=options.mode,
        variants=tuple(variants),
        seconds=seconds,
        versions=versions(),
        searches=tuple(searched),
        statistics=statistics or {},
    )


def run_plan(plan: Plan, options: RunOptions, console: Console | None = None) -> Results:
    """Run every variant of ``plan``, measure them, run its searches, write the report and emit
    its samplers; returns the ``Results``."""
    console = console or Console()
    out = options.out or default_out(plan)
    # one writer per run directory, held until the last file is written (Ray workers never write)
    with lock_run_dir(out), open_runner(plan, options, console) as runner:
        return _run_locked(plan, options, out, console, runner)


def _run_locked(
    plan: Plan, options: RunOptions, out: Path, console: Console, runner: RayRunner | None = None
) -> Results:
    started = time.perf_counter()
    session = load_session(plan, options)
    journal = open_journal(session, out, options, console)
    todo = [v for v in plan.variants[1:] if v.name not in journal.done]
    planned = announce(session, journal, todo, options, console)
    max_chunks = max_chunks_of(session, options)
    with Progress(*PROGRESS_COLUMNS, console=console, transient=False) as progress:
        bars = _Progress(progress, progress.add_task("study", total=planned))
        baseline = run_baseline(session, journal, bars, planned, console)
        run_variants(session, journal, baseline, todo, options.mode, max_chunks, bars, runner)

    done = journal.done
    done["baseline"] = baseline_samples(session, baseline)
    warn_nonfinite(done, console)
    prompts = list(session.setup.prompts)
    measure = Measure(
        measured_metrics(plan),
        session.model,
        done["baseline"].images,
        prompts,
        measure_options(plan),
    )
    variants = measure_variants(session, measure, done, baseline)
    searched, best, found = run_plan_searches(
        session, journal, options, baseline, measure, max_chunks, done, console, runner
    )
    seconds = time.perf_counter() - started
    res = collect_results(
        session, options, variants + best, searched, seconds, measure.statistics()
    )
    files = write_report(res, out, {v.name: done[v.name].images for v in res.variants})
    print_report(res, console, out, files)
    if options.emit and plan.emits:
        emit_samplers(session, found, out, options, console)
    return res
