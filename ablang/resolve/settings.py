"""Pass 1, settings: each at most once, values checked, defaults filled in."""

from __future__ import annotations

from typing import TypeVar, cast

from ablang import ast
from ablang.errors import Span, did_you_mean
from ablang.models.kinds import DIFFUSERS_SCHEDULERS, KINDS, MODEL_KINDS, SCHEDULER_OF_SAMPLER
from ablang.plan import (
    IMAGE_SEED_STRIDE,
    QUALITY_METRICS,
    SEED_LIMIT,
    BandSpec,
    Device,
    ModelKindName,
    ModelSpec,
    Noise,
    SamplerKind,
    SamplerSpec,
)
from ablang.resolve.context import DEFAULT_STEPS, Context, count, real

SAMPLER_KINDS = ("ddpm", "ddim")
DEVICES = ("cpu", "cuda", "auto")
COST_METRICS = ("flops", "time", "speedup")  # always reported; accepted in `metrics` and left out
DEFAULT_METRICS = ("mse", "ssim")
CLASSIFIER_METRICS = ("accuracy", "identity")  # need the model's own classifier
MAX_SEED = SEED_LIMIT - 1


def settings(cx: Context) -> dict[str, ast.Setting]:
    """Each setting statement by key; a second one of a key is an error, not an override."""
    seen: dict[str, ast.Setting] = {}
    once = cx.diag.once("first set here")
    for stmt in cx.study.statements:
        if not isinstance(stmt, ast.Setting):
            continue
        hint = "keep one; a later setting does not override an earlier one"
        if once.add(stmt.KEY, stmt.span, f"`{stmt.KEY}` is set twice", "duplicate-setting", hint):
            seen[stmt.KEY] = stmt
    return seen


S = TypeVar("S", bound=ast.Setting)


def setting(found: dict[str, ast.Setting], cls: type[S]) -> S | None:
    """The study's ``cls`` setting (``ast.SeedStmt``...), None when it has none."""
    stmt = found.get(cls.KEY)
    return stmt if isinstance(stmt, cls) else None


def model(cx: Context, stmt: ast.ModelStmt) -> ModelSpec | None:
    kind = stmt.kind.value
    if kind not in MODEL_KINDS:
        cx.diag.error(
            f"unknown model `{kind}`",
            stmt.kind.span,
            "unknown-model",
            hint=did_you_mean(kind, MODEL_KINDS) or "models: " + ", ".join(MODEL_KINDS),
        )
        return None
    usage = KINDS[kind].syntax
    wants_path, wants_config = KINDS[kind].takes_path, KINDS[kind].takes_config
    problem = None
    if stmt.path is not None and not wants_path:
        problem = "takes no path"
    elif stmt.path is None and wants_path:
        problem = "needs a path"
    elif stmt.config is not None and not wants_config:
        problem = "takes no config"
    elif stmt.config is None and wants_config:
        problem = "needs a config file"
    elif stmt.path is not None and not stmt.path.value.strip():
        problem = "needs a path, not an empty string"
    if problem:
        cx.diag.error(f"model {kind} {problem}", stmt.span, "model-args", hint=f"write `{usage}`")
        return None
    return ModelSpec(
        cast(ModelKindName, kind),
        stmt.path.value if stmt.path else None,
        stmt.config.value if stmt.config else None,
        span=stmt.span,
    )


def unguidable(
    guidance: float, model_kind: str | None, prompt_kind: str | None = None
) -> str | None:
    """Why ``guidance`` cannot be applied to a model of ``model_kind``, or None when it can."""
    kind = KINDS.get(model_kind) if model_kind else None
    if guidance == 1.0 or kind is None:
        return None
    if kind.guidable and (
        not kind.guidable_prompts or prompt_kind is None or prompt_kind in kind.guidable_prompts
    ):
        return None
    if kind.guidable:
        return (
            f"guidance {guidance:g} needs an unconditional prediction, and a {prompt_kind}-"
            f"conditioned `{kind.name}` model has none (only text models have the empty prompt): "
            "only guidance 1 samples it"
        )
    return (
        f"guidance {guidance:g} needs an unconditional prediction, and `{kind.name}` models have "
        "none (no null class or empty prompt was trained): only guidance 1 samples them"
    )


