"""Log a finished run to MLflow (the optional extra ``pip install 'ablang[mlflow]'``).

One MLflow run per study run, with one nested run per variant:

- the parent run (named after the study's title) holds the study's settings as params (model,
  sampler, steps, guidance, seed, samples, prompts, metrics, mode, variant and sweep counts,
  versions), ``run_seconds`` as a metric, and as artifacts the study file (``study/``),
  ``results.json``, the sweep heatmaps (``heatmaps/``), the search plots (``searches/``) and every
  sample grid (``grids/``);
- each variant's child run (tag ``mlflow.parentRunId``, named after the variant) holds its metrics
  under their own names (``ssim``, ``mse``..., non-finite ones such as the baseline's psnr left
  out), each one's 95% interval as ``<metric>_lo`` / ``_hi`` and kid's deviation as ``kid_std``
  (docs/statistics.md), with ``unet_flops``, ``flops_ratio``, ``seconds``, ``flop_speedup`` and
  ``wall_speedup``; its ``origin``,
  ``interventions``, ``components`` and ``windows`` as params; its sample grid as an artifact.

Nested runs rather than prefixed metric names, so that MLflow's run comparison lines the variants
up metric by metric. Everything is read from the run directory, so a run can be logged when it
finishes (``ablang run --mlflow``, ``study.run(mlflow=...)``) or later (``open_run(dir).log_mlflow()``).

Offline use: ``sqlite:///mlflow.db`` (MLflow's default) needs only the extra, and a new
experiment in it keeps its artifacts in ``mlartifacts/`` beside the database; MLflow 3 refuses
plain ``file:`` stores unless ``MLFLOW_ALLOW_FILE_STORE=true`` is set.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

from ablang.errors import AblangError
from ablang.report import GRIDS_DIR, RESULTS_FILE, _unique_slugs, heatmap_path, search_png_path
from ablang.run_dir import RunDir

INSTALL = "pip install 'ablang[mlflow]'"
MAX_PARAM = 500  # MLflow's smallest limit on a param value across its stores
COST_KEYS = ("unet_flops", "flops_ratio", "seconds", "flop_speedup", "wall_speedup")


def require() -> None:
    """Raise an ``AblangError`` saying how to install MLflow when it is not importable."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise AblangError(
            "logging to MLflow needs the mlflow package, which is not installed",
            code="mlflow-missing",
            hint=f"install it with: {INSTALL}",
        ) from None


