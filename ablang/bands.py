"""bands: what kind of change a variant made: composition (low frequencies) or detail (high).

A variant's images are compared with the baseline's of the same seeds, row i with row i, both
mapped from [-1, 1] to [0, 1] as ``mse`` does. The difference ``d = variant - baseline``
(``[N x C x H x W]``) is split by an ideal low-pass in the orthonormal 2-D DCT-II of each
channel (the transform of the image mirrored at its borders, as in JPEG, so that the image's
edges and a brightness gradient do not wrap around into false detail):

- the DCT coefficient ``(ky, kx)`` (``0 <= ky < H``, ``0 <= kx < W``) oscillates ``ky / 2``
  cycles over the image height and ``kx / 2`` over its width; it is in the low band when
  ``sqrt((ky / 2) ** 2 + (kx / 2) ** 2) <= cut``, ``cut`` in cycles per image; every other
  coefficient is high;
- ``low = idct(dct(d) * mask)`` and ``high = d - low``. The filter is linear, so
  ``low = lowpass(variant) - lowpass(baseline)`` and
  ``high = (variant - lowpass(variant)) - (baseline - lowpass(baseline))``.

Metrics (lower = closer to the baseline, 0 for identical images):

- ``composition = mean(low ** 2)``: the change in layout and shapes;
- ``detail = mean(high ** 2)``: the change in texture, edges, fine strokes.

The DCT is orthonormal and the mask keeps or drops whole coefficients, so the two parts are
orthogonal: ``composition + detail == mse`` exactly (up to float rounding; Parseval). A
brick-wall filter rings in space, but the split of the *energy* is exact, which is what the
numbers report.

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


def dct_matrix(n: int) -> torch.Tensor:
    """``[n x n]`` orthonormal DCT-II: ``X = D @ x``, ``x = D.T @ X``."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


def low_mask(height: int, width: int, cut: float) -> torch.Tensor:
    """``[H x W]`` bool: the DCT coefficients in the low band (radius <= ``cut`` cycles/image)."""
    ky = torch.arange(height, dtype=torch.float64) / 2  # cycles per image height
    kx = torch.arange(width, dtype=torch.float64) / 2
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2) <= cut


def split(diff: torch.Tensor, cut: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` parts of ``diff`` (``[... x H x W]``, float64 out), ``low + high == diff``."""
    d = diff.double()
    h, w = d.shape[-2:]
    dh, dw = dct_matrix(h), dct_matrix(w)
    coeffs = dh @ d @ dw.T  # [... x H x W]
    low = dh.T @ (coeffs * low_mask(h, w, cut)) @ dw
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


def band_values(
    baseline: torch.Tensor, images: torch.Tensor, cut: float | None = None
) -> dict[str, torch.Tensor]:
    """Per image (``[N]`` float64) the ``composition`` and ``detail`` whose means are
    ``band_metrics``: the bootstrap's unit (``ablang.stats``)."""
    h, w = images.shape[-2:]
    cut = default_cut(h, w) if cut is None else cut
    diff = _unit(images) - _unit(baseline)  # [N x C x H x W]
    low, high = split(diff, cut)
    return {"composition": low.pow(2).flatten(1).mean(1), "detail": high.pow(2).flatten(1).mean(1)}


def identity_change(baseline_pred: torch.Tensor, pred: torch.Tensor) -> float:
    """Share of rows whose predicted class differs from the baseline's (``[N]`` class indices)."""
    if baseline_pred.shape != pred.shape:
        raise ValueError(f"{tuple(pred.shape)} predictions against {tuple(baseline_pred.shape)}")
    if not len(pred):
        return 0.0
    return float((pred.cpu() != baseline_pred.cpu()).float().mean())