def scheduler_choice(cx: Context, name: ast.Name, model_kind: str | None) -> tuple[str, str | None]:
    """(ablang's sampler kind, the diffusers scheduler or None) for ``sampler NAME``.

    On a model that samples with diffusers schedulers, ``pipeline`` is the directory's own and a
    class name is that scheduler built from the directory's config; ``ddpm`` / ``ddim`` are
    diffusers' DDPMScheduler / DDIMScheduler. Elsewhere only ``ddpm`` / ``ddim`` (ablang's own
    table) exist."""
    row = KINDS.get(model_kind) if model_kind else None
    own = bool(row and row.schedulers)
    value = name.value
    names = cx.table.schedulers if cx.table and cx.table.schedulers else DIFFUSERS_SCHEDULERS
    if value in SAMPLER_KINDS:
        return value, SCHEDULER_OF_SAMPLER[value] if own else None
    if value == "pipeline" or value in names:
        if own:
            return ("ddim" if value == "DDIMScheduler" else "ddpm"), value
        cx.diag.error(
            f"`sampler {value}` names a diffusers scheduler; `{model_kind}` models sample with "
            "ablang's own ddpm and ddim",
            name.span,
            "sampler-model",
            hint="write `sampler ddpm` or `sampler ddim` (diffusers schedulers need "
            '`model diffusers "DIR"`)',
        )
        return "ddpm", None
    choices = (*SAMPLER_KINDS, "pipeline", *names) if own else SAMPLER_KINDS
    close = did_you_mean(value, choices)
    cx.diag.error(
        f"unknown sampler `{value}`",
        name.span,
        "unknown-sampler",
        hint=(close + " " if close else "") + "samplers: " + ", ".join(choices)
        if own
        else close or "samplers: ddpm, ddim",
    )
    return "ddpm", SCHEDULER_OF_SAMPLER["ddpm"] if own else None


def sampler(
    cx: Context, stmt: ast.SamplerStmt | None, model_kind: str | None = None
) -> SamplerSpec:
    row = KINDS.get(model_kind) if model_kind else None
    if stmt is None:
        return SamplerSpec(scheduler="pipeline" if row and row.schedulers else None)
    kind, scheduler = scheduler_choice(cx, stmt.kind, model_kind)
    values: dict[str, ast.SamplerOption] = {}
    once = cx.diag.once("first given here")
    for opt in stmt.options:
        if once.add(opt.key, opt.span, f"`{opt.key}` is given twice", "duplicate-setting"):
            values[opt.key] = opt
    steps, eta, guidance = DEFAULT_STEPS, 0.0, None
    if "steps" in values:
        limit = cx.table.num_timesteps if cx.table else None
        steps = count(
            cx.diag,
            values["steps"],
            "steps",
            minimum=1,
            default=DEFAULT_STEPS,
            maximum=limit,
            why=f"the model has {limit} diffusion steps to respace" if limit else "",
        )
    if "eta" in values:
        got = real(
            cx.diag,
            values["eta"].value,
            "eta",
            0.0,
            lo=0.0,
            hi=1.0,
            why="0 is deterministic DDIM, 1 has DDPM's variance",
        )
        eta = 0.0 if got is None else got  # the default is 0.0: never None
        own = cx.table.scheduler if cx.table and cx.table.scheduler else None
        takes_eta = (
            kind == "ddim"
            if scheduler is None
            else scheduler == "DDIMScheduler"
            or (scheduler == "pipeline" and own in (None, "DDIMScheduler"))
        )
        if scheduler is not None and not takes_eta:
            cx.diag.error(
                f"`eta` belongs to DDIM; {own if scheduler == 'pipeline' else scheduler} has none",
                values["eta"].span,
                "sampler-option",
                hint="remove it, or write `sampler DDIMScheduler ...`",
            )
        elif not takes_eta:
            cx.diag.error(
                "`eta` belongs to the ddim sampler",
                values["eta"].span,
                "sampler-option",
                hint="remove it, or write `sampler ddim ...`",
            )
    if "guidance" in values:
        guidance = real(
            cx.diag,
            values["guidance"].value,
            "guidance",
            None,
            lo=0.0,
            why="0 is unconditional, 1 is conditional without guidance",
        )
        if cx.table is not None and cx.table.prompt_kind == "none":
            cx.diag.error(
                "the model is unconditional: guidance has nothing to guide",
                values["guidance"].span,
                "guidance-unconditional",
                hint="remove `guidance`",
            )
        elif guidance is not None and (
            why := unguidable(guidance, model_kind, cx.table.prompt_kind if cx.table else None)
        ):
            cx.diag.error(
                why,
                values["guidance"].span,
                "guidance-unavailable",
                hint="remove `guidance` (or write `guidance 1`)",
            )
    return SamplerSpec(cast(SamplerKind, kind), steps, eta, guidance, scheduler)


