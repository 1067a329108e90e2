"""Band metrics (composition = low frequencies, detail = high) and identity, on synthetic images
with a known kind of change; the `bands` setting through parse, resolve and fmt."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from abl_fixtures import tiny_table

from ablang.bands import (
    band_metrics,
    cut_problem,
    dct_matrix,
    default_cut,
    identity_change,
    split,
)
from ablang.errors import AblangError, AblangErrors
from ablang.fmt import format_text
from ablang.measure import Measure, MeasureOptions, check_metrics, image_metrics
from ablang.parse import parse
from ablang.plan import BandSpec
from ablang.resolve import resolve
from ablang.results import format_metric

H = W = 32
Y, X = torch.meshgrid(
    torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij"
)


def blob(cy: float, cx: float, sigma: float = 3.0) -> torch.Tensor:
    """A grey Gaussian spot on a dark ground, inside [-1, 1] (no clamping), ``[1 x 1 x H x W]``."""
    spot = torch.exp(-((Y - cy) ** 2 + (X - cx) ** 2) / (2 * sigma**2))
    return (-0.5 + 0.8 * spot)[None, None]


BASE = blob(16, 16)
CHECKER = (((Y + X) % 2) * 2 - 1)[None, None]  # +-1, the highest frequency there is


def noise(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 1, H, W, generator=g, dtype=torch.float64)


def bands(a, b, cut=None):
    m = band_metrics(a, b, cut)
    return m["composition"], m["detail"]


def test_identical_images_are_zero_in_both_bands():
    assert band_metrics(BASE, BASE.clone()) == {"composition": 0.0, "detail": 0.0}
    batch = torch.cat([BASE, blob(10, 20)])
    assert band_metrics(batch, batch.clone()) == {"composition": 0.0, "detail": 0.0}


def test_a_shifted_blob_is_composition():
    comp, det = bands(BASE, blob(16, 18))
    assert comp > 0.0005
    assert comp > 20 * det


def test_a_brightness_gradient_is_composition():
    # mirrored at the borders (DCT), a ramp has no jump: nothing of it leaks into the detail band
    comp, det = bands(BASE, BASE + 0.3 * X / W)
    assert comp > 0.005
    assert det < comp / 1000


def test_a_checkerboard_is_detail():
    comp, det = bands(BASE, BASE + 0.1 * CHECKER)
    assert det == pytest.approx(0.0025, rel=1e-3)  # (0.1 / 2) ** 2 in [0, 1] units
    assert comp < det / 1000


def test_fine_noise_is_mostly_detail():
    comp, det = bands(BASE, BASE + 0.1 * noise())
    assert det > 10 * comp


def test_each_band_sees_its_own_change_in_a_mix():
    """Shift and checkerboard together: each band reads (nearly) what it read of its own change."""
    shifted = blob(16, 18)
    comp_s, det_s = bands(BASE, shifted)
    comp_c, det_c = bands(BASE, BASE + 0.1 * CHECKER)
    comp, det = bands(BASE, shifted + 0.1 * CHECKER)
    assert comp == pytest.approx(comp_s + comp_c, rel=0.05)
    assert det == pytest.approx(det_s + det_c, rel=0.05)


def test_bands_add_up_to_mse():
    a = (0.5 * noise(1) + BASE).clamp(-1, 1)
    b = (0.5 * noise(2) + blob(12, 20)).clamp(-1, 1)
    comp, det = bands(a, b)
    mse = image_metrics(("mse",), a, b)["mse"]
    assert comp + det == pytest.approx(mse, rel=1e-5)


def test_split_is_an_orthogonal_decomposition():
    d = noise(3)
    low, high = split(d, 4.0)
    torch.testing.assert_close(low + high, d)
    assert abs(float((low * high).sum())) < 1e-9 * float((d * d).sum())
    eye = torch.eye(W, dtype=torch.float64)
    torch.testing.assert_close(dct_matrix(W) @ dct_matrix(W).T, eye)


def test_the_cut_moves_the_boundary():
    """Stripes of 2 cycles per image are composition at the default cut 4, detail at cut 1."""
    stripes = BASE + 0.1 * torch.cos(2 * math.pi * 2 * (X + 0.5) / W)
    comp4, det4 = bands(BASE, stripes)
    comp1, det1 = bands(BASE, stripes, cut=1.0)
    assert comp4 > 100 * det4
    assert det1 > 100 * comp1
    assert comp4 + det4 == pytest.approx(comp1 + det1)


def test_default_cut_and_its_limits():
    assert default_cut(32, 32) == 4
    assert default_cut(64, 48) == 6
    assert cut_problem(4, 32, 32) is None
    assert "no detail band" in cut_problem(16, 32, 32)
    assert cut_problem(0, 32, 32) is not None
    with pytest.raises(ValueError, match="no detail band"):
        band_metrics(BASE, BASE, cut=20)


def test_identity_change():
    base = torch.tensor([3, 7, 1, 1])
    assert identity_change(base, base.clone()) == 0.0
    assert identity_change(base, torch.tensor([3, 1, 1, 4])) == 0.5


def test_formatting():
    assert format_metric("identity", 0.25) == "25.0%"
    assert format_metric("composition", 0.0123) == "0.0123"
    assert format_metric("detail", 2e-5) == "2.00e-05"


# ---------------------------------------------------------------------------- in measure


def fake_model(predict=None):
    """What Measure reads of a model, for 1 x 32 x 32 images with a 'classifier' that calls an
    image 1 when its centre is bright."""
    return SimpleNamespace(
        label="fake",
        features=None,
        reference_features=None,
        accuracy=None,
        predict=predict,
        image_shape=(1, H, W),
    )


def centre_bright(images: torch.Tensor) -> torch.Tensor:
    return (images[:, 0, 16, 16] > 0).long()


def test_measure_gives_bands_and_identity():
    base = torch.cat([BASE, BASE]).float()  # two images, both bright in the centre
    images = torch.cat([blob(16, 26), BASE + 0.1 * CHECKER]).float()
    m = Measure(
        ("mse", "composition", "detail", "identity"),
        fake_model(centre_bright),
        base,
        ["a", "b"],
        MeasureOptions(band_cut=4.0),
    ).metrics(images)
    assert list(m) == ["mse", "composition", "detail", "identity"]
    assert m["identity"] == 0.5  # the moved blob left the centre dark; the checkerboard did not
    assert m["composition"] + m["detail"] == pytest.approx(m["mse"], rel=1e-4)


def test_measure_checks_before_sampling():
    with pytest.raises(AblangError, match="identity metric needs a model with a classifier"):
        check_metrics(("identity",), fake_model())
    with pytest.raises(AblangError, match="no detail band"):
        check_metrics(("composition",), fake_model(), MeasureOptions(band_cut=16.0))
    check_metrics(("composition", "detail"), fake_model(), MeasureOptions(band_cut=15.0))


# ---------------------------------------------------------------------------- the setting


def plan_of(text: str):
    return resolve(parse(text), tiny_table())


def test_bands_setting_resolves():
    plan = plan_of("model tiny\nmetrics composition, detail\nbands split 0.7 cut 2.5\n")
    assert plan.bands == BandSpec(cut=2.5, floor=1e-4, split=0.7)
    assert plan.metrics == ("composition", "detail")
    assert plan_of("model tiny\n").bands == BandSpec()


def test_bands_errors_are_positioned():
    with pytest.raises(AblangErrors) as e:
        plan_of("model tiny\nbands cut 4 split 2\n")
    (err,) = e.value.errors
    assert (err.span.line, err.span.col) == (2, 19)
    assert "split" in err.message


def test_bands_fmt_round_trip():
    text = "model tiny\nbands  cut 4   floor 1e-4\n"
    out = format_text(text)
    assert out == "model tiny\nbands cut 4 floor 1e-4\n"
    assert parse(out).statements == parse(text).statements


def test_band_keywords_stay_names_elsewhere():
    plan = plan_of(
        "model tiny\nvariant cut {\n    drop mid\n}\nvariant split {\n    drop dec[0]\n}\n"
    )
    assert [v.name for v in plan.variants] == ["baseline", "cut", "split"]
