"""The ``glide`` model: GLIDE's base 64x64 text-to-image Unet (``Text2ImUNet``) from a local file::

    model glide "models/glide/base.pt"

The model is built by glide-text2im itself (``create_model_and_diffusion(**
model_and_diffusion_defaults())``), so it is exactly the published one, and the file is loaded
with ``load_state_dict``. glide-text2im is not on PyPI; without it nothing runs and loading says
how to install it. The checkpoint is openai's ``base.pt`` (see docs/models.md).

Conventions follow GLIDE's own notebook (``notebooks/text2im.ipynb``):

- a prompt becomes ``tokens, mask = tokenizer.padded_tokens_and_mask(tokenizer.encode(prompt),
  text_ctx)`` (128 tokens); the unconditional half of classifier-free guidance is
  ``padded_tokens_and_mask([], text_ctx)``; guidance 3.0 by batch doubling;
- 1000 training steps on the ``squaredcos_cap_v2`` (cosine) schedule, learned variance (6 output
  channels); the notebook samples with ``timestep_respacing="100"``;
- the notebook converts the model to fp16 on a GPU; ablang keeps fp32 everywhere, so that cpu
  and cuda give the same images.

Tracing shares ``adm_family`` with guided-diffusion (same ``input_blocks`` / ``middle_block`` /
``output_blocks`` / ``hs.pop()`` structure; blocks are called ``module(h, emb, xf_out)``). The text
encoder is not a component: its token and position embeddings stay in the graph and its
``transformer`` is kept whole as one node.

``ModelSpec.config`` may name a JSON of overrides to ``model_and_diffusion_defaults()`` (a smaller
GLIDE-architecture model in tests); the published base needs none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ablang.diffusion import DiffusionSpec
from ablang.models import ModelUnavailable
from ablang.models.adm import load_state_dict
from ablang.models.adm_family import trace_adm
from ablang.models.base import LoadedModel, ModelAdapter, sha256_file
from ablang.models.kinds import KINDS
from ablang.trace import constants_source

INSTALL_HINT = KINDS["glide"].install
BASE_URL = "https://openaipublic.blob.core.windows.net/diffusion/dec-2021/base.pt"
DEFAULT_PROMPTS = ("an oil painting of a corgi",)  # the notebook's
SCHEDULES = {"squaredcos_cap_v2": "cosine", "linear": "linear"}


def glide_modules():
    """glide-text2im's ``model_creation``, or a ``ModelUnavailable`` that says how to get it."""
    try:
        from glide_text2im import model_creation
    except ImportError as e:
        raise ModelUnavailable(
            f"model glide needs the glide-text2im package, which is not on PyPI: {INSTALL_HINT}"
        ) from e
    return model_creation


