"""What ``run`` would refuse after minutes of sampling, said by ``check`` before anything runs.

- fid/kid need at least 2 images in the whole study (a covariance of one image is undefined);
  below 1,000 (``stats.DISTRIBUTION_IMAGES``, the threshold the run's report warns at too) they
  are dominated by small-sample bias and noise (FID's bias falls like 1/n), which is a warning;
- the memory the run keeps (starting noise and per-step noise for every image, the baseline's
  state before every step, every variant's final images) against the memory this machine has
  available now: a study that cannot fit is refused with the figure.

Positions come from the study's own lines (``samples``, ``metrics``), so the messages point where
the fix goes.
"""

from __future__ import annotations

import os
from typing import TypeVar

from ablang import ast
from ablang.components import ComponentTable
from ablang.errors import AblangError, Span
from ablang.plan import Plan
from ablang.stats import DISTRIBUTION_IMAGES

FEATURE_METRICS = ("fid", "kid")
FEW_IMAGES = DISTRIBUTION_IMAGES  # below this many images fid/kid are noted as biased


S = TypeVar("S", bound=ast.Setting)


def _setting(study: ast.Study, cls: type[S]) -> S | None:
    return next((s for s in study.statements if isinstance(s, cls)), None)


def image_count(plan: Plan, table: ComponentTable | None) -> int | None:
    """Images per variant: samples x prompts (None when the model's default prompts are not
    known here)."""
    prompts = len(plan.prompts) or (len(table.classes) if table is not None else 0)
    return plan.samples * prompts if prompts else None


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (None where it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def activation_bytes(table: ComponentTable) -> int:
    """Float32 bytes one image's Unet forward holds at its peak, about: every skip tensor
    (kept until its decoder block) and three of the largest block outputs."""
    sizes = [4 * c.channels * c.resolution**2 for c in table.components]
    skips = sum(4 * c.channels * c.resolution**2 for c in table.components if c.kind == "skip")
    return skips + 3 * max(sizes, default=0)


def memory_needed(plan: Plan, images: int, table: ComponentTable) -> int:
    """Bytes a run holds at least: float32 noise for every step and the start, the baseline's
    x before every step and after the last, each variant's final images, and one batched
    forward of every image (twice over with guidance's unconditional half)."""
    per_image = 4
    for d in table.image_shape:
        per_image *= d
    steps = plan.sampler.steps
    held = (steps + 1) + (steps + 1) + len(plan.variants)
    return images * (per_image * held + 2 * activation_bytes(table))


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def preflight(
    study: ast.Study, plan: Plan, table: ComponentTable | None, *, memory: int | None = None
) -> tuple[list[AblangError], list[AblangError]]:
    """(errors, warnings) about ``plan`` that only its sizes reveal. ``memory``: the bytes to
    compare with (default: what this machine has available now)."""
    errors: list[AblangError] = []
    warnings: list[AblangError] = []
    n = image_count(plan, table)
    samples = _setting(study, ast.SamplesStmt)
    metrics = _setting(study, ast.MetricsStmt)
    where = samples.value.span if samples is not None else None
    used = [m for m in plan.metrics if m in FEATURE_METRICS]
    if used and n is not None:
        named = metrics.metrics if metrics is not None else ()
        span = where or next((m.span for m in named if m.value in used), None)
        if n < 2:
            errors.append(
                AblangError(
                    f"{' and '.join(used)} need at least 2 images; the study makes {n} per variant",
                    span,
                    code="too-few-samples",
                    hint="raise `samples` (or add prompts), or measure with mse, ssim",
                )
            )
        elif n < FEW_IMAGES:
            warnings.append(
                AblangError(
                    f"{' and '.join(used)} on {n} images per variant: FID is strongly biased at small "
                    f"n (its bias falls like 1/n); compare variants of one study only, against the "
                    f"floor the report prints",
                    span,
                    code="few-samples",
                    hint=f"about {DISTRIBUTION_IMAGES:,} images give numbers comparable across "
                    "studies (docs/statistics.md)",
                )
            )
    if n is not None and table is not None and table.image_shape:
        need = memory_needed(plan, n, table)
        have = available_memory() if memory is None else memory
        if have is not None and need > have:
            errors.append(
                AblangError(
                    f"the run would hold at least {_gib(need)} for {n} images per variant "
                    f"(noise and baseline states for {plan.sampler.steps} steps, "
                    f"{len(plan.variants)} variants' images, the Unet's activations); "
                    f"this machine has {_gib(have)} available",
                    where or Span(1, 1),
                    code="too-much-memory",
                    hint="lower `samples`, the prompts or the sampler's steps",
                )
            )
    return errors, warnings
