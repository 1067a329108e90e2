"""report: the results.json contract, the study table, the sweep metric, sample grids."""

from __future__ import annotations

import dataclasses
import json
import math

import torch
from rich.console import Console

from ablang.plan import (
    Constraint,
    Intervention,
    ModelSpec,
    Plan,
    SamplerSpec,
    Search,
    Sweep,
    Variant,
    Window,
)
from ablang.report import (
    print_report,
    results_json,
    sample_grid,
    slug,
    study_table,
    sweep_metric,
    write_grids,
    write_report,
    write_results,
)
from ablang.results import Cost, Results, VariantResult

W1, W2 = Window("t", 0, 500), Window("t", 500, 1000, inclusive=False)
DROP = Intervention("drop", "skip[3]", Window("t", 600, 1000))
SCALE = Intervention("scale", "mid", Window("step", 0, 9, inclusive=True), factor=0.5)
SWEEP_NAMES = (("sw[skip[0], t0]", "sw[skip[0], t1]"), ("sw[skip[1], t0]", "sw[skip[1], t1]"))


def make_results(metrics=("mse", "psnr", "ssim", "fid")) -> Results:
    sweep = Sweep("sw", "drop", (), ("skip[0]", "skip[1]"), (W1, W2), SWEEP_NAMES)
    swept = [
        Variant(SWEEP_NAMES[i][j], (Intervention("drop", f"skip[{i}]", w),), "sweep")
        for i in range(2)
        for j, w in enumerate((W1, W2))
    ]
    variants = (
        Variant("baseline", (), "baseline"),
        Variant("drop skip[3] for t in [600, 1000)", (DROP,), "bare"),
        Variant("fast", (DROP, SCALE), "variant"),
        *swept,
    )
    search = Search(
        "quick", "speedup", (Constraint("ssim", ">=", 0.9),), ("drop",), ("skip[0]",), (W1,)
    )
    plan = Plan(
        ModelSpec("tiny"),
        SamplerSpec("ddim", 10),
        title="A small study",
        source="studies/small.abl",
        sha256="0" * 64,
        seed=7,
        samples=2,
        prompts=("1", "7"),
        metrics=metrics,
        variants=variants,
        sweeps=(sweep,),
        searches=(search,),
    )
    base_m = {"mse": 0.0, "psnr": math.inf, "ssim": 1.0, "fid": 12.5}
    vr = [
        VariantResult(
            "baseline",
            "baseline",
            (),
            {m: base_m[m] for m in metrics},
            Cost(100.0, 1.0, 2.0, 1.0),
            0,
            40,
        )
    ]
    for k, v in enumerate(variants[1:]):
        m = {"mse": 0.01 * (k + 1), "psnr": 20.0 - k, "ssim": 0.9 - 0.1 * k, "fid": 13.0 + k}
        vr.append(
            VariantResult(
                v.name,
                v.origin,
                v.interventions,
                {x: m[x] for x in metrics},
                Cost(80.0, 0.8, 1.6, 1.25),
                3,
                28,
            )
        )
    return Results(
        plan=plan,
        model_label="tiny",
        model_checksum="f" * 64,
        timesteps=tuple(range(999, -1, -100)),
        guidance=3.0,
        prompts=("1", "1", "7", "7"),
        seeds=(7, 8, 7, 8),
        mode="measure",
        variants=tuple(vr),
        seconds=12.0,
        versions={"torch": "2.x", "ablang": "0.1.0", "python": "3.11"},
    )


# ---------------------------------------------------------------------------- results.json


