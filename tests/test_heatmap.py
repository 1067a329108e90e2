"""heatmap: the component x window matrix of a sweep, its terminal rendering and its PNG."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from rich.console import Console

from ablang.heatmap import (
    closeness,
    color_range,
    heatmap_figure,
    heatmap_matrix,
    heatmap_noise,
    save_heatmap_png,
    terminal_heatmap,
    window_label,
)
from ablang.plan import Intervention, ModelSpec, Plan, Sweep, Variant, Window
from ablang.results import Cost, Results, VariantResult

COMPONENTS = ("skip[0]", "skip[1]", "skip[2]")
WINDOWS = (Window("t", 0, 500), Window("t", 500, 1000))


def sweep_results(metric: str = "ssim") -> tuple[Sweep, Results]:
    """A 3 x 2 drop sweep whose cell (i, j) has ``metric`` = 0.1 * (3 * i + j) + 0.05."""
    names = tuple(tuple(f"skips[{c}, {w.label()}]" for w in WINDOWS) for c in COMPONENTS)
    sweep = Sweep("skips", "drop", (), COMPONENTS, WINDOWS, names)
    variants = [Variant("baseline", (), "baseline")]
    results = [VariantResult("baseline", "baseline", (), {metric: 1.0}, Cost(10, 1, 1, 1), 0, 40)]
    for i, c in enumerate(COMPONENTS):
        for j, w in enumerate(WINDOWS):
            ivs = (Intervention("drop", c, w),)
            variants.append(Variant(names[i][j], ivs, "sweep"))
            value = 0.1 * (3 * i + j) + 0.05
            results.append(
                VariantResult(
                    names[i][j], "sweep", ivs, {metric: value}, Cost(9, 0.9, 1, 1.1), 5, 30
                )
            )
    plan = Plan(
        ModelSpec("tiny"),
        title="Skip study",
        source="skips.abl",
        metrics=(metric,),
        variants=tuple(variants),
        sweeps=(sweep,),
    )
    res = Results(
        plan,
        "tiny",
        "abc",
        tuple(range(999, -1, -100)),
        3.0,
        ("1",) * 4,
        (0, 1, 2, 3),
        "measure",
        tuple(results),
        2.0,
        {"torch": "x", "ablang": "0.1.0", "python": "3"},
    )
    return sweep, res


def test_matrix_places_components_in_rows_and_windows_in_columns():
    sweep, results = sweep_results()
    rows, cols, values = heatmap_matrix(sweep, results, "ssim")
    assert rows == list(COMPONENTS)
    assert cols == ["[0, 500)", "[500, 1000)"]
    assert values.shape == (3, 2)
    expected = np.array([[0.05, 0.15], [0.35, 0.45], [0.65, 0.75]])
    np.testing.assert_allclose(values, expected)


def test_missing_values_are_nan():
    sweep, results = sweep_results()
    _, _, values = heatmap_matrix(sweep, results, "fid")
    assert np.isnan(values).all()


def test_window_labels():
    assert window_label(Window("t", 600, 1000)) == "[600, 1000)"
    assert window_label(Window("step", 0, 10, inclusive=True)) == "[0, 10]"
    assert window_label(Window()) == "all steps"


def test_color_range_and_closeness_follow_the_metric_direction():
    values = np.array([[0.5, 0.9], [0.7, np.nan]])
    good, bad = color_range(values, "ssim", baseline=1.0)
    assert (good, bad) == (1.0, 0.5)
    assert closeness(1.0, good, bad, "ssim") == 1.0 and closeness(0.5, good, bad, "ssim") == 0.0
    good, bad = color_range(values, "mse", baseline=0.0)
    assert (good, bad) == (0.0, 0.9)
    assert closeness(0.0, good, bad, "mse") == 1.0
    assert closeness(math.inf, 30.0, 10.0, "psnr") == 1.0  # identical images: as close as it gets
    assert math.isnan(closeness(math.nan, good, bad, "mse"))


def test_terminal_heatmap_names_the_metric_and_shows_values():
    sweep, results = sweep_results()
    console = Console(record=True, width=120, color_system="truecolor")
    console.print(terminal_heatmap(sweep, results, "ssim"))
    text = console.export_text(clear=False)
    assert "ssim" in text and "sweep skips: drop" in text
    assert "skip[2]" in text and "[500, 1000)" in text and "0.750" in text
    assert "close to baseline" in text and "higher ssim = closer" in text
    assert "\x1b[" in console.export_text(styles=True)  # coloured cells


def test_png_is_written(tmp_path):
    sweep, results = sweep_results("mse")
    path = save_heatmap_png(sweep, results, "mse", tmp_path / "out" / "heatmap_skips.png")
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("metric", ["psnr", "accuracy"])
def test_png_with_infinite_or_constant_values(tmp_path, metric):
    sweep, results = sweep_results(metric)
    bl = results.variants[0]
    object.__setattr__(bl, "metrics", {metric: math.inf if metric == "psnr" else 1.0})
    path = save_heatmap_png(sweep, results, metric, tmp_path / "h.png")
    assert path.stat().st_size > 1000


def noisy_results(metric: str = "ssim") -> tuple[Sweep, Results]:
    """``sweep_results`` with the cells of skip[0] within noise of the baseline."""
    sweep, results = sweep_results(metric)
    variants = tuple(
        dataclasses.replace(v, within_noise={metric: v.interventions[0].component == "skip[0]"})
        if v.interventions
        else dataclasses.replace(v, within_noise={metric: True})
        for v in results.variants
    )
    return sweep, dataclasses.replace(results, variants=variants)


def test_cells_within_noise_are_marked():
    sweep, results = noisy_results()
    noise = heatmap_noise(sweep, results, "ssim")
    assert noise.tolist() == [[True, True], [False, False], [False, False]]
    assert not heatmap_noise(sweep, results, "mse").any()  # not measured: never marked
    console = Console(record=True, width=120)
    console.print(terminal_heatmap(sweep, results, "ssim"))
    text = console.export_text()
    assert "0.050~" in text and "0.150~" in text and "0.350~" not in text
    assert "within noise of the baseline" in text


def test_png_hatches_the_cells_within_noise(tmp_path):
    sweep, results = noisy_results()
    fig = heatmap_figure(sweep, results, "ssim")
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert sorted(p.get_xy() for p in hatched) == [(-0.5, -0.5), (0.5, -0.5)]
    assert "within noise" in ax.get_title()
    plain = heatmap_figure(*sweep_results("ssim"), "ssim")
    assert not plain.axes[0].patches


def test_sweep_titles_name_schedules_and_sides():
    from ablang.heatmap import sweep_title
    from ablang.parse import parse
    from ablang.resolve import resolve

    study = parse(
        "model tiny\nsampler ddpm steps 10 guidance 3\n"
        "sweep scale mid by 0.5 on uncond for t in 0..1000 by 500\n"
        "sweep cache dec[1] every 2 growing by 1 on cond\n"
        "sweep cache dec[1] at step 0, 4 for step in 0..10 by 5\n"
    )
    assert [sweep_title(s) for s in resolve(study, None).sweeps] == [
        "sweep sweep1: scale by 0.5 on uncond",
        "sweep sweep2: cache every 2 growing by 1 on cond",
        "sweep sweep3: cache at step 0, 4",
    ]
