"""measure: what execute's images are worth, and what they cost.

Per variant, against the baseline images of the same seeds (row i vs row i):

- ``mse``: mean squared error of the images mapped from [-1, 1] to [0, 1];
- ``psnr``: ``10 log10(1 / mse)`` over the whole batch (torchmetrics, ``data_range=1``);
- ``ssim``: mean SSIM per image pair (torchmetrics, Gaussian 11x11 window, ``data_range=1``).

Against reference data, through torch-fidelity on feature vectors:

- ``fid``: ``fid_features_to_statistics`` + ``fid_statistics_to_metric``;
- ``kid``: ``kid_features_to_metric`` (the mean; subsets sized to the sample count);
- ``accuracy``: the share of images in which the model's classifier recognises the prompt.

Frequency bands and identity (``ablang.bands``): ``composition`` and ``detail`` split ``mse``
into its low- and high-frequency parts; ``identity`` is the share of images whose predicted
class differs from the baseline image's.

Features come from the model's own feature network where it has one (the built-in model: its
digit classifier, registered with torch-fidelity as ``"ablang-digits"`` by a run or by
``register_digits_extractor()``); otherwise from
torch-fidelity's ``inception-v3-compat``, whose weights must already be on disk (nothing is
downloaded). The reference is the model's ``reference_features()``, else a features file given in
``MeasureOptions.reference``, else the baseline's own images (then fid/kid measure how far a
variant's distribution moved from the baseline's, and the baseline's own fid is 0).

The baseline measured against itself gives ``mse = 0``, ``ssim = 1`` and ``psnr = inf`` exactly;
``report`` writes ``inf`` as ``null`` in results.json.

Cost is always measured: Unet FLOPs per image along the trajectory, their ratio to the baseline's,
wall seconds, and the speedup (both given by the caller).
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from ablang.bands import (
    BAND_METRICS,
    IDENTITY,
    band_metrics,
    band_values,
    cut_problem,
    identity_change,
)
from ablang.errors import AblangError
from ablang.models.base import LoadedModel
from ablang.models.kinds import KINDS
from ablang.plan import QUALITY_METRICS
from ablang.results import DISTRIBUTION_METRICS, Interval, Measurement, slug
from ablang.stats import (
    LEVEL,
    RESAMPLES,
    SEED,
    difference_within_noise,
    distribution_warnings,
    halves,
    mean_interval,
    psnr_interval,
    resample_indices,
)

DIGITS_EXTRACTOR = str(KINDS["tiny"].feature_extractor)
INCEPTION_EXTRACTOR = "inception-v3-compat"
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000  # torch-fidelity's default; capped at the number of samples
RNG_SEED = 2020  # torch-fidelity's default, fixed so kid is deterministic


def versions() -> dict[str, str]:
    """Versions of what the numbers depend on, for results.json."""
    import torch_fidelity
    import torchmetrics

    from ablang import __version__

    return {
        "ablang": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchmetrics": torchmetrics.__version__,
        "torch-fidelity": torch_fidelity.__version__,
    }


# ---------------------------------------------------------------------------- feature extractors


@dataclass(frozen=True)
class _Binding:
    features: Callable[[torch.Tensor], torch.Tensor]  # [N x C x H x W] in [-1, 1] -> [N x D]
    image_shape: tuple[int, int, int] | None  # (C, H, W) it expects; None: as given


# name -> the feature function the registered torch-fidelity extractor calls
_BINDINGS: dict[str, _Binding] = {}


def _extractor_class():
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class AblangFeatureExtractor(FeatureExtractorBase):
        """A model's own feature network as a torch-fidelity feature extractor.

        Takes what torch-fidelity feeds every extractor (``uint8 [N x 3 x H x W]``), maps it to the
        model's images (``[-1, 1]``, its channel count and size) and returns ``(features,)``.
        """

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            if name not in _BINDINGS:
                raise ValueError(f"no ablang feature network is bound to {name!r}")
            self.binding = _BINDINGS[name]

        @staticmethod
        def get_provided_features_list():
            return ("features",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            if metric == "isc":
                raise ValueError("ablang feature extractors give features, not class logits (isc)")
            return "features"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

        def forward(self, x):
            device = x.device
            images = x.float().cpu() / 127.5 - 1.0  # [N x 3 x H x W] in [-1, 1]
            shape = self.binding.image_shape
            if shape is not None:
                c, h, w = shape
                if c == 1 and images.shape[1] != 1:
                    images = images.mean(dim=1, keepdim=True)
                elif c == 3 and images.shape[1] == 1:
                    images = images.repeat(1, 3, 1, 1)
                if images.shape[-2:] != (h, w):
                    images = F.interpolate(
                        images, size=(h, w), mode="bilinear", align_corners=False
                    )
            feats = self.binding.features(images).float()  # [N x D]
            return (feats.to(device),)

    return AblangFeatureExtractor


_CLASS = None


def extractor_name(model: LoadedModel) -> str:
    """``"ablang-digits"`` for the built-in model, ``"ablang-<label>"`` for others."""
    kind = KINDS.get(model.label)
    if kind is not None and kind.feature_extractor:
        return kind.feature_extractor
    return f"ablang-{slug(model.label)}"


def register_feature_extractor(
    features: Callable[[torch.Tensor], torch.Tensor],
    name: str,
    image_shape: tuple[int, int, int] | None = None,
) -> str:
    """Make ``features`` usable as ``torch_fidelity.calculate_metrics(..., feature_extractor=name)``.

    Registering a name again rebinds it to the new function. Returns ``name``."""
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    global _CLASS
    if _CLASS is None:
        _CLASS = _extractor_class()
    _BINDINGS[name] = _Binding(features, image_shape)
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(name, _CLASS)
    return name


def register_model_features(model: LoadedModel) -> str | None:
    """Register ``model.features`` with torch-fidelity (see ``extractor_name``); None if it has none."""
    if model.features is None:
        return None
    return register_feature_extractor(model.features, extractor_name(model), model.image_shape)


def _tiny_features(images: torch.Tensor) -> torch.Tensor:
    from ablang.models.tiny import features

    return features(images)


def register_digits_extractor() -> str:
    """Register the built-in model's digit features as ``"ablang-digits"``, so that
    ``torch_fidelity.calculate_metrics(..., feature_extractor="ablang-digits")`` works in this
    process. Nothing is loaded until torch-fidelity first calls it. (Not done on import: importing
    torch-fidelity costs more than a second.)"""
    return register_feature_extractor(_tiny_features, DIGITS_EXTRACTOR, (1, 32, 32))


# ---------------------------------------------------------------------------- options


@dataclass(frozen=True)
class MeasureOptions:
    """Where fid/kid find what they need when the model does not bring it."""

    # Inception weights for models without their own feature network; None: torch-fidelity's
    # cache (torch.hub's checkpoints folder). Never downloaded.
    inception_weights: str | None = None
    # Reference features ([M x D] tensor, or a dict with "features") for models without
    # reference_features; None: measure against the baseline's own images.
    reference: str | None = None
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    device: str = "cpu"  # where the Inception network runs
    band_cut: float | None = None  # composition/detail cut (plan.bands.cut); None: bands' default


def inception_weights_path(options: MeasureOptions = MeasureOptions()) -> Path:
    """Where the Inception weights are looked for: the option, else torch-fidelity's cache."""
    if options.inception_weights:
        return Path(options.inception_weights).expanduser()
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return Path(torch.hub.get_dir()) / "checkpoints" / URL_INCEPTION_V3.rsplit("/", 1)[-1]


