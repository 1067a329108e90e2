"""phases: what a sweep says about *when* each component matters, and for what.

A sweep gives, per component i and window j, the change its variant made to the images, split
into ``composition`` (low frequencies) and ``detail`` (high; see ``ablang.bands``). This module
reads the two matrices and says, with thresholds from the study's ``bands`` line
(``plan.BandSpec``):

- per cell: ``negligible`` when ``composition + detail`` (= its mse) is below ``floor``
  (default 1e-4, PSNR 40 dB, invisible); else ``composition`` when the low band holds at least
  ``split`` (default 0.5) of the change, else ``detail``;
- per component: the window where its composition change is largest and the one where its
  detail change is largest (its composition phase and its detail phase);
- when the study measures ``identity`` too, the mean share of images whose digit changed, per
  class of cell: whether composition cells are the ones that change what the image *is*.

Everything here is a pure function of the numbers; ``phase_table`` renders the summary for the
terminal and ``save_phase_plot`` draws sensitivity against t per component, both bands.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ablang.bands import BAND_METRICS, IDENTITY
from ablang.plan import BandSpec, Plan, Sweep, Window

Kind = Literal["composition", "detail", "negligible"]
KINDS: tuple[Kind, ...] = ("composition", "detail", "negligible")
_MARK = {"composition": "C", "detail": "D", "negligible": "·"}
_STYLE = {
    "composition": "bold white on rgb(49,130,189)",
    "detail": "bold black on rgb(253,174,97)",
    "negligible": "dim",
}


def measured_metrics(plan: Plan) -> tuple[str, ...]:
    """What a run measures: the study's metrics, plus composition and detail when it has a
    sweep (every sweep gets a phase summary; the two cost one FFT per variant)."""
    extra = tuple(m for m in BAND_METRICS if plan.sweeps and m not in plan.metrics)
    return tuple(plan.metrics) + extra


def classify(composition: float, detail: float, floor: float, split: float) -> Kind | None:
    """One cell's class; None when it was not measured (NaN).

    >>> classify(0.003, 0.001, 1e-4, 0.5), classify(0.001, 0.003, 1e-4, 0.5)
    ('composition', 'detail')
    >>> classify(2e-5, 3e-5, 1e-4, 0.5)
    'negligible'
    """
    if math.isnan(composition) or math.isnan(detail):
        return None
    total = composition + detail
    if total <= 0 or total < floor:
        return "negligible"
    return "composition" if composition / total >= split else "detail"


def _argmax(values: Sequence[float]) -> int | None:
    best = None
    for j, v in enumerate(values):
        if not math.isnan(v) and (best is None or v > values[best]):
            best = j
    return best


@dataclass(frozen=True)
class ComponentPhases:
    """One component across the sweep's windows."""

    component: str
    composition_peak: int | None  # window index of its largest composition change
    detail_peak: int | None  # window index of its largest detail change
    kinds: tuple[Kind | None, ...]  # per window; None where not measured


@dataclass(frozen=True)
class PhaseSummary:
    """A sweep's phases. Matrices are ``[component][window]``, NaN where not measured."""

    sweep: str
    components: tuple[str, ...]
    windows: tuple[Window, ...]
    composition: tuple[tuple[float, ...], ...]
    detail: tuple[tuple[float, ...], ...]
    identity: tuple[tuple[float, ...], ...] | None  # None when the study does not measure it
    bands: BandSpec
    rows: tuple[ComponentPhases, ...]
    # per cell: both bands' differences from the baseline within noise (docs/statistics.md);
    # None when the run has no noise marks
    noise: tuple[tuple[bool, ...], ...] | None = None

    def count(self, kind: Kind, window: int) -> int:
        """How many components are of ``kind`` in window ``window``."""
        return sum(r.kinds[window] == kind for r in self.rows)

    def identity_by_kind(self) -> dict[str, float | None]:
        """Mean identity change over the cells of each kind (None: no such cell, or no identity)."""
        out: dict[str, float | None] = {}
        for kind in KINDS:
            vals = [
                self.identity[i][j]
                for i, r in enumerate(self.rows)
                for j, k in enumerate(r.kinds)
                if k == kind and self.identity is not None and not math.isnan(self.identity[i][j])
            ]
            out[kind] = sum(vals) / len(vals) if vals else None
        return out


def summarize(
    sweep: str,
    components: Sequence[str],
    windows: Sequence[Window],
    composition: Sequence[Sequence[float]],
    detail: Sequence[Sequence[float]],
    bands: BandSpec | None = None,
    identity: Sequence[Sequence[float]] | None = None,
) -> PhaseSummary:
    """The phase summary of constructed matrices (``[component][window]``, NaN = not measured);
    ``bands`` None: the default thresholds."""
    bands = bands if bands is not None else BandSpec()
    comp = tuple(tuple(float(v) for v in row) for row in composition)
    det = tuple(tuple(float(v) for v in row) for row in detail)
    shape = (len(components), len(windows))
    for name, m in (("composition", comp), ("detail", det)) + (
        (("identity", identity),) if identity is not None else ()
    ):
        if len(m) != shape[0] or any(len(row) != shape[1] for row in m):
            raise ValueError(f"{name} must be {shape[0]} x {shape[1]} (components x windows)")
    rows = tuple(
        ComponentPhases(
            c,
            _argmax(comp[i]),
            _argmax(det[i]),
            tuple(classify(a, b, bands.floor, bands.split) for a, b in zip(comp[i], det[i])),
        )
        for i, c in enumerate(components)
    )
    ident = None if identity is None else tuple(tuple(float(v) for v in r) for r in identity)
    return PhaseSummary(sweep, tuple(components), tuple(windows), comp, det, ident, bands, rows)


