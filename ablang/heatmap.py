"""The component x window heatmap of a sweep, in the terminal (rich) and as a PNG (matplotlib).

A sweep ``drop skip[0..11] for t in 0..1000 by 200`` gives ``variants[i][j]`` = component i in
window j; its heatmap shows one metric per cell. Colours run from green (close to the baseline:
high ssim/psnr/accuracy, low mse/fid/kid) to red (far from it). The green end is the baseline's
own value where it has a finite one (ssim 1, mse 0, its fid...), the red end the worst cell.
A cell whose difference from the baseline is within noise (docs/statistics.md) is marked ``~``
and, in the PNG, hatched.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text

from ablang.fsio import atomic_savefig, make_dirs
from ablang.plan import Intervention, Sweep, Window
from ablang.results import HIGHER_IS_CLOSER, Results, format_metric

NOISE_MARK = "~"  # a cell whose difference from the baseline is within noise

# RdYlGn's ends and middle: far from the baseline -> close to it.
_RED, _YELLOW, _GREEN = (215, 48, 39), (254, 224, 139), (26, 152, 80)


def window_label(window: Window) -> str:
    """``[600, 1000)`` / ``[0, 10]`` / ``all steps``: a column header."""
    if window.kind == "all":
        return "all steps"
    return f"[{window.lo}, {window.hi}{']' if window.inclusive else ')'}"


def heatmap_matrix(
    sweep: Sweep, results: Results, metric: str
) -> tuple[list[str], list[str], np.ndarray]:
    """``(components, window labels, values [len(components) x len(windows)])``: ``values[i, j]``
    is ``metric`` of the variant for component i in window j; NaN where it was not measured."""
    by_name = {v.name: v for v in results.variants}
    values = np.full((len(sweep.components), len(sweep.windows)), np.nan)
    for i, row in enumerate(sweep.variants):
        for j, name in enumerate(row):
            v = by_name.get(name)
            if v is not None and metric in v.metrics and v.metrics[metric] is not None:
                values[i, j] = float(v.metrics[metric])
    return list(sweep.components), [window_label(w) for w in sweep.windows], values


def heatmap_noise(sweep: Sweep, results: Results, metric: str) -> np.ndarray:
    """``[len(components) x len(windows)]`` bool: whether the cell's difference from the
    baseline is within noise (``VariantResult.noise``; docs/statistics.md)."""
    by_name = {v.name: v for v in results.variants}
    noise = np.zeros((len(sweep.components), len(sweep.windows)), dtype=bool)
    for i, row in enumerate(sweep.variants):
        for j, name in enumerate(row):
            v = by_name.get(name)
            noise[i, j] = v is not None and v.noise(metric)
    return noise


def _baseline_value(results: Results, metric: str) -> float | None:
    value = results.baseline.metrics.get(metric) if results.variants else None
    return None if value is None or not math.isfinite(value) else float(value)


def color_range(values: np.ndarray, metric: str, baseline: float | None) -> tuple[float, float]:
    """``(good, bad)``: the values drawn fully green and fully red.

    Good is the baseline's own value (if finite), else the best finite cell; bad the worst finite
    cell (or good itself when nothing is worse)."""
    higher = metric in HIGHER_IS_CLOSER
    finite = values[np.isfinite(values)]
    best = (finite.max() if higher else finite.min()) if finite.size else 0.0
    worst = (finite.min() if higher else finite.max()) if finite.size else 0.0
    good = baseline if baseline is not None else float(best)
    if higher:
        good = max(good, float(best))
        bad = min(float(worst), good)
    else:
        good = min(good, float(best))
        bad = max(float(worst), good)
    return float(good), float(bad)


def closeness(value: float, good: float, bad: float, metric: str) -> float:
    """0 (bad end) .. 1 (good end); +inf psnr is as close as it gets."""
    if math.isnan(value):
        return math.nan
    if math.isinf(value):
        return 1.0 if (value > 0) == (metric in HIGHER_IS_CLOSER) else 0.0
    if good == bad:
        return 1.0
    return float(min(1.0, max(0.0, (value - bad) / (good - bad))))


def _rgb(c: float) -> tuple[int, int, int]:
    lo, hi, f = (_RED, _YELLOW, c * 2) if c < 0.5 else (_YELLOW, _GREEN, (c - 0.5) * 2)
    return tuple(round(a + (b - a) * f) for a, b in zip(lo, hi))  # type: ignore[return-value]


def _ink(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def sweep_title(sweep: Sweep) -> str:
    """``sweep skips: drop`` / ``sweep s: scale by 0.5`` / ``sweep c: cache every 2 on uncond``."""
    params = Intervention(sweep.op, "", **_fields(dict(sweep.params))).schedule_label()
    if sweep.op == "scale":
        params = " " + " ".join(f"by {v:g}" for k, v in sweep.params if k == "factor")
    side = f" on {sweep.side}" if sweep.side != "both" else ""
    return f"sweep {sweep.name}: {sweep.op}{params}{side}"


def _fields(params: dict) -> dict:
    """A sweep's params as ``plan.Intervention`` fields (for its canonical text)."""
    keys = {
        "every": "every",
        "growing": "grow",
        "at": "at",
        "at_kind": "at_kind",
        "extrapolated": "extrapolate",
    }
    return {keys[k]: v for k, v in params.items() if k in keys}


