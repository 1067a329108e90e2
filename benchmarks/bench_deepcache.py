"""DeepCache against ablang's emitted sampler of the same schedule, on one Stable Diffusion pipeline.

A CPU-sized SD pipeline (SD 1.x's Unet layout: three cross-attention levels and a plain one,
``layers_per_block=2``, so D = 12 decoder units and DeepCache's branch ids mean what they mean on
SD 1.5; narrower channels, 32x32 latents; random weights, a self-written tokenizer vocabulary) is
saved with ``save_pretrained``. Then, interleaved round by round on the same pipeline, prompt and
seed, DDIM with guidance 7.5:

- ``pipeline``: ``StableDiffusionPipeline`` as is;
- ``deepcache``: the same with ``DeepCacheSDHelper(cache_interval=N, cache_branch_id=b)``;
- ``ablang``: the sampler ``ablang emit`` writes for ``cache dec[D-2-b] every N`` (the same
  schedule, docs/models.md), imported and called with its parts loaded once.

Prints each one's median wall time, the ratios, and the largest pixel difference between
DeepCache's and ablang's images (0 means identical). ``--sd15`` uses SD 1.5's real Unet and VAE
sizes (512x512 images, 50 steps; random weights) and wants a GPU (``--device cuda``)::

    nice -n 5 python benchmarks/bench_deepcache.py                # CPU-sized, 10 steps
    python benchmarks/bench_deepcache.py --sd15 --device cuda     # SD 1.5 architecture
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

PROMPT = "a photo of a red cat"


def build(root: Path, sd15: bool) -> Path:
    """Save a random-weight SD pipeline with SD 1.x's Unet layout to ``root``."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from diffusers_fixtures import SD_SCHEDULE, clip_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer(root.with_name(root.name + "-vocab"))
    torch.manual_seed(0)
    width = (320, 640, 1280, 1280) if sd15 else (32, 64, 64, 64)
    unet = UNet2DConditionModel(
        sample_size=64 if sd15 else 32,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=width,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768 if sd15 else 64,
        attention_head_dim=8,
        norm_num_groups=32 if sd15 else 16,
    ).eval()
    vae_width = (128, 256, 512, 512) if sd15 else (16, 32)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_width),
        up_block_types=("UpDecoderBlock2D",) * len(vae_width),
        block_out_channels=vae_width,
        layers_per_block=2 if sd15 else 1,
        latent_channels=4,
        norm_num_groups=32 if sd15 else 8,
        sample_size=512 if sd15 else 64,
    ).eval()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=768 if sd15 else 64,
            intermediate_size=3072 if sd15 else 128,
            num_hidden_layers=12 if sd15 else 2,
            num_attention_heads=12 if sd15 else 2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler.from_config(SD_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(str(root))
    return root


def emit(root: Path, steps: int, comp: str, every: int, out: Path):
    """``ablang emit`` of the DeepCache-equivalent variant, imported as a module."""
    from ablang.emit import emit_sampler
    from ablang.models.registry import load_adapter
    from ablang.parse import parse
    from ablang.plan import ModelSpec
    from ablang.resolve import resolve
    from ablang.session import Session

    spec = ModelSpec("diffusers", str(root))
    table = load_adapter(spec).component_table()
    text = (
        f'model diffusers "{root}"\nsampler ddim steps {steps}\nseed 0\nsamples 1\n'
        f'prompts "{PROMPT}"\nvariant deepcache {{\n    cache {comp} every {every}\n}}\n'
    )
    plan = resolve(parse(text, "bench.abl"), table)
    session = Session.from_plan(plan, "cpu")
    emit_sampler(plan, plan.variant("deepcache"), session.model, out, session.programs, force=True)
    loader = importlib.util.spec_from_file_location("fast_deepcache", out)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    sys.modules[loader.name] = module  # as an import does (its dataclasses look it up)
    loader.loader.exec_module(module)
    return module, table.count("dec")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sd15", action="store_true", help="SD 1.5's real sizes (wants a GPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="default 10 (50 with --sd15)")
    ap.add_argument("--interval", type=int, default=3)
    ap.add_argument("--branch", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    steps = args.steps or (50 if args.sd15 else 10)
    device = torch.device(args.device)
    torch.set_grad_enabled(False)

    from DeepCache import DeepCacheSDHelper
    from diffusers import StableDiffusionPipeline

    with tempfile.TemporaryDirectory() as tmp:
        root = build(Path(tmp) / "sd", args.sd15)
        pipe = StableDiffusionPipeline.from_pretrained(str(root)).to(device)
        pipe.set_progress_bar_config(disable=True)
        dec = 12
        comp = f"dec[{dec - 2 - args.branch}]"
        fast, dec = emit(root, steps, comp, args.interval, Path(tmp) / "fast.py")
        assert comp == f"dec[{dec - 2 - args.branch}]"
        parts = fast.load_model(device, str(root))
        helper = DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=args.interval, cache_branch_id=args.branch)

        def run_pipe() -> torch.Tensor:
            gen = torch.Generator().manual_seed(0)
            return pipe(
                PROMPT, generator=gen, num_inference_steps=steps, output_type="pt"
            ).images.cpu()

        def run_deepcache() -> torch.Tensor:
            helper.enable()
            try:
                return run_pipe()
            finally:
                helper.disable()

        def run_ablang() -> torch.Tensor:
            images = fast.sample(1, [PROMPT], 0, device, str(root), verify=False, parts=parts)
            return (images * 0.5 + 0.5).clamp(0, 1)

        runs = {"pipeline": run_pipe, "deepcache": run_deepcache, "ablang": run_ablang}
        times: dict[str, list[float]] = {k: [] for k in runs}
        images: dict[str, torch.Tensor] = {}
        for k, f in runs.items():  # warm-up, and the images compared
            images[k] = f()
        for _ in range(args.rounds):
            for k, f in runs.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                f()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[k].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    size = "SD 1.5 architecture, 512x512" if args.sd15 else "CPU-sized SD layout, 32x32 latents"
    print(
        f"{size}, DDIM {steps} steps, guidance 7.5, DeepCache branch {args.branch} interval "
        f"{args.interval} == `cache {comp} every {args.interval}`; {args.rounds} interleaved rounds"
    )
    for k in runs:
        print(
            f"  {k:10s} median {med[k] * 1000:8.1f} ms   speedup vs pipeline {med['pipeline'] / med[k]:.2f}x"
        )
    print(f"  ablang / deepcache time ratio: {med['ablang'] / med['deepcache']:.3f}")
    diff = (images["ablang"] - images["deepcache"]).abs().max().item()
    print(f"  max |ablang - deepcache| on the images in [0, 1]: {diff:.3g}")
    print(
        f"  DeepCache changes the image by {(images['deepcache'] - images['pipeline']).abs().max().item():.3g}"
    )


if __name__ == "__main__":
    main()