def test_results_json_follows_the_contract():
    doc = results_json(make_results())
    assert list(doc) == [
        "ablang_version",
        "study",
        "model",
        "sampler",
        "seed",
        "samples",
        "noise",
        "prompts",
        "variants",
        "sweeps",
        "mode",
        "seeds",
        "versions",
        "searches",
        "statistics",
        "run_seconds",
    ]
    assert doc["study"] == {
        "path": "studies/small.abl",
        "title": "A small study",
        "sha256": "0" * 64,
    }
    assert doc["model"] == {"name": "tiny", "checksum": "f" * 64}
    assert doc["sampler"] == {
        "kind": "ddim",
        "steps": 10,
        "guidance": 3.0,
        "timesteps": list(range(999, -1, -100)),
    }
    assert (doc["seed"], doc["samples"], doc["prompts"]) == (7, 2, ["1", "1", "7", "7"])
    assert doc["seeds"] == [7, 8, 7, 8] and doc["mode"] == "measure" and doc["run_seconds"] == 12.0
    assert {"torch", "ablang", "python"} <= set(doc["versions"])
    assert doc["ablang_version"] == "0.1.0"

    base, fast = doc["variants"][0], doc["variants"][2]
    assert base["name"] == "baseline" and base["interventions"] == []
    for v in doc["variants"]:
        assert list(v) == [
            "name",
            "interventions",
            "metrics",
            "intervals",
            "std",
            "within_noise",
            "cost",
        ]
        assert list(v["cost"]) == [
            "unet_flops",
            "flops_ratio",
            "seconds",
            "flop_speedup",
            "wall_speedup",
        ]
    assert base["cost"]["flop_speedup"] == 1.0 and fast["cost"]["flop_speedup"] == 1.25
    assert fast["interventions"][1] == {
        "op": "scale",
        "component": "mid",
        "window": {"kind": "step", "lo": 0, "hi": 9, "inclusive": True},
        "params": {"factor": 0.5},
    }
    assert fast["interventions"][0]["window"] == {
        "kind": "t",
        "lo": 600,
        "hi": 1000,
        "inclusive": False,
    }

    (sweep,) = doc["sweeps"]
    assert list(sweep) == [
        "name",
        "op",
        "side",
        "metric",
        "components",
        "windows",
        "variants",
        "phases",
    ]
    assert sweep["side"] == "both"
    assert sweep["phases"] is None  # composition and detail were not measured
    assert sweep["metric"] == "ssim" and sweep["components"] == ["skip[0]", "skip[1]"]
    assert sweep["windows"][1] == {"kind": "t", "lo": 500, "hi": 1000, "inclusive": False}
    assert sweep["variants"] == [list(r) for r in SWEEP_NAMES]
    assert doc["searches"][0]["name"] == "quick"


def test_infinity_is_written_as_null(tmp_path):
    results = make_results()
    doc = results_json(results)
    assert doc["variants"][0]["metrics"] == {"mse": 0.0, "psnr": None, "ssim": 1.0, "fid": 12.5}
    assert results.variants[0].metrics["psnr"] == math.inf  # the Python value stays inf
    path = write_results(results, tmp_path / "run")
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == doc
    assert text.startswith('{\n  "ablang_version"')  # indent 2, contract order
    assert write_results(results, tmp_path / "run").read_text() == text  # stable


# ---------------------------------------------------------------------------- the table


def test_table_has_a_row_per_variant_baseline_first():
    results = make_results()
    table = study_table(results)
    assert table.row_count == len(results.variants)
    assert table.title == "A small study"
    headers = [c.header for c in table.columns]
    # measure mode: the FLOP-bound speedup only; its wall clock says nothing (issue 14)
    assert headers[:3] == ["variant: interventions", "FLOPs", "FLOP speedup"]
    assert headers[3:] == ["mse", "psnr", "ssim", "fid"]
    assert not any("time" in h or "wall" in h for h in headers)
    assert [str(c) for c in table.columns[2].cells][:2] == ["1.00x", "1.25x"]
    cells = [str(c) for c in table.columns[0].cells]
    assert cells[0] == "baseline"
    assert (
        cells[2] == "fast: drop skip[3] for t in [600, 1000)\nscale mid by 0.5 for step in [0, 9]"
    )
    psnr = [str(c) for c in table.columns[4].cells]
    assert psnr[0] == "inf" and psnr[1] == "20.0"
    assert str(list(table.columns[5].cells)[1]) == "0.900"
    assert str(list(table.columns[6].cells)[1]) == "13.00"