def _param(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_PARAM else text[: MAX_PARAM - 3] + "..."


def study_params(doc: dict) -> dict[str, str]:
    """The study's settings as MLflow params (strings of at most ``MAX_PARAM`` characters)."""
    sampler = doc["sampler"]
    metrics = list(doc["variants"][0]["metrics"]) if doc["variants"] else []
    params = {
        "study.path": doc["study"]["path"],
        "study.title": doc["study"]["title"],
        "study.sha256": doc["study"]["sha256"],
        "model": doc["model"]["name"],
        "model.checksum": doc["model"]["checksum"],
        "sampler": sampler["kind"],
        "steps": sampler["steps"],
        "guidance": sampler["guidance"],
        "seed": doc["seed"],
        "samples": doc["samples"],
        "prompts": ", ".join(dict.fromkeys(doc["prompts"])),
        "metrics": ", ".join(metrics),
        "mode": doc["mode"],
        "variants": len(doc["variants"]) - 1,
        "sweeps": ", ".join(s["name"] for s in doc["sweeps"]),
        "searches": ", ".join(s["name"] for s in doc["searches"]),
    }
    params.update({f"version.{k}": v for k, v in doc["versions"].items()})
    # an empty setting (no title, no sweeps) is left out: some stores reject empty values
    return {k: _param(v) for k, v in params.items() if v not in ("", None)}


def variant_metrics(entry: dict) -> dict[str, float]:
    """A results.json variant's finite metrics, their intervals (``<metric>_lo``, ``_hi``), kid's
    standard deviation (``kid_std``) and costs, by name. Files written before the intervals and
    the two speedups existed give what they have (their ``speedup`` is the wall one)."""
    out = {k: float(v) for k, v in entry["metrics"].items() if v is not None}
    for k, (lo, hi) in (entry.get("intervals") or {}).items():
        out.update({f"{k}_lo": lo, f"{k}_hi": hi})
    out.update({f"{k}_std": x for k, x in (entry.get("std") or {}).items()})
    cost = dict(entry["cost"])
    if "speedup" in cost and "wall_speedup" not in cost:
        cost["wall_speedup"] = cost.pop("speedup")
    out.update({k: cost[k] for k in COST_KEYS if k in cost})
    out = {k: float(v) for k, v in out.items() if v is not None}
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _study_text(doc: dict, given: str | None) -> str | None:
    if given is not None:
        return given
    path = Path(doc["study"]["path"] or "")
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else None
    except OSError:
        return None


def artifact_location(uri: str | None) -> str | None:
    """Where a new experiment keeps its files: beside the database for a ``sqlite:///PATH``
    store, so that the store is one folder and not the current directory's ``./mlruns`` (MLflow's
    default, relative to wherever the process runs); the server's choice otherwise."""
    prefix = "sqlite:///"
    if not uri or not uri.startswith(prefix) or uri[len(prefix) :] in ("", ":memory:"):
        return None
    return (Path(uri[len(prefix) :]).resolve().parent / "mlartifacts").as_uri()


def log_run(
    out: str | Path,
    *,
    study_text: str | None = None,
    uri: str | None = None,
    experiment: str | None = None,
) -> str:
    """Log the finished run in ``out`` to the tracking server at ``uri`` (None: MLflow's default,
    ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``), in ``experiment`` (default: the study
    file's name without ``.abl``). Returns the parent run's id. Raises ``AblangError`` when MLflow
    is missing or the store refuses the run."""
    require()
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    run = RunDir.open(out)
    doc = run.doc
    stem = Path(doc["study"]["path"] or "").stem.strip("<>")
    experiment = experiment or stem or "ablang"
    try:
        client = MlflowClient(tracking_uri=uri or None)
        found = client.get_experiment_by_name(experiment)
        exp_id = (
            found.experiment_id
            if found is not None
            else client.create_experiment(experiment, artifact_location=artifact_location(uri))
        )
        return _log(client, exp_id, run, _study_text(doc, study_text), stem, Metric, Param, RunTag)
    except MlflowException as e:
        first = str(e.message if hasattr(e, "message") else e).split("\n")[0]
        raise AblangError(
            f"MLflow refused the run: {first}",
            code="mlflow",
            hint="a local store that needs no server: --mlflow sqlite:///mlflow.db",
        ) from None


def _log(
    client, exp_id: str, run: RunDir, study_text: str | None, stem: str, Metric, Param, RunTag
) -> str:
    doc = run.doc
    now = int(time.time() * 1000)
    parent = client.create_run(
        exp_id,
        run_name=doc["study"]["title"] or stem or "study",
        tags={"ablang.study": doc["study"]["path"] or "", "ablang.kind": "study"},
    ).info.run_id
    client.log_batch(
        parent,
        metrics=[Metric("run_seconds", float(doc["run_seconds"]), now, 0)],
        params=[Param(k, v) for k, v in study_params(doc).items()],
    )
    client.log_artifact(parent, str(run.path / RESULTS_FILE))
    if study_text is not None:
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / f"{stem or 'study'}.abl"
            file.write_text(study_text, encoding="utf-8")
            client.log_artifact(parent, str(file), "study")
    for s in doc["sweeps"]:
        if heatmap_path(run.path, s["name"]).exists():
            client.log_artifact(parent, str(heatmap_path(run.path, s["name"])), "heatmaps")
    for s in doc["searches"]:
        if search_png_path(run.path, s["name"]).exists():
            client.log_artifact(parent, str(search_png_path(run.path, s["name"])), "searches")
    grids = run.path / GRIDS_DIR
    if grids.is_dir():
        client.log_artifacts(parent, str(grids), GRIDS_DIR)

    # grids/<slug>.png as report.write_grids named them: slugs of the variants in results order
    slugs = _unique_slugs(v["name"] for v in doc["variants"])
    results = run.results()
    for entry, v in zip(doc["variants"], results.variants):
        child = client.create_run(
            exp_id,
            run_name=v.name,
            tags={
                "mlflow.parentRunId": parent,
                "ablang.variant": v.name,
                "ablang.origin": v.origin,
            },
        ).info.run_id
        params = {
            "origin": v.origin,
            "interventions": "; ".join(iv.label() for iv in v.interventions),
            "components": ", ".join(dict.fromkeys(iv.component for iv in v.interventions)),
            "windows": "; ".join(dict.fromkeys(iv.window.label() for iv in v.interventions)),
        }
        client.log_batch(
            child,
            metrics=[Metric(k, x, now, 0) for k, x in variant_metrics(entry).items()],
            params=[Param(k, _param(x)) for k, x in params.items() if x],
            tags=[RunTag("mlflow.note.content", _param(params["interventions"] or "the baseline"))],
        )
        grid = grids / f"{slugs[v.name]}.png"
        if grid.exists():
            client.log_artifact(child, str(grid))
        client.set_terminated(child)
    client.set_terminated(parent)
    return parent
