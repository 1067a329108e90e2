"""ablang from Python: the same results as the CLI, runs read back from disk, DataFrames, figures,
component tables, samplers, and every error as one exception type with its places.

The study is ``tests/fixtures/api/tiny.abl``: 5 DDIM steps, one sample of two digits, a bare
line, a named cache variant and a 2 x 2 sweep.
"""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest
import torch
from rich.console import Console

import ablang
from ablang import cli
from ablang.errors import AblangErrors, Span, render_errors
from ablang.run import default_out

STUDY = Path(__file__).parent / "fixtures" / "api" / "tiny.abl"
WINDOWS = ["[0, 500)", "[500, 1000)"]


def quiet() -> Console:
    return Console(file=io.StringIO())


def stable(doc: dict) -> dict:
    """results.json without what differs between two runs of the same study: wall times."""
    doc = copy.deepcopy(doc)
    doc.pop("run_seconds")
    for v in doc["variants"]:
        v["cost"].pop("seconds")
        v["cost"].pop("wall_speedup")
    return doc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The study run once from Python and once from the command line."""
    base = tmp_path_factory.mktemp("api")
    results = ablang.load(STUDY).run(base / "api", device="cpu", console=quiet())
    assert cli.main(["run", str(STUDY), "--out", str(base / "cli"), "--device", "cpu"]) == 0
    return results, base / "cli"


# ---------------------------------------------------------------------------- same as the CLI


@pytest.mark.slow
def test_api_and_cli_write_the_same_results_json(runs):
    results, cli_out = runs
    api_doc = json.loads((results.out / "results.json").read_text())
    cli_doc = json.loads((cli_out / "results.json").read_text())
    assert api_doc == results.doc
    assert stable(api_doc) == stable(cli_doc)
    assert len(api_doc["variants"]) == 1 + 1 + 1 + 2 * 2  # baseline, bare, variant, sweep cells
    # the same files besides results.json: a heatmap, a grid per variant, the journal's samples
    for out in (results.out, cli_out):
        assert (out / "heatmap_sweep1.png").exists()
        assert len(list((out / "grids").glob("*.png"))) == len(api_doc["variants"])


@pytest.mark.slow
def test_open_run_round_trips_a_run(runs):
    results, cli_out = runs
    opened = ablang.open_run(results.out)
    pdt.assert_frame_equal(opened.table(), results.table())
    pdt.assert_frame_equal(opened.sweep("sweep1"), results.sweep("sweep1"))
    assert opened.variants == results.variants
    assert [v.origin for v in opened.results.variants] == [
        v.origin for v in results.results.variants
    ]
    other = ablang.open_run(cli_out)  # the CLI's run of the same study: the same images
    for name in results.variants:
        images = opened.images(name)
        assert images.shape == (2, 1, 32, 32) and images.dtype == torch.float32
        assert torch.equal(images, results.images(name))
        assert torch.equal(images, other.images(name))


@pytest.mark.slow
def test_the_images_are_the_ones_the_metrics_were_measured_on(runs):
    results, _ = runs
    table = results.table().set_index("name")
    base = (results.images("baseline").clamp(-1, 1) + 1) / 2
    for name in results.variants:
        mine = (results.images(name).clamp(-1, 1) + 1) / 2
        mse = float(torch.nn.functional.mse_loss(mine, base))
        assert mse == pytest.approx(table.loc[name, "mse"], rel=1e-5, abs=1e-9)
    assert table.loc["drop skip[7] for t in [500, 1000)", "mse"] > 0


# ---------------------------------------------------------------------------- DataFrames


@pytest.mark.slow
def test_the_table_has_a_row_per_variant_and_every_number(runs):
    results, _ = runs
    df = results.table()
    # a study with a sweep also measures the two bands, for its phase summary
    metrics = ["mse", "psnr", "ssim", "accuracy", "composition", "detail"]
    bounds = [f"{m}_{end}" for m in metrics for end in ("lo", "hi")]
    assert list(df.columns) == [
        "name", "origin", "interventions", "components", "windows", *metrics, *bounds,
        "unet_flops", "flops_ratio", "seconds", "flop_speedup", "wall_speedup",
    ]  # fmt: skip
    assert df.shape == (7, 28)
    assert list(df["name"]) == ablang.load(STUDY).variants
    assert list(df["origin"]) == ["baseline", "bare", "variant"] + ["sweep"] * 4
    base = df.iloc[0]
    assert base["interventions"] == "" and base["mse"] == 0.0 and math.isinf(base["psnr"])
    assert base["flops_ratio"] == 1.0
    cache = df.set_index("name").loc["late_cache"]
    assert cache["interventions"] == "cache dec[6] every 2 for t in [0, 600)"
    assert cache["components"] == "dec[6]" and cache["windows"] == "t in [0, 600)"
    assert cache["flops_ratio"] < 1.0  # reused steps skip computation
    assert (df["ssim_lo"] <= df["ssim"]).all() and (df["ssim"] <= df["ssim_hi"]).all()
    assert df.attrs["within_noise"]["baseline"] == []  # the baseline is never marked
    for col in [*metrics, *bounds, "unet_flops", "flops_ratio", "seconds", "flop_speedup"]:
        assert pd.api.types.is_float_dtype(df[col]), col
    doc_ssim = [v["metrics"]["ssim"] for v in results.doc["variants"]]
    assert list(df["ssim"]) == doc_ssim


@pytest.mark.slow
def test_a_sweep_is_a_component_by_window_matrix(runs):
    results, _ = runs
    df = results.sweep("sweep1")
    assert df.shape == (2, 2)
    assert list(df.index) == ["skip[6]", "skip[7]"] and df.index.name == "component"
    assert list(df.columns) == WINDOWS and df.columns.name == "window"
    assert df.attrs == {"sweep": "sweep1", "metric": "ssim", "op": "drop"}
    table = results.table().set_index("name")
    for comp in df.index:
        for j, window in enumerate(["0, 500", "500, 1000"]):
            name = f"sweep1: drop {comp} for t in [{window})"
            assert df.loc[comp, WINDOWS[j]] == table.loc[name, "ssim"]
    mse = results.sweep(metric="mse")  # the study's only sweep needs no name
    assert mse.attrs["metric"] == "mse" and (mse.to_numpy() >= 0).all()
    assert not mse.equals(df)


@pytest.mark.slow
def test_a_heatmap_is_a_figure(runs):
    from matplotlib.figure import Figure

    results, _ = runs
    fig = results.heatmap("sweep1")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert "sweep sweep1: drop, ssim" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["skip[6]", "skip[7]"]
    png = io.BytesIO()
    fig.savefig(png, format="png")
    assert png.getvalue().startswith(b"\x89PNG")
    # a notebook shows it as an image even before pyplot set up its inline display
    assert fig._repr_png_().startswith(b"\x89PNG")


@pytest.mark.slow
def test_results_show_as_html(runs):
    results, _ = runs
    page = results._repr_html_()
    assert page.count("<tr>") == 1 + 7  # header + one row per variant
    assert "late_cache" in page and "cache dec[6] every 2 for t in [0, 600)" in page
    assert "API test" in repr(results)


@pytest.mark.slow
def test_results_name_what_is_missing(runs):
    results, _ = runs
    with pytest.raises(ablang.StudyError) as e:
        results.sweep("sweep2")
    assert e.value.errors[0].code == "unknown-sweep" and "sweep1" in str(e.value)
    with pytest.raises(ablang.StudyError) as e:
        results.images("late_cashe")
    assert e.value.errors[0].hint == "did you mean late_cache?"
    with pytest.raises(ablang.StudyError) as e:
        results.sweep("sweep1", metric="fid")
    assert e.value.errors[0].code == "unknown-metric"


# ---------------------------------------------------------------------------- studies, errors


def test_a_study_from_text_is_checked_like_a_file():
    text = STUDY.read_text()
    from_file, from_text = ablang.load(STUDY), ablang.parse(text, name=str(STUDY))
    assert from_text.plan == from_file.plan
    assert from_text.plan.sha256 == from_file.plan.sha256  # the file's bytes
    cell = ablang.parse(text)
    assert cell.path == "<study>" and cell.default_out().parent == Path("runs")
    assert cell.default_out().name.startswith("study-")  # one per text: cells never share a run
    assert ablang.parse(text + "\n# another cell\n").default_out() != cell.default_out()
    assert from_file.default_out() == default_out(from_file.plan)
    assert cell.variants[:3] == ["baseline", "drop skip[7] for t in [500, 1000)", "late_cache"]
    assert cell.sweeps == ["sweep1"]
    page = cell._repr_html_()
    assert "late_cache" in page and "sweep1 (2 components x 2 windows)" in page


def test_every_error_is_one_exception_with_its_places():
    text = "model tiny\nsampler ddim steps 5\ndrop skp[3] for t in 0..500\nscale mid by\n"
    with pytest.raises(ablang.StudyError) as e:
        ablang.parse(text, name="cell.abl")
    err = e.value
    assert isinstance(err, AblangErrors)
    assert [x.span for x in err.errors] == [Span(line=4, col=13, end_line=4, end_col=14)]
    assert err.errors[0].code != "error" and "ends too early" in err.errors[0].message
    assert str(err) == render_errors(err.errors, text, "cell.abl")  # as the CLI renders them
    assert str(err).startswith("cell.abl:")


def test_resolve_errors_come_with_spans_and_hints():
    text = "model tiny\nsampler ddim steps 5\ndrop skp[3] for t in 0..500\ncache dec[99] every 2\n"
    with pytest.raises(ablang.StudyError) as e:
        ablang.parse(text)
    errs = e.value.errors
    assert len(errs) == 2
    assert errs[0].span == Span(line=3, col=6, end_line=3, end_col=9)
    assert errs[0].code == "unknown-component" and errs[0].hint == "did you mean skip[3]?"
    assert errs[1].span.line == 4
    assert "    drop skp[3] for t in 0..500\n         ^^^" in str(e.value)


def test_load_and_open_run_say_what_is_wrong(tmp_path):
    with pytest.raises(ablang.StudyError) as e:
        ablang.load(tmp_path / "missing.abl")
    assert e.value.errors[0].code == "io"
    with pytest.raises(ablang.StudyError) as e:
        ablang.open_run(tmp_path)
    assert e.value.errors[0].code == "run-dir"
    assert str(e.value).startswith("error: ") and "results.json" in str(e.value)


def test_inspect_gives_the_component_table():
    table = ablang.inspect("tiny")
    assert len(table) == len(table.names) and "skip[0]" in table.names and "mid" in table.names
    assert table["skip[0]"].kind == "skip"
    df = table.to_frame()
    assert df.index.name == "name" and list(df.index) == table.names
    assert {"kind", "level", "resolution", "channels", "params", "flops_share"} <= set(df.columns)
    assert df["flops_share"].sum() == pytest.approx(sum(c.flops_share for c in table), rel=1e-9)
    page = table._repr_html_()
    assert page.count("<tr>") == 1 + len(table) and "components of tiny" in page
    with pytest.raises(ablang.StudyError) as e:
        ablang.inspect("tinny")
    assert e.value.errors[0].code == "model" and "not a model: tinny" in str(e.value)


@pytest.mark.slow
def test_emit_writes_a_sampler(tmp_path):
    study = ablang.load(STUDY)
    emitted = study.emit("late_cache", tmp_path / "fast.py")
    assert Path(emitted) == tmp_path / "fast.py" and emitted.path.read_text().startswith(
        '"""Accelerated sampler generated by ablang'
    )
    assert emitted.variant == "late_cache" and emitted.speedup > 1.0
    assert "late_cache" in emitted.path.read_text()
    with pytest.raises(ablang.StudyError) as e:
        study.emit("late_cashe", tmp_path / "x.py")
    assert e.value.errors[0].code == "unknown-variant"
    assert not (tmp_path / "x.py").exists()


