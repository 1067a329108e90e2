"""report: a run's results for people (rich table, heatmaps, sample grids) and for programs
(``results.json``).

results.json (``results_json``) holds everything needed to reproduce the numbers::

    {"ablang_version", "study": {"path", "title", "sha256"}, "model": {"name", "checksum"},
     "sampler": {"kind", "steps", "guidance", "timesteps"}, "seed", "samples", "noise", "prompts",
     "variants": [{"name", "interventions": [{"op", "component", "window": {"kind", "lo", "hi",
                   "inclusive"}, "params"}], "metrics": {name: number},
                   "intervals": {name: [lo, hi]}, "std": {name: number},
                   "within_noise": {name: bool},
                   "cost": {"unet_flops", "flops_ratio", "seconds", "flop_speedup",
                            "wall_speedup"}}, ...],
     "sweeps": [{"name", "op", "side", "metric", "components", "windows", "variants",
                 "phases"}, ...],
     "mode", "seeds", "versions", "searches",
     "statistics": {"unit", "images", "interval", "level", "resamples", "seed", "noise",
                    "floors": {metric: number}, "warnings": [text]},
     "run_seconds"}

- ``variants[0]`` is the baseline; ``prompts`` and ``seeds`` have one entry per sample (sample i of
  every variant used ``seeds[i]`` and ``prompts[i]``; with ``noise`` "image" prompt p's seeds are
  offset by p * 2**24); ``timesteps`` are in visiting order.
- A sweep's ``variants[i][j]`` names the variant for ``components[i]`` in ``windows[j]``; its
  ``phases`` is ``ablang.phases.phases_json`` (null when the bands were not measured).
- Numbers that are not finite are written as ``null``: JSON has no infinity, and strict parsers
  reject ``Infinity``. The only one in practice is the baseline's ``psnr`` (identical images,
  +inf), so ``"psnr": null`` reads "identical to the baseline".
- ``intervals``, ``std``, ``within_noise`` and ``statistics`` are defined in docs/statistics.md;
  ``flop_speedup`` is ``1 / flops_ratio``, ``wall_speedup`` the baseline's seconds over the
  variant's (meaningful in accelerate mode only). Files written before them lack them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ablang.fsio import atomic_save_image, atomic_savefig, atomic_write_text, make_dirs
from ablang.heatmap import NOISE_MARK, save_heatmap_png, terminal_heatmap
from ablang.phases import phase_table, phases_json, run_phases, save_phase_plot
from ablang.plan import Intervention, Plan, Search
from ablang.results import Results, VariantResult, format_metric, slug

RESULTS_FILE = "results.json"
GRIDS_DIR = "grids"
# What a sweep's heatmap shows: the first of these the study asks for.
SWEEP_METRICS = ("ssim", "mse", "psnr", "fid", "kid", "accuracy")


# ---------------------------------------------------------------------------- names


def _unique_slugs(names: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = s = slug(name)
        k = 2
        while s in used:
            s, k = f"{base}-{k}", k + 1
        used.add(s)
        out[name] = s
    return out


def sweep_metric(plan: Plan) -> str:
    """The metric a sweep's heatmap shows: the first of ssim, mse, psnr, fid, kid, accuracy that
    the study asks for; ssim if it asks for none of them (the run then measures ssim too)."""
    for m in SWEEP_METRICS:
        if m in plan.metrics:
            return m
    return "ssim"


# ---------------------------------------------------------------------------- results.json


def _json_safe(obj):
    """Non-finite floats -> None, tuples -> lists, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _intervention_json(iv: Intervention) -> dict:
    return {
        "op": iv.op,
        "component": iv.component,
        "window": iv.window.to_json(),
        "params": dict(iv.params),
    } | ({"side": iv.side} if iv.side != "both" else {})


def _variant_json(v: VariantResult) -> dict:
    return {
        "name": v.name,
        "interventions": [_intervention_json(iv) for iv in v.interventions],
        "metrics": {k: float(x) for k, x in v.metrics.items()},
        "intervals": {k: [float(lo), float(hi)] for k, (lo, hi) in v.intervals.items()},
        "std": {k: float(x) for k, x in v.std.items()},
        "within_noise": {k: bool(x) for k, x in v.within_noise.items()},
        "cost": {
            "unet_flops": float(v.cost.unet_flops),
            "flops_ratio": float(v.cost.flops_ratio),
            "seconds": float(v.cost.seconds),
            "flop_speedup": float(v.cost.flop_speedup),
            "wall_speedup": float(v.cost.wall_speedup),
        },
    }


