"""diffusion: respacing, DDPM and DDIM steps held to openai's guided-diffusion (the reference GLIDE
uses), classifier-free guidance, and per-sample noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablang.diffusion import Diffusion, DiffusionSpec, guided, make_noise, space_timesteps, steps_of

try:  # the reference implementation (a dev dependency: guided-diffusion-sdk)
    from guided_diffusion import gaussian_diffusion as gd
    from guided_diffusion.respace import SpacedDiffusion
    from guided_diffusion.respace import space_timesteps as gd_space_timesteps
except ImportError:  # pragma: no cover
    gd = None

needs_reference = pytest.mark.skipif(
    gd is None, reason="needs guided-diffusion-sdk as the reference"
)

SHAPE = (2, 1, 8, 8)


def reference(steps: int, schedule: str = "cosine") -> SpacedDiffusion:
    """guided-diffusion's respaced diffusion as GLIDE builds it: epsilon, FIXED_SMALL variance."""
    return SpacedDiffusion(
        use_timesteps=gd_space_timesteps(1000, str(steps)),
        betas=gd.get_named_beta_schedule(schedule, 1000),
        model_mean_type=gd.ModelMeanType.EPSILON,
        model_var_type=gd.ModelVarType.FIXED_SMALL,
        loss_type=gd.LossType.MSE,
        rescale_timesteps=False,
    )


def tensors(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An ``x`` and a fixed ``eps``, ``[2 x 1 x 8 x 8]`` each."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)


# --------------------------------------------------------------------------- respacing


@needs_reference
@pytest.mark.parametrize("n", [2, 5, 10, 25, 50, 100, 250, 1000])
def test_respacing_equals_guided_diffusion(n):
    ours = space_timesteps(1000, n)
    assert ours == sorted(gd_space_timesteps(1000, str(n)))
    assert len(ours) == n


@pytest.mark.parametrize("n", [10, 50, 100])
def test_respaced_steps_run_from_999_to_0_evenly(n):
    visit = Diffusion(DiffusionSpec(), n).visit_order
    assert visit[0] == 999 and visit[-1] == 0
    gaps = -np.diff(visit)
    assert gaps.min() >= 1 and gaps.max() - gaps.min() <= 1  # even up to rounding
    assert [s.t for s in steps_of(Diffusion(DiffusionSpec(), n))] == visit
    assert [s.index for s in steps_of(Diffusion(DiffusionSpec(), n))] == list(range(n))


def test_space_timesteps_of_100_is_glides():
    ts = space_timesteps(1000, 100)
    assert ts[:3] == [0, 10, 20] and ts[-2:] == [989, 999]


def test_space_timesteps_rejects_impossible_counts():
    with pytest.raises(ValueError):
        space_timesteps(1000, 0)
    with pytest.raises(ValueError):
        space_timesteps(1000, 1001)


@needs_reference
@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("n", [10, 100, 1000])
def test_respaced_coefficients_equal_spaced_diffusion(schedule, n):
    ours = Diffusion(DiffusionSpec(schedule=schedule), n)
    ref = reference(n, schedule)
    assert ours.timesteps == ref.timestep_map
    for name, theirs in [
        ("betas", ref.betas),
        ("alphas_cumprod", ref.alphas_cumprod),
        ("alphas_cumprod_prev", ref.alphas_cumprod_prev),
        ("sqrt_recip_acp", ref.sqrt_recip_alphas_cumprod),
        ("sqrt_recipm1_acp", ref.sqrt_recipm1_alphas_cumprod),
        ("post_log_var", ref.posterior_log_variance_clipped),
        ("post_coef1", ref.posterior_mean_coef1),
        ("post_coef2", ref.posterior_mean_coef2),
    ]:
        np.testing.assert_allclose(getattr(ours, name), theirs, rtol=1e-12, atol=0, err_msg=name)


# --------------------------------------------------------------------------- one step


@needs_reference
@pytest.mark.parametrize("i", [0, 1, 4, 9])
def test_ddpm_step_equals_p_sample(i):
    """Same eps, same noise: ablang's step is guided-diffusion's p_sample (mean + std * noise,
    no noise at the last step), clip_denoised on."""
    ours, ref = Diffusion(DiffusionSpec(), 10), reference(10)
    x, eps = tensors(i)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(100 + i))
    t = torch.full((SHAPE[0],), i, dtype=torch.long)
    model = lambda x_, t_: eps
    mv = ref.p_mean_variance(model, x, t, clip_denoised=True)
    expected = mv["mean"] + (i != 0) * torch.exp(0.5 * mv["log_variance"]) * noise
    got = ours.ddpm_step(x, i, eps, noise)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # and through p_sample itself, with its noise drawn from the same seed
    torch.manual_seed(7)
    drawn = torch.randn_like(x)
    torch.manual_seed(7)
    sample = ref.p_sample(model, x, t, clip_denoised=True)["sample"]
    torch.testing.assert_close(ours.ddpm_step(x, i, eps, drawn), sample, rtol=1e-5, atol=1e-5)


