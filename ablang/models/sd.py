"""Stable Diffusion's parts around the Unet: text encoding, the empty prompt, VAE decoding.

A pipeline directory (``model_index.json`` naming ``unet``, ``vae``, ``text_encoder``,
``tokenizer``, ``scheduler``) loads as one model. The Unet is traced as any diffusers Unet; the
text encoder and the VAE are not components, they run once per sample (encoding before the loop,
decoding after it) exactly as ``StableDiffusionPipeline`` runs them:

- prompts are tokenized padded to ``tokenizer.model_max_length`` and truncated, encoded by the
  ``CLIPTextModel`` (its last hidden state; the attention mask only where the encoder's config asks
  for it); the unconditional input is the empty prompt, padded to the same length;
- classifier-free guidance doubles the batch as ``[uncond; cond]`` (``diffusers_sched.guide``);
- images are ``vae.decode(latents / vae.config.scaling_factor)``, in [-1, 1] before clamping;
  ``to_unit`` maps them to [0, 1] the way the pipeline's ``output_type="pt"`` does.

SDXL (``StableDiffusionXLPipeline``) is not covered: its Unet takes ``added_cond_kwargs``
(pooled text embeddings of a second text encoder and the size/crop "time ids"); supporting it
needs a second tokenizer/encoder pair here, and ``DiffusersUnet`` passing ``text_embeds`` /
``time_ids`` to ``add_embedding`` (``addition_embed_type == "text_time"``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ablang.models import ModelUnavailable

INSTALL_HINT = "pip install diffusers transformers safetensors"
PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def is_sd_pipeline(root: str | Path) -> bool:
    """A directory saved by ``StableDiffusionPipeline.save_pretrained`` (or laid out as one)."""
    index = Path(root) / "model_index.json"
    if not index.is_file():
        return False
    parts = json.loads(index.read_text())
    return all(isinstance(parts.get(p), list) and parts[p][0] for p in PARTS)


@dataclass
class TextToImage:
    """The pipeline's text encoder, tokenizer and VAE, in fp32 and eval mode, never modified."""

    tokenizer: Any
    text_encoder: nn.Module
    vae: Any  # diffusers AutoencoderKL (typed loosely: diffusers ships no type information)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], device: torch.device | str) -> torch.Tensor:
        """``[N x L x D]`` text embeddings, as ``StableDiffusionPipeline.encode_prompt``."""
        return self._encode(list(prompts), self.tokenizer.model_max_length, device)

    @torch.no_grad()
    def encode_empty(self, n: int, length: int, device: torch.device | str) -> torch.Tensor:
        """The unconditional input: the empty prompt padded to ``length`` tokens, ``n`` times."""
        return self._encode([""] * n, length, device)

    def _encode(self, prompts: list[str], length: int, device) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
        )
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(device)
        out = self.text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
        return out.to(dtype=self.text_encoder.dtype, device=device)

    def conditioning(
        self, prompts: Sequence[str], device: torch.device | str
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(cond, uncond) inputs of the traced Unet for one sample per prompt."""
        cond = self.encode(prompts, device)
        uncond = self.encode_empty(len(prompts), cond.shape[1], device)
        return {"encoder_hidden_states": cond}, {"encoder_hidden_states": uncond}

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[N x 3 x H x W]`` images in [-1, 1] (not clamped) from ``[N x 4 x h x w]`` latents."""
        return self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]

    @property
    def scale_factor(self) -> int:
        """Image pixels per latent pixel (8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped: what the pipelines return for ``output_type="pt"``."""
    return (images * 0.5 + 0.5).clamp(0, 1)


def load_text_to_image(root: str | Path, device: torch.device | str = "cpu") -> TextToImage:
    """The tokenizer, text encoder and VAE of the SD pipeline saved in ``root``."""
    root = Path(root)
    try:
        from diffusers import AutoencoderKL
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError as e:
        raise ModelUnavailable(f"a Stable Diffusion pipeline needs: {INSTALL_HINT}") from e
    if not is_sd_pipeline(root):
        raise ModelUnavailable(
            f"{root} is not a Stable Diffusion pipeline directory (model_index.json naming "
            f"{', '.join(PARTS)})"
        )
    index = json.loads((root / "model_index.json").read_text())
    for part, expected in (("text_encoder", "CLIPTextModel"), ("vae", "AutoencoderKL")):
        if index[part][1] != expected:
            raise ModelUnavailable(
                f"{root / 'model_index.json'}: {part} is a {index[part][1]}; ablang loads "
                f"{expected} (SD 1.x / 2.x)"
            )
    tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer"))
    text_encoder = CLIPTextModel.from_pretrained(str(root / "text_encoder"))
    vae = AutoencoderKL.from_pretrained(str(root / "vae"), low_cpu_mem_usage=False)
    return TextToImage(
        tokenizer=tokenizer,
        text_encoder=text_encoder.float().eval().requires_grad_(False).to(device),
        vae=vae.float().eval().requires_grad_(False).to(device),
    )