def _search_json(s: Search, results: Results) -> dict:
    """The search as the plan states it; once it has run, with its outcome (``SearchResult.to_json``:
    best, path, pareto, points)."""
    for r in results.searches:
        if r.name == s.name:
            return r.to_json()
    return {
        "name": s.name,
        "objective": s.objective,
        "constraints": [
            {"metric": c.metric, "cmp": c.cmp, "value": c.value, "relative": c.relative}
            for c in s.constraints
        ],
        "ops": list(s.ops),
        "components": list(s.components),
        "windows": [w.to_json() for w in s.windows],
        "every": s.every,
        "periods": list(s.cache_periods),
        "validation": None
        if s.validation is None
        else {"samples": s.validation.samples, "seeds": list(s.validation.seeds)},
    }


def results_json(results: Results) -> dict:
    """The results.json document (see the module docstring); JSON-safe (no inf/nan)."""
    plan = results.plan
    metric = sweep_metric(plan)
    phases = run_phases(results)  # a sweep's "phases" is null without both band metrics
    doc = {
        "ablang_version": results.versions.get("ablang") or _ablang_version(),
        "study": {"path": plan.source, "title": plan.title, "sha256": plan.sha256},
        "model": {"name": results.model_label, "checksum": results.model_checksum},
        "sampler": {
            "kind": plan.sampler.kind,
            # diffusers models: "pipeline" (the directory's own) or a scheduler class name
            **({"scheduler": plan.sampler.scheduler} if plan.sampler.scheduler else {}),
            "steps": plan.sampler.steps,
            "guidance": float(results.guidance),
            # a diffusers scheduler's may be fractional (Euler with Karras sigmas)
            "timesteps": [int(t) if float(t).is_integer() else float(t) for t in results.timesteps],
        },
        "seed": plan.seed,
        "samples": plan.samples,
        "noise": plan.noise,  # "sample" or "image": which images share a draw (`noise per ...`)
        "prompts": list(results.prompts),
        "variants": [_variant_json(v) for v in results.variants],
        "sweeps": [
            {
                "name": s.name,
                "op": s.op,
                "side": s.side,
                "metric": metric,
                "components": list(s.components),
                "windows": [w.to_json() for w in s.windows],
                "variants": [list(row) for row in s.variants],
                "phases": phases_json(phases[s.name]) if s.name in phases else None,
            }
            for s in plan.sweeps
        ],
        "mode": results.mode,
        "seeds": [int(s) for s in results.seeds],
        "versions": dict(results.versions),
        "searches": [_search_json(s, results) for s in plan.searches],
        "statistics": dict(results.statistics),
        "run_seconds": float(results.seconds),
    }
    return _json_safe(doc)


def _ablang_version() -> str:
    from ablang import __version__

    return __version__


