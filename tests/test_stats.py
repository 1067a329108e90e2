"""stats: the bootstrap intervals cover known cases, the noise rule, fid/kid floors and warnings,
and Measure.measure's statistics on real image metrics."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ablang.measure import Measure
from ablang.stats import (
    RESAMPLES,
    difference_within_noise,
    distribution_warnings,
    halves,
    mean_interval,
    psnr_interval,
    resample_indices,
)


def images(n: int = 8, seed: int = 0, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1


def model():
    def feats(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3)), x[..., :4, :].mean((1, 2, 3))], 1)

    def accuracy(x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        # the "classifier" recognises an image when its mean pixel is below 0
        return x.float().mean((1, 2, 3)) < 0

    return SimpleNamespace(
        label="fake",
        image_shape=(1, 16, 16),
        features=feats,
        reference_features=None,
        accuracy=accuracy,
        predict=None,
    )


# ---------------------------------------------------------------------------- intervals


def test_the_interval_covers_a_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(123)
    trials, covered = 1000, 0
    for _ in range(trials):
        sample = rng.normal(2.0, 1.0, size=40)
        draws = resample_indices(40, resamples=500, seed=int(rng.integers(1 << 30)))
        lo, hi = mean_interval(sample, draws)
        covered += lo <= 2.0 <= hi
    # the percentile bootstrap runs a little narrow at n = 40 (about 93-94%); 1,000 trials give
    # a binomial sd of 0.7 points. A 90% or 99% interval would fail this.
    assert 0.92 <= covered / trials <= 0.97


def test_a_constant_has_a_zero_width_interval_at_itself():
    assert mean_interval([0.25] * 17) == (0.25, 0.25)
    assert mean_interval(np.zeros(5)) == (0.0, 0.0)


def test_intervals_are_deterministic_and_hold_the_mean():
    v = np.random.default_rng(0).exponential(size=30)
    a, b = mean_interval(v), mean_interval(v)
    assert a == b and a[0] < v.mean() < a[1]
    assert resample_indices(30).shape == (RESAMPLES, 30)


def test_a_nan_value_gives_no_interval():
    lo, hi = mean_interval([1.0, math.nan, 2.0])
    assert math.isnan(lo) and math.isnan(hi)


def test_psnr_interval_swaps_the_ends_and_reaches_infinity():
    lo, hi = psnr_interval((0.001, 0.01))
    assert (lo, hi) == pytest.approx((20.0, 30.0))
    assert psnr_interval((0.0, 0.01))[1] == math.inf


# ---------------------------------------------------------------------------- the noise rule


def test_within_noise_is_the_paired_interval_containing_zero():
    base = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1] * 2, dtype=float)
    assert difference_within_noise(base, base)  # the same images: no difference at all
    one_flip = base.copy()
    one_flip[1] = 1.0  # one image of 20 changes class
    assert difference_within_noise(one_flip, base)
    assert not difference_within_noise(np.ones(20), np.zeros(20))  # every image changed


def test_halves_deal_each_prompt_alternately():
    prompts = ["0", "0", "0", "0", "1", "1", "1", "1"]
    a, b = halves(prompts)
    assert a == [0, 2, 4, 6] and b == [1, 3, 5, 7]
    cycled = ["0", "1"] * 4
    a, b = halves(cycled)
    assert sorted(cycled[i] for i in a) == sorted(cycled[i] for i in b)
    assert not set(a) & set(b)


def test_fid_and_kid_warn_below_a_thousand_images():
    (w,) = distribution_warnings("kid", 500)
    assert "500 images" in w and "1,000" in w
    fid = distribution_warnings("fid", 20, dims=2048)
    assert len(fid) == 2 and "2048-dimensional" in fid[1]
    assert distribution_warnings("fid", 1000, dims=10) == []
    assert len(distribution_warnings("fid", 1000, dims=2048)) == 1  # still singular


# ---------------------------------------------------------------------------- Measure.measure


def test_the_baseline_and_an_identical_variant_are_within_noise():
    base = images(12)
    m = Measure(("mse", "psnr", "ssim", "accuracy", "fid", "kid"), model(), base, ["1"] * 12)
    same = m.measure(base.clone())
    assert same.metrics["mse"] == 0.0 and same.metrics["ssim"] == 1.0
    assert same.intervals["mse"] == (0.0, 0.0) and same.intervals["ssim"] == (1.0, 1.0)
    assert same.intervals["psnr"] == (math.inf, math.inf)
    assert all(same.within_noise[k] for k in ("mse", "psnr", "ssim", "accuracy", "fid", "kid"))
    assert "fid" not in same.intervals and "kid" in same.std and same.std["kid"] >= 0


def test_a_variant_that_changes_every_image_is_not_within_noise():
    base = images(12)
    m = Measure(("mse", "psnr", "ssim", "accuracy"), model(), base, ["1"] * 12)
    far = m.measure((base + 0.5).clamp(-1, 1))
    assert not far.within_noise["mse"] and not far.within_noise["ssim"]
    assert not far.within_noise["psnr"]
    lo, hi = far.intervals["mse"]
    assert 0 < lo <= far.metrics["mse"] <= hi
    lo, hi = far.intervals["psnr"]
    assert lo <= far.metrics["psnr"] <= hi
    lo, hi = far.intervals["ssim"]
    assert lo <= far.metrics["ssim"] <= hi < 1


def test_one_changed_image_of_many_is_within_noise():
    base = images(40)
    changed = base.clone()
    changed[3] = -changed[3]
    m = Measure(("mse", "ssim"), model(), base, ["1"] * 40)
    out = m.measure(changed)
    # 1 in 40: a resample misses it with probability (39/40)^40 = 36%, so the interval reaches 0
    assert out.within_noise["mse"] and out.intervals["mse"][0] == 0.0
    assert out.within_noise["ssim"] and out.intervals["ssim"][1] == 1.0


def test_accuracy_noise_is_paired_with_the_baseline():
    base = images(20)
    m = Measure(("accuracy",), model(), base, ["1"] * 20)
    flipped = -base  # every image's mean changes sign: every hit becomes a miss and back
    out = m.measure(flipped)
    assert out.metrics["accuracy"] == pytest.approx(1 - m.metrics(base)["accuracy"])
    lo, hi = out.intervals["accuracy"]
    assert 0.0 <= lo <= out.metrics["accuracy"] <= hi <= 1.0
    assert m.measure(base).within_noise["accuracy"]


def test_fid_floor_and_statistics():
    base = images(16)
    m = Measure(("fid", "kid"), model(), base, ["a", "b"] * 8)
    floors = m.floors()
    assert floors["fid"] > 0 and floors["kid"] >= 0
    stats = m.statistics()
    assert stats["unit"] == "image" and stats["resamples"] == RESAMPLES and stats["seed"] == 0
    assert stats["floors"] == floors
    assert any("fid on 16 images" in w for w in stats["warnings"])
    assert any("kid on 16 images" in w for w in stats["warnings"])
    # a variant far beyond the floor is not within noise
    far = m.measure((base * 0.2 + 0.6).clamp(-1, 1))
    assert far.metrics["fid"] > floors["fid"] and not far.within_noise["fid"]


def test_measure_and_metrics_agree():
    base, other = images(10), images(10, seed=3)
    m = Measure(("ssim", "psnr", "mse", "accuracy", "fid"), model(), base, ["1"] * 10)
    assert m.measure(other).metrics == m.metrics(other)
