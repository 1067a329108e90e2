"""``ablang run``: a study from its file to results.json, tables, heatmaps and sample grids.

This module only wires the stages together (check -> load -> execute -> measure -> report ->
emit); each stage lives in its own module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import ablang
from ablang.compile import ProgramCache, schedule
from ablang.cost import FlopCounter
from ablang.diffusion import Diffusion
from ablang.errors import AblangError
from ablang.execute import Executor, Samples, batches, make_setup
from ablang.journal import Journal
from ablang.models.base import LoadedModel
from ablang.models.registry import load_adapter
from ablang.plan import Plan


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run; ``ablang run``'s flags map to these one to one."""

    out: Path | None = None  # default: runs/<study name>/
    mode: Literal["measure", "accelerate"] = "measure"
    resume: bool = False
    device: Literal["cpu", "cuda", "auto"] | None = None  # None: the study's ``device`` setting
    batch: int = 0  # measure mode: variants per batched forward (0 = sized automatically)
    emit: bool = True  # write the study's ``emit`` samplers after the run


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise AblangError(
            "the study asks for device cuda, but torch sees no CUDA device", code="device"
        )
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def default_out(plan: Plan) -> Path:
    stem = Path(plan.source).stem if plan.source else "study"
    return Path("runs") / re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)


def fingerprint(plan: Plan, model: LoadedModel, mode: str) -> str:
    """Same study meaning, model weights and mode -> same fingerprint. The study's path, title,
    comments and layout do not count (spans never do), so a reformatted study still resumes."""
    meaning = dataclasses.replace(plan, source="", sha256="", title="")
    text = repr((meaning, model.checksum, mode, ablang.__version__))
    return hashlib.sha256(text.encode()).hexdigest()


