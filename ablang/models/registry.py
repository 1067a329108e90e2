"""Which adapter serves which ``model`` line."""

from __future__ import annotations

from ablang.models.base import ModelAdapter
from ablang.plan import ModelSpec


def load_adapter(spec: ModelSpec) -> ModelAdapter:
    if spec.kind == "tiny":
        from ablang.models.tiny import TinyAdapter

        return TinyAdapter(spec)
    if spec.kind == "adm":
        from ablang.models.adm import AdmAdapter

        return AdmAdapter(spec)
    if spec.kind == "glide":
        from ablang.models.glide import GlideAdapter

        return GlideAdapter(spec)
    if spec.kind == "diffusers":
        from ablang.models.diffusers_unet import DiffusersAdapter

        return DiffusersAdapter(spec)
    raise ValueError(f"unknown model kind {spec.kind!r}")
