"""runtime: the sampler itself, shared by ``ablang run`` and every emitted sampler.

Everything that touches a sampling trajectory lives here, once: per-seed noise, conditioning
and classifier-free guidance by batch doubling, the DDPM and DDIM steps, the loop, the PNG grid.
The executor (``ablang/execute.py``) calls these functions; ``ablang/emit.py`` copies this
module's code *verbatim* into each generated sampler (the way lark's standalone parser ships its
real, tested modules and generates only data), so a run and its emitted sampler make the same
images by construction. Hence the rules for this file: it imports only torch and the standard
library, never numpy or ablang, and every function takes what it needs as arguments (no
module-level state besides the imports).

Conventions are openai's guided-diffusion / improved-diffusion / GLIDE code, bit for bit:

- A ``StepTable`` holds the per-step numbers in *visiting order* (step 0 is the noisiest). The
  float64 coefficients are rounded to float32 where the reference's ``_extract_into_tensor``
  does (``tensor * python_float`` computes in float32), so a DDPM step equals ``p_sample``.
- DDIM computes sigma and its square roots on float32 scalars, as ``ddim_sample`` does.
- With ``rescale_timesteps`` the model sees ``float(t) * (1000 / T)`` (guided-diffusion's
  ``_WrappedModel``); otherwise the integer training ``t``.
- Guidance doubles the batch ``[cond; uncond]``; ``eps = u + g (c - u)``; the variance channels
  (a learned sigma) come from the conditional half, as in GLIDE's notebook.
"""

import fnmatch
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# ---------------------------------------------------------------------------- the step table


@dataclass(frozen=True)
class StepTable:
    """Per-step numbers of one (respaced) chain, in visiting order (index 0 = noisiest step).

    ``log_var`` is the fixed log variance (fixed_small: the clipped posterior's, fixed_large:
    beta's) or, for learned_range, the lower end of the learned interpolation; ``max_log`` is
    log(beta), the upper end.
    """

    timesteps: tuple[int, ...]  # training t per step
    time_scale: float | None  # rescale_timesteps: the model sees float(t) * time_scale
    kind: str  # "ddpm" or "ddim"
    eta: float  # DDIM's noise scale
    variance: str  # "fixed_small", "fixed_large" or "learned_range"
    sqrt_recip_acp: tuple[float, ...]
    sqrt_recipm1_acp: tuple[float, ...]
    post_coef1: tuple[float, ...]
    post_coef2: tuple[float, ...]
    log_var: tuple[float, ...]
    max_log: tuple[float, ...]
    acp: tuple[float, ...]
    acp_prev: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.timesteps)

    def rows(self) -> list[tuple[float, ...]]:
        """One row per step: ``(t, *coefficients)`` in the order of ``COLUMNS``."""
        cols = [getattr(self, name) for name in COLUMNS]
        return [(self.timesteps[k], *(c[k] for c in cols)) for k in range(len(self))]

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[float]], **settings: Any) -> "StepTable":
        """The table of ``rows()``; ``settings`` are time_scale, kind, eta and variance."""
        cols = list(zip(*rows))
        values = {name: tuple(float(v) for v in c) for name, c in zip(COLUMNS, cols[1:])}
        return cls(timesteps=tuple(int(t) for t in cols[0]), **{**settings, **values})


# a StepTable row's coefficients, after the timestep
COLUMNS = (
    "sqrt_recip_acp",
    "sqrt_recipm1_acp",
    "post_coef1",
    "post_coef2",
    "log_var",
    "max_log",
    "acp",
    "acp_prev",
)


def model_timesteps(table: StepTable, k: int, rows: int, device: Any) -> torch.Tensor:
    """The timestep input of the model at step ``k`` for ``rows`` images."""
    if table.time_scale is None:
        return torch.full((rows,), table.timesteps[k], dtype=torch.long, device=device)
    t = torch.full((rows,), table.timesteps[k], dtype=torch.float32, device=device)
    return t * table.time_scale