def _require_inception_weights(options: MeasureOptions) -> Path:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    path = inception_weights_path(options)
    if not path.is_file():
        raise AblangError(
            f"fid/kid need Inception weights at {path}, and they are not there",
            code="inception-weights",
            hint=f"download {URL_INCEPTION_V3} on a machine with network access and put it at "
            f"{path} (or point the inception weights option at the file)",
        )
    return path


def _inception_features(options: MeasureOptions) -> Callable[[torch.Tensor], torch.Tensor]:
    from torch_fidelity.utils import create_feature_extractor

    path = _require_inception_weights(options)
    device = torch.device(options.device)
    net = create_feature_extractor(
        INCEPTION_EXTRACTOR,
        ["2048"],
        cuda=device.type == "cuda",
        feature_extractor_weights_path=str(path),
        verbose=False,
    )

    @torch.no_grad()
    def features(images: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(images), 64):
            x = to_uint8(images[i : i + 64])
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            out.append(net(x.to(device))[0].cpu())
        return torch.cat(out)  # [N x 2048]

    return features


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``[N x C x H x W]`` in [-1, 1] -> uint8 in [0, 255], as torch-fidelity takes images."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _load_reference(path: str) -> torch.Tensor:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        obj = obj["features"]
    return obj.float()


# ---------------------------------------------------------------------------- metrics


