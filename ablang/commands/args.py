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