def test_accelerate_mode_shows_both_speedups():
    results = make_results()
    results = Results(**{**results.__dict__, "mode": "accelerate"})
    table = study_table(results)
    headers = [c.header for c in table.columns]
    assert headers[:5] == [
        "variant: interventions",
        "FLOPs",
        "FLOP speedup",
        "time (s)",
        "wall speedup",
    ]
    row = [str(list(c.cells)[1]) for c in table.columns[:5]]
    assert row[2:] == ["1.25x", "1.60", "1.25x"]


def test_cells_carry_intervals_and_noise_marks():
    results = make_results(("ssim", "fid"))
    v = results.variants[1]
    marked = dataclasses.replace(
        v,
        intervals={"ssim": (0.85, 0.95)},
        std={},
        within_noise={"ssim": False, "fid": True},
    )
    results = Results(**{**results.__dict__, "variants": (results.variants[0], marked)})
    table = study_table(results)
    ssim, fid = (str(list(c.cells)[1]) for c in table.columns[3:5])
    # no mark (a space keeps the digits aligned with marked cells): outside noise; its interval
    assert ssim == "0.900 \n0.850–0.950"
    assert fid == "13.00~"  # within noise, no interval (fid is not a mean over images)
    assert "within noise" in str(table.caption)


def test_long_names_are_truncated():
    results = make_results()
    long = VariantResult("x" * 100, "variant", (DROP,) * 5, {}, Cost(1, 1, 1, 1), 0, 1)
    results = Results(**{**results.__dict__, "variants": results.variants + (long,)})
    table = study_table(results)
    cell = str(list(table.columns[0].cells)[-1])
    assert cell.startswith("x" * 23 + "…: ") and cell.endswith("(+2 more)")


def test_sweep_metric():
    base = make_results().plan
    pick = lambda ms: sweep_metric(Plan(base.model, metrics=ms))
    assert pick(("fid", "mse", "ssim")) == "ssim"
    assert pick(("fid", "psnr", "mse")) == "mse"
    assert pick(("accuracy", "kid")) == "kid"
    assert pick(()) == "ssim"


def test_print_report(tmp_path):
    results = make_results()
    files = write_report(results, tmp_path)
    console = Console(record=True, width=140)
    print_report(results, console, out_dir=tmp_path, files=files)
    text = console.export_text()
    assert text.index("A small study") < text.index("sweep sw: drop") < text.index("results in")
    assert "results.json" in text and "heatmap_sw.png" in text


# ---------------------------------------------------------------------------- files


def test_write_report_writes_json_and_heatmaps(tmp_path):
    files = write_report(make_results(), tmp_path)
    assert [f.name for f in files] == ["results.json", "heatmap_sw.png"]
    assert all(f.stat().st_size > 0 for f in files)


def test_slug():
    assert slug("drop skip[3] for t in [600, 1000)") == "drop-skip-3-for-t-in-600-1000"
    assert slug("../../etc") == "etc"
    assert slug("***") == "unnamed"
    assert len(slug("a" * 500)) == 80


def test_sample_grids(tmp_path):
    g = torch.Generator().manual_seed(0)
    gray = torch.rand(4, 1, 32, 32, generator=g) * 2 - 1
    rgb = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    p = sample_grid(gray, ["1", "1", "7", "7"], tmp_path / "g.png", nrow=2)
    assert p.stat().st_size > 0 and p.read_bytes()[:4] == b"\x89PNG"
    p = sample_grid(
        rgb, ["a red cube", "a cat", "a very long prompt " * 5], tmp_path / "c.png", nrow=3
    )
    assert p.stat().st_size > 0

    from PIL import Image

    out = write_grids(
        {"baseline": gray, "drop skip[3]": gray, "drop skip(3)": gray},
        ["1", "1", "7", "7"],
        tmp_path,
    )
    assert {k: v.name for k, v in out.items()} == {
        "baseline": "baseline.png",
        "drop skip[3]": "drop-skip-3.png",
        "drop skip(3)": "drop-skip-3-2.png",
    }
    assert all(v.parent == tmp_path / "grids" and v.stat().st_size > 0 for v in out.values())
    w, h = Image.open(out["baseline"]).size
    assert w > 2 * 64 and h >= 2 * 64  # two rows of two, enlarged to 64 px, with a label column
