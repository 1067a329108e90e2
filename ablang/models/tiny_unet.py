"""The built-in model's Unet: a small class-conditional Unet in the ADM / GLIDE style.

This file imports torch only, so that a sampler emitted by ``ablang emit`` can import it on its
own. Module names follow openai's guided-diffusion ``UNetModel`` (``input_blocks``,
``middle_block``, ``output_blocks``, ``ResBlock.skip_connection``, ``ResBlock.x_upd``...), so that
the same adapter serves the built-in model, guided-diffusion and GLIDE.

Shapes: ``x`` is ``[N x C x H x W]`` in [-1, 1]; ``timesteps`` is ``[N]`` on the training scale
(0..T-1); ``y`` is ``[N]`` class labels, ``num_classes`` meaning "no class" (the null label used
for classifier-free guidance).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TinyUnetConfig:
    image_size: int = 32
    in_channels: int = 1
    out_channels: int = 1  # epsilon only: the variance is fixed, not learned
    # Sized for 2 CPU cores: a 100-step guided run of 16 images in under 10 s.
    model_channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)  # four levels: 32, 16, 8, 4
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (4, 8)  # downsampling factors: 8x8 and 4x4
    num_head_channels: int = 32
    num_classes: int = 10  # label 10 is the null class
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TinyUnetConfig:
        d = dict(d)
        for k in ("channel_mult", "attention_resolutions"):
            d[k] = tuple(d[k])
        return cls(**d)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding, ``[N] -> [N x dim]``, as in guided-diffusion."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        / half
    )
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class GroupNorm32(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> nn.Module:
    return GroupNorm32(math.gcd(32, channels), channels)


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.detach().zero_()
    return module


class TimestepBlock(nn.Module):
    """A block whose forward also takes the timestep embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    # Takes the embedding too, unlike nn.Sequential: the ADM family's own signature.
    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")


class Downsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class ResBlock(TimestepBlock):
    """Residual block with scale-shift conditioning; ``up``/``down`` resample both paths.

    ``skip_connection(x_upd(x))`` is the block's shortcut path: what ``drop`` leaves.
    """

    h_upd: nn.Module
    x_upd: nn.Module
    skip_connection: nn.Module

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels or channels
        self.in_layers = nn.Sequential(
            normalization(channels),
            nn.SiLU(inplace=True),
            nn.Conv2d(channels, self.out_channels, 3, padding=1),
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(), Upsample()
        elif down:
            self.h_upd, self.x_upd = Downsample(), Downsample()
        else:
            self.h_upd = self.x_upd = nn.Identity()
        # not in place: emb is shared by every block
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels))
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(inplace=True),
            nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]  # (N, 2C, 1, 1)
        scale, shift = torch.chunk(emb_out, 2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        h = self.out_layers[1:](h)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over the spatial positions; the residual path makes ``drop`` an identity."""

    def __init__(self, channels: int, num_head_channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.num_heads = max(1, channels // num_head_channels)
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        flat = x.reshape(b, c, hh * ww)
        qkv = self.qkv(self.norm(flat))  # (N, 3C, L)
        q, k, v = qkv.reshape(b, 3, self.num_heads, c // self.num_heads, hh * ww).unbind(1)
        a = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        h = a.transpose(-1, -2).reshape(b, c, hh * ww)  # (N, C, L)
        return (flat + self.proj_out(h)).reshape(b, c, hh, ww)


class TinyUnet(nn.Module):
    """``forward(x, timesteps, y) -> eps``; see the module docstring for shapes."""

    def __init__(self, config: TinyUnetConfig = TinyUnetConfig()) -> None:
        super().__init__()
        self.config = cfg = config
        self.model_channels = ch = cfg.model_channels
        emb_dim = ch * 4
        self.time_embed = nn.Sequential(
            nn.Linear(ch, emb_dim), nn.SiLU(inplace=True), nn.Linear(emb_dim, emb_dim)
        )
        self.num_classes = cfg.num_classes
        self.label_emb = nn.Embedding(cfg.num_classes + 1, emb_dim)

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))]
        )
        chans, ds = [ch], 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [
                    ResBlock(ch, emb_dim, cfg.dropout, mult * cfg.model_channels)
                ]
                ch = mult * cfg.model_channels
                if ds in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, cfg.num_head_channels))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(
                    TimestepEmbedSequential(ResBlock(ch, emb_dim, cfg.dropout, down=True))
                )
                chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, cfg.dropout),
            AttentionBlock(ch, cfg.num_head_channels),
            ResBlock(ch, emb_dim, cfg.dropout),
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                skip_ch = chans.pop()
                layers = [ResBlock(ch + skip_ch, emb_dim, cfg.dropout, cfg.model_channels * mult)]
                ch = cfg.model_channels * mult
                if ds in cfg.attention_resolutions:
                    layers.append(AttentionBlock(ch, cfg.num_head_channels))
                if level and i == cfg.num_res_blocks:
                    layers.append(ResBlock(ch, emb_dim, cfg.dropout, up=True))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(inplace=True),
            zero_module(nn.Conv2d(ch, cfg.out_channels, 3, padding=1)),
        )

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        emb = emb + self.label_emb(y)  # (N, 4 * model_channels)
        hs = []
        h = x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = torch.cat([h, hs.pop()], dim=1)
            h = module(h, emb)
        return self.out(h)
