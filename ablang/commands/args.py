"""argparse ``type=`` converters: a bad value is an argparse error (exit 2, one sentence, no
traceback), the same as an unknown flag."""

from __future__ import annotations

import argparse
import math


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    """1, 2, 3, ..."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return v


def non_negative_int(text: str) -> int:
    """0, 1, 2, ..."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return v


def finite_float(text: str) -> float:
    """A real number; nan and inf are refused."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return v


def load_model(spec, device):
    """``load_adapter(spec).load(device)``; a file that is not the model it claims to be (a
    damaged checkpoint, a config that does not fit) is an ``AblangError`` naming the model."""
    from ablang.errors import AblangError
    from ablang.models.registry import load_adapter

    try:
        return load_adapter(spec).load(device)
    except AblangError:
        raise
    except Exception as e:
        raise _load_error(spec, e) from e


def component_table(spec):
    """``ablang.models.component_table`` with the errors of ``load_model``."""
    from ablang.errors import AblangError
    from ablang.models.registry import load_adapter

    try:
        return load_adapter(spec).component_table()
    except AblangError:
        raise
    except Exception as e:
        raise _load_error(spec, e) from e


def _load_error(spec, e: Exception):
    from ablang.errors import AblangError

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