def prompts(cx: Context, stmt: ast.PromptsStmt | None) -> tuple[str, ...]:
    if stmt is None:
        return ()
    kind = cx.table.prompt_kind if cx.table else None
    if kind == "none":
        cx.diag.error(
            "the model is unconditional: it takes no prompts",
            stmt.span,
            "prompts",
            hint="remove the prompts line",
        )
        return ()
    classes = cx.table.classes if cx.table else ()
    for p in stmt.prompts:
        # isdigit() alone takes "７" and "²": only ASCII digits are class numbers
        if kind == "class" and not (p.value.isascii() and p.value.strip().isdigit()):
            cx.diag.error(
                f'the model takes class labels, not "{p.value}"',
                p.span,
                "prompts",
                hint=_class_hint(classes),
            )
        elif kind == "class" and classes and p.value not in classes:
            cx.diag.error(
                f'the model has no class "{p.value}"',
                p.span,
                "prompts",
                hint=_class_hint(classes),
            )
        elif kind == "text" and not p.value.strip():
            cx.diag.error(
                "an empty prompt", p.span, "prompts", hint="write the text to generate from"
            )
    return tuple(p.value for p in stmt.prompts)


def _class_hint(classes: tuple[str, ...]) -> str:
    if not classes:
        return 'write class numbers such as "3", "7"'
    shown = ", ".join(f'"{c}"' for c in classes[:12]) + (", ..." if len(classes) > 12 else "")
    return f"its classes are {shown}"


def metrics(
    cx: Context, stmt: ast.MetricsStmt | None, model: ast.ModelStmt | None
) -> tuple[str, ...]:
    if stmt is None:
        return DEFAULT_METRICS
    out: list[str] = []
    once = cx.diag.once("first listed here")
    for m in stmt.metrics:
        name = m.value
        if not once.add(name, m.span, f"`{name}` is listed twice", "duplicate-metric"):
            continue
        if name in COST_METRICS:
            continue  # cost is always reported
        if name not in QUALITY_METRICS:
            cx.diag.error(
                f"unknown metric `{name}`",
                m.span,
                "unknown-metric",
                hint=did_you_mean(name, QUALITY_METRICS + COST_METRICS)
                or "metrics: " + ", ".join(QUALITY_METRICS),
            )
            continue
        kind = KINDS.get(model.kind.value) if model is not None else None
        if name in CLASSIFIER_METRICS and model is not None and not (kind and kind.classifier):
            cx.diag.error(
                f"`{name}` needs the built-in model's digit classifier",
                m.span,
                "accuracy-needs-tiny",
                hint="use it with `model tiny`, or remove it",
            )
            continue
        out.append(name)
    return tuple(out)


def bands(cx: Context, stmt: ast.BandsStmt | None) -> BandSpec:
    """``bands cut C floor F split S``: each option once, cut > 0, floor >= 0, 0 <= split <= 1.
    Whether the cut fits the images is checked once they are known (``measure.check_metrics``)."""
    if stmt is None:
        return BandSpec()
    values: dict[str, ast.BandOption] = {}
    once = cx.diag.once("first given here")
    for opt in stmt.options:
        if once.add(opt.key, opt.span, f"`{opt.key}` is given twice", "duplicate-setting"):
            values[opt.key] = opt
    default = BandSpec()
    cut, floor, split = None, default.floor, default.split
    if "cut" in values:
        cut = real(
            cx.diag,
            values["cut"].value,
            "cut",
            None,
            lo=0.0,
            why="cycles per image: 4 on a 32x32 image keeps what an 8x8 version of it holds",
        )
        if cut == 0.0:
            cx.diag.error("`cut` must be above 0, not 0", values["cut"].value.span, "bad-number")
            cut = None
    if "floor" in values:
        got = real(
            cx.diag,
            values["floor"].value,
            "floor",
            floor,
            lo=0.0,
            why="an mse: 0.0001 is PSNR 40 dB",
        )
        floor = floor if got is None else got
    if "split" in values:
        got = real(
            cx.diag,
            values["split"].value,
            "split",
            split,
            lo=0.0,
            hi=1.0,
            why="the share of a cell's change in the low band that makes it composition",
        )
        split = split if got is None else got
    return BandSpec(cut, floor, split, span=stmt.span)


