"""run_dir: results.json reads back with its statistics, and files from before them still read."""

from __future__ import annotations

import dataclasses
import math

from test_report import make_results

from ablang.report import results_json
from ablang.results import Results
from ablang.run_dir import results_from_json


def with_statistics() -> Results:
    results = make_results(("mse", "psnr", "ssim", "fid"))
    base, *rest = results.variants
    base = dataclasses.replace(
        base,
        intervals={"mse": (0.0, 0.0), "psnr": (math.inf, math.inf), "ssim": (1.0, 1.0)},
        within_noise={"mse": True, "psnr": True, "ssim": True, "fid": True},
    )
    first = dataclasses.replace(
        rest[0],
        intervals={"mse": (0.004, 0.02), "psnr": (17.0, 24.0), "ssim": (0.85, 0.95)},
        std={"kid": 0.001},
        within_noise={"mse": False, "psnr": False, "ssim": False, "fid": True},
    )
    stats = {"unit": "image", "resamples": 2000, "floors": {"fid": 3.5}, "warnings": ["w"]}
    return Results(
        **{**results.__dict__, "variants": (base, first, *rest[1:]), "statistics": stats}
    )


def test_statistics_round_trip():
    written = with_statistics()
    back = results_from_json(results_json(written))
    for a, b in zip(written.variants, back.variants, strict=True):
        assert (a.intervals, a.std, a.within_noise) == (b.intervals, b.std, b.within_noise)
        assert a.cost == b.cost and a.cost.flop_speedup == b.cost.flop_speedup
    assert back.baseline.intervals["psnr"] == (math.inf, math.inf)  # null both ends: identical
    assert back.statistics == written.statistics
    assert back.variants[1].noise("fid") and not back.baseline.noise("fid")


def test_a_results_json_from_before_the_statistics_still_reads():
    doc = results_json(make_results())
    doc.pop("statistics")
    for v in doc["variants"]:
        for key in ("intervals", "std", "within_noise"):
            v.pop(key)
        cost = v["cost"]
        cost["speedup"] = cost.pop("wall_speedup")  # the old name of the wall speedup
        cost.pop("flop_speedup")
    back = results_from_json(doc)
    fast = back.variant("fast")
    assert fast.cost.wall_speedup == 1.25 and fast.cost.flop_speedup == 1.25
    assert fast.intervals == {} and fast.within_noise == {} and back.statistics == {}


def test_one_sided_extrapolated_sweeps_round_trip():
    """A sweep's side and its cells' schedules (every, extrapolated, side) read back as run."""
    from test_report import SWEEP_NAMES, W1, W2

    from ablang.plan import Intervention

    results = make_results()
    cells = {
        name: Intervention("cache", f"skip[{i}]", w, every=3, side="uncond", extrapolate=True)
        for i, row in enumerate(SWEEP_NAMES)
        for name, w in zip(row, (W1, W2))
    }
    params = tuple(next(iter(cells.values())).params.items())
    sweep = dataclasses.replace(results.plan.sweeps[0], op="cache", params=params, side="uncond")
    variants = tuple(
        dataclasses.replace(v, interventions=(cells[v.name],)) if v.name in cells else v
        for v in results.plan.variants
    )
    rows = tuple(
        dataclasses.replace(r, interventions=(cells[r.name],)) if r.name in cells else r
        for r in results.variants
    )
    plan = dataclasses.replace(results.plan, variants=variants, sweeps=(sweep,))
    back = results_from_json(results_json(dataclasses.replace(results, plan=plan, variants=rows)))
    (swept,) = back.plan.sweeps
    assert swept.side == "uncond"
    assert dict(swept.params) == {"every": 3, "extrapolated": True}
    name = SWEEP_NAMES[1][0]
    assert back.variant(name).interventions == (cells[name],)
