"""Which adapter serves which ``model`` line (the table is ``ablang.models.kinds.KINDS``), and
loading through it with errors a person can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ablang.errors import AblangError
from ablang.models.base import ModelAdapter
from ablang.models.kinds import KINDS, adapter_class
from ablang.plan import ModelSpec

if TYPE_CHECKING:
    import torch

    from ablang.components import ComponentTable
    from ablang.models.base import LoadedModel


def load_adapter(spec: ModelSpec) -> ModelAdapter:
    if spec.kind not in KINDS:
        raise ValueError(f"unknown model kind {spec.kind!r}")
    return adapter_class(spec.kind)(spec)


def load_model(spec: ModelSpec, device: torch.device) -> LoadedModel:
    """``load_adapter(spec).load(device)``; a file that is not the model it claims to be (a
    damaged checkpoint, a config that does not fit) is an ``AblangError`` naming the model."""
    try:
        return load_adapter(spec).load(device)
    except AblangError:
        raise
    except Exception as e:
        raise load_error(spec, e) from e


def component_table(spec: ModelSpec) -> ComponentTable:
    """The component table of ``spec``'s model, with the errors of ``load_model``."""
    try:
        return load_adapter(spec).component_table()
    except AblangError:
        raise
    except Exception as e:
        raise load_error(spec, e) from e


def load_error(spec: ModelSpec, e: Exception) -> AblangError:
    detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if "weights only load failed" in detail.lower() or type(e).__name__ == "UnpicklingError":
        # torch's own text suggests weights_only=False, which would run the file's code
        detail = "not a plain PyTorch checkpoint (ablang loads tensors only, never code)"
    return AblangError(
        f"cannot load the model {spec.label()}: {type(e).__name__}"
        + (f": {detail}" if detail else ""),
        code="model",
        hint="check that the checkpoint is a complete PyTorch state dict for this config",
    )
