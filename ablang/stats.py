"""stats: how much of a measured difference chance alone could make (docs/statistics.md).

Every metric that is a mean over images (mse, ssim, composition, detail, identity, accuracy; psnr
through the mean mse) gets a 95% bootstrap interval: the study's images are the resampling unit,
``RESAMPLES`` resamples of as many images, drawn with replacement by a generator seeded with
``SEED`` (the same draws for every variant, so two runs of one study give the same intervals), and
the interval is the 2.5th to 97.5th percentile of the resampled means (percentile bootstrap).

A variant is *within noise* on such a metric when the interval of its per-image difference from
the baseline (paired: image i against the baseline's image i) contains 0. For the metrics that
compare a variant's images with the baseline's own (mse, psnr, ssim, composition, detail,
identity) the baseline's per-image value is the no-change value (0, or 1 for ssim), so the rule
reads "the interval reaches the no-change value".

fid and kid are not means over images; they get a floor instead (``distribution_floor``): the
same metric between two halves of the baseline's images, split alike for every prompt. A variant
is within noise on fid or kid when its distance from the baseline's value is at most that floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
# Below this many images fid and kid are dominated by their small-sample bias and noise.
DISTRIBUTION_IMAGES = 1000

Interval = tuple[float, float]


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``[resamples x n]`` image indices drawn with replacement; the same for the same ``n``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(resamples, n))


def percentile_interval(stats: np.ndarray, level: float = LEVEL) -> Interval:
    """The central ``level`` share of ``stats``: ``(lo, hi)`` percentiles."""
    tail = (1.0 - level) / 2
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


def bootstrap_means(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The mean of ``values`` (``[N]``) under each resample of ``indices`` (``[B x N]``)."""
    return np.asarray(values, dtype=np.float64)[indices].mean(axis=1)


def mean_interval(
    values: Sequence[float] | np.ndarray, indices: np.ndarray | None = None, level: float = LEVEL
) -> Interval:
    """95% percentile-bootstrap interval of the mean of ``values`` (one per image). A constant
    gives a zero-width interval at that constant; NaN values give (nan, nan)."""
    v = np.asarray(values, dtype=np.float64)
    if not v.size or not np.isfinite(v).all():
        return math.nan, math.nan
    if v.min() == v.max():  # no spread: rounding in the means must not move the ends
        return float(v[0]), float(v[0])
    if indices is None:
        indices = resample_indices(len(v))
    return percentile_interval(bootstrap_means(v, indices), level)


def psnr_of_mse(mse: float) -> float:
    """``10 log10(1 / mse)`` for images in [0, 1]; +inf at 0."""
    return math.inf if mse <= 0 else 10.0 * math.log10(1.0 / mse)


def psnr_interval(mse_interval: Interval) -> Interval:
    """The psnr interval of an mse interval (psnr falls as mse grows, so the ends swap)."""
    lo, hi = mse_interval
    if math.isnan(lo) or math.isnan(hi):
        return math.nan, math.nan
    return psnr_of_mse(hi), psnr_of_mse(lo)


def contains(interval: Interval, value: float) -> bool:
    """Whether ``value`` lies in the closed ``interval`` (false for a NaN interval)."""
    lo, hi = interval
    return bool(lo <= value <= hi)


def difference_within_noise(
    values: np.ndarray, baseline: np.ndarray, indices: np.ndarray | None = None
) -> bool:
    """Paired rule: the interval of the mean of ``values - baseline`` (per image) contains 0."""
    diff = np.asarray(values, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    return contains(mean_interval(diff, indices), 0.0)


def halves(prompts: Sequence[str]) -> tuple[list[int], list[int]]:
    """Two disjoint halves of the images, each prompt's images dealt alternately to the two, so
    both halves hold the same mix of prompts (prompts are usually grouped or cycled in order)."""
    seen: dict[str, int] = {}
    a: list[int] = []
    b: list[int] = []
    for i, p in enumerate(prompts):
        k = seen.get(p, 0)
        seen[p] = k + 1
        (a if k % 2 == 0 else b).append(i)
    return a, b


def distribution_warnings(metric: str, images: int, dims: int | None = None) -> list[str]:
    """Why ``metric`` (fid or kid) on ``images`` images may mislead; empty when it has enough."""
    out = []
    if images < DISTRIBUTION_IMAGES:
        what = "small-sample bias" if metric == "fid" else "noise"
        out.append(
            f"{metric} on {images} images is dominated by its {what}; it needs about "
            f"{DISTRIBUTION_IMAGES:,} images (raise `samples`); compare it with its floor"
        )
    if metric == "fid" and dims is not None and images < dims:
        out.append(
            f"fid on {images} images of {dims}-dimensional features: the covariance estimate is "
            f"singular (it needs more images than feature dimensions)"
        )
    return out
