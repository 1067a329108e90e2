"""measure: image metrics on known inputs, fid/kid through torch-fidelity on synthetic features,
the registered feature extractor, and the errors for what a model does not have."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from ablang.errors import AblangError
from ablang.measure import (
    DIGITS_EXTRACTOR,
    Measure,
    MeasureOptions,
    check_metrics,
    fid_from_features,
    image_metrics,
    kid_from_features,
    kid_subset_size,
    quality_metrics,
    register_digits_extractor,
    register_feature_extractor,
    to_uint8,
)
from ablang.results import cost


def images(n: int = 4, c: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g) * 2 - 1  # [N x C x H x W] in [-1, 1]


def fake_model(features=True, accuracy=True, reference=True, label="fake"):
    """What measure reads of a LoadedModel: features = the mean of each channel's pixels."""

    def feats(x: torch.Tensor) -> torch.Tensor:  # [N x C x H x W] -> [N x 4]
        x = x.float()
        return torch.stack(
            [
                x.mean((1, 2, 3)),
                x.std((1, 2, 3)),
                x[..., :4, :].mean((1, 2, 3)),
                x[..., -4:, :].mean((1, 2, 3)),
            ],
            dim=1,
        )

    ref = feats(images(32, seed=99))
    return SimpleNamespace(
        label=label,
        image_shape=(1, 16, 16),
        features=feats if features else None,
        reference_features=(lambda: ref) if reference else None,
        accuracy=(lambda x, p: torch.tensor([q == "1" for q in p])) if accuracy else None,
    )


# ---------------------------------------------------------------------------- mse / psnr / ssim


def test_identical_images_are_exact():
    x = images()
    m = image_metrics(("mse", "psnr", "ssim"), x, x.clone())
    assert m == {"mse": 0.0, "psnr": math.inf, "ssim": 1.0}


def test_known_perturbation():
    base = torch.zeros(2, 1, 16, 16)  # 0.5 in [0, 1]
    shifted = base + 0.2  # 0.6 in [0, 1]: error 0.1 everywhere
    m = image_metrics(("mse", "psnr", "ssim"), base, shifted)
    assert m["mse"] == pytest.approx(0.01, rel=1e-5)
    assert m["psnr"] == pytest.approx(20.0, rel=1e-5)
    assert 0.0 < m["ssim"] < 1.0


def test_psnr_is_ten_log_of_inverse_mse_and_order_is_kept():
    a, b = images(seed=1), images(seed=2)
    m = image_metrics(("ssim", "psnr", "mse"), a, b)
    assert list(m) == ["ssim", "psnr", "mse"]
    assert m["psnr"] == pytest.approx(10 * math.log10(1 / m["mse"]), rel=1e-4)


def test_images_outside_the_range_are_clamped():
    base = torch.ones(1, 1, 16, 16)
    m = image_metrics(("mse",), base, base * 3)  # both clamp to 1
    assert m["mse"] == 0.0


def test_small_images_get_a_smaller_ssim_window():
    a, b = images(size=8, seed=3), images(size=8, seed=4)
    assert -1.0 <= image_metrics(("ssim",), a, b)["ssim"] < 1.0


# ---------------------------------------------------------------------------- fid / kid


def test_fid_of_identical_features_is_zero_and_grows_with_the_shift():
    f = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert fid_from_features(f, f.clone()) == pytest.approx(0.0, abs=1e-6)
    near, far = fid_from_features(f + 0.5, f), fid_from_features(f + 2.0, f)
    # same covariance: fid = |mean difference|^2 = D * shift^2
    assert near == pytest.approx(8 * 0.25, rel=1e-4)
    assert far == pytest.approx(8 * 4.0, rel=1e-4)


def test_kid_is_small_for_the_same_distribution_and_larger_when_shifted():
    g = torch.Generator().manual_seed(1)
    ref = torch.randn(300, 8, generator=g)
    same = torch.randn(40, 8, generator=g)
    kid_same = kid_from_features(same, ref, subsets=20)
    kid_far = kid_from_features(same + 1.0, ref, subsets=20)
    assert abs(kid_same) < 0.05 < kid_far


def test_kid_subset_size_follows_the_sample_count():
    assert kid_subset_size(5, 5000) == 5
    assert kid_subset_size(5000, 300) == 300
    assert kid_subset_size(5000, 5000) == 1000
    f = torch.randn(3, 4)
    assert math.isfinite(kid_from_features(f, torch.randn(50, 4), subsets=5))  # 3 samples is fine
    with pytest.raises(AblangError, match="at least 2 samples"):
        kid_subset_size(1, 100)


def test_kid_is_deterministic():
    f, ref = torch.randn(10, 4), torch.randn(50, 4)
    assert kid_from_features(f, ref, subsets=10) == kid_from_features(f, ref, subsets=10)


# ---------------------------------------------------------------------------- quality_metrics


def test_quality_metrics_with_a_model():
    model = fake_model()
    base = images(8)
    prompts = ["1"] * 6 + ["2"] * 2
    names = ("mse", "ssim", "psnr", "accuracy", "fid", "kid")
    own = quality_metrics(names, base, base, prompts, model)
    assert list(own) == list(names)
    assert own["mse"] == 0 and own["ssim"] == 1 and own["psnr"] == math.inf
    assert own["accuracy"] == pytest.approx(0.75)
    assert own["fid"] > 0 and math.isfinite(
        own["kid"]
    )  # the baseline vs the reference: real values
    worse = quality_metrics(names, base, (base * 0.2 + 0.7).clamp(-1, 1), prompts, model)
    assert worse["fid"] > own["fid"] and worse["mse"] > 0


