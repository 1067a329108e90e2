"""bands: what kind of change a variant made: composition (low frequencies) or detail (high).

A variant's images are compared with the baseline's of the same seeds, row i with row i, both
mapped from [-1, 1] to [0, 1] as ``mse`` does. The difference ``d = variant - baseline``
(``[N x C x H x W]``) is split by an ideal radial low-pass in the 2-D DFT of each channel:

- a frequency (``fy``, ``fx``) in cycles per image (``fy`` per image height, ``fx`` per width)
  is in the low band when ``sqrt(fy**2 + fx**2) <= cut``; every other frequency is high;
- ``low = ifft2(fft2(d) * mask)`` and ``high = d - low``. Since the filter is linear,
  ``low = lowpass(variant) - lowpass(baseline)`` and
  ``high = (variant - lowpass(variant)) - (baseline - lowpass(baseline))``.

Metrics (lower = closer to the baseline, 0 for identical images):

- ``composition = mean(low ** 2)``: the change in layout and shapes;
- ``detail = mean(high ** 2)``: the change in texture, edges, fine strokes.

The mask is symmetric under ``f -> -f``, so ``low`` is real and the two parts are orthogonal:
``composition + detail == mse`` exactly (up to float rounding; Parseval). A brick-wall filter
rings in space, but the split of the *energy* is exact, which is what the numbers report.

``cut`` defaults to ``min(H, W) / 8`` cycles per image: the low band is then what survives
downsampling the image to a quarter of its side (8x8 of a 32x32 digit: its position, slant and
rough shape; 16x16 of a 64x64 GLIDE image). It must lie below the Nyquist frequency
``min(H, W) / 2``.

``identity`` (classifier models: the built-in model's digit classifier) is the share of images
whose predicted class differs from the prediction on the baseline's image of the same seed, so
it says whether what changed was *which digit* it is, against how many pixels changed.
"""

from __future__ import annotations

import math

import torch

BAND_METRICS = ("composition", "detail")
IDENTITY = "identity"


def default_cut(height: int, width: int) -> float:
    """``min(H, W) / 8`` cycles per image (4 for 32x32 images)."""
    return min(height, width) / 8


def nyquist(height: int, width: int) -> float:
    return min(height, width) / 2


def cut_problem(cut: float, height: int, width: int) -> str | None:
    """Why ``cut`` does not fit ``H x W`` images (None when it does): it must be above 0 and
    below the Nyquist frequency, else one band is empty."""
    if not (cut > 0 and math.isfinite(cut)):
        return f"the band cut must be above 0 cycles per image, not {cut:g}"
    top = nyquist(height, width)
    if cut >= top:
        return (
            f"`bands cut {cut:g}` leaves no detail band: {height}x{width} images hold at most "
            f"{top:g} cycles per image"
        )
    return None


def low_mask(height: int, width: int, cut: float) -> torch.Tensor:
    """``[H x W]`` bool: the DFT bins (``torch.fft.fft2`` layout) in the low band."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64) * height  # cycles per image height
    fx = torch.fft.fftfreq(width, dtype=torch.float64) * width
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # [H x W]
    return radius <= cut


def split(diff: torch.Tensor, cut: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` parts of ``diff`` (``[... x H x W]``, float64 out), ``low + high == diff``."""
    d = diff.double()
    mask = low_mask(d.shape[-2], d.shape[-1], cut)
    low = torch.fft.ifft2(torch.fft.fft2(d) * mask).real
    return low, d - low


def _unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.double().cpu() + 1) / 2).clamp(0, 1)


def band_metrics(
    baseline: torch.Tensor, images: torch.Tensor, cut: float | None = None
) -> dict[str, float]:
    """``{"composition", "detail"}`` of ``images`` against ``baseline`` (both ``[N x C x H x W]``
    in [-1, 1], row i vs row i); ``cut`` None: ``default_cut``."""
    if baseline.shape != images.shape:
        raise ValueError(
            f"images {tuple(images.shape)} and baseline {tuple(baseline.shape)} differ"
        )
    h, w = images.shape[-2:]
    cut = default_cut(h, w) if cut is None else cut
    problem = cut_problem(cut, h, w)
    if problem:
        raise ValueError(problem)
    diff = _unit(images) - _unit(baseline)  # [N x C x H x W]
    if not diff.any():
        return {"composition": 0.0, "detail": 0.0}
    low, high = split(diff, cut)
    return {"composition": float(low.pow(2).mean()), "detail": float(high.pow(2).mean())}


def identity_change(baseline_pred: torch.Tensor, pred: torch.Tensor) -> float:
    """Share of rows whose predicted class differs from the baseline's (``[N]`` class indices)."""
    if baseline_pred.shape != pred.shape:
        raise ValueError(f"{tuple(pred.shape)} predictions against {tuple(baseline_pred.shape)}")
    if not len(pred):
        return 0.0
    return float((pred.cpu() != baseline_pred.cpu()).float().mean())