def _unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float().cpu() + 1) / 2).clamp(0, 1)


def image_metrics(
    names: tuple[str, ...], baseline: torch.Tensor, images: torch.Tensor
) -> dict[str, float]:
    """mse/psnr/ssim of ``images`` against ``baseline`` (same shape, row i vs row i)."""
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    if baseline.shape != images.shape:
        raise ValueError(
            f"images {tuple(images.shape)} and baseline {tuple(baseline.shape)} differ"
        )
    wanted = [n for n in names if n in ("mse", "psnr", "ssim")]
    if not wanted:
        return {}
    a, b = _unit(images), _unit(baseline)  # [N x C x H x W] in [0, 1]
    if torch.equal(a, b):
        same = {"mse": 0.0, "psnr": math.inf, "ssim": 1.0}
        return {n: same[n] for n in wanted}
    out: dict[str, float] = {}
    if "mse" in names:
        out["mse"] = float(F.mse_loss(a, b))
    if "psnr" in names:
        out["psnr"] = float(peak_signal_noise_ratio(a, b, data_range=1.0))
    if "ssim" in names:
        side = min(a.shape[-2:])
        kernel = min(11, side if side % 2 else side - 1)
        ssim = structural_similarity_index_measure(a, b, data_range=1.0, kernel_size=kernel)
        out["ssim"] = float(cast(torch.Tensor, ssim))  # a tuple only with return_full_image
    return {n: out[n] for n in wanted}


def fid_from_features(features: torch.Tensor, reference: torch.Tensor) -> float:
    """Frechet distance of two feature sets ``[N x D]``, ``[M x D]`` via torch-fidelity."""
    from torch_fidelity.metric_fid import (
        KEY_METRIC_FID,
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )

    s1 = fid_features_to_statistics(features.detach().double().cpu())
    s2 = fid_features_to_statistics(reference.detach().double().cpu())
    fid = float(fid_statistics_to_metric(s1, s2, verbose=False)[KEY_METRIC_FID])
    return max(fid, 0.0)  # a distance; rounding can give -1e-15 for identical sets


def kid_from_features(
    features: torch.Tensor,
    reference: torch.Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
) -> float:
    """Kernel distance (mean over ``subsets`` random subsets) via torch-fidelity; the subset size
    is capped at the smaller of the two sets."""
    return kid_with_std(features, reference, subsets, subset_size)[0]


def kid_with_std(
    features: torch.Tensor,
    reference: torch.Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
) -> tuple[float, float]:
    """``(mean, standard deviation)`` of the kernel distance over ``subsets`` random subsets
    (torch-fidelity's ``kernel_inception_distance_mean`` and ``_std``). The deviation is over
    subsets: it is 0 when both sets are no larger than the subset size (every subset is all)."""
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    size = kid_subset_size(len(features), len(reference), subset_size)
    out = kid_features_to_metric(
        features.detach().double().cpu(),
        reference.detach().double().cpu(),
        kid_subsets=subsets,
        kid_subset_size=size,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
        rng_seed=RNG_SEED,
        verbose=False,
    )
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