RAY_NAMES = ("local", "auto")


def ray(cx: Context, stmt: ast.RayStmt | None) -> str | None:
    """``ray local`` (a cluster started on this machine), ``ray auto`` (the one ``ray start``
    runs here) or ``ray "HOST:PORT"`` (``"ray://HOST:PORT"`` for Ray Client); None without."""
    if stmt is None:
        return None
    where = stmt.where
    if isinstance(where, ast.Name):
        if where.value not in RAY_NAMES:
            cx.diag.error(
                f"unknown Ray cluster `{where.value}`",
                where.span,
                "ray-address",
                hint=did_you_mean(where.value, RAY_NAMES)
                or 'write `ray local`, `ray auto` or `ray "HOST:PORT"`',
            )
            return None
        return where.value
    host, _, port = where.value.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or any(c.isspace() for c in where.value):
        cx.diag.error(
            f'"{where.value}" is not a Ray address',
            where.span,
            "ray-address",
            hint='write the head node as "HOST:PORT", such as "10.0.0.5:6379"',
        )
        return None
    return where.value


NOISE_UNITS = ("sample", "image")


def noise(cx: Context, stmt: ast.NoiseStmt | None) -> Noise:
    """``noise per sample`` (the default: sample i of every prompt shares seed S + i) or
    ``noise per image`` (every image its own draw)."""
    if stmt is None:
        return "sample"
    name = stmt.unit.value
    if name not in NOISE_UNITS:
        cx.diag.error(
            f"unknown noise unit `{name}`",
            stmt.unit.span,
            "unknown-noise",
            hint=did_you_mean(name, NOISE_UNITS) or "write `noise per sample` or `noise per image`",
        )
        return "sample"
    return cast(Noise, name)


def seed_limit(cx: Context) -> int:
    """One past the largest seed the study's noise mode allows."""
    return IMAGE_SEED_STRIDE if cx.noise == "image" else SEED_LIMIT


def seeds_fit(cx: Context, first: int, samples: int, span: Span) -> bool:
    """Whether seeds ``first .. first + samples - 1`` stay below the limit of the study's noise
    mode (an error at ``span`` if not): 2**32 (torch's CPU generator keeps the low 32 bits of a
    seed), with ``noise per image`` the stride that sets prompts apart (2**24)."""
    last = first + samples - 1
    if last < seed_limit(cx):
        return True
    if cx.noise == "image":
        cx.diag.error(
            f"with `noise per image` the seeds must stay below 2**24 = {IMAGE_SEED_STRIDE}; "
            f"these reach {last}",
            span,
            "seed-range",
            hint="use a smaller seed: prompt p's images use seed + p * 2**24",
        )
        return False
    cx.diag.error(
        f"the seeds reach {last}, past 2**32 - 1",
        span,
        "seed-range",
        hint=f"torch keeps the low 32 bits of a seed, so seed {last} would draw what seed "
        f"{last % SEED_LIMIT} draws; use a smaller seed",
    )
    return False


def image_prompts_fit(cx: Context, stmt: ast.PromptsStmt | None) -> bool:
    """With ``noise per image``, at most 256 prompts (their seeds stay below 2**32)."""
    most = SEED_LIMIT // IMAGE_SEED_STRIDE
    if cx.noise != "image" or stmt is None or len(stmt.prompts) <= most:
        return True
    cx.diag.error(
        f"with `noise per image` a study takes at most {most} prompts, not {len(stmt.prompts)}",
        stmt.span,
        "seed-range",
        hint="split the prompts over several studies, or use `noise per sample`",
    )
    return False


def device(cx: Context, stmt: ast.DeviceStmt | None) -> Device:
    if stmt is None:
        return "auto"
    name = stmt.device.value
    if name not in DEVICES:
        cx.diag.error(
            f"unknown device `{name}`",
            stmt.device.span,
            "unknown-device",
            hint=did_you_mean(name, DEVICES) or "devices: cpu, cuda, auto",
        )
        return "auto"
    return cast(Device, name)