def test_ddpm_last_step_is_the_mean():
    d = Diffusion(DiffusionSpec(), 10)
    x, eps = tensors(3)
    a = d.ddpm_step(x, 0, eps, torch.zeros(SHAPE))
    b = d.ddpm_step(x, 0, eps, torch.full(SHAPE, 5.0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_x0_prediction_is_clipped():
    d = Diffusion(DiffusionSpec(), 10)
    x, eps = tensors(4)
    x0 = d.predict_x0(10 * x, 9, -10 * eps)
    assert x0.min() >= -1 and x0.max() <= 1


@needs_reference
@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("i", [0, 3, 9])
def test_ddim_step_equals_ddim_sample(eta, i):
    ours, ref = Diffusion(DiffusionSpec(), 10), reference(10)
    x, eps = tensors(20 + i)
    t = torch.full((SHAPE[0],), i, dtype=torch.long)
    torch.manual_seed(11)
    noise = torch.randn_like(x)
    torch.manual_seed(11)  # ddim_sample draws its noise with randn_like after the (RNG-free) model
    expected = ref.ddim_sample(lambda x_, t_: eps, x, t, clip_denoised=True, eta=eta)["sample"]
    got = ours.ddim_step(x, i, eps, noise, eta)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_ddim_eta_zero_is_deterministic_and_eta_adds_noise():
    d = Diffusion(DiffusionSpec(), 10)
    x, eps = tensors(5)
    n1, n2 = torch.zeros(SHAPE), torch.ones(SHAPE)
    torch.testing.assert_close(
        d.ddim_step(x, 5, eps, n1, 0.0), d.ddim_step(x, 5, eps, n2, 0.0), rtol=0, atol=0
    )
    assert not torch.allclose(d.ddim_step(x, 5, eps, n1, 0.5), d.ddim_step(x, 5, eps, n2, 0.5))


@needs_reference
def test_learned_range_variance_equals_guided_diffusion():
    """With learn_sigma the extra channels interpolate the log variance (LEARNED_RANGE)."""
    spec = DiffusionSpec(learn_sigma=True)
    ours = Diffusion(spec, 10)
    ref = SpacedDiffusion(
        use_timesteps=gd_space_timesteps(1000, "10"),
        betas=gd.get_named_beta_schedule("cosine", 1000),
        model_mean_type=gd.ModelMeanType.EPSILON,
        model_var_type=gd.ModelVarType.LEARNED_RANGE,
        loss_type=gd.LossType.MSE,
    )
    x, eps = tensors(6)
    v = torch.rand(SHAPE, generator=torch.Generator().manual_seed(2)) * 2 - 1
    out = torch.cat([eps, v], dim=1)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    t = torch.full((SHAPE[0],), 6, dtype=torch.long)
    mv = ref.p_mean_variance(lambda x_, t_: out, x, t, clip_denoised=True)
    expected = mv["mean"] + torch.exp(0.5 * mv["log_variance"]) * noise
    torch.testing.assert_close(ours.ddpm_step(x, 6, out, noise), expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- guidance


def _model(x, t, cond):
    """A stand-in Unet: the output depends on x, t and the label in a non-linear way."""
    y = cond["y"].float()[:, None, None, None]
    return torch.tanh(x * (1 + y) + t.float()[:, None, None, None] / 1000)


def test_guidance_one_is_the_conditional_prediction_exactly():
    calls = []

    def model(x, t, cond):
        calls.append(x.shape[0])
        return _model(x, t, cond)

    x, _ = tensors(8)
    t = torch.tensor([500, 500])
    cond, uncond = {"y": torch.tensor([3, 7])}, {"y": torch.tensor([10, 10])}
    out = guided(model, 1.0, channels=1)(x, t, cond, uncond)
    torch.testing.assert_close(out, _model(x, t, cond), rtol=0, atol=0)
    assert calls == [2]  # the unconditional half is not computed


def test_guidance_combines_the_halves():
    x, _ = tensors(9)
    t = torch.tensor([500, 500])
    cond, uncond = {"y": torch.tensor([3, 7])}, {"y": torch.tensor([10, 10])}
    out = guided(_model, 3.0, channels=1)(x, t, cond, uncond)
    c, u = _model(x, t, cond), _model(x, t, uncond)
    torch.testing.assert_close(out, u + 3.0 * (c - u), rtol=1e-6, atol=1e-6)


def test_guidance_keeps_the_conditional_variance_channels():
    def model(x, t, cond):
        y = cond["y"].float()[:, None, None, None]
        return torch.cat([x * y, y.expand_as(x)], dim=1)

    x, _ = tensors(10)
    t = torch.tensor([1, 1])
    out = guided(model, 2.0, channels=1)(
        x, t, {"y": torch.tensor([3, 7])}, {"y": torch.tensor([10, 10])}
    )
    assert out.shape == (2, 2, 8, 8)
    torch.testing.assert_close(
        out[:, 1:], torch.tensor([3.0, 7.0])[:, None, None, None].expand(2, 1, 8, 8)
    )


# --------------------------------------------------------------------------- noise


def test_a_samples_noise_does_not_depend_on_its_batch():
    x_a, n_a = make_noise((1, 8, 8), [5, 6, 7], steps=4)
    x_b, n_b = make_noise((1, 8, 8), [9, 6], steps=4)
    x_c, n_c = make_noise((1, 8, 8), [6], steps=4)
    assert x_a.shape == (3, 1, 8, 8) and n_a.shape == (4, 3, 1, 8, 8)
    torch.testing.assert_close(x_a[1], x_b[1], rtol=0, atol=0)
    torch.testing.assert_close(x_a[1], x_c[0], rtol=0, atol=0)
    torch.testing.assert_close(n_a[:, 1], n_b[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(n_a[:, 1], n_c[:, 0], rtol=0, atol=0)
    assert not torch.equal(x_a[0], x_a[1])  # different seeds, different noise
    assert not torch.equal(n_a[0, 1], n_a[1, 1])  # and fresh noise every step


def test_make_noise_is_reproducible():
    a = make_noise((1, 4, 4), [0, 1], steps=3)
    b = make_noise((1, 4, 4), [0, 1], steps=3)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