def kid_subset_size(n_samples: int, n_reference: int, wanted: int = KID_SUBSET_SIZE) -> int:
    """The largest subset both sets can give, at most ``wanted``; kid needs at least 2."""
    size = min(wanted, n_samples, n_reference)
    if size < 2:
        raise AblangError(
            f"kid needs at least 2 samples and 2 reference images (have {n_samples} and {n_reference})",
            code="too-few-samples",
            hint="raise `samples` in the study",
        )
    return size


def check_metrics(
    names: tuple[str, ...], model: LoadedModel, options: MeasureOptions = MeasureOptions()
) -> None:
    """Raise now, before any sampling, what measuring ``names`` on ``model`` would fail on: an
    unknown metric, accuracy without a classifier, fid/kid without Inception weights on disk."""
    unknown = [n for n in names if n not in QUALITY_METRICS]
    if unknown:
        raise AblangError(
            f"unknown metric {unknown[0]!r}",
            code="unknown-metric",
            hint="metrics are " + ", ".join(QUALITY_METRICS),
        )
    if "accuracy" in names and model.accuracy is None:
        raise AblangError(
            f"the accuracy metric needs a model with a classifier; {model.label} has none",
            code="no-accuracy",
            hint="remove accuracy from the study's metrics",
        )
    if DISTRIBUTION_METRICS & set(names) and model.features is None:
        _require_inception_weights(options)
    # identity needs the model's predictions, and the band cut must fit the images
    if IDENTITY in names and model.predict is None:
        raise AblangError(
            f"the identity metric needs a model with a classifier; {model.label} has none",
            code="no-accuracy",
            hint="remove identity from the study's metrics",
        )
    if set(BAND_METRICS) & set(names) and options.band_cut is not None:
        problem = cut_problem(options.band_cut, *model.image_shape[-2:])
        if problem:
            raise AblangError(problem, code="bad-number", hint="lower the cut")


