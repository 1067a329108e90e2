"""The phase summary of a sweep: classification, peak windows, results.json, terminal, plot."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from PIL import Image
from rich.console import Console

from ablang.phases import (
    classify,
    measured_metrics,
    phase_table,
    phases_json,
    run_phases,
    save_phase_plot,
    summarize,
    sweep_phases,
)
from ablang.plan import BandSpec, Intervention, ModelSpec, Plan, Sweep, Variant, Window
from ablang.report import print_report, results_json, write_report
from ablang.results import Cost, Results, VariantResult

WINDOWS = tuple(Window("t", lo, lo + 250) for lo in range(0, 1000, 250))  # image ... noise
COMPONENTS = ("skip[0]", "mid", "dec[1]")
NAN = math.nan

# [component][window]; windows run from t = 0 (the image) to t = 1000 (noise).
# skip[0]: detail late (small t), mid: composition early (large t), dec[1]: both, one unmeasured.
COMPOSITION = (
    (1e-5, 2e-5, 1e-5, 0.0),
    (1e-5, 2e-4, 3e-3, 9e-3),
    (4e-4, 1e-3, 2e-3, NAN),
)
DETAIL = (
    (4e-3, 1e-3, 2e-5, 0.0),
    (2e-5, 1e-4, 1e-3, 1e-3),
    (3e-3, 1e-3, 1e-3, NAN),
)
IDENTITY = (
    (0.0, 0.0, 0.0, 0.0),
    (0.0, 0.1, 0.4, 0.8),
    (0.1, 0.2, 0.3, NAN),
)


def test_classify_thresholds():
    assert classify(3e-3, 1e-3, 1e-4, 0.5) == "composition"
    assert classify(1e-3, 3e-3, 1e-4, 0.5) == "detail"
    assert classify(5e-4, 5e-4, 1e-4, 0.5) == "composition"  # share == split counts
    assert classify(4e-5, 5e-5, 1e-4, 0.5) == "negligible"  # mse 9e-5 < floor
    assert classify(0.0, 0.0, 0.0, 0.5) == "negligible"  # no change at all, even with floor 0
    assert classify(6e-4, 4e-4, 1e-4, 0.7) == "detail"  # a stricter split
    assert classify(NAN, 1e-3, 1e-4, 0.5) is None


def summary(bands=None):
    return summarize("s", COMPONENTS, WINDOWS, COMPOSITION, DETAIL, bands, IDENTITY)


def test_classification_and_peaks_on_a_constructed_table():
    s = summary()
    kinds = {r.component: r.kinds for r in s.rows}
    assert kinds["skip[0]"] == ("detail", "detail", "negligible", "negligible")
    assert kinds["mid"] == ("negligible", "composition", "composition", "composition")
    assert kinds["dec[1]"] == ("detail", "composition", "composition", None)
    peaks = {r.component: (r.composition_peak, r.detail_peak) for r in s.rows}
    assert peaks == {"skip[0]": (1, 0), "mid": (3, 2), "dec[1]": (2, 0)}
    assert [s.count("composition", j) for j in range(4)] == [0, 2, 2, 1]
    assert [s.count("negligible", j) for j in range(4)] == [1, 0, 1, 1]


def test_thresholds_change_the_classes():
    s = summary(BandSpec(floor=2e-3, split=0.8))
    kinds = {r.component: r.kinds for r in s.rows}
    assert kinds["skip[0]"] == ("detail", "negligible", "negligible", "negligible")
    assert kinds["mid"] == ("negligible", "negligible", "detail", "composition")
    assert kinds["dec[1]"] == ("detail", "detail", "detail", None)


def test_identity_by_kind():
    by = summary().identity_by_kind()
    assert by["composition"] == pytest.approx((0.1 + 0.4 + 0.8 + 0.2 + 0.3) / 5)
    assert by["detail"] == pytest.approx((0.0 + 0.0 + 0.1) / 3)
    assert by["negligible"] == pytest.approx(0.0)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="3 x 4"):
        summarize("s", COMPONENTS, WINDOWS, COMPOSITION, DETAIL[:2])


def test_json():
    doc = phases_json(summary())
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    assert (doc["cut"], doc["floor"], doc["split"]) == (None, 1e-4, 0.5)
    mid = doc["components"][1]
    assert mid["component"] == "mid"
    assert mid["composition_peak"] == {"kind": "t", "lo": 750, "hi": 1000, "inclusive": False}
    assert mid["detail_peak"]["lo"] == 500
    assert doc["components"][2]["kinds"][-1] is None
    assert doc["counts"]["detail"] == [2, 1, 0, 0]


def test_terminal_table_renders():
    console = Console(record=True, width=160)
    console.print(phase_table(summary()))
    text = console.export_text()
    assert "phases of sweep s" in text
    assert "composition peak" in text and "mse < 0.0001" in text
    assert "[750, 1000) 0.0090" in text  # mid's composition peak
    assert "digit identity changed" in text


def test_plot_is_written(tmp_path):
    path = save_phase_plot(summary(), tmp_path / "phases_s.png", "A study")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 600
    no_identity = summarize("s", COMPONENTS, WINDOWS, COMPOSITION, DETAIL)
    narrow = save_phase_plot(no_identity, tmp_path / "two.png")
    with Image.open(narrow) as im, Image.open(path) as wide:
        assert im.size[0] < wide.size[0]  # two panels, not three


# ---------------------------------------------------------------------------- from a run


def names(i, j):
    return f"s[{COMPONENTS[i]}, {j}]"


def make_results(with_bands=True) -> Results:
    rows = tuple(tuple(names(i, j) for j in range(4)) for i in range(3))
    sweep = Sweep("s", "drop", (), COMPONENTS, WINDOWS, rows)
    variants = [Variant("baseline", (), "baseline")]
    metrics = ("mse", "composition", "detail") if with_bands else ("mse",)
    plan = Plan(ModelSpec("tiny"), title="T", metrics=metrics, sweeps=(sweep,))
    cost = Cost(1.0, 1.0, 1.0, 1.0)
    vr = [VariantResult("baseline", "baseline", (), dict.fromkeys(metrics, 0.0), cost, 0, 1)]
    for i in range(3):
        for j in range(4):
            iv = Intervention("drop", COMPONENTS[i], WINDOWS[j])
            variants.append(Variant(names(i, j), (iv,), "sweep"))
            c, d = COMPOSITION[i][j], DETAIL[i][j]
            m = {"mse": c + d, "composition": c, "detail": d}
            if math.isnan(c):
                continue  # not measured
            vr.append(
                VariantResult(names(i, j), "sweep", (iv,), {k: m[k] for k in metrics}, cost, 0, 1)
            )
    plan = Plan(plan.model, title="T", metrics=metrics, variants=tuple(variants), sweeps=(sweep,))
    return Results(plan, "tiny", "0", (), 3.0, (), (), "measure", tuple(vr), 1.0, {})


def test_sweep_phases_from_results():
    res = make_results()
    got = run_phases(res)["s"]
    assert got == summarize("s", COMPONENTS, WINDOWS, COMPOSITION, DETAIL, BandSpec())
    assert run_phases(make_results(with_bands=False)) == {}
    assert sweep_phases(res.plan.sweeps[0], {}, BandSpec()) is None


def test_report_has_phases(tmp_path):
    res = make_results()
    doc = results_json(res)
    assert doc["sweeps"][0]["phases"]["counts"]["composition"] == [0, 2, 2, 1]
    assert results_json(make_results(with_bands=False))["sweeps"][0]["phases"] is None
    files = write_report(res, tmp_path)
    assert tmp_path / "phases_s.png" in files
    console = Console(record=True, width=160)
    print_report(res, console)
    assert "phases of sweep s" in console.export_text()


def test_sweeps_measure_both_bands():
    sweep = Sweep("s", "drop", (), COMPONENTS, WINDOWS, ())
    assert measured_metrics(Plan(ModelSpec("tiny"), metrics=("ssim",))) == ("ssim",)
    with_sweep = Plan(ModelSpec("tiny"), metrics=("ssim", "detail"), sweeps=(sweep,))
    assert measured_metrics(with_sweep) == ("ssim", "detail", "composition")


def test_cells_with_both_bands_within_noise_are_marked():
    res = make_results()
    marks = {names(0, 0): True, names(0, 1): False}  # cell (0, 1): composition only in noise
    variants = tuple(
        dataclasses.replace(
            v,
            within_noise={"composition": True, "detail": marks[v.name]} if v.name in marks else {},
        )
        for v in res.variants
    )
    got = run_phases(dataclasses.replace(res, variants=variants))["s"]
    assert got.noise is not None
    assert got.noise[0][:2] == (True, False) and not any(got.noise[1]) and not any(got.noise[2])
    doc = phases_json(got)
    assert doc["components"][0]["within_noise"][:2] == [True, False]
    console = Console(record=True, width=160)
    console.print(phase_table(got))
    text = console.export_text()
    assert "both bands within noise" in text
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert "D~" in rows[0] and "~" not in rows[1] + rows[2]
    assert run_phases(res)["s"].noise is None  # a run without marks: none shown