def sweep_phases(
    sweep: Sweep, metrics: Mapping[str, Mapping[str, float]], bands: BandSpec
) -> PhaseSummary | None:
    """The summary of a run's sweep from ``metrics`` (variant name -> its metrics); None when the
    run did not measure both bands."""

    def matrix(name: str) -> list[list[float]] | None:
        out = []
        for row in sweep.variants:
            cells = []
            for v in row:
                m = metrics.get(v, {})
                x = m.get(name)
                cells.append(math.nan if x is None else float(x))
            out.append(cells)
        return out if any(not math.isnan(x) for r in out for x in r) else None

    comp, det = matrix("composition"), matrix("detail")
    if comp is None or det is None:
        return None
    return summarize(
        sweep.name, sweep.components, sweep.windows, comp, det, bands, matrix(IDENTITY)
    )


def run_phases(results) -> dict[str, PhaseSummary]:
    """Sweep name -> its summary for every sweep of ``results`` (a ``measure.Results``) whose
    variants have both band metrics."""
    metrics = {v.name: v.metrics for v in results.variants}
    by_name = {v.name: v for v in results.variants}
    marked = any(v.within_noise for v in results.variants)
    out = {}
    for s in results.plan.sweeps:
        summary = sweep_phases(s, metrics, results.plan.bands)
        if summary is not None:
            if marked:
                noise = tuple(
                    tuple(
                        name in by_name
                        and by_name[name].noise("composition")
                        and by_name[name].noise("detail")
                        for name in row
                    )
                    for row in s.variants
                )
                summary = dataclasses.replace(summary, noise=noise)
            out[s.name] = summary
    return out


# ---------------------------------------------------------------------------- results.json


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def phases_json(summary: PhaseSummary) -> dict:
    """The ``phases`` entry of a sweep in results.json::

        {"cut", "floor", "split",
         "components": [{"component", "composition_peak": window | null,
                         "detail_peak": window | null, "kinds": [kind | null per window],
                         "within_noise": [bool per window] (when the run has noise marks)}],
         "counts": {kind: [per window]}, "identity_by_kind": {kind: mean | null} | null}

    ``cut`` is null when the study left it to the default (``min(H, W) / 8`` cycles per image).
    """
    b = summary.bands

    def window(j: int | None):
        return None if j is None else summary.windows[j].to_json()

    return {
        "cut": b.cut,
        "floor": b.floor,
        "split": b.split,
        "components": [
            {
                "component": r.component,
                "composition_peak": window(r.composition_peak),
                "detail_peak": window(r.detail_peak),
                "kinds": list(r.kinds),
                **({"within_noise": list(summary.noise[i])} if summary.noise else {}),
            }
            for i, r in enumerate(summary.rows)
        ],
        "counts": {k: [summary.count(k, j) for j in range(len(summary.windows))] for k in KINDS},
        "identity_by_kind": None
        if summary.identity is None
        else {k: (None if v is None else _num(v)) for k, v in summary.identity_by_kind().items()},
    }


# ---------------------------------------------------------------------------- terminal


def _window_label(w: Window) -> str:
    if w.kind == "all":
        return "all"
    return f"{w.lo}"


def _peak_text(summary: PhaseSummary, i: int, j: int | None, band: str):
    from ablang.heatmap import window_label
    from ablang.results import format_metric

    if j is None:
        return "-"
    matrix = summary.composition if band == "composition" else summary.detail
    return f"{window_label(summary.windows[j])} {format_metric(band, matrix[i][j])}"


def _noise_mark(summary: PhaseSummary, i: int, j: int) -> str:
    return "~" if summary.noise is not None and summary.noise[i][j] else ""


