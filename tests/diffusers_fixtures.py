"""Tiny diffusers pipelines for tests, built offline from configs with random weights.

``tiny_ddpm_pipeline(DIR)``: a pixel ``DDPMPipeline`` (``UNet2DModel``, 16x16 RGB) with a
``DDPMScheduler``. ``tiny_sd_pipeline(DIR)``: a ``StableDiffusionPipeline`` with a small
``UNet2DConditionModel`` laid out like SD 1.x (two cross-attention down blocks then a plain one,
``layers_per_block=2``, so DeepCache's branch ids mean what they mean on SD), a small
``AutoencoderKL`` (latents 8x8 -> images 16x16), a small ``CLIPTextModel`` and a ``CLIPTokenizer``
whose ``vocab.json`` / ``merges.txt`` are written here. Both are saved with ``save_pretrained``
and read back the way a user's download would be: nothing touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# words the tokenizer knows whole (anything else falls back to single characters)
WORDS = ("a", "photo", "of", "cat", "dog", "red", "astronaut", "riding", "horse", "blue", "car")
CONTEXT_LENGTH = 77  # CLIP's, as SD's tokenizer pads to
SD_SCHEDULE = {  # Stable Diffusion 1.x's noise schedule
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,  # PNDM as SD 1.x ships it: PLMS only, its second timestep twice
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def write_clip_vocab(directory: Path, words: tuple[str, ...] = WORDS) -> tuple[Path, Path]:
    """A CLIP BPE vocabulary: every byte alone and word-final, merges that build ``words``
    left to right, then ``<|startoftext|>`` and ``<|endoftext|>`` last (as CLIP's own)."""
    directory.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in words:
        head = word[0]
        for k, c in enumerate(word[1:], start=1):
            tail = c + "</w>" if k == len(word) - 1 else c
            merge = f"{head} {tail}"
            head = head + tail
            if merge not in merges:
                merges.append(merge)
                tokens.append(head)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    vocab_file, merges_file = directory / "vocab.json", directory / "merges.txt"
    vocab_file.write_text(json.dumps(vocab))
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab_file, merges_file


def clip_tokenizer(directory: Path):
    from transformers import CLIPTokenizer

    vocab_file, merges_file = write_clip_vocab(directory)
    return CLIPTokenizer(
        vocab=str(vocab_file), merges=str(merges_file), model_max_length=CONTEXT_LENGTH
    )


def tiny_ddpm_pipeline(
    root: Path, *, scheduler: str = "DDPMScheduler", seed: int = 0, **scheduler_config
) -> Path:
    """A pixel DDPM pipeline (16x16 RGB, three levels, self-attention at the middle one)."""
    import diffusers
    from diffusers import DDPMPipeline, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        block_out_channels=(8, 16, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
    ).eval()
    config = {"num_train_timesteps": 1000, "beta_schedule": "linear", "clip_sample": True}
    config.update(scheduler_config)
    sched = getattr(diffusers, scheduler).from_config(config)
    DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(str(root))
    return root


def tiny_sd_pipeline(
    root: Path,
    *,
    prediction_type: str = "epsilon",
    scheduler: str = "PNDMScheduler",
    seed: int = 0,
) -> Path:
    """A Stable Diffusion pipeline with SD 1.x's layout at toy width (latents 4 x 8 x 8)."""
    import diffusers
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer(root.with_name(root.name + "-vocab"))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(8, 16, 16),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    ).eval()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=CONTEXT_LENGTH,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    # from_config, as SD 1.x ships a PNDMScheduler whose config also has DDIM/DDPM keys
    sched = getattr(diffusers, scheduler).from_config(
        {**SD_SCHEDULE, "prediction_type": prediction_type}
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(root))
    return root
