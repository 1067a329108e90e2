"""A run's results for analysis in Python: DataFrames, image tensors, heatmap figures.

``RunResults`` is what ``Study.run`` returns and ``ablang.open_run`` reads back from a run
directory. Both build their tables from the same ``Results`` (the live one, or the one rebuilt
from results.json by ``run_dir``), so a table of an opened run equals the table of the run that
wrote it.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import torch

from ablang import html
from ablang.api import StudyError
from ablang.errors import AblangError, did_you_mean
from ablang.plan import Sweep
from ablang.report import NOISE_MARK, sweep_metric
from ablang.results import format_metric
from ablang.run_dir import Results, RunDir, VariantResult

# The columns of ``RunResults.table()`` before and after the metrics.
TABLE_HEAD = ("name", "origin", "interventions", "components", "windows")
TABLE_COST = ("unet_flops", "flops_ratio", "seconds", "flop_speedup", "wall_speedup")


@functools.cache
def _figure_class():
    """A matplotlib ``Figure`` that IPython shows as a PNG by itself: without pyplot, no inline
    backend has registered a display for figures, and a bare ``Figure`` would show as text."""
    from matplotlib.figure import Figure

    class InlineFigure(Figure):
        def _repr_png_(self) -> bytes:
            buf = io.BytesIO()
            self.savefig(buf, format="png")
            return buf.getvalue()

    return InlineFigure


def _speedups(v: VariantResult, wall: bool) -> list[str]:
    """The FLOP-bound speedup; in accelerate mode also the time and the wall speedup."""

    def x(value: float) -> str:
        return f"{value:.2f}x" if math.isfinite(value) else "-"

    out = [x(v.cost.flop_speedup)]
    if wall:
        out += [f"{v.cost.seconds:.2f}", x(v.cost.wall_speedup)]
    return out


class RunResults:
    """The results of one run: ``table()``, ``sweep(name)``, ``images(variant)``,
    ``heatmap(name)``; ``out`` is the run directory, ``doc`` its results.json, ``results`` the
    ``Results`` the report was written from."""

    def __init__(self, run_dir: RunDir, results: Results | None = None) -> None:
        self._dir = run_dir
        self.out: Path = run_dir.path
        self.doc: dict = run_dir.doc
        self.results: Results = results if results is not None else run_dir.results()

    # ---------------------------------------------------------------- names

    @property
    def variants(self) -> list[str]:
        """Every variant's name, the baseline first, in the order of the study."""
        return [v.name for v in self.results.variants]

    @property
    def sweeps(self) -> list[str]:
        return [s.name for s in self.results.plan.sweeps]

    @property
    def metrics(self) -> list[str]:
        """The quality metrics measured, in the study's order."""
        names = list(self.results.plan.metrics)
        for v in self.results.variants:
            names += [m for m in v.metrics if m not in names]
        return names

    # ---------------------------------------------------------------- tables

    def table(self):
        """A ``pandas.DataFrame``, one row per variant (baseline first): ``name``, ``origin``
        (baseline, bare, variant, sweep, search), ``interventions`` (their canonical text, ``; ``
        between them), ``components``, ``windows``, one column per metric (the baseline's psnr is
        ``inf``: identical images), then ``<metric>_lo`` and ``<metric>_hi`` for each metric's 95%
        bootstrap interval over images (NaN for fid and kid, which have none; see
        docs/statistics.md), then ``unet_flops`` (per image over the trajectory), ``flops_ratio``
        (to the baseline's), ``seconds``, ``flop_speedup`` (``1 / flops_ratio``) and
        ``wall_speedup`` (meaningful in accelerate mode only). ``df.attrs["within_noise"]``
        maps each variant to the metrics whose difference from the baseline is within noise."""
        import pandas as pd

        metrics = self.metrics
        bounds = [f"{m}_{end}" for m in metrics for end in ("lo", "hi")]
        noise: dict[str, list[str]] = {}
        rows = []
        for v in self.results.variants:
            ivs = v.interventions
            row: dict[str, str | float] = {
                "name": v.name,
                "origin": v.origin,
                "interventions": "; ".join(iv.label() for iv in ivs),
                "components": ", ".join(dict.fromkeys(iv.component for iv in ivs)),
                "windows": "; ".join(dict.fromkeys(iv.window.label() for iv in ivs)),
            }
            row.update({m: float(v.metrics.get(m, math.nan)) for m in metrics})
            for m in metrics:
                lo, hi = v.intervals.get(m, (math.nan, math.nan))
                row.update({f"{m}_lo": float(lo), f"{m}_hi": float(hi)})
            row.update(
                unet_flops=float(v.cost.unet_flops),
                flops_ratio=float(v.cost.flops_ratio),
                seconds=float(v.cost.seconds),
                flop_speedup=float(v.cost.flop_speedup),
                wall_speedup=float(v.cost.wall_speedup),
            )
            rows.append(row)
            noise[v.name] = [m for m in metrics if v.noise(m)]
        df = pd.DataFrame(rows, columns=[*TABLE_HEAD, *metrics, *bounds, *TABLE_COST])
        df.attrs["within_noise"] = noise
        return df

    def _sweep(self, name: str | None) -> Sweep:
        sweeps = self.results.plan.sweeps
        if name is None:
            if len(sweeps) == 1:
                return sweeps[0]
            raise StudyError.one(
                f"the study has {len(sweeps)} sweeps; name one"
                if sweeps
                else "the study has no sweep",
                code="unknown-sweep",
                hint=("sweeps: " + ", ".join(s.name for s in sweeps)) if sweeps else None,
            )
        for s in sweeps:
            if s.name == name:
                return s
        names = [s.name for s in sweeps]
        raise StudyError.one(
            f"the study has no sweep `{name}`" + (f"; it has: {', '.join(names)}" if names else ""),
            code="unknown-sweep",
            hint=did_you_mean(name, names),
        )

    def _sweep_metric(self, sweep: Sweep, metric: str | None) -> str:
        if metric is None:
            for s in self.doc.get("sweeps", ()):
                if s["name"] == sweep.name:
                    return s["metric"]
            return sweep_metric(self.results.plan)
        if metric not in self.metrics:
            raise StudyError.one(
                f"the run did not measure `{metric}`; it measured {', '.join(self.metrics)}",
                code="unknown-metric",
                hint=did_you_mean(metric, self.metrics),
            )
        return metric

    def sweep(self, name: str | None = None, metric: str | None = None):
        """The sweep's component x window matrix as a ``pandas.DataFrame``: index ``component``,
        columns ``window`` labelled as the heatmap labels them (``[0, 250)``), values ``metric``
        (default: the metric the sweep's heatmap shows). ``name`` may be left out when the study
        has one sweep. ``df.attrs`` holds ``sweep``, ``metric`` and ``op``."""
        import pandas as pd

        from ablang.heatmap import heatmap_matrix

        sweep = self._sweep(name)
        metric = self._sweep_metric(sweep, metric)
        rows, cols, values = heatmap_matrix(sweep, self.results, metric)
        df = pd.DataFrame(
            values,
            index=pd.Index(rows, name="component"),
            columns=pd.Index(cols, name="window"),
        )
        df.attrs.update(sweep=sweep.name, metric=metric, op=sweep.op)
        return df

    # ---------------------------------------------------------------- images and figures

    def images(self, variant: str) -> torch.Tensor:
        """The final images of ``variant``: ``[N x C x H x W]`` in [-1, 1], sample i made with
        ``seeds[i]`` and ``prompts[i]`` (the same for every variant), read from the run directory."""
        try:
            return self._dir.images(variant)
        except AblangError as e:
            raise StudyError.of(e) from None

    def heatmap(self, name: str | None = None, metric: str | None = None):
        """The sweep's heatmap as a matplotlib ``Figure`` (shown inline in a notebook; save it with
        ``fig.savefig(path)``). Same drawing as the run's ``heatmap_<sweep>.png``."""
        from ablang.heatmap import heatmap_figure

        sweep = self._sweep(name)
        return heatmap_figure(
            sweep, self.results, self._sweep_metric(sweep, metric), _figure_class()
        )

    # ---------------------------------------------------------------- elsewhere

    def log_mlflow(
        self, uri: str | None = None, experiment: str | None = None, study_text: str | None = None
    ) -> str:
        """Log this run to MLflow (see ``ablang.mlflow_log``); returns the parent run's id.
        ``study_text``: the study file's text (default: read from its path if it still exists)."""
        from ablang import mlflow_log

        try:
            return mlflow_log.log_run(
                self.out, study_text=study_text, uri=uri, experiment=experiment
            )
        except AblangError as e:
            raise StudyError.of(e) from None

    # ---------------------------------------------------------------- display

    def _heading(self) -> str:
        r = self.results
        plan = r.plan
        title = plan.title or Path(plan.source).stem or "study"
        return (
            f"{title}: {len(r.variants) - 1} variants on {r.model_label}, {len(r.seeds)} images each, "
            f"{plan.sampler.kind} {len(r.timesteps)} steps, {r.mode} mode, {r.seconds:.1f} s"
        )

    def __repr__(self) -> str:
        return f"<RunResults {self._heading()} in {self.out}>"

    def _repr_html_(self) -> str:
        metrics = self.metrics
        wall = self.results.mode == "accelerate"
        rows = []
        for v in self.results.variants:
            text = "\n".join(iv.label() for iv in v.interventions) or "-"
            rows.append(
                [
                    v.name if v.origin in ("baseline", "variant", "search") else "",
                    text,
                    f"{v.cost.flops_ratio:.2f}" if math.isfinite(v.cost.flops_ratio) else "-",
                    *_speedups(v, wall),
                    *[
                        format_metric(m, v.metrics.get(m)) + (NOISE_MARK if v.noise(m) else "")
                        for m in metrics
                    ],
                ]
            )
        speed = ["FLOP speedup", "time (s)", "wall speedup"] if wall else ["FLOP speedup"]
        header = ["variant", "interventions", "FLOPs", *speed, *metrics]
        extra = (
            f"; sweeps: {', '.join(self.sweeps)} (.sweep(name), .heatmap(name))"
            if self.sweeps
            else ""
        )
        return html.table(
            header,
            rows,
            title=self._heading(),
            caption=f"in {self.out}; .table() gives every number as a DataFrame{extra}",
            right=range(2, len(header)),
            more=".table() has them all",
        )