def auto_batch(model: LoadedModel, rows_per_variant: int) -> int:
    """Variants per batched forward: about 96 rows of 32x32 images, fewer for larger images (on
    2 CPU cores larger batches cost more per row; see benchmarks/bench_sweep.py)."""
    c, h, w = model.image_shape
    budget = max(1, int(96 * (32 * 32) / (h * w)))
    return max(1, budget // max(1, rows_per_variant))


def versions() -> dict[str, str]:
    return {
        "ablang": ablang.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def run_plan(plan: Plan, options: RunOptions, console: Console | None = None):
    """Run every variant of ``plan``; returns the ``measure.Results``."""
    from ablang.measure import Cost, Measure, Results, VariantResult, check_metrics
    from ablang.report import print_report, write_report

    console = console or Console()
    device = pick_device(options.device or plan.device)
    out = options.out or default_out(plan)
    started = time.perf_counter()

    model = load_adapter(plan.model).load(device)
    diffusion = Diffusion(model.diffusion, plan.sampler.steps)
    setup = make_setup(plan, model, diffusion)
    programs = ProgramCache(model.traced)
    executor = Executor(model, diffusion, setup, device, programs)
    check_metrics(plan.metrics, model)  # fail now, not after an hour of sampling
    journal = Journal(out, fingerprint(plan, model, options.mode), options.resume)
    steps = list(setup.steps)
    scheds = {v.name: schedule(v, steps) for v in plan.variants}

    done = journal.done
    todo = [v for v in plan.variants[1:] if v.name not in done]
    per_forward = executor.n * (2 if executor.doubled else 1)
    planned = sum(len(steps) - scheds[v.name].first_active for v in todo)
    baseline = journal.baseline()
    planned += 0 if baseline is not None else len(steps)
    console.print(
        f"[bold]{plan.title or plan.source}[/]: {len(plan.variants) - 1} variants"
        + (
            f" and {len(plan.searches)} search{'es' * (len(plan.searches) > 1)}"
            if plan.searches
            else ""
        )
        + f" on {model.label}, "
        f"{len(setup.seeds)} images each, {plan.sampler.kind} {len(steps)} steps, guidance {setup.guidance:g}, "
        f"{options.mode} mode on {device}"
    )
    if done:
        console.print(f"resuming: {len(done)} variants already in {journal.path}")
    console.print(
        f"{planned} sampler steps x {per_forward} images = {planned * per_forward} Unet image-forwards to go"
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        study_task = progress.add_task("study", total=planned)
        if baseline is None:
            task = progress.add_task("baseline", total=len(steps))

            def tick_baseline() -> None:
                progress.advance(task)
                progress.advance(study_task)

            baseline = executor.baseline(tick_baseline)
            journal.save_baseline(baseline)
            progress.remove_task(task)
            per_step = baseline.seconds / len(steps)
            console.print(
                f"baseline: {baseline.seconds:.1f} s; the rest takes about {per_step * (planned - len(steps)) / 60:.1f} min"
            )
        max_chunks = (
            1 if options.mode == "accelerate" else (options.batch or auto_batch(model, per_forward))
        )
        for group in batches(todo, steps, max_chunks):
            label = (
                group[0].name if len(group) == 1 else f"{group[0].name} (+{len(group) - 1} batched)"
            )
            task = progress.add_task(
                label[:60], total=len(steps) - scheds[group[0].name].first_active
            )

            def tick(task=task, k=len(group)) -> None:
                progress.advance(task)
                progress.advance(study_task, k)

            for samples in executor.run_batch(group, baseline, options.mode, tick):
                journal.append(samples)
            progress.remove_task(task)

    done = journal.done
    # the baseline shares no prefix: all of its steps are its own (start 0), else its time counts twice
    done["baseline"] = Samples(
        "baseline", baseline.xs[-1], 0, baseline.seconds, len(steps) * per_forward
    )
    counter = FlopCounter(model, programs, executor.doubled)
    base_flops = counter.trajectory(scheds["baseline"])
    base_step = baseline.seconds / len(steps)
    measure = Measure(plan.metrics, model, done["baseline"].images, list(setup.prompts))
    results = []
    for v in plan.variants:
        s = done[v.name]
        flops = counter.trajectory(scheds[v.name])
        # the steps before its start ran as the baseline's: charge them at the baseline's pace
        full_seconds = s.start_step * base_step + s.seconds
        metrics = measure.metrics(s.images)
        results.append(
            VariantResult(
                name=v.name,
                origin=v.origin,
                interventions=v.interventions,
                metrics=metrics,
                cost=Cost(flops, flops / base_flops, full_seconds, baseline.seconds / full_seconds),
                start_step=s.start_step,
                evaluations=s.evaluations,
            )
        )
    # ---- searches (ablang/search.py): after the variants, before the results are written.
    # Each search's best variant joins the results under the search's name.
    searched, found = [], {}
    if plan.searches:
        from ablang.search import SearchOptions, run_searches

        search_options = SearchOptions(
            mode=options.mode, batch=max_chunks, lookahead=1 if device.type == "cpu" else max_chunks
        )
        searched, best_samples = run_searches(
            plan, executor, baseline, measure, counter, search_options, console
        )
        for r, s in zip(searched, best_samples):
            v = found[r.name] = r.best_variant()
            done[v.name] = s
            flops = counter.trajectory(schedule(v, steps))
            full_seconds = s.start_step * base_step + s.seconds
            results.append(
                VariantResult(
                    name=v.name,
                    origin=v.origin,
                    interventions=v.interventions,
                    metrics=dict(r.best.metrics),
                    cost=Cost(
                        flops, flops / base_flops, full_seconds, baseline.seconds / full_seconds
                    ),
                    start_step=s.start_step,
                    evaluations=s.evaluations,
                )
            )
    # ---- end of searches
    res = Results(
        plan=plan,
        model_label=model.label,
        model_checksum=model.checksum,
        timesteps=tuple(s.t for s in steps),
        guidance=setup.guidance,
        prompts=setup.prompts,
        seeds=setup.seeds,
        mode=options.mode,
        variants=tuple(results),
        seconds=time.perf_counter() - started,
        versions=versions(),
        searches=tuple(searched),
    )
    files = write_report(res, out, {v.name: done[v.name].images for v in res.variants})
    print_report(res, console, out, files)
    if options.emit and plan.emits:
        from ablang.emit import emit_sampler

        for e in plan.emits:
            variant = found[e.variant] if e.variant in found else plan.variant(e.variant)
            path = emit_sampler(plan, variant, model, Path(e.path), programs)
            console.print(f"emitted sampler for {e.variant!r}: {path}")
    return res
