"""The built-in model ``tiny``: a class-conditional MNIST Unet shipped inside the package.

Prompts are digit labels ("0".."9"); the unconditional half of guidance uses the null label 10.
Its digit classifier gives the ``accuracy`` metric and the features behind ``fid``/``kid``.
Everything loads from package data, offline, and is checked against the checksums below.
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch

from ablang.diffusion import DiffusionSpec
from ablang.models import ModelUnavailable
from ablang.models.adm_family import trace_adm
from ablang.models.base import LoadedModel, ModelAdapter
from ablang.models.digits import DigitClassifier
from ablang.models.tiny_unet import TinyUnet, TinyUnetConfig

WEIGHTS = "tiny_ema.pt"
CLASSIFIER = "digit_classifier.pt"
REFERENCE = "digits_ref_features.pt"
# sha256 of the shipped files; a mismatch means a damaged or foreign file.
CHECKSUMS = {
    WEIGHTS: "6d39f42bf8aae826b21cf8b361f7f5c3b6a58a4fb9919f16fb2ff8213c92bddf",
    CLASSIFIER: "e59a0a051f07e876ac7d4259078248287a601ce91e86ac0a01d127abb19ee43a",
    REFERENCE: "f3a36b412e8b6ac7cfdccd65314f240d73211005fddb8c293303ca2171d0cbae",
}
DIGITS = tuple(str(d) for d in range(10))


def data_path(name: str) -> Path:
    return Path(str(resources.files("ablang.models") / "data" / name))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(name: str) -> Path:
    path = data_path(name)
    if not path.exists():
        raise ModelUnavailable(
            f"the built-in model's file {name} is missing from the package ({path})"
        )
    digest = sha256(path)
    if CHECKSUMS[name] and digest != CHECKSUMS[name]:
        raise ModelUnavailable(
            f"{path} does not match its checksum (sha256 {digest[:12]}..., expected {CHECKSUMS[name][:12]}...)"
        )
    return path


def load_unet(path: Path | None = None) -> TinyUnet:
    """The EMA weights (stored fp16) in an fp32 model, in eval mode."""
    ckpt = torch.load(path or _verified(WEIGHTS), map_location="cpu", weights_only=True)
    model = TinyUnet(TinyUnetConfig.from_dict(ckpt["config"]))
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    return model.eval().requires_grad_(False)


@lru_cache(maxsize=1)
def load_classifier() -> DigitClassifier:
    ckpt = torch.load(_verified(CLASSIFIER), map_location="cpu", weights_only=True)
    clf = DigitClassifier()
    clf.load_state_dict(ckpt["state_dict"])
    return clf.eval().requires_grad_(False)


@lru_cache(maxsize=1)
def reference_features() -> torch.Tensor:
    """Classifier features of the 5,000 real digits: the fid/kid reference, ``[5000 x 128]``."""
    return torch.load(_verified(REFERENCE), map_location="cpu", weights_only=True)[
        "features"
    ].float()


def labels(prompts: list[str]) -> torch.Tensor:
    bad = [p for p in prompts if p not in DIGITS]
    if bad:
        raise ModelUnavailable(f"the tiny model's prompts are digits 0..9, not {bad[0]!r}")
    return torch.tensor([int(p) for p in prompts], dtype=torch.long)


@torch.no_grad()
def features(images: torch.Tensor) -> torch.Tensor:
    clf = load_classifier()
    return torch.cat(
        [clf.features(images[i : i + 512].float().cpu()) for i in range(0, len(images), 512)]
    )


@torch.no_grad()
def predict(images: torch.Tensor) -> torch.Tensor:
    """``[N]`` digit the classifier sees in each image (``[N x 1 x 32 x 32]`` in [-1, 1])."""
    clf = load_classifier()
    return torch.cat(
        [clf(images[i : i + 512].float().cpu()).argmax(1) for i in range(0, len(images), 512)]
    )


def accuracy(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    return predict(images) == labels(prompts)


# How a generated sampler rebuilds the model and its conditioning without ablang (see emit.py).
EMIT_SOURCE = '''
def load_model(device, weights=WEIGHTS):
    """The built-in model's EMA weights (stored fp16) in an fp32 TinyUnet."""
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    model = TinyUnet(TinyUnetConfig.from_dict(ckpt["config"]))
    model.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
    model = model.eval().requires_grad_(False).to(device)
    # A 1-channel image has no layout of its own, so the weights must be channels-last for
    # the convolutions to run that way (as ablang's adapter loads them)
    return model.to(memory_format=torch.channels_last) if CHANNELS_LAST else model


def make_cond(prompts, device):
    """Digit labels; the unconditional half of guidance uses the null label 10."""
    y = torch.tensor([int(p) for p in prompts], dtype=torch.long, device=device)
    return {"y": y}, {"y": torch.full_like(y, 10)}
'''


class TinyAdapter(ModelAdapter):
    def load(self, device: torch.device) -> LoadedModel:
        path = _verified(WEIGHTS)
        unet = load_unet(path)
        last = device.type == "cpu"
        if last:
            # A 1-channel image has no layout of its own (its strides fit both), so channels-last
            # inputs alone leave every convolution NCHW; channels-last weights make them all
            # channels-last, 1.03x (baseline) to 1.08x (cached variants) faster on 2 cores.
            unet = unet.to(memory_format=torch.channels_last)
        cfg = unet.config
        null = cfg.num_classes
        example = (
            torch.zeros(1, cfg.in_channels, cfg.image_size, cfg.image_size),
            torch.zeros(1, dtype=torch.long),
            torch.zeros(1, dtype=torch.long),
        )
        traced = trace_adm(
            unet,
            example,
            label="tiny",
            image_size=cfg.image_size,
            num_timesteps=1000,
            prompt_kind="class",
            inputs=("x", "timesteps", "y"),
        )
        # `check` refuses prompts outside these, with the place in the study
        traced.table = dataclasses.replace(traced.table, classes=DIGITS)
        unet.to(device)

        def make_cond(prompts: list[str], dev: torch.device):
            y = labels(prompts).to(dev)
            return {"y": y}, {"y": torch.full_like(y, null)}

        return LoadedModel(
            label="tiny",
            unet=unet,
            traced=traced,
            diffusion=DiffusionSpec(num_timesteps=1000, schedule="cosine", learn_sigma=False),
            image_shape=(cfg.in_channels, cfg.image_size, cfg.image_size),
            checksum=sha256(path),
            default_guidance=3.0,
            default_prompts=DIGITS,
            make_cond=make_cond,
            accuracy=accuracy,
            predict=predict,
            features=features,
            reference_features=reference_features,
            emit={
                "imports": ["from ablang.models.tiny_unet import TinyUnet, TinyUnetConfig"],
                "weights": str(path),
                "source": EMIT_SOURCE,
            },
            channels_last=last,
        )