def write_results(results: Results, out_dir: str | Path) -> Path:
    """``<out_dir>/results.json``: indent 2, keys in contract order, strict JSON."""
    out = make_dirs(out_dir)
    path = out / RESULTS_FILE
    text = json.dumps(results_json(results), indent=2, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


# ---------------------------------------------------------------------------- the table


MAX_NAME = 24
MAX_INTERVENTIONS = 3  # lines shown per variant before "(+k more)"


def _ellipsize(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def interventions_text(ivs: Sequence[Intervention]) -> str:
    """One line per intervention, ``drop skip[3] for t in [600, 1000)``; at most three shown."""
    if not ivs:
        return "-"
    lines = [iv.label() for iv in ivs[:MAX_INTERVENTIONS]]
    if len(ivs) > MAX_INTERVENTIONS:
        lines.append(f"(+{len(ivs) - MAX_INTERVENTIONS} more)")
    return "\n".join(_ellipsize(line, 60) for line in lines)


def variant_text(v: VariantResult) -> Text:
    """One cell per variant: a bare line's or a sweep cell's name already is its interventions
    (``sweep1: drop skip[3] for t in [0, 100)``); a named variant gets ``name: interventions``."""
    text = interventions_text(v.interventions)
    if not v.interventions or v.name.endswith(text):
        return Text(v.name, style="bold" if not v.interventions else "")
    out = Text(_ellipsize(v.name, MAX_NAME), style="bold")
    out.append(": " + text)
    return out


def metric_cell(v: VariantResult, metric: str, intervals: bool = True) -> Text:
    """A metric as the table shows it: the value, ``~`` when its difference from the baseline is
    within noise, and (``intervals``) its 95% interval below it when it has any width."""
    out = Text(format_metric(metric, v.metrics.get(metric)))
    if v.noise(metric):
        out.append(NOISE_MARK, style="bold cyan")
    elif metric in v.within_noise or (v.origin == "baseline" and v.within_noise):
        out.append(" ")  # keeps the digits of marked and unmarked values aligned
    interval = v.intervals.get(metric)
    if intervals and interval is not None:
        lo, hi = interval
        if not (math.isnan(lo) or math.isnan(hi) or lo == hi):
            out.append(f"\n{format_metric(metric, lo)}–{format_metric(metric, hi)}", style="dim")
    return out


def _speedup(x: float) -> str:
    return f"{x:.2f}x" if math.isfinite(x) else "-"


def study_table(results: Results) -> Table:
    """One row per variant, baseline first: name, interventions, FLOPs ratio and FLOP-bound
    speedup (in accelerate mode also the time and the wall speedup), then every metric the study
    asked for, ``~`` where the difference from the baseline is within noise, each mean's 95%
    interval over images below it."""
    plan = results.plan
    title = plan.title or Path(plan.source).stem or "study"
    table = Table(title=title, title_style="bold", show_lines=False)
    wall = results.mode == "accelerate"
    notes = []
    if not wall:
        notes.append(
            "speedup is FLOP-bound: measure mode computes the whole Unet for every variant, so its "
            "wall time says nothing; run with --mode accelerate (or time the emitted sampler) for "
            "wall speedups"
        )
    if any(v.intervals or v.within_noise for v in results.variants):
        notes.append(
            f"{NOISE_MARK}: within noise of the baseline; below a value its 95% bootstrap interval "
            "over images (docs/statistics.md)"
        )
    if notes:
        table.caption = "\n".join(notes)
    table.add_column("variant: interventions", max_width=72, overflow="fold")
    table.add_column("FLOPs", justify="right")
    table.add_column("FLOP speedup", justify="right")
    if wall:
        table.add_column("time (s)", justify="right")
        table.add_column("wall speedup", justify="right")
    metrics = list(plan.metrics)
    for v in results.variants:
        for m in v.metrics:
            if m not in metrics:
                metrics.append(m)
    for m in metrics:
        table.add_column(m, justify="right")
    for k, v in enumerate(results.variants):
        row: list[Text | str] = [
            variant_text(v),
            f"{v.cost.flops_ratio:.2f}" if math.isfinite(v.cost.flops_ratio) else "-",
            _speedup(v.cost.flop_speedup),
        ]
        if wall:
            row += [f"{v.cost.seconds:.2f}", _speedup(v.cost.wall_speedup)]
        row += [metric_cell(v, m) for m in metrics]
        table.add_row(*row, style="italic" if k == 0 else None)
    return table


def statistics_notes(results: Results) -> list[Text]:
    """The fid/kid floors and the warnings of ``Results.statistics``, one line each."""
    stats = results.statistics or {}
    out = []
    for m, floor in (stats.get("floors") or {}).items():
        if floor is not None and math.isfinite(floor):
            out.append(
                Text(
                    f"{m} floor: {format_metric(m, floor)} between two halves of the baseline's "
                    f"images; a {m} difference below it is within noise",
                    style="dim",
                )
            )
    for w in stats.get("warnings") or ():
        line = Text("warning: ", style="yellow")
        line.append(w)
        out.append(line)
    return out


# ---------------------------------------------------------------------------- heatmaps


def heatmap_path(out_dir: str | Path, sweep_name: str) -> Path:
    return Path(out_dir) / f"heatmap_{slug(sweep_name)}.png"


def phase_plot_path(out_dir: str | Path, sweep_name: str) -> Path:
    return Path(out_dir) / f"phases_{slug(sweep_name)}.png"


def write_phase_plots(results: Results, out_dir: str | Path) -> list[Path]:
    """``<out_dir>/phases_<sweep>.png`` for every sweep with both bands measured."""
    title = results.plan.title or Path(results.plan.source).stem
    return [
        save_phase_plot(p, phase_plot_path(out_dir, name), title, results.plan.num_timesteps)
        for name, p in run_phases(results).items()
    ]


def write_heatmaps(results: Results, out_dir: str | Path) -> list[Path]:
    """``<out_dir>/heatmap_<sweep>.png`` for every sweep."""
    metric = sweep_metric(results.plan)
    return [
        save_heatmap_png(s, results, metric, heatmap_path(out_dir, s.name))
        for s in results.plan.sweeps
    ]


# ---------------------------------------------------------------------------- sample grids


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".." if text else ""


def default_nrow(prompts: Sequence[str]) -> int:
    """Images per grid row: the samples of one prompt (so each row is one prompt) when that is a
    sensible width, else about a square."""
    n = len(prompts)
    run = 1
    while run < n and prompts[run] == prompts[0]:
        run += 1
    if 1 < run <= 16 and n % run == 0:
        return run
    return max(1, math.ceil(math.sqrt(n)))


def sample_grid(
    images: torch.Tensor, prompts: Sequence[str], path: str | Path, nrow: int | None = None
) -> Path:
    """A PNG grid of ``images`` (``[N x C x H x W]`` in [-1, 1], C = 1 or 3), ``nrow`` per row,
    labelled with the prompts: one label per row when the row shares a prompt, else a caption over
    each image. Small images are enlarged (nearest) to at least 64 pixels."""
    from PIL import Image, ImageDraw

    images = images.detach().float().cpu()
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"sample_grid takes 1 or 3 channels, not {c}")
    prompts = list(prompts) if prompts else [""] * n
    if len(prompts) != n:
        raise ValueError(f"{n} images but {len(prompts)} prompts")
    nrow = max(1, min(nrow or default_nrow(prompts), n))
    rows = math.ceil(n / nrow)
    scale = max(1, math.ceil(64 / max(h, w)))
    ch, cw = h * scale, w * scale
    pad = 2
    font = _font(11)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(probe.textbbox((0, 0), "Ag", font=font)[3]) + 3

    row_prompts = [prompts[r * nrow : (r + 1) * nrow] for r in range(rows)]
    per_row = any(prompts) and all(len(set(rp)) == 1 for rp in row_prompts)
    label_w = 0
    if per_row:
        label_w = min(200, int(max(probe.textlength(rp[0], font=font) for rp in row_prompts)) + 8)
    caption_h = 0 if per_row or not any(prompts) else line_h

    cell_w, cell_h = cw + pad, ch + pad + caption_h
    sheet = Image.new("RGB", (label_w + nrow * cell_w + pad, rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [N x C x H x W]
    if c == 1:
        pixels = pixels.repeat(1, 3, 1, 1)
    for k in range(n):
        r, col = divmod(k, nrow)
        x0, y0 = label_w + pad + col * cell_w, pad + r * cell_h
        tile = Image.fromarray(pixels[k].permute(1, 2, 0).numpy(), "RGB")
        if scale > 1:
            tile = tile.resize((cw, ch), Image.Resampling.NEAREST)
        if caption_h:
            draw.text((x0, y0), _fit(draw, prompts[k], font, cw), fill="black", font=font)
        sheet.paste(tile, (x0, y0 + caption_h))
    if per_row:
        for r, rp in enumerate(row_prompts):
            y = pad + r * cell_h + (ch - line_h) // 2
            draw.text((4, y), _fit(draw, rp[0], font, label_w - 8), fill="black", font=font)
    path = Path(path)
    make_dirs(path.parent)
    return atomic_save_image(sheet, path)


def write_grids(
    samples_by_variant: Mapping[str, torch.Tensor],
    prompts: Sequence[str],
    out_dir: str | Path,
    nrow: int | None = None,
) -> dict[str, Path]:
    """``<out_dir>/grids/<slug>.png`` per variant (values: image tensors or ``Samples``); slugs
    that would collide get ``-2``, ``-3``... Returns variant name -> path."""
    slugs = _unique_slugs(samples_by_variant)
    out: dict[str, Path] = {}
    for name, value in samples_by_variant.items():
        images = getattr(value, "images", value)
        out[name] = sample_grid(
            images, prompts, Path(out_dir) / GRIDS_DIR / f"{slugs[name]}.png", nrow
        )
    return out


# ---------------------------------------------------------------------------- everything


# ---------------------------------------------------------------------------- searches


def search_png_path(out_dir: str | Path, search_name: str) -> Path:
    return Path(out_dir) / f"search_{slug(search_name)}.png"


OUTCOME_STYLE = {"accepted": "green", "rejected": "red", "deferred": "yellow"}


def search_table(result) -> Table:
    """A search's path: one row per measured combination (accepted ones bold), with the
    candidate's own speedup and sensitivity, the combination's speedup and bounded metrics; a
    caption counts the candidates skipped without a measurement."""
    s = result.search
    bounds = ", ".join(
        f"{c.metric} {c.cmp} {format_metric(c.metric, b)}"
        + (f" ({c.value:+g}%)" if c.relative else "")
        for c, b in zip(s.constraints, result.bounds)
    )
    skipped: dict[str, int] = {}
    for p in result.path:
        if p.combined is None:
            skipped[p.outcome] = skipped.get(p.outcome, 0) + 1
    caption = f"{result.candidates['measured']} candidates measured alone"
    if skipped:
        caption += "; skipped: " + ", ".join(f"{n} {why}" for why, n in skipped.items())
    if result.redundant:
        caption += (
            f"; {len(result.redundant)} accepted ones left out of the best (they change nothing)"
        )
    validates = result.validation_baseline is not None
    if validates:
        caption += f"; val.: measured again on {len(result.validation_seeds)} images of other seeds"
    table = Table(
        title=f"search {s.name}: speedup where {bounds}", title_style="bold", caption=caption
    )
    table.add_column("#", justify="right")
    table.add_column("candidate", max_width=46, overflow="fold")
    table.add_column("alone", justify="right")
    table.add_column("sens.", justify="right")
    table.add_column("", justify="left")
    table.add_column("speedup", justify="right")
    metrics = list(dict.fromkeys(c.metric for c in s.constraints))
    for m in metrics:
        table.add_column(m, justify="right")
    if validates:
        # the same metrics on the validation seeds; `-` where a point was not measured there
        # (it breaks a bound on the study's images already)
        for m in metrics:
            table.add_column(f"val. {m}", justify="right")
        table.add_column("feasible", justify="left")

    def validation(p) -> list:
        if not validates:
            return []
        values = [
            format_metric(m, p.validation.get(m)) if p.validation is not None else "-"
            for m in metrics
        ]
        return [*values, "yes" if p.feasible else "no"]

    k = 0
    for p in result.path:
        if p.combined is None:
            continue
        k += 1
        ok = p.outcome == "accepted"
        table.add_row(
            str(k),
            p.candidate.label(),
            f"{p.alone.speedup:.3f}x",
            f"{p.sensitivity:.2f}",
            Text(p.outcome, style=OUTCOME_STYLE.get(p.outcome, "")),
            f"{p.combined.speedup:.2f}x",
            *[format_metric(m, p.combined.metrics.get(m)) for m in metrics],
            *validation(p.combined),
            style="bold" if ok else "dim",
        )
    best = result.best
    table.add_row(
        "",
        Text(f"best: {len(best.interventions)} interventions", style="bold"),
        "",
        "",
        "",
        Text(f"{best.speedup:.2f}x", style="bold"),
        *[format_metric(m, best.metrics.get(m)) for m in metrics],
        *validation(best),
        end_section=True,
    )
    return table


def save_search_png(result, path: str | Path) -> Path:
    """Speedup against each bounded metric, one panel each: every measured point (candidates
    alone grey, combinations blue when accepted, red when rejected), the Pareto front, the bound
    as a dashed line and the best variant as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cons = result.search.constraints
    fig, axes = plt.subplots(
        1, max(1, len(cons)), figsize=(5.2 * max(1, len(cons)), 4.2), squeeze=False
    )
    accepted = {id(p.combined) for p in result.path if p.outcome == "accepted"}
    for ax, c, b in zip(axes[0], cons, result.bounds):

        def xy(points, metric=c.metric):
            pts = [
                (p.speedup, p.metrics[metric])
                for p in points
                if math.isfinite(p.metrics.get(metric, math.nan))
            ]
            return [x for x, _ in pts], [y for _, y in pts]

        groups = [
            ("alone", [p for p in result.points if p.kind == "single"], {"c": "0.6", "s": 14}),
            (
                "rejected",
                [s.combined for s in result.path if s.outcome == "rejected" and s.combined],
                {"c": "tab:red", "marker": "x", "s": 18},
            ),
            (
                "deferred",
                [s.combined for s in result.path if s.outcome == "deferred" and s.combined],
                {"c": "tab:orange", "marker": "+", "s": 18},
            ),
            (
                "accepted",
                [p for p in result.points if id(p) in accepted],
                {"c": "tab:blue", "s": 22},
            ),
            (
                "baseline",
                [p for p in result.points if p.kind == "baseline"],
                {"c": "k", "marker": "s", "s": 30},
            ),
        ]
        for label, pts, style in groups:
            xs, ys = xy(pts)
            if xs:
                ax.scatter(xs, ys, label=label, **style)
        front = [result.points[i] for i in result.pareto.get(c.metric, ())]
        xs, ys = xy(front)
        if xs:
            ax.plot(xs, ys, "-", c="tab:green", lw=1.2, label="Pareto front", zorder=0)
        ax.axhline(b, ls="--", c="tab:orange", lw=1.2, label=f"{c.metric} {c.cmp} {b:.4g}")
        xs, ys = xy([result.best])
        if xs:
            ax.scatter(xs, ys, marker="*", s=160, c="gold", edgecolors="k", zorder=5, label="best")
        ax.set_xlabel("FLOP speedup over the baseline")
        ax.set_ylabel(c.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"search {result.search.name}: every measured variant, FLOP speedup against each bound",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    try:
        make_dirs(path.parent)
        atomic_savefig(fig, path, dpi=110)
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------------------- everything


def write_report(
    results: Results,
    out_dir: str | Path,
    samples_by_variant: Mapping[str, torch.Tensor] | None = None,
) -> list[Path]:
    """results.json, a heatmap PNG per sweep and (given the images) a grid per variant."""
    files = [write_results(results, out_dir)]
    files += write_heatmaps(results, out_dir)
    files += write_phase_plots(results, out_dir)
    files += [save_search_png(r, search_png_path(out_dir, r.name)) for r in results.searches]
    if samples_by_variant:
        files += list(write_grids(samples_by_variant, results.prompts, out_dir).values())
    return files


def print_report(
    results: Results,
    console: Console,
    out_dir: str | Path | None = None,
    files: Sequence[str | Path] = (),
) -> None:
    """The study table, then every sweep's heatmap, then where the files were written."""
    console.print(study_table(results))
    for line in statistics_notes(results):
        console.print(line)
    metric = sweep_metric(results.plan)
    phases = run_phases(results)
    for sweep in results.plan.sweeps:
        console.print()
        console.print(terminal_heatmap(sweep, results, metric))
        if sweep.name in phases:
            console.print()
            console.print(phase_table(phases[sweep.name]))
    for found in results.searches:
        console.print()
        console.print(search_table(found))
    if out_dir is not None or files:
        console.print()
        where = Text("results in ", style="bold")
        where.append(str(out_dir) if out_dir is not None else str(Path(files[0]).parent))
        console.print(where)
        grids = [Path(f) for f in files if Path(f).parent.name == GRIDS_DIR]
        for f in files:
            if Path(f) not in grids:
                console.print(f"  {f}")
        if grids:
            console.print(
                f"  {grids[0].parent}/ ({len(grids)} sample grid{'s' * (len(grids) != 1)})"
            )
    console.print(
        Text(
            f"{len(results.variants)} variants in {results.seconds:.1f} s ({results.mode} mode)",
            style="dim",
        )
    )