def test_a_study_whose_model_is_missing_cannot_run(tmp_path):
    study = ablang.parse('model glide "nowhere/base.pt"\nsampler ddim steps 5\n')
    assert study.unavailable
    with pytest.raises(ablang.StudyError) as e:
        study.run(tmp_path / "out", quiet=True)
    assert e.value.errors[0].code == "model-unavailable" and e.value.errors[0].span.line == 1
    assert not (tmp_path / "out").exists()


def test_results_json_reads_back_into_the_results_it_was_written_from():
    from test_report import make_results

    from ablang.report import results_json
    from ablang.run_dir import results_from_json

    written = make_results()
    back = results_from_json(results_json(written))
    fields = ("name", "origin", "interventions", "metrics", "cost", "intervals", "std")
    fields += ("within_noise",)
    for a, b in zip(written.variants, back.variants, strict=True):
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    assert back.plan.sweeps == written.plan.sweeps  # the op's params too (from the cells)
    assert math.isinf(back.baseline.metrics["psnr"])  # null in results.json: identical images
    for f in ("timesteps", "prompts", "seeds", "mode", "guidance", "seconds", "model_label"):
        assert getattr(back, f) == getattr(written, f), f
    assert back.plan.title == written.plan.title and back.plan.metrics == written.plan.metrics