def test_measure_computes_the_reference_once():
    calls = []
    model = fake_model()
    ref = model.reference_features

    def counted():
        calls.append(1)
        return ref()

    model.reference_features = counted
    m = Measure(("fid",), model, images(8), ["1"] * 8)
    m.metrics(images(8, seed=5))
    m.metrics(images(8, seed=6))
    assert len(calls) == 1


def test_without_reference_the_baseline_is_the_reference():
    model = fake_model(reference=False)
    base = images(8)
    m = Measure(("fid",), model, base, ["1"] * 8)
    assert m.metrics(base)["fid"] == pytest.approx(0.0, abs=1e-6)
    assert m.metrics(images(8, seed=7))["fid"] > 0


def test_reference_file_option(tmp_path):
    model = fake_model(reference=False)
    path = tmp_path / "ref.pt"
    torch.save({"features": model.features(images(16, seed=11))}, path)
    m = Measure(("fid",), model, images(8), ["1"] * 8, MeasureOptions(reference=str(path)))
    assert m.metrics(images(8))["fid"] > 0


def test_accuracy_needs_a_classifier():
    with pytest.raises(AblangError, match="needs a model with a classifier") as e:
        quality_metrics(("accuracy",), images(), images(), ["1"] * 4, fake_model(accuracy=False))
    assert e.value.code == "no-accuracy"


def test_fid_needs_two_samples():
    with pytest.raises(AblangError, match="at least 2 samples"):
        quality_metrics(("fid",), images(1), images(1), ["1"], fake_model())


def test_unknown_metric():
    with pytest.raises(AblangError, match="unknown metric 'lpips'"):
        quality_metrics(("lpips",), images(), images(), ["1"] * 4, fake_model())


def test_missing_inception_weights_is_a_clear_error(tmp_path):
    missing = tmp_path / "inception.pth"
    model = fake_model(features=False, reference=False)
    options = MeasureOptions(inception_weights=str(missing))
    with pytest.raises(AblangError) as e:
        quality_metrics(("fid",), images(), images(seed=1), ["1"] * 4, model, options)
    assert str(missing) in e.value.message and "Inception weights" in e.value.message
    assert "download" in e.value.hint and e.value.code == "inception-weights"
    assert not missing.exists()  # nothing was fetched
    with pytest.raises(AblangError, match="Inception weights"):
        check_metrics(("kid",), model, options)  # before any sampling
    check_metrics(("mse", "ssim"), model, options)  # image metrics need no weights


# ---------------------------------------------------------------------------- torch-fidelity


def test_digits_extractor_registration():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    assert register_digits_extractor() == DIGITS_EXTRACTOR
    assert DIGITS_EXTRACTOR in FEATURE_EXTRACTORS_REGISTRY
    assert register_digits_extractor() == DIGITS_EXTRACTOR  # twice is fine


def test_measure_registers_the_models_features():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    Measure(("mse",), fake_model(label="fake two"), images(), ["1"] * 4)
    assert "ablang-fake-two" in FEATURE_EXTRACTORS_REGISTRY


def test_a_registered_extractor_works_in_calculate_metrics():
    import torch_fidelity

    model = fake_model()
    name = register_feature_extractor(model.features, "ablang-test-fake", model.image_shape)
    assert register_feature_extractor(model.features, name, model.image_shape) == name  # rebinding

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = to_uint8(x).repeat(1, 3, 1, 1)  # torch-fidelity feeds uint8 RGB

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    a, b = images(12, seed=1), images(12, seed=2)
    out = torch_fidelity.calculate_metrics(
        input1=Images(a),
        input2=Images(b),
        feature_extractor=name,
        fid=True,
        kid=True,
        kid_subset_size=6,
        kid_subsets=5,
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )
    expected = fid_from_features(model.features(_roundtrip(a)), model.features(_roundtrip(b)))
    assert out["frechet_inception_distance"] == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert "kernel_inception_distance_mean" in out


def _roundtrip(x: torch.Tensor) -> torch.Tensor:
    return to_uint8(x).float() / 127.5 - 1.0


# ---------------------------------------------------------------------------- cost


def test_cost():
    c = cost(50.0, 200.0, seconds=1.5, wall_speedup=0.9)
    assert (c.unet_flops, c.flops_ratio, c.seconds, c.wall_speedup) == (50.0, 0.25, 1.5, 0.9)
    # the FLOP-bound speedup is read off the FLOPs alone, whatever the clock said
    assert c.flop_speedup == 4.0 and c.speedup == c.wall_speedup
    assert cost(0.0, 0.0, 0.0, 1.0).flops_ratio == 1.0


def test_versions_name_everything_the_numbers_depend_on():
    import platform

    import torch_fidelity
    import torchmetrics

    import ablang
    from ablang.measure import versions

    v = versions()
    assert v == {
        "ablang": ablang.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchmetrics": torchmetrics.__version__,
        "torch-fidelity": torch_fidelity.__version__,
    }