def phase_table(summary: PhaseSummary):
    """A rich table: per component its composition and detail peaks, then one letter per window
    (C composition, D detail, · negligible), and a count of each per window; a legend with the
    thresholds (and the identity change per class when measured)."""
    from rich.console import Group, RenderableType
    from rich.table import Table
    from rich.text import Text

    b = summary.bands
    title = Text(f"phases of sweep {summary.sweep}: composition vs detail", style="bold")
    table = Table(show_lines=False, pad_edge=False)
    axis = summary.windows[0].kind if summary.windows else "t"
    table.add_column("component", style="bold", no_wrap=True)
    table.add_column("composition peak", no_wrap=True)
    table.add_column("detail peak", no_wrap=True)
    for w in summary.windows:
        table.add_column(_window_label(w), justify="center", no_wrap=True)
    for i, r in enumerate(summary.rows):
        cells = [
            Text(_MARK[k] + _noise_mark(summary, i, j), style=_STYLE[k])
            if k
            else Text("-", style="dim")
            for j, k in enumerate(r.kinds)
        ]
        table.add_row(
            r.component,
            _peak_text(summary, i, r.composition_peak, "composition"),
            _peak_text(summary, i, r.detail_peak, "detail"),
            *cells,
        )
    for kind in ("composition", "detail"):
        counts = [str(summary.count(kind, j)) for j in range(len(summary.windows))]
        table.add_row(Text(f"# {kind}", style="italic"), "", "", *counts, style="dim")
    cut = f"{b.cut:g} cycles/image" if b.cut is not None else "min(H, W)/8 cycles/image"
    legend = Text("  ")
    legend.append(" C ", style=_STYLE["composition"])
    legend.append(f" composition: low band >= {b.split:g} of the change   ")
    legend.append(" D ", style=_STYLE["detail"])
    legend.append(" detail   ")
    legend.append("· negligible: mse < " + f"{b.floor:g}", style="dim")
    legend.append(f";  cut {cut};  columns: {axis} windows by their start", style="dim")
    if summary.noise and any(any(row) for row in summary.noise):
        legend.append("\n  ~: both bands within noise of the baseline (docs/statistics.md)")
    parts: list[RenderableType] = [title, table, legend]
    if summary.identity is not None:
        from ablang.results import format_metric

        by = summary.identity_by_kind()
        line = Text("  digit identity changed, mean per cell: ", style="dim")
        line.append(
            ", ".join(f"{k} {format_metric(IDENTITY, v)}" for k, v in by.items() if v is not None)
        )
        parts.append(line)
    return Group(*parts)


# ---------------------------------------------------------------------------- plot


def _centre(w: Window) -> float:
    return (w.lo + w.upper - 1) / 2 if w.kind != "all" else 0.0


def _styles(components: Iterable[str]) -> list[dict]:
    """Per component: colour by its position among its kind, line style by kind."""
    from matplotlib import colormaps

    comps = list(components)
    kinds = [c.split("[")[0] for c in comps]
    maps = {"enc": "Blues", "dec": "Oranges", "skip": "viridis", "mid": None, "level": "Greens"}
    out = []
    for c, k in zip(comps, kinds):
        same = [x for x, kk in zip(comps, kinds) if kk == k]
        pos = same.index(c) / max(1, len(same) - 1)
        if k == "mid":
            out.append({"color": "black", "lw": 2.2, "ls": "-"})
            continue
        cmap = colormaps[maps.get(k) or "viridis"]
        shade = 0.35 + 0.6 * pos if k in ("enc", "dec", "level") else 0.9 * pos
        out.append({"color": cmap(shade), "lw": 1.3, "ls": "--" if k == "dec" else "-"})
    return out


def save_phase_plot(
    summary: PhaseSummary, path: str | Path, title: str = "", num_timesteps: int = 1000
) -> Path:
    """Sensitivity against the window's centre, one line per component: a panel for composition,
    one for detail (and one for identity when measured). The noisy end is on the right (t grows
    to the right; step windows are drawn reversed), as in the heatmap for t sweeps. The y axis is
    logarithmic above the negligible floor (dashed) and linear below it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("composition", summary.composition), ("detail", summary.detail)]
    if summary.identity is not None:
        panels.append((IDENTITY, summary.identity))
    fig = Figure(figsize=(4.6 * len(panels) + 1.8, 4.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), sharex=True, squeeze=False)[0]
    xs = [_centre(w) for w in summary.windows]
    styles = _styles(summary.components)
    kind = summary.windows[0].kind if summary.windows else "all"
    floor = summary.bands.floor
    ymax = max([v for _, m in panels[:2] for row in m for v in row if math.isfinite(v)] + [floor])
    for ax, (name, m) in zip(axes, panels):
        for i, comp in enumerate(summary.components):
            ax.plot(xs, m[i], marker="o", ms=3, label=comp, **styles[i])
        if name in BAND_METRICS:
            ax.set_yscale("symlog", linthresh=floor if floor > 0 else 1e-6)
            ax.set_ylim(0, ymax * 1.3)  # both bands on one scale, so they compare at a glance
            ax.axhline(floor, ls=":", c="0.4", lw=1)
            ax.set_ylabel(f"{name} (mse of the {'low' if name == 'composition' else 'high'} band)")
        else:
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("identity (share of digits that changed)")
        if kind in ("t", "step"):
            ax.set_xlim(min(w.lo for w in summary.windows), max(w.upper for w in summary.windows))
        if kind == "t":
            ax.set_xlabel(f"window centre t   (0 image ... {num_timesteps - 1} noise)")
        elif kind == "step":
            ax.invert_xaxis()
            ax.set_xlabel("window centre step   (last = image ... 0 = noise)")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[-1].legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    b = summary.bands
    cut = f"cut {b.cut:g}" if b.cut is not None else "cut min(H,W)/8"
    fig.suptitle(
        f"{title + ': ' if title else ''}sweep {summary.sweep}, sensitivity per window "
        f"({cut} cycles/image; dotted: negligible floor {floor:g})",
        fontsize=10,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