def _direction(metric: str) -> str:
    return "higher" if metric in HIGHER_IS_CLOSER else "lower"


def terminal_heatmap(sweep: Sweep, results: Results, metric: str):
    """A rich table: rows = components, columns = windows, each cell the metric on its colour,
    then a legend of what the colours mean."""
    rows, cols, values = heatmap_matrix(sweep, results, metric)
    noise = heatmap_noise(sweep, results, metric)
    good, bad = color_range(values, metric, _baseline_value(results, metric))
    title = Text(f"{sweep_title(sweep)}, {metric} per component x window", style="bold")
    table = Table(show_lines=False, pad_edge=False)
    axis = "t" if sweep.windows and sweep.windows[0].kind == "t" else "step"
    table.add_column(f"component \\ {axis}", style="bold", no_wrap=True)
    for label in cols:
        table.add_column(label, justify="center", no_wrap=True)
    for i, comp in enumerate(rows):
        cells: list[Text] = []
        for j in range(len(cols)):
            v = values[i, j]
            c = closeness(v, good, bad, metric)
            if math.isnan(c):
                cells.append(Text("-", style="dim"))
                continue
            rgb = _rgb(c)
            style = Style(color=_ink(rgb), bgcolor=f"rgb({rgb[0]},{rgb[1]},{rgb[2]})")
            mark = NOISE_MARK if noise[i, j] else " "
            cells.append(Text(f" {format_metric(metric, float(v))}{mark}", style=style))
        table.add_row(comp, *cells)
    legend = Text("  ")
    legend.append("   ", style=Style(bgcolor="rgb({},{},{})".format(*_GREEN)))
    legend.append(f" close to baseline ({metric} {format_metric(metric, good)})   ")
    legend.append("   ", style=Style(bgcolor="rgb({},{},{})".format(*_RED)))
    legend.append(
        f" far ({metric} {format_metric(metric, bad)});  {_direction(metric)} {metric} = closer"
    )
    if axis == "t":
        legend.append(f";  t = {results.plan.num_timesteps - 1} is noise, 0 the image", style="dim")
    if noise.any():
        legend.append(f"\n  {NOISE_MARK}: within noise of the baseline (docs/statistics.md)")
    return Group(title, table, legend)


def _xlabel(sweep: Sweep, results: Results) -> str:
    kind = sweep.windows[0].kind if sweep.windows else "all"
    if kind == "t":
        top = results.plan.num_timesteps - 1
        return f"time window: t in [lo, hi)   (t = {top} is noise ... t = 0 is the image)"
    if kind == "step":
        last = max(len(results.timesteps), results.plan.sampler.steps) - 1
        return f"sampler step window   (step 0 is noise ... step {last} is the image)"
    return "window"


def save_heatmap_png(sweep: Sweep, results: Results, metric: str, path: str | Path) -> Path:
    """The heatmap as a PNG (see ``heatmap_figure``)."""
    fig = heatmap_figure(sweep, results, metric)
    path = Path(path)
    make_dirs(path.parent)
    return atomic_savefig(fig, path)


def heatmap_figure(sweep: Sweep, results: Results, metric: str, figure_class=None):
    """The heatmap as a matplotlib ``Figure`` (Agg canvas, no pyplot state, so nothing leaks into
    pyplot's figure list): values annotated in the cells, a colourbar named after the metric, the
    study title and the op in the title. ``figure_class``: a ``Figure`` subclass to build."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    rows, cols, values = heatmap_matrix(sweep, results, metric)
    noise = heatmap_noise(sweep, results, metric)
    good, bad = color_range(values, metric, _baseline_value(results, metric))
    close = (
        np.vectorize(lambda v: closeness(v, good, bad, metric))(values) if values.size else values
    )
    cmap = LinearSegmentedColormap.from_list(
        "ablang", [tuple(c / 255 for c in rgb) for rgb in (_RED, _YELLOW, _GREEN)]
    ).with_extremes(bad="#dddddd")

    width = min(2.5 + 1.0 * max(len(cols), 1), 24)
    height = min(1.8 + 0.42 * max(len(rows), 1), 24)
    fig = (figure_class or Figure)(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(close), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            if math.isnan(v):
                continue
            rgb = _rgb(close[i, j])
            if noise[i, j]:
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0, ec=_ink(rgb))
                )
            ax.text(
                j,
                i,
                format_metric(metric, float(v)) + (NOISE_MARK if noise[i, j] else ""),
                ha="center",
                va="center",
                fontsize=8,
                color=_ink(rgb),
            )
    ax.set_xticks(range(len(cols)), cols, rotation=30 if len(cols) > 6 else 0, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(_xlabel(sweep, results), fontsize=9)
    ax.set_ylabel("component", fontsize=9)
    title = results.plan.title or Path(results.plan.source).stem or "study"
    hatched = "; hatched (~): within noise of the baseline" if noise.any() else ""
    ax.set_title(f"{title}\n{sweep_title(sweep)}, {metric}{hatched}", fontsize=10)

    # The colourbar is drawn in closeness but labelled in the metric's own values.
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    ticks = [float(t) for t in np.linspace(0.0, 1.0, 5)]
    bar.set_ticks(ticks, labels=[format_metric(metric, bad + t * (good - bad)) for t in ticks])
    bar.set_label(f"{metric} ({_direction(metric)} = closer to baseline)", fontsize=9)
    bar.ax.tick_params(labelsize=7)
    return fig