class Measure:
    """Measures variants of one run: holds the baseline images, and computes the reference
    features and the feature network once."""

    def __init__(
        self,
        names: tuple[str, ...],
        model: LoadedModel,
        baseline: torch.Tensor,
        prompts: list[str] | tuple[str, ...],
        options: MeasureOptions = MeasureOptions(),
    ) -> None:
        check_metrics(names, model, options)
        self.names = tuple(names)
        self.model = model
        self.baseline = baseline  # [N x C x H x W] in [-1, 1]
        self.prompts = list(prompts)
        self.options = options
        self._features: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._reference: torch.Tensor | None = None
        self._baseline_pred: torch.Tensor | None = None  # [N] classes, for identity
        self._idx: np.ndarray | None = None  # the bootstrap's resamples, shared by all variants
        self._base_per: dict[str, np.ndarray] | None = None
        self._base_dist: dict[str, float] | None = None
        self._floors: dict[str, float] | None = None
        register_model_features(model)  # usable with torch-fidelity directly from now on
        if DISTRIBUTION_METRICS & set(self.names) and len(baseline) < 2:
            raise AblangError(
                f"fid/kid need at least 2 samples, the run has {len(baseline)}",
                code="too-few-samples",
                hint="raise `samples` in the study",
            )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N x D]`` features of images in [-1, 1]: the model's own network, else Inception."""
        if self._features is None:
            self._features = self.model.features or _inception_features(self.options)
        return self._features(images)

    def reference(self) -> torch.Tensor:
        """The reference features: the model's, a file's, or the baseline images'."""
        if self._reference is None:
            if self.model.reference_features is not None and self.model.features is not None:
                ref = self.model.reference_features()
            elif self.options.reference:
                ref = _load_reference(self.options.reference)
            else:
                ref = self.features(self.baseline)
            self._reference = ref.float().cpu()
        return self._reference

    def metrics(self, images: torch.Tensor) -> dict[str, float]:
        """Every requested metric of one variant's images, in the order requested."""
        return self._evaluate(images, None)

    def measure(self, images: torch.Tensor) -> Measurement:
        """The metrics of one variant's images with their statistics (docs/statistics.md): a 95%
        bootstrap interval over images for every metric that is a mean over images, kid's
        standard deviation, and whether each differs from the baseline by more than noise."""
        per: dict[str, np.ndarray] = {}
        std: dict[str, float] = {}
        metrics = self._evaluate(images, per, std)
        base = self._baseline_per_image()
        idx = self._indices()
        intervals: dict[str, Interval] = {}
        noise: dict[str, bool] = {}
        for name in self.names:
            source = "mse" if name == "psnr" else name
            if source in per:
                interval = mean_interval(per[source], idx)
                intervals[name] = psnr_interval(interval) if name == "psnr" else interval
                noise[name] = difference_within_noise(per[source], base[source], idx)
            elif name in DISTRIBUTION_METRICS:
                floor = self.floors().get(name, math.nan)
                own = self._baseline_distribution()[name]
                if math.isfinite(floor) and math.isfinite(metrics[name]):
                    noise[name] = abs(metrics[name] - own) <= floor
        return Measurement(metrics, intervals, std, noise)

    def _indices(self) -> np.ndarray:
        if self._idx is None:
            self._idx = resample_indices(len(self.baseline))
        return self._idx

    def _baseline_per_image(self) -> dict[str, np.ndarray]:
        """The baseline's own per-image values: no change (0, ssim 1) and its accuracy hits."""
        if self._base_per is None:
            per: dict[str, np.ndarray] = {}
            self._evaluate(self.baseline, per, {}, distribution=False)
            self._base_per = per
        return self._base_per

    def _baseline_distribution(self) -> dict[str, float]:
        """fid/kid of the baseline's own images, the value a variant's is compared with."""
        if self._base_dist is None:
            feats = self.features(self.baseline).float().cpu()
            self._base_dist = self._distribution(feats, self.reference(), {})
        return self._base_dist

    def floors(self) -> dict[str, float]:
        """fid/kid between two halves of the baseline's images (``stats.halves``): how far apart
        chance alone puts two samples of the same model at this size. kid's is its absolute
        value (it is unbiased, so it may come out below 0). NaN with fewer than 4 images."""
        if self._floors is None:
            wanted = DISTRIBUTION_METRICS & set(self.names)
            a, b = halves(
                self.prompts
                if len(self.prompts) == len(self.baseline)
                else [""] * len(self.baseline)
            )
            if not wanted or min(len(a), len(b)) < 2:
                self._floors = {m: math.nan for m in wanted}
            else:
                feats = self.features(self.baseline).float().cpu()
                found = self._distribution(feats[a], feats[b], {})
                self._floors = {m: abs(x) for m, x in found.items()}
        return self._floors

    def statistics(self) -> dict:
        """How the statistics were drawn, the fid/kid floors and the warnings, for results.json
        (``Results.statistics``); see docs/statistics.md."""
        n = len(self.baseline)
        warnings: list[str] = []
        floors = {}
        for m in sorted(DISTRIBUTION_METRICS & set(self.names)):
            dims = int(self.reference().shape[1])
            warnings += distribution_warnings(m, n, dims)
            floors[m] = self.floors()[m]
        return {
            "unit": "image",
            "images": n,
            "interval": "percentile bootstrap",
            "level": LEVEL,
            "resamples": RESAMPLES,
            "seed": SEED,
            "noise": "the interval of the per-image difference from the baseline contains 0; "
            "fid/kid: the difference from the baseline is at most the floor",
            "floors": floors,
            "warnings": warnings,
        }

    def _distribution(
        self, feats: torch.Tensor, ref: torch.Tensor, std: dict[str, float]
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        if "fid" in self.names:
            out["fid"] = fid_from_features(feats, ref)
        if "kid" in self.names:
            out["kid"], std["kid"] = kid_with_std(
                feats, ref, self.options.kid_subsets, self.options.kid_subset_size
            )
        return out

    def _evaluate(
        self,
        images: torch.Tensor,
        per: dict[str, np.ndarray] | None,
        std: dict[str, float] | None = None,
        distribution: bool = True,
    ) -> dict[str, float]:
        """The metrics of ``images``; with ``per``, also fills it with the per-image values whose
        means they are (mse also stands for psnr), and ``std`` with kid's deviation."""
        out = image_metrics(self.names, self.baseline, images)
        if per is not None:
            per.update(per_image_change(self.names, self.baseline, images))
        if "accuracy" in self.names:
            assert self.model.accuracy is not None  # check_metrics refused it otherwise
            hits = self.model.accuracy(images, self.prompts)  # [N] bool
            out["accuracy"] = float(hits.float().mean())
            if per is not None:
                per["accuracy"] = hits.float().cpu().double().numpy()
        if set(BAND_METRICS) & set(self.names):
            out.update(band_metrics(self.baseline, images, self.options.band_cut))
            if per is not None:
                bands = band_values(self.baseline, images, self.options.band_cut)
                per.update({k: v.numpy() for k, v in bands.items() if k in self.names})
        if IDENTITY in self.names:
            assert self.model.predict is not None  # check_metrics refused it otherwise
            if self._baseline_pred is None:
                self._baseline_pred = self.model.predict(self.baseline)
            pred = self.model.predict(images)
            out[IDENTITY] = identity_change(self._baseline_pred, pred)
            if per is not None:
                changed = pred.cpu() != self._baseline_pred.cpu()
                per[IDENTITY] = changed.double().numpy()
        if DISTRIBUTION_METRICS & set(self.names) and distribution:
            feats = self.features(images).float().cpu()  # [N x D]
            ref = self.reference()  # [M x D]
            if feats.shape[1] != ref.shape[1]:
                raise AblangError(
                    f"reference features have {ref.shape[1]} dimensions, the images' {feats.shape[1]}",
                    code="reference-features",
                )
            out.update(self._distribution(feats, ref, {} if std is None else std))
        return {n: out[n] for n in self.names if n in out}


def per_image_change(
    names: tuple[str, ...], baseline: torch.Tensor, images: torch.Tensor
) -> dict[str, np.ndarray]:
    """Per image, ``[N]`` float64, the values whose means are mse and ssim (psnr is read off the
    mean mse). An image identical to the baseline's gets exactly mse 0 and ssim 1."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    out: dict[str, np.ndarray] = {}
    if not {"mse", "psnr", "ssim"} & set(names):
        return out
    a, b = _unit(images), _unit(baseline)
    same = (a == b).flatten(1).all(1)  # [N]
    if {"mse", "psnr"} & set(names):
        out["mse"] = (a.double() - b.double()).pow(2).flatten(1).mean(1).numpy()
    if "ssim" in names:
        side = min(a.shape[-2:])
        kernel = min(11, side if side % 2 else side - 1)
        ssim = structural_similarity_index_measure(
            a, b, data_range=1.0, kernel_size=kernel, reduction="none"
        )
        values = cast(torch.Tensor, ssim).double().reshape(len(a))
        out["ssim"] = torch.where(same, torch.ones_like(values), values).numpy()
    return out


def quality_metrics(
    names: tuple[str, ...],
    baseline: torch.Tensor,
    images: torch.Tensor,
    prompts: list[str],
    model: LoadedModel,
    options: MeasureOptions = MeasureOptions(),
) -> dict[str, float]:
    """The requested metrics of ``images`` (``[N x C x H x W]`` in [-1, 1]) against ``baseline``
    (the baseline's images for the same seeds) and the model's reference. For many variants build
    one ``Measure`` instead: it computes the reference once."""
    return Measure(names, model, baseline, prompts, options).metrics(images)