# ---------------------------------------------------------------------------- noise


def make_noise(
    shape: Sequence[int], seeds: Sequence[int], steps: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Starting noise ``[N x C x H x W]`` and per-step noise ``[steps x N x C x H x W]``.

    Sample ``n`` draws its start noise, then its per-step noise, from its own generator seeded
    with ``seeds[n]``: a sample's trajectory does not depend on which other samples share its
    batch, and every variant sees exactly the same noise.
    """
    xs, noises = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        xs.append(torch.randn(tuple(shape), generator=g, dtype=dtype))
        noises.append(torch.randn((steps, *shape), generator=g, dtype=dtype))
    return torch.stack(xs), torch.stack(noises, dim=1)


def per_sample(
    prompts: Sequence[str], n: int, seed: int, stride: int = 0
) -> tuple[list[str], list[int]]:
    """``n`` samples of every prompt: their prompts and seeds. Sample i of prompt p uses seed
    ``seed + i + p * stride``: with ``stride`` 0 sample i of every prompt shares one noise draw
    (``noise per sample``), with a stride past the last seed every image has its own
    (``noise per image``), as long as the seeds stay below the stride and the prompts' seeds
    below 2**32 (torch's CPU generator keeps 32 bits of a seed)."""
    if stride and (seed + n > stride or len(prompts) * stride > 2**32):
        raise ValueError(
            f"one noise draw per image needs seeds below {stride} and at most "
            f"{2**32 // stride} prompts, not seeds {seed}..{seed + n - 1} and {len(prompts)} prompts"
        )
    return [p for p in prompts for _ in range(n)], [
        seed + i + p * stride for p in range(len(prompts)) for i in range(n)
    ]


def step_noise(noise: torch.Tensor, k: int, x: torch.Tensor) -> torch.Tensor:
    """Step ``k``'s noise for ``x``, whose rows are whole copies of the N samples (chunks)."""
    n = noise[k].to(x.device)
    return n.repeat(x.shape[0] // n.shape[0], *([1] * (n.dim() - 1)))


# ---------------------------------------------------------------------------- conditioning


def cat_cond(a: Any, b: Any) -> Any:
    """Stack two conditionings (tensors, or dicts / tuples of them) along the batch."""
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, dict):
        return {k: cat_cond(a[k], b[k]) for k in a}
    if isinstance(a, (tuple, list)):
        return type(a)(cat_cond(x, y) for x, y in zip(a, b))
    raise TypeError(f"cannot batch conditioning of type {type(a).__name__}")


def tile_cond(cond: Any, k: int) -> Any:
    """``k`` copies of a conditioning, one per chunk of a batch."""
    out = cond
    for _ in range(k - 1):
        out = cat_cond(out, cond)
    return out


def is_guided(guidance: float, uncond: Any) -> bool:
    """Whether guidance doubles the batch: with g = 1 the unconditional half cancels exactly."""
    return guidance != 1.0 and uncond is not None


def guided_output(
    unet: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    cond: Any,
    uncond: Any,
    guidance: float,
    channels: int,
    channels_last: bool = False,
) -> torch.Tensor:
    """``unet(x, t, cond)``, with classifier-free guidance by batch doubling when it applies."""
    doubled = is_guided(guidance, uncond)
    rows = x.shape[0]
    if doubled:
        x, t, cond = torch.cat([x, x]), torch.cat([t, t]), cat_cond(cond, uncond)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = unet(x, t, cond)
    return guide(out, rows, guidance, channels) if doubled else out


def guided_halves(
    unet_cond: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
    unet_uncond: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    cond: Any,
    uncond: Any,
    guidance: float,
    channels: int,
    channels_last: bool = False,
) -> torch.Tensor:
    """The guided output of a step whose halves run different programs (an intervention on one
    side of guidance): the doubled batch ``[cond; uncond]`` split into two forwards."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = torch.cat([unet_cond(x, t, cond), unet_uncond(x, t, uncond)])
    return guide(out, x.shape[0], guidance, channels)


# What guidance does at a step (``Programs.guidance_of_step``): both halves run (KEEP: and the
# guidance term is kept, a compute step of `cache guidance`); or only the conditional half, plus
# the kept term (a reuse step of `cache guidance`, plain or extrapolated), or alone (`drop
# guidance`).
GUIDED, KEEP, REUSE, EXTRAPOLATE, UNGUIDED = 0, 1, 2, 3, 4


def both_halves(how: int) -> bool:
    """Whether both halves of guidance run at a step that does ``how``."""
    return how in (GUIDED, KEEP)


def without_uncond(cond_out: torch.Tensor, term: "Kept | None", k: int, how: int) -> torch.Tensor:
    """The guided output of a step whose unconditional half does not run: the conditional
    output plus the guidance term ``guided - cond`` (that is ``(g - 1)(c - u)`` on the guided
    channels) kept at the last compute step of `cache guidance`, or nothing for ``UNGUIDED``.
    Exact where the term has not changed; FasterCache's CFG-cache reuses the same
    difference, since the two halves' outputs change alike between steps and their difference
    slowly."""
    if how == UNGUIDED or term is None:
        return cond_out
    return cond_out + term.at(k, how == EXTRAPOLATE)


def guide(out: torch.Tensor, rows: int, guidance: float, channels: int) -> torch.Tensor:
    """Combine a doubled batch's output ``[cond; uncond]``: eps = u + g (c - u); the variance
    channels come from the conditional half."""
    c, u = out[:rows], out[rows:]
    eps = u[:, :channels] + guidance * (c[:, :channels] - u[:, :channels])
    return torch.cat([eps, c[:, channels:]], dim=1)


# ---------------------------------------------------------------------------- one step


def predict_x0(table: StepTable, k: int, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return (table.sqrt_recip_acp[k] * x - table.sqrt_recipm1_acp[k] * eps).clamp(-1, 1)


def ddpm_step(
    table: StepTable, k: int, x: torch.Tensor, out: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """guided-diffusion's ``p_sample`` (epsilon model, clipped x0): step ``k`` -> ``k + 1``."""
    c = x.shape[1]
    x0 = predict_x0(table, k, x, out[:, :c])
    mean = table.post_coef1[k] * x0 + table.post_coef2[k] * x
    if k == len(table) - 1:
        return mean  # no noise at t = 0
    if table.variance == "learned_range":
        frac = (out[:, c:] + 1) / 2
        log_var = frac * table.max_log[k] + (1 - frac) * table.log_var[k]
    else:
        log_var = torch.tensor(table.log_var[k], dtype=x.dtype)
    return mean + torch.exp(0.5 * log_var) * noise


def ddim_step(
    table: StepTable, k: int, x: torch.Tensor, out: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """guided-diffusion's ``ddim_sample`` (eps re-derived from the clipped x0), its scalars in
    float32 as there."""
    x0 = predict_x0(table, k, x, out[:, : x.shape[1]])
    eps = (table.sqrt_recip_acp[k] * x - x0) / table.sqrt_recipm1_acp[k]
    a = torch.tensor(table.acp[k], dtype=x.dtype)
    a_prev = torch.tensor(table.acp_prev[k], dtype=x.dtype)
    sigma = table.eta * torch.sqrt((1 - a_prev) / (1 - a)) * torch.sqrt(1 - a / a_prev)
    mean = x0 * torch.sqrt(a_prev) + torch.sqrt((1 - a_prev - sigma**2).clamp(min=0)) * eps
    if k == len(table) - 1 or table.eta == 0.0:
        return mean
    return mean + sigma * noise


def step(
    table: StepTable, k: int, x: torch.Tensor, out: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Advance ``x`` by step ``k`` given the (guided) model output ``out``."""
    if table.kind == "ddpm":
        return ddpm_step(table, k, x, out, noise)
    if table.kind == "ddim":
        return ddim_step(table, k, x, out, noise)
    raise ValueError(f"unknown sampler {table.kind!r}")


# ---------------------------------------------------------------------------- the loop


def sample_loop(
    table: StepTable,
    x: torch.Tensor,
    noise: torch.Tensor,
    model_output: Callable[[int, torch.Tensor], torch.Tensor],
    start: int = 0,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(k, x after step k)`` for every step from ``start`` on. ``model_output(k, x)`` is
    the (guided) model at step ``k``, so the caller can switch programs per step; ``noise`` is
    ``make_noise``'s per-step noise."""
    for k in range(start, len(table)):
        out = model_output(k, x)
        x = step(table, k, x, out, step_noise(noise, k, x))
        yield k, x


@dataclass(frozen=True)
class Kept:
    """A cached component's last computed value and the step that computed it, with the one
    before (an extrapolated cache continues the line through the two)."""

    value: torch.Tensor
    step: int
    prev: torch.Tensor | None = None
    prev_step: int = 0

    def then(self, value: torch.Tensor, step: int) -> "Kept":
        return Kept(value, step, self.value, self.step)

    def at(self, step: int, extrapolate: bool = False) -> torch.Tensor:
        """The value a reuse step at ``step`` takes: the last computed one, or with
        ``extrapolate`` the straight line through the last two, in step index (plain reuse
        until two were computed)."""
        if not extrapolate or self.prev is None:
            return self.value
        slope = (step - self.step) / (self.step - self.prev_step)
        return self.value + (self.value - self.prev) * slope


def keep(cache: dict[str, Kept], component: str, value: torch.Tensor, step: int) -> None:
    """Record a computed value of ``component`` at ``step``."""
    old = cache.get(component)
    cache[component] = Kept(value, step) if old is None else old.then(value, step)


@dataclass(frozen=True)
class Programs:
    """An emitted sampler's Unet: one function per program, ``function(m, x, t, **cond,
    **cache inputs) -> (out, cached values)``, and which program each step runs: ``of_step``
    for the conditional half of guidance (or the whole batch), ``uncond_of_step`` for the
    unconditional half; where the two differ the halves run as two forwards."""

    functions: tuple[Callable[..., Any], ...]
    of_step: tuple[int, ...]
    cache_inputs: tuple[tuple[str, ...], ...]  # components each program reads from the cache
    cache_args: tuple[tuple[str, ...], ...]  # ... and the argument names that carry them
    cache_outputs: tuple[tuple[str, ...], ...]  # components each program writes to the cache
    uncond_of_step: tuple[int, ...] | None = None  # None: as of_step
    extrapolate: tuple[tuple[str, ...], ...] | None = None  # extrapolated cache inputs
    guidance_of_step: tuple[int, ...] | None = None  # GUIDED... per step; None: always GUIDED


def run_program(
    m: Any,
    programs: Programs,
    p: int,
    caches: Sequence[dict[str, Kept]],
    k: int,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: Any,
) -> torch.Tensor:
    """Program ``p`` at step ``k`` on a batch made of ``len(caches)`` equal parts (the halves of
    guidance), each with its own cached values: a part's values are read and written as its
    rows."""
    args = programs.cache_args[p]
    ex = programs.extrapolate[p] if programs.extrapolate else ()
    inputs = {
        a: torch.cat([h[c].at(k, c in ex) for h in caches])
        if len(caches) > 1
        else caches[0][c].at(k, c in ex)
        for c, a in zip(programs.cache_inputs[p], args)
    }
    out, kept = programs.functions[p](m, x, t, **cond, **inputs)
    for c, value in zip(programs.cache_outputs[p], kept):
        for h, part in zip(caches, value.chunk(len(caches))):
            keep(h, c, part, k)
    return out


def sample_programs(
    m: Any,
    programs: Programs,
    table: StepTable,
    x: torch.Tensor,
    noise: torch.Tensor,
    cond: Any,
    uncond: Any,
    guidance: float,
    channels_last: bool = False,
) -> torch.Tensor:
    """Run the whole chain from ``x``, step k with program ``programs.of_step[k]`` (and, for the
    unconditional half, ``programs.uncond_of_step[k]``). Cached values are kept per half. Where
    ``programs.guidance_of_step[k]`` is REUSE, EXTRAPOLATE or UNGUIDED the unconditional half
    does not run at all (``without_uncond``); at KEEP steps the guidance term is kept."""
    doubled = is_guided(guidance, uncond)
    halves: list[dict[str, Kept]] = [{}, {}] if doubled else [{}]
    uncond_of = programs.uncond_of_step or programs.of_step
    terms: dict[str, Kept] = {}  # the guidance terms of `cache guidance`'s compute steps

    def model_output(k: int, x: torch.Tensor) -> torch.Tensor:
        p, q = programs.of_step[k], uncond_of[k]
        how = programs.guidance_of_step[k] if programs.guidance_of_step and doubled else GUIDED
        t = model_timesteps(table, k, x.shape[0], x.device)
        rows, seen = x.shape[0], []  # seen: the conditional half's output, for the term

        def cond_half(x: torch.Tensor, t: torch.Tensor, c: Any) -> torch.Tensor:
            seen.append(run_program(m, programs, p, halves[:1], k, x, t, c))
            return seen[-1]

        if not both_halves(how):  # the conditional half alone
            c = guided_output(cond_half, x, t, cond, None, guidance, x.shape[1], channels_last)
            return without_uncond(c, terms.get("guidance"), k, how)
        if doubled and p != q:
            out = guided_halves(
                cond_half,
                lambda x, t, c: run_program(m, programs, q, halves[1:], k, x, t, c),
                x,
                t,
                cond,
                uncond,
                guidance,
                x.shape[1],
                channels_last,
            )
        else:

            def unet(x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
                seen.append(run_program(m, programs, p, halves, k, x, t, cond))
                return seen[-1]

            out = guided_output(unet, x, t, cond, uncond, guidance, x.shape[1], channels_last)
        if how == KEEP:
            keep(terms, "guidance", out - seen[0][:rows], k)
        return out

    last = x
    for _, last in sample_loop(table, x, noise, model_output):
        pass
    return last


# ---------------------------------------------------------------------------- files


def weight_files(path: str, patterns: Sequence[str] = ()) -> list[str]:
    """The files a checksum covers: ``path`` itself, or in a directory the sorted files of the
    first pattern that matches any (``diffusion_pytorch_model*.safetensors``...)."""
    if not os.path.isdir(path):
        return [path]
    names = sorted(os.listdir(path))
    for pattern in patterns:
        found = [os.path.join(path, n) for n in names if fnmatch.fnmatch(n, pattern)]
        if found:
            return found
    raise FileNotFoundError(f"no weights matching {', '.join(patterns)} in {path}")


def sha256_files(paths: Sequence[str]) -> str:
    """sha256 of the files' bytes in order, read in chunks (checkpoints can be gigabytes)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def verify_weights(path: str, checksum: str, patterns: Sequence[str] = ()) -> None:
    """Stop unless the weights are the ones the sampler was generated for."""
    digest = sha256_files(weight_files(path, patterns))
    if digest != checksum:
        raise SystemExit(
            f"{path} has sha256 {digest}, not {checksum}: these are not the weights this "
            "sampler was generated for (pass --no-verify to use them anyway)"
        )


def save_grid(images: torch.Tensor, path: str, nrow: int) -> None:
    """Images in [-1, 1] as one PNG, ``nrow`` per row."""
    from PIL import Image

    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    n, c, h, w = x.shape
    rows = (n + nrow - 1) // nrow
    grid = torch.zeros((c, rows * h, nrow * w), dtype=torch.uint8)
    for k in range(n):
        r, col = divmod(k, nrow)
        grid[:, r * h : (r + 1) * h, col * w : (col + 1) * w] = x[k]
    Image.fromarray(grid.permute(1, 2, 0).squeeze(-1).numpy()).save(path)
