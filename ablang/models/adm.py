"""The ``adm`` model: an openai guided-diffusion (or improved-diffusion) ``UNetModel`` from a local
checkpoint and the JSON of the arguments it was created with::

    model adm "ckpt/64x64_diffusion.pt" config "ckpt/64x64.json"

The JSON holds the keyword arguments of guided-diffusion's ``create_model_and_diffusion`` (what
its scripts take on the command line); keys it leaves out take ``model_and_diffusion_defaults()``'s
values, and keys that do not shape the model or its noise schedule (``timestep_respacing``,
``use_kl``, ``batch_size``, ...) are ignored. On top of guided-diffusion's own keys, ``num_classes``
(default 1000, ImageNet) and ``in_channels`` (default 3) describe models trained on other data.

- ``family``: ``"guided-diffusion"`` (default) or ``"improved-diffusion"``: whose
  ``model_and_diffusion_defaults()`` fill the keys the JSON leaves out. They differ in
  ``rescale_timesteps`` (improved-diffusion: true).
- ``learn_sigma``: the model outputs ``2 * in_channels`` channels, the second half interpolating
  the log variance (``learned_range``). Without it the variance is fixed: beta (``fixed_large``,
  what ``create_model_and_diffusion`` gives such models) or, with ``sigma_small``, the
  posterior's (``fixed_small``).
- ``rescale_timesteps``: the model is called with ``float(t) * 1000 / diffusion_steps`` (the
  reference's ``_WrappedModel``), not the integer ``t``.
- ``noise_schedule``: ``linear`` or ``cosine`` over ``diffusion_steps``. ``timestep_respacing``
  is ignored: the study's ``sampler ... steps N`` respaces, as ``space_timesteps(T, [N])`` does.
- ``class_cond``: prompts are class indices (``"207"``). guided-diffusion's class-conditional
  models have no null class, so classifier-free guidance is not available: the default guidance
  is 1 and there is no unconditional half.
- ``use_fp16``: the model runs in fp32 (the checkpoint's weights are cast on loading).

The Unet is traced by ``adm_family.trace_adm``: ``input_blocks[i]`` -> ``enc[i]``,
``middle_block`` -> ``mid``, ``output_blocks[i]`` -> ``dec[i]``, the ``th.cat`` of ``hs.pop()``
-> ``skip[i]``.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ablang.diffusion import DiffusionSpec
from ablang.models import ModelUnavailable
from ablang.models.adm_family import trace_adm
from ablang.models.base import LoadedModel, ModelAdapter, sha256_file
from ablang.models.kinds import KINDS
from ablang.trace import constants_source

INSTALL_HINT = KINDS["adm"].install

# Keys guided-diffusion / improved-diffusion scripts accept that shape neither the Unet nor the
# noise schedule a sampler needs. (``timestep_respacing`` is the study's: `sampler ... steps N`.)
IGNORED_KEYS = frozenset(
    {
        "timestep_respacing", "use_kl", "rescale_learned_sigmas", "use_checkpoint",
        "clip_denoised", "num_samples", "batch_size", "use_ddim", "model_path", "data_dir",
        "schedule_sampler", "lr", "weight_decay", "lr_anneal_steps", "microbatch", "ema_rate",
        "log_interval", "save_interval", "resume_checkpoint", "fp16_scale_growth",
        "classifier_scale", "classifier_path", "classifier_use_fp16", "classifier_width",
        "classifier_depth", "classifier_attention_resolutions", "classifier_use_scale_shift_norm",
        "classifier_resblock_updown", "classifier_pool",
    }
)  # fmt: skip

# Where the two codebases' model_and_diffusion_defaults() differ (for the keys ablang reads).
FAMILIES: dict[str, dict[str, Any]] = {
    "guided-diffusion": {},
    "improved-diffusion": {"rescale_timesteps": True},
}

# guided-diffusion's (and, for 32, improved-diffusion's) channel_mult when the config leaves it "".
DEFAULT_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
    32: (1, 2, 2, 2),
}


@dataclass(frozen=True)
class AdmConfig:
    """guided-diffusion's model and diffusion arguments (defaults: model_and_diffusion_defaults)."""

    image_size: int = 64
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: tuple[float, ...] = ()  # () = the default for image_size
    attention_resolutions: tuple[int, ...] = (16, 8)  # resolutions, not downsampling factors
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    dropout: float = 0.0
    class_cond: bool = False
    num_classes: int = 1000  # ablang's addition: guided-diffusion fixes 1000 (ImageNet)
    in_channels: int = 3  # ablang's addition: guided-diffusion fixes 3 (RGB)
    learn_sigma: bool = False
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_fp16: bool = False  # recorded only: ablang runs the model in fp32
    use_new_attention_order: bool = False
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    predict_xstart: bool = False
    rescale_timesteps: bool = False  # improved-diffusion's default is True (see from_dict)
    sigma_small: bool = False  # without learn_sigma: the small fixed variance, not beta
    family: str = "guided-diffusion"  # or "improved-diffusion": whose defaults apply

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "the config") -> tuple[AdmConfig, list[str]]:
        """The config, and the keys it ignored (neither a field nor in ``IGNORED_KEYS``)."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        unknown: list[str] = []
        for key, value in d.items():
            if key not in known:
                if key not in IGNORED_KEYS:
                    unknown.append(key)
                continue
            if key == "channel_mult":
                value = _numbers(value, float, key, where)
            elif key == "attention_resolutions":
                value = tuple(int(v) for v in _numbers(value, int, key, where))
            else:
                value = _scalar(value, known[key].default, key, where)
            values[key] = value
        family = values.get("family", cls.family)
        if family not in FAMILIES:
            raise ModelUnavailable(
                f"{where}: family must be one of {', '.join(FAMILIES)}, not {family!r}"
            )
        for key, value in FAMILIES[family].items():
            values.setdefault(key, value)
        return cls(**values), unknown

    def mult(self) -> tuple[float, ...]:
        if self.channel_mult:
            return self.channel_mult
        if self.image_size not in DEFAULT_CHANNEL_MULT:
            raise ModelUnavailable(
                f"no default channel_mult for image_size {self.image_size}; "
                'set channel_mult in the config (such as "1,2,2,2")'
            )
        return DEFAULT_CHANNEL_MULT[self.image_size]

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    def diffusion(self) -> DiffusionSpec:
        schedule = {"linear": "linear", "cosine": "cosine", "squaredcos_cap_v2": "cosine"}.get(
            self.noise_schedule
        )
        if schedule is None:
            raise ModelUnavailable(
                f"noise_schedule {self.noise_schedule!r} is not supported; "
                "ablang knows linear and cosine"
            )
        return DiffusionSpec(
            self.diffusion_steps,
            schedule,
            learn_sigma=self.learn_sigma,
            sigma_small=self.sigma_small,
            rescale_timesteps=self.rescale_timesteps,
        )


def _scalar(value: Any, default: Any, key: str, where: str) -> Any:
    """A value of the field's type; the scripts' flags copied as strings (``"True"``, ``"1000"``)
    are read as what they say, never as a truthy string."""
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
    elif (
        isinstance(default, (int, float))
        and isinstance(value, (str, int, float))
        and not isinstance(value, bool)
    ):
        try:
            return type(default)(value)
        except ValueError:
            pass
    elif isinstance(default, str) and isinstance(value, str):
        return value
    kind = "true or false" if isinstance(default, bool) else f"a {type(default).__name__}"
    raise ModelUnavailable(f"{where}: {key} must be {kind}, not {value!r}")


def _numbers(value: Any, kind: type, key: str, where: str) -> tuple:
    """``"1,2,2"``, ``[1, 2, 2]`` or ``"16,8"`` -> a tuple of numbers."""
    try:
        if isinstance(value, str):
            return tuple(kind(v) for v in value.split(",") if v.strip())
        if isinstance(value, (int, float)):
            return (kind(value),)
        return tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        raise ModelUnavailable(
            f'{where}: {key} must be numbers such as "1,2,2", not {value!r}'
        ) from None


def unet_kwargs(cfg: AdmConfig) -> dict[str, Any]:
    """guided-diffusion's ``UNetModel`` keyword arguments, as its ``create_model`` passes them."""
    return {
        "image_size": cfg.image_size,
        "in_channels": cfg.in_channels,
        "model_channels": cfg.num_channels,
        "out_channels": cfg.out_channels,
        "num_res_blocks": cfg.num_res_blocks,
        "attention_resolutions": tuple(cfg.image_size // r for r in cfg.attention_resolutions),
        "dropout": cfg.dropout,
        "channel_mult": cfg.mult(),
        "num_classes": cfg.num_classes if cfg.class_cond else None,
        "use_checkpoint": False,
        "use_fp16": False,  # fp32 everywhere: same numbers on cpu and cuda
        "num_heads": cfg.num_heads,
        "num_head_channels": cfg.num_head_channels,
        "num_heads_upsample": cfg.num_heads_upsample,
        "use_scale_shift_norm": cfg.use_scale_shift_norm,
        "resblock_updown": cfg.resblock_updown,
        "use_new_attention_order": cfg.use_new_attention_order,
    }


def build_unet(cfg: AdmConfig):
    """guided-diffusion's ``UNetModel`` as its ``create_model`` builds it, in fp32."""
    try:
        from guided_diffusion.unet import UNetModel
    except ImportError as e:
        raise ModelUnavailable(
            f"model adm needs the guided-diffusion package: {INSTALL_HINT}"
        ) from e
    return UNetModel(**unet_kwargs(cfg))


def read_config(path: str | None) -> tuple[AdmConfig, list[str]]:
    if not path:
        raise ModelUnavailable(
            "model adm needs the JSON of the model's arguments: "
            'model adm "PATH.pt" config "PATH.json"'
        )
    p = Path(path)
    if not p.is_file():
        raise ModelUnavailable(
            f"no config file at {p} (the JSON of the model's create_model arguments)"
        )
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ModelUnavailable(f"{p} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ModelUnavailable(f"{p} must hold a JSON object of create_model arguments")
    return AdmConfig.from_dict(data, str(p))


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict (a plain one, or one under ``"state_dict"``), on the cpu."""
    if not path.is_file():
        raise ModelUnavailable(f"no checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelUnavailable(f"{path} does not hold a state dict")
    return state


def load_weights(
    model: torch.nn.Module, state: dict, path: Path, config: str, unknown: list[str]
) -> None:
    """``load_state_dict`` with an error that says which config and checkpoint disagree."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:4]) or first[0]
        extra = ""
        if unknown:
            fields_ = [f.name for f in fields(AdmConfig)]
            guesses = [
                f"{k} (did you mean {m[0]}?)"
                if (m := difflib.get_close_matches(k, fields_, n=1))
                else k
                for k in unknown
            ]
            extra = f"; the config's keys {', '.join(guesses)} were not used"
        raise ModelUnavailable(
            f"the checkpoint {path} does not fit the model {config} describes: {detail}{extra}"
        ) from None


def class_labels(prompts: list[str], num_classes: int) -> torch.Tensor:
    bad = [p for p in prompts if not p.strip().isdigit() or not 0 <= int(p) < num_classes]
    if bad:
        raise ModelUnavailable(
            f"the model's prompts are class indices 0..{num_classes - 1}, not {bad[0]!r}"
        )
    return torch.tensor([int(p) for p in prompts], dtype=torch.long)


def default_classes(num_classes: int) -> tuple[str, ...]:
    """All classes of a small label set, else eight spread over it."""
    if num_classes <= 10:
        return tuple(str(k) for k in range(num_classes))
    return tuple(str(k * num_classes // 8) for k in range(8))


class AdmAdapter(ModelAdapter):
    def load(self, device: torch.device) -> LoadedModel:
        cfg, unknown = read_config(self.spec.config)
        if cfg.predict_xstart:
            raise ModelUnavailable(
                "models that predict x0 (predict_xstart) are not supported; "
                "ablang's sampler takes epsilon"
            )
        diffusion = cfg.diffusion()
        path = Path(self.spec.path or "")
        state = load_state_dict(path)
        unet = build_unet(cfg)
        load_weights(unet, state, path, self.spec.config or "", unknown)
        unet.eval().requires_grad_(False)

        size, c = cfg.image_size, cfg.in_channels
        example: tuple = (torch.zeros(1, c, size, size), torch.zeros(1, dtype=torch.long))
        if cfg.class_cond:
            example += (torch.zeros(1, dtype=torch.long),)
        label = self.spec.label()
        traced = trace_adm(
            unet,
            example,
            label=label,
            image_size=size,
            num_timesteps=cfg.diffusion_steps,
            prompt_kind="class" if cfg.class_cond else "none",
            inputs=("x", "timesteps", "y") if cfg.class_cond else ("x", "timesteps"),
            concrete_args=None if cfg.class_cond else {"y": None},
        )
        unet.to(device)

        def make_cond(prompts: list[str], dev: torch.device):
            if not cfg.class_cond:
                return {}, None
            # no null class: guidance has no unconditional half to push away from
            return {"y": class_labels(prompts, cfg.num_classes).to(dev)}, None

        return LoadedModel(
            label=label,
            unet=unet,
            traced=traced,
            diffusion=diffusion,
            image_shape=(c, size, size),
            checksum=sha256_file(path),
            default_guidance=1.0,
            default_prompts=default_classes(cfg.num_classes)
            if cfg.class_cond
            else ("unconditional",),
            make_cond=make_cond,
            emit={
                "imports": ["from guided_diffusion.unet import UNetModel"],
                "weights": str(path),
                "source": emit_source(cfg, constants_source(traced.gm, unet)),
            },
        )


def emit_source(cfg: AdmConfig, constants: list[str]) -> str:
    """``load_model`` and ``make_cond`` for an emitted sampler: guided-diffusion's own
    ``UNetModel`` with the study's config written out, and the trace's constants."""
    extra = "".join(f"\n    {line}" for line in constants)
    if cfg.class_cond:
        cond = (
            '    """Class indices; no null class, so no unconditional half."""\n'
            "    y = torch.tensor([int(p) for p in prompts], dtype=torch.long, device=device)\n"
            '    return {"y": y}, None'
        )
    else:
        cond = '    """Unconditional: no inputs besides x and t."""\n    return {}, None'
    return f'''
UNET_KWARGS = {unet_kwargs(cfg)!r}


def load_model(device, weights=WEIGHTS):
    """guided-diffusion's UNetModel as the study's config describes it, in fp32."""
    model = UNetModel(**UNET_KWARGS)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("state_dict", state))
    model.eval().requires_grad_(False){extra}
    return model.to(device)


def make_cond(prompts, device):
{cond}
'''
