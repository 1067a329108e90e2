"""A finished run directory read back: ``results.json`` as ``Results``, and each variant's images.

``ablang run`` writes (see ``report.py`` and ``journal.py``)::

    results.json      the numbers, the resolved interventions, sweeps, seeds, timesteps
    baseline.pt       the baseline trajectory; its last entry is the baseline's final images
    journal.jsonl     a fingerprint line, then {"variant", "file", "start_step", ...} per variant
    samples/NNN.pt    the final images of the variant on journal line NNN

``read_results`` rebuilds the ``Results`` that ``report`` wrote, without the model and without
recomputing anything, so tables and heatmaps of an old run are drawn by the same code as a fresh
run's. What results.json does not hold is filled as follows: a variant's ``origin`` is read off
its name and the sweeps (a ``variant NAME`` block has an identifier for a name, a bare line its
own text); ``start_step`` and ``evaluations`` come from the journal (0 for the baseline, which has
no journal line); ``num_timesteps`` is the first visited timestep + 1 (respacing always visits
T - 1); searches keep only their JSON (``RunDir.doc["searches"]``).

This module is the one place the API takes the result types from.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch

from ablang.errors import AblangError, did_you_mean
from ablang.plan import (
    Intervention,
    ModelSpec,
    Origin,
    Plan,
    SamplerSpec,
    Sweep,
    Variant,
    Window,
)
from ablang.report import RESULTS_FILE
from ablang.results import Cost, Results, VariantResult

__all__ = ["Cost", "Results", "RunDir", "VariantResult", "read_journal", "results_from_json"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _window(doc: dict) -> Window:
    return Window(doc["kind"], int(doc["lo"]), int(doc["hi"]), bool(doc["inclusive"]))


def _intervention(doc: dict) -> Intervention:
    params = doc.get("params") or {}
    return Intervention(
        doc["op"],
        doc["component"],
        _window(doc["window"]),
        params.get("factor"),
        params.get("every"),
        params.get("growing"),
        tuple(params["at"]) if "at" in params else None,
        params.get("at_kind", "step"),
        doc.get("side", "both"),
        extrapolate=bool(params.get("extrapolated", False)),
    )


def _metric(name: str, value: float | None) -> float:
    # results.json writes non-finite numbers as null; the only one a run produces is the psnr of
    # images identical to the baseline's (+inf). Anything else missing reads as "not a number".
    if value is None:
        return math.inf if name == "psnr" else math.nan
    return float(value)


def _cost(doc: dict) -> Cost:
    # results.json before ablang wrote flop_speedup/wall_speedup had one "speedup": the wall one
    wall = doc["wall_speedup"] if "wall_speedup" in doc else doc["speedup"]
    return Cost(
        float(doc["unet_flops"]), float(doc["flops_ratio"]), float(doc["seconds"]), float(wall)
    )


def _model_spec(label: str) -> ModelSpec:
    from ablang.parse import parse
    from ablang.resolve import model_spec

    spec = model_spec(parse(f"model {label}", RESULTS_FILE))
    if spec is None:
        raise AblangError(
            f"results.json names a model ablang does not know: {label}", code="run-dir"
        )
    return spec


def results_from_json(doc: dict, journal: dict[str, dict] | None = None) -> Results:
    """The ``Results`` a results.json document was written from (see the module docstring for
    what it cannot hold). ``journal``: variant name -> its journal record."""
    journal = journal or {}
    sweep_cells = {name: s["name"] for s in doc["sweeps"] for row in s["variants"] for name in row}
    searches = {s["name"] for s in doc["searches"]}
    variants, results = [], []
    for k, v in enumerate(doc["variants"]):
        name = v["name"]
        if k == 0:
            origin = "baseline"
        elif name in sweep_cells:
            origin = "sweep"
        elif name in searches:
            origin = "search"
        elif _IDENTIFIER.fullmatch(name):
            origin = "variant"
        else:
            origin = "bare"
        ivs = tuple(_intervention(iv) for iv in v["interventions"])
        rec = journal.get(name, {})
        results.append(
            VariantResult(
                name=name,
                origin=origin,
                interventions=ivs,
                metrics={m: _metric(m, x) for m, x in v["metrics"].items()},
                cost=_cost(v["cost"]),
                start_step=int(rec.get("start_step", 0)),
                evaluations=int(rec.get("evaluations", 0)),
                intervals={
                    m: (_metric(m, lo), _metric(m, hi))
                    for m, (lo, hi) in (v.get("intervals") or {}).items()
                },
                std={m: _metric(m, x) for m, x in (v.get("std") or {}).items()},
                within_noise={m: bool(x) for m, x in (v.get("within_noise") or {}).items()},
            )
        )
        if origin != "search":  # a search's best is not a variant of the plan
            variants.append(Variant(name, ivs, cast(Origin, origin)))
    by_name = {v.name: v for v in variants}
    sweeps = []
    for s in doc["sweeps"]:
        first = by_name.get(s["variants"][0][0]) if s["variants"] and s["variants"][0] else None
        cell = first.interventions[0] if first and first.interventions else None
        params = tuple(cell.params.items()) if cell else ()
        side = s.get("side") or (cell.side if cell else "both")  # older files: from a cell
        sweeps.append(
            Sweep(
                s["name"],
                s["op"],
                params,
                tuple(s["components"]),
                tuple(_window(w) for w in s["windows"]),
                tuple(tuple(row) for row in s["variants"]),
                side=side,
            )
        )
    sampler = doc["sampler"]
    timesteps = tuple(int(t) for t in sampler["timesteps"])
    base_metrics = tuple(doc["variants"][0]["metrics"]) if doc["variants"] else ()
    plan = Plan(
        model=_model_spec(doc["model"]["name"]),
        sampler=SamplerSpec(
            sampler["kind"], int(sampler["steps"]), guidance=float(sampler["guidance"])
        ),
        title=doc["study"]["title"] or "",
        source=doc["study"]["path"] or "",
        sha256=doc["study"]["sha256"] or "",
        seed=int(doc["seed"]),
        samples=int(doc["samples"]),
        prompts=tuple(dict.fromkeys(doc["prompts"])),
        metrics=base_metrics,
        variants=tuple(variants),
        sweeps=tuple(sweeps),
        num_timesteps=(max(timesteps) + 1) if timesteps else 1000,
    )
    return Results(
        plan=plan,
        model_label=doc["model"]["name"],
        model_checksum=doc["model"]["checksum"],
        timesteps=timesteps,
        guidance=float(sampler["guidance"]),
        prompts=tuple(doc["prompts"]),
        seeds=tuple(int(s) for s in doc["seeds"]),
        mode=doc["mode"],
        variants=tuple(results),
        seconds=float(doc["run_seconds"]),
        versions=dict(doc["versions"]),
        statistics=dict(doc.get("statistics") or {}),
    )


def read_journal(out: Path) -> dict[str, dict]:
    """Variant name -> its last complete journal record (a re-run variant's later line wins)."""
    path = out / "journal.jsonl"
    if not path.exists():
        return {}
    records: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a crash: that variant was not finished
            continue
        if isinstance(rec, dict) and "variant" in rec and "file" in rec:
            records[rec["variant"]] = rec
    return records


@dataclass(frozen=True)
class RunDir:
    """A run's output directory: its results.json document and where each variant's images are."""

    path: Path
    doc: dict = field(repr=False)
    journal: dict[str, dict] = field(repr=False)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        path = Path(path)
        file = path / RESULTS_FILE
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AblangError(
                f"{path} has no {RESULTS_FILE}: not a finished run directory",
                code="run-dir",
                hint="an interrupted run finishes with `ablang run STUDY --out DIR --resume`",
            ) from None
        except OSError as e:
            raise AblangError(f"cannot read {file}: {e.strerror or e}", code="io") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise AblangError(
                f"{file} is not JSON: {e.msg} (line {e.lineno})", code="run-dir"
            ) from None
        return cls(path, doc, read_journal(path))

    def results(self) -> Results:
        try:
            return results_from_json(self.doc, self.journal)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise AblangError(
                f"{self.path / RESULTS_FILE} does not follow the results.json layout ({type(e).__name__}: {e})",
                code="run-dir",
            ) from None

    def images(self, variant: str) -> torch.Tensor:
        """The final images of ``variant``, ``[N x C x H x W]`` in [-1, 1], as the run made them."""
        names = [v["name"] for v in self.doc["variants"]]
        if variant not in names:
            raise AblangError(
                f"the run has no variant `{variant}`",
                code="unknown-variant",
                hint=did_you_mean(variant, names),
            )
        rec = self.journal.get(variant)
        if rec is not None:
            return self._load(self.path / "samples" / rec["file"])
        entry = self.doc["variants"][names.index(variant)]
        if variant == names[0] or not entry["interventions"]:
            # the baseline, or a variant that changes nothing (a search whose best is the baseline)
            return self._load(self.path / "baseline.pt")["xs"][-1]
        raise AblangError(
            f"{self.path} holds no images of `{variant}` (its samples file or journal line is missing)",
            code="run-dir",
        )

    def _load(self, file: Path):
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise AblangError(f"{file} is missing from the run directory", code="run-dir") from None