def options(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``model_and_diffusion_defaults()`` for the base model, fp32, plus ``overrides``."""
    mc = glide_modules()
    opts = mc.model_and_diffusion_defaults()
    opts["use_fp16"] = False
    for key, value in (overrides or {}).items():
        if key not in opts:
            raise ModelUnavailable(
                f"{key!r} is not one of GLIDE's model options ({', '.join(sorted(opts))})"
            )
        opts[key] = value
    if opts["inpaint"] or opts["super_res"]:
        raise ModelUnavailable(
            "only GLIDE's base text-to-image model is supported (not inpaint / upsample)"
        )
    if opts["use_fp16"]:
        raise ModelUnavailable("use_fp16: ablang runs GLIDE in fp32; leave use_fp16 false")
    if opts["noise_schedule"] not in SCHEDULES:
        raise ModelUnavailable(f"noise_schedule {opts['noise_schedule']!r} is not supported")
    return opts


def read_overrides(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ModelUnavailable(f"no GLIDE options file at {p}")
    data = json.loads(p.read_text())
    if not isinstance(data, dict):
        raise ModelUnavailable(
            f"{p} must hold a JSON object of model_and_diffusion_defaults() keys"
        )
    return data


def build_model(opts: dict[str, Any]):
    """GLIDE's ``Text2ImUNet`` as glide-text2im creates it (random weights), in eval mode."""
    model, _ = glide_modules().create_model_and_diffusion(**opts)
    return model.eval()


def tokens_and_mask(
    model, prompts: list[str], text_ctx: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Token ids and their mask, ``[N x text_ctx]`` each, as GLIDE's notebook makes them."""
    tok = model.tokenizer
    rows = [tok.padded_tokens_and_mask(tok.encode(p), text_ctx) for p in prompts]
    return {
        "tokens": torch.tensor([r[0] for r in rows], dtype=torch.long, device=device),
        "mask": torch.tensor([r[1] for r in rows], dtype=torch.bool, device=device),
    }


def empty_tokens(model, n: int, text_ctx: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The unconditional half: ``padded_tokens_and_mask([], text_ctx)`` for each of ``n`` rows."""
    tokens, mask = model.tokenizer.padded_tokens_and_mask([], text_ctx)
    return {
        "tokens": torch.tensor([tokens] * n, dtype=torch.long, device=device),
        "mask": torch.tensor([mask] * n, dtype=torch.bool, device=device),
    }


class GlideAdapter(ModelAdapter):
    def load(self, device: torch.device) -> LoadedModel:
        opts = options(read_overrides(self.spec.config))  # needs glide-text2im before anything
        path = Path(self.spec.path or "")
        if not path.is_file():
            raise ModelUnavailable(
                f"no GLIDE checkpoint at {path}; download base.pt from {BASE_URL} "
                "(see docs/models.md)"
            )
        model = build_model(opts)
        try:
            model.load_state_dict(load_state_dict(path))
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise ModelUnavailable(
                f"{path} is not GLIDE's base model: "
                f"{'; '.join(s.strip() for s in first[1:3]) or first[0]}"
            ) from None
        model.requires_grad_(False)

        size, ctx = int(opts["image_size"]), int(opts["text_ctx"])
        example = (
            torch.zeros(1, 3, size, size),
            torch.zeros(1, dtype=torch.long),
            *empty_tokens(model, 1, ctx, torch.device("cpu")).values(),
        )
        label = self.spec.label()
        traced = trace_adm(
            model,
            example,
            label=label,
            image_size=size,
            num_timesteps=int(opts["diffusion_steps"]),
            prompt_kind="text",
            inputs=("x", "timesteps", "tokens", "mask"),
            extra_leaves=("transformer",),
        )
        model.to(device)

        def make_cond(prompts: list[str], dev: torch.device):
            return tokens_and_mask(model, prompts, ctx, dev), empty_tokens(
                model, len(prompts), ctx, dev
            )

        return LoadedModel(
            label=label,
            unet=model,
            traced=traced,
            diffusion=DiffusionSpec(
                int(opts["diffusion_steps"]), SCHEDULES[opts["noise_schedule"]], learn_sigma=True
            ),
            image_shape=(3, size, size),
            checksum=sha256_file(path),
            default_guidance=3.0,
            default_prompts=DEFAULT_PROMPTS,
            make_cond=make_cond,
            emit={
                "imports": [
                    "from glide_text2im.model_creation import create_model_and_diffusion",
                    "from glide_text2im.tokenizer.bpe import get_encoder",
                ],
                "weights": str(path),
                "source": emit_source(opts, constants_source(traced.gm, model)),
            },
        )


def emit_source(opts: dict[str, Any], constants: list[str]) -> str:
    """``load_model`` and ``make_cond`` for an emitted sampler, with glide-text2im's own code."""
    extra = "".join(f"\n    {line}" for line in constants)
    return f'''
OPTIONS = {opts!r}


def load_model(device, weights=WEIGHTS):
    """GLIDE's base Text2ImUNet from its own create_model_and_diffusion, in fp32."""
    model, _ = create_model_and_diffusion(**OPTIONS)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval().requires_grad_(False){extra}
    return model.to(device)


def make_cond(prompts, device):
    """Tokens and mask per prompt as GLIDE's notebook makes them; the unconditional half is the
    empty prompt."""
    tok, ctx = get_encoder(), OPTIONS["text_ctx"]
    rows = [tok.padded_tokens_and_mask(tok.encode(p), ctx) for p in prompts]
    empty_tokens, empty_mask = tok.padded_tokens_and_mask([], ctx)
    n = len(prompts)
    cond = {{
        "tokens": torch.tensor([r[0] for r in rows], dtype=torch.long, device=device),
        "mask": torch.tensor([r[1] for r in rows], dtype=torch.bool, device=device),
    }}
    uncond = {{
        "tokens": torch.tensor([empty_tokens] * n, dtype=torch.long, device=device),
        "mask": torch.tensor([empty_mask] * n, dtype=torch.bool, device=device),
    }}
    return cond, uncond
'''
