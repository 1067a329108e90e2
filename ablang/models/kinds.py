"""The model kinds a study can name, and what ablang knows about each before loading one.

One row per kind: the study syntax, the package it needs (import name and how to install it),
what its prompts are, whether it brings a classifier (the ``accuracy`` metric) and a feature
network of its own (fid/kid features; otherwise Inception), and where its adapter lives. The
resolver, ``measure``, the registry and the command line read this table; nothing here imports
torch or an adapter, so reading it is free.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Literal

PromptKind = Literal["class", "text", "none"]


@dataclass(frozen=True)
class ModelKind:
    name: str  # the word after `model`
    syntax: str  # the whole model line, as the resolver's hints write it
    takes_path: bool
    takes_config: bool
    requires: str | None  # import name of the package it needs beyond ablang's own; None: none
    install: str | None  # how to install that package
    # what its prompts can be ("class": class labels, "text": free text, "none": unconditional);
    # where there are several, the checkpoint's config decides
    prompts: tuple[PromptKind, ...]
    classes: tuple[str, ...] = ()  # class labels, where the kind fixes them
    classifier: bool = False  # can score `accuracy`
    # has an unconditional half (a null class, an empty prompt) for classifier-free guidance
    guidable: bool = False
    # where not empty: guidable only with these prompt kinds (a diffusers Unet has an empty
    # prompt when it is text-conditioned, no null class when it is class-conditioned)
    guidable_prompts: tuple[PromptKind, ...] = ()
    # samples with a diffusers scheduler (`sampler pipeline`, `sampler <SchedulerClass>`); its
    # `ddpm` / `ddim` are diffusers' DDPMScheduler / DDIMScheduler with the directory's config
    schedulers: bool = False
    feature_extractor: str | None = None  # its own torch-fidelity extractor for fid/kid
    adapter: str = ""  # "module:Class"

    def available(self) -> bool:
        """Whether the package this kind needs is importable here (without importing it)."""
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


KINDS: dict[str, ModelKind] = {
    k.name: k
    for k in (
        ModelKind(
            "tiny",
            "model tiny",
            takes_path=False,
            takes_config=False,
            requires=None,
            install=None,
            prompts=("class",),
            classes=tuple(str(d) for d in range(10)),
            classifier=True,
            guidable=True,
            feature_extractor="ablang-digits",
            adapter="ablang.models.tiny:TinyAdapter",
        ),
        ModelKind(
            "glide",
            'model glide "PATH"',
            takes_path=True,
            takes_config=False,
            requires="glide_text2im",
            install="pip install git+https://github.com/openai/glide-text2im",
            prompts=("text",),
            guidable=True,
            adapter="ablang.models.glide:GlideAdapter",
        ),
        ModelKind(
            "adm",
            'model adm "PATH" config "JSON"',
            takes_path=True,
            takes_config=True,
            requires="guided_diffusion",
            install="pip install guided-diffusion-sdk   (or: pip install 'ablang[adm]')",
            prompts=("class", "none"),
            adapter="ablang.models.adm:AdmAdapter",
        ),
        ModelKind(
            "diffusers",
            'model diffusers "DIR"',
            takes_path=True,
            takes_config=False,
            requires="diffusers",
            install="pip install diffusers safetensors   (or: pip install 'ablang[diffusers]')",
            prompts=("text", "class", "none"),
            guidable=True,
            guidable_prompts=("text",),
            schedulers=True,
            adapter="ablang.models.diffusers_unet:DiffusersAdapter",
        ),
    )
}

MODEL_KINDS: tuple[str, ...] = tuple(KINDS)

# The schedulers a diffusers SD / DDPM config can build (diffusers' ``KarrasDiffusionSchedulers``),
# for checking a study when its model is not at hand; with the model, its table's list decides.
DIFFUSERS_SCHEDULERS: tuple[str, ...] = (
    "DDIMScheduler",
    "DDPMScheduler",
    "DEISMultistepScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSDEScheduler",
    "DPMSolverSinglestepScheduler",
    "EDMEulerScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "LMSDiscreteScheduler",
    "PNDMScheduler",
    "UniPCMultistepScheduler",
)
# what `sampler ddpm` / `sampler ddim` mean on a kind with `schedulers`
SCHEDULER_OF_SAMPLER = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler"}


def adapter_class(kind: str) -> type:
    """The adapter class of ``kind`` (imported now: adapters import torch and their package)."""
    module, _, name = KINDS[kind].adapter.partition(":")
    return getattr(importlib.import_module(module), name)
