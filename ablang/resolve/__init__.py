"""resolve: ``ast.Study`` + the model's ``ComponentTable`` -> ``Plan``, in passes.

Every semantic check lives here and every error is collected, so ``ablang check`` shows them
all at once (``AblangErrors``, sorted by position). What resolution does:

- settings: each at most once (a second ``seed`` is an error pointing at both), values checked,
  defaults filled in (seed 0, samples 4, model's prompts, metrics mse + ssim, ddpm 100 steps,
  device auto, no ray);
- selectors expand to concrete components (``skip[*]``, ``skip[-1]``, ``skip[2..5]``,
  ``level[k]``), checked against the table;
- windows are checked against ``[0, T)`` (``for t``) or the sampler's steps (``for step``) and,
  in sweeps and searches, split by ``by W``;
- qualifiers: the side of guidance an intervention acts on (``on uncond``) and a cache's
  schedule (``every N growing by G``, ``at step A, B``, ``at t A, B``);
- variants: the baseline first, then one per bare intervention line, one per ``variant`` block,
  one per cell of each sweep, in the order of the file.

Without a table (the model is not at hand) everything that does not need the model is still
checked; selectors that only the model can expand (``skip[*]``, ``skip[-1]``, ``level[k]``)
then stay as written in the plan's component names, so such a plan is for checking, not running.
"""

from __future__ import annotations

from ablang import ast
from ablang.components import ComponentTable
from ablang.errors import Span
from ablang.plan import ModelSpec, Plan
from ablang.resolve.context import Context, count
from ablang.resolve.emits import emits
from ablang.resolve.settings import (
    MAX_SEED,
    bands,
    device,
    image_prompts_fit,
    metrics,
    model,
    noise,
    prompts,
    ray,
    sampler,
    seeds_fit,
    setting,
    settings,
)
from ablang.resolve.variants import variants

__all__ = ["model_spec", "resolve"]


def model_spec(study: ast.Study) -> ModelSpec | None:
    """The study's model, read before resolving so the caller can load the component table.
    None when the study names no model or names it wrongly (``resolve`` reports why)."""
    for stmt in study.statements:
        if isinstance(stmt, ast.ModelStmt):
            return model(Context(study, None), stmt)
    return None


def resolve(
    study: ast.Study,
    table: ComponentTable | None,
    *,
    source_path: str = "",
    sha256: str = "",
) -> Plan:
    """The plan of ``study`` for the model whose components are ``table`` (None: not at hand).

    Raises ``AblangErrors`` with every error in the study.
    """
    cx = Context(study, table)
    plan = _passes(cx, source_path or study.path, sha256)
    cx.diag.raise_errors(source_path or study.path)
    return plan


def _passes(cx: Context, source: str, sha256: str) -> Plan:
    """Every pass in order; each reports into ``cx.diag`` and returns what it could resolve."""
    found = settings(cx)
    model_stmt = setting(found, ast.ModelStmt)
    spec = model(cx, model_stmt) if model_stmt is not None else None
    if model_stmt is None:
        cx.diag.error(
            "the study names no model",
            Span(1, 1, 1, 2),
            "missing-model",
            hint="add a line such as `model tiny`",
        )
    sampler_spec = sampler(cx, setting(found, ast.SamplerStmt), spec.kind if spec else None)
    cx.steps = sampler_spec.steps
    cx.model_kind, cx.guidance = (spec.kind if spec else None), sampler_spec.guidance
    measured = metrics(cx, setting(found, ast.MetricsStmt), model_stmt)
    cx.seed = count(
        cx.diag, setting(found, ast.SeedStmt), "seed", minimum=0, default=0, maximum=MAX_SEED
    )
    cx.samples = count(cx.diag, setting(found, ast.SamplesStmt), "samples", minimum=1, default=4)
    cx.noise = noise(cx, setting(found, ast.NoiseStmt))
    seed_stmt = setting(found, ast.SeedStmt)
    if seed_stmt is not None:
        seeds_fit(cx, cx.seed, cx.samples, seed_stmt.value.span)
    prompts_stmt = setting(found, ast.PromptsStmt)
    image_prompts_fit(cx, prompts_stmt)
    all_variants, sweeps, searches = variants(cx, measured)
    study = setting(found, ast.Title)
    return Plan(
        model=spec or ModelSpec("tiny"),
        sampler=sampler_spec,
        title=study.title.value if study is not None else "",
        source=source,
        sha256=sha256,
        seed=cx.seed,
        samples=cx.samples,
        noise=cx.noise,
        prompts=prompts(cx, prompts_stmt),
        metrics=measured,
        device=device(cx, setting(found, ast.DeviceStmt)),
        ray=ray(cx, setting(found, ast.RayStmt)),
        bands=bands(cx, setting(found, ast.BandsStmt)),
        variants=all_variants,
        sweeps=sweeps,
        searches=searches,
        emits=emits(cx, all_variants, searches),
        num_timesteps=cx.table.num_timesteps if cx.table else 1000,
    )
