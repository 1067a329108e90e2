"""Which adapter serves which ``model`` line (the table is ``ablang.models.kinds.KINDS``)."""

from __future__ import annotations

from ablang.models.base import ModelAdapter
from ablang.models.kinds import KINDS, adapter_class
from ablang.plan import ModelSpec


def load_adapter(spec: ModelSpec) -> ModelAdapter:
    if spec.kind not in KINDS:
        raise ValueError(f"unknown model kind {spec.kind!r}")
    return adapter_class(spec.kind)(spec)
