"""The ``diffusers`` model: a ``UNet2DModel`` / ``UNet2DConditionModel`` from ``save_pretrained``::

    model diffusers "models/ddpm-cifar10-32"

``DIR`` is a pipeline directory (``unet/`` and ``scheduler/`` inside) or a Unet directory (its
``config.json`` and weights, and possibly a ``scheduler_config.json`` next to them, as
``google/ddpm-cifar10-32`` is laid out). The noise schedule comes from the scheduler's config
(``num_train_timesteps``, ``beta_schedule`` ``linear`` or ``squaredcos_cap_v2``, ``variance_type``
``learned_range`` -> learned variance); without one, diffusers' defaults (1000 steps, linear).

**Tracing.** diffusers' Unets do not trace symbolically (shape-dependent Python in their blocks),
so ``DiffusersUnet`` re-states the top-level ``forward`` of ``UNet2DModel`` /
``UNet2DConditionModel`` in a traceable form, calling the model's own submodules, and fx keeps
every submodule it calls whole. The blocks are regrouped into *units*, one per component, so that
each component is one ``call_module`` node:

- ``enc[0]`` is ``conv_in``; then, block by block, ``enc[i]`` is one ``resnets[j]`` (followed by
  ``attentions[j]`` where the block has them) or a block's ``downsamplers[0]``: exactly the
  producers of ``down_block_res_samples``, in order;
- ``mid`` is ``mid_block``;
- ``dec[j]`` is one up-block ``resnets[j]`` (+ ``attentions[j]``, + the block's ``upsamplers[0]``
  after its last unit), fed by ``torch.cat([h, down_block_res_samples.pop()])``, whose second
  part is ``skip[i]``.

Units register the model's modules, so parameters are shared, never copied.

**Drop.** A resnet leaves its shortcut path (its ``upsample``/``downsample`` of the input, then
``conv_shortcut`` where it has one), an attention leaves its input (both kinds are residual), a
``Downsample2D``/``Upsample2D`` without a convolution stays; ``conv_in`` and convolutional
resamplers have no shortcut, so a unit that changes shape through one cannot be dropped.

**Conditioning.** ``UNet2DModel``: unconditional, or class labels (``class_labels``) when it has
a class embedding (no null class, so no guidance). ``UNet2DConditionModel``: the traced Unet takes
``encoder_hidden_states`` ``[N x L x cross_attention_dim]``: in a Stable Diffusion pipeline
directory (``model_index.json``) the pipeline's text encoder makes them from text prompts and its
VAE decodes the latents (``ablang.models.sd``; guidance 7.5 by default, the empty prompt as the
unconditional half); a bare conditional Unet can be traced and inspected but not sampled.

**Sampling.** The directory's diffusers scheduler samples (``ablang.models.diffusers_sched``,
``LoadedModel.trajectory``): ``sampler pipeline`` is its own, ``sampler <SchedulerClass>`` another
built from its config, ``ddpm`` / ``ddim`` diffusers' DDPMScheduler / DDIMScheduler.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from ablang.diffusion import DiffusionSpec, linear_betas
from ablang.models import ModelUnavailable
from ablang.models.base import LoadedModel, ModelAdapter, sha256_file
from ablang.models.kinds import KINDS
from ablang.trace import TracedUnet, component_table, mark_components, trace

INSTALL_HINT = KINDS["diffusers"].install

DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D", "CrossAttnDownBlock2D", "ResnetDownsampleBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D", "CrossAttnUpBlock2D", "ResnetUpsampleBlock2D")
MID_BLOCKS = ("UNetMidBlock2D", "UNetMidBlock2DCrossAttn")
SCHEDULES = {"linear": "linear", "squaredcos_cap_v2": "cosine"}


# --------------------------------------------------------------------------- units


def _plain(layer: nn.Module, h, temb, context):
    return layer(h)


def _resnet(layer: nn.Module, h, temb, context):
    return layer(h, temb)


def _cross_attention(layer: nn.Module, h, temb, context):
    # as CrossAttnDownBlock2D / CrossAttnUpBlock2D call their Transformer2DModel
    return layer(
        h,
        encoder_hidden_states=context,
        cross_attention_kwargs=None,
        attention_mask=None,
        encoder_attention_mask=None,
        return_dict=False,
    )[0]


def _cross_mid(layer: nn.Module, h, temb, context):
    # as UNet2DConditionModel calls a mid block that has cross attention
    return layer(
        h,
        temb,
        encoder_hidden_states=context,
        attention_mask=None,
        cross_attention_kwargs=None,
        encoder_attention_mask=None,
    )


# how a unit calls each kind of layer: (layer, h, temb, context) -> h
CALLS: dict[str, Callable[..., torch.Tensor]] = {
    "plain": _plain,  # conv_in, Downsample2D, Upsample2D, self-attention (Attention)
    "resnet": _resnet,  # ResnetBlock2D (also as a down/upsampler), UNetMidBlock2D
    "xattn": _cross_attention,  # Transformer2DModel
    "xmid": _cross_mid,  # UNetMidBlock2DCrossAttn
}


class Unit(nn.Module):
    """One component: some of the model's own layers, applied in order as their block applies them.

    ``paths`` are the layers' module paths in the diffusers model (``down_blocks.1.resnets.0``),
    for people; ``kinds`` pick the calling convention from ``CALLS``.
    """

    def __init__(self, layers: list[tuple[str, nn.Module, str]]) -> None:
        super().__init__()
        self.layers = nn.ModuleList([m for _, m, _ in layers])
        self.paths = tuple(p for p, _, _ in layers)
        self.kinds = tuple(k for _, _, k in layers)

    def forward(
        self, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        for layer, kind in zip(self.layers, self.kinds):
            h = CALLS[kind](layer, h, temb, context)
        return h

    def label(self) -> str:
        return " + ".join(self.paths)


def _attention_kind(attn: nn.Module, where: str) -> str:
    name = type(attn).__name__
    if name == "Transformer2DModel":
        return "xattn"
    if name == "Attention":
        return "plain"
    raise ModelUnavailable(f"{where} is a {name}; ablang handles Attention and Transformer2DModel")


def _sampler_kind(sampler: nn.Module) -> str:
    return "resnet" if type(sampler).__name__ == "ResnetBlock2D" else "plain"


def down_units(model: nn.Module) -> list[Unit]:
    """``conv_in``, then each down block's resnet(+attention) units and its downsampler."""
    units = [Unit([("conv_in", model.conv_in, "plain")])]
    for b, block in enumerate(model.down_blocks):
        kind = type(block).__name__
        if kind not in DOWN_BLOCKS:
            raise ModelUnavailable(
                f"down_blocks.{b} is a {kind}; ablang handles {', '.join(DOWN_BLOCKS)}"
            )
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            layers = [(f"down_blocks.{b}.resnets.{j}", resnet, "resnet")]
            if attentions is not None:
                where = f"down_blocks.{b}.attentions.{j}"
                layers.append((where, attentions[j], _attention_kind(attentions[j], where)))
            units.append(Unit(layers))
        if getattr(block, "downsamplers", None) is not None:
            (sampler,) = block.downsamplers
            units.append(
                Unit([(f"down_blocks.{b}.downsamplers.0", sampler, _sampler_kind(sampler))])
            )
    return units


def up_units(model: nn.Module) -> list[Unit]:
    """Each up block's resnet(+attention) units, its upsampler joining the block's last unit."""
    units = []
    for b, block in enumerate(model.up_blocks):
        kind = type(block).__name__
        if kind not in UP_BLOCKS:
            raise ModelUnavailable(
                f"up_blocks.{b} is a {kind}; ablang handles {', '.join(UP_BLOCKS)}"
            )
        attentions = getattr(block, "attentions", None)
        n = len(block.resnets)
        for j, resnet in enumerate(block.resnets):
            layers = [(f"up_blocks.{b}.resnets.{j}", resnet, "resnet")]
            if attentions is not None:
                where = f"up_blocks.{b}.attentions.{j}"
                layers.append((where, attentions[j], _attention_kind(attentions[j], where)))
            if j == n - 1 and getattr(block, "upsamplers", None) is not None:
                (sampler,) = block.upsamplers
                layers.append((f"up_blocks.{b}.upsamplers.0", sampler, _sampler_kind(sampler)))
            units.append(Unit(layers))
    return units


def mid_unit(model: nn.Module) -> Unit | None:
    block = model.mid_block
    if block is None:
        return None
    kind = type(block).__name__
    if kind not in MID_BLOCKS:
        raise ModelUnavailable(f"mid_block is a {kind}; ablang handles {', '.join(MID_BLOCKS)}")
    return Unit(
        [("mid_block", block, "xmid" if getattr(block, "has_cross_attention", False) else "resnet")]
    )


# --------------------------------------------------------------------------- the traceable Unet


class DiffusersUnet(nn.Module):
    """``UNet2DModel`` / ``UNet2DConditionModel``'s top-level forward, over the model's own modules.

    ``forward(x [N x C x H x W], timesteps [N], encoder_hidden_states [N x L x D] | None,
    class_labels [N] | None) -> [N x C' x H x W]``, the same numbers as the model's
    ``forward(...).sample`` for what ablang passes (timesteps as a ``[N]`` tensor, no attention
    masks, no ControlNet residuals, no extra ``added_cond_kwargs``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        cfg = model.config
        self.conditional = type(model).__name__ == "UNet2DConditionModel"
        self.center_input_sample = bool(cfg.get("center_input_sample", False))
        self.fourier = cfg.get("time_embedding_type", "positional") == "fourier"
        self.class_embed_type = cfg.get("class_embed_type")
        self.class_embeddings_concat = bool(cfg.get("class_embeddings_concat", False))
        self.time_proj = model.time_proj
        self.time_embedding = model.time_embedding
        self.class_embedding = getattr(model, "class_embedding", None)
        self.time_embed_act = getattr(model, "time_embed_act", None)
        self.add_embedding = None
        self.encoder_hid_proj = None
        if self.conditional:
            addition = cfg.get("addition_embed_type")
            if addition not in (None, "text"):
                raise ModelUnavailable(
                    f"addition_embed_type {addition!r} (extra conditioning such as SDXL's) "
                    "is not supported"
                )
            self.add_embedding = model.add_embedding if addition == "text" else None
            hid = cfg.get("encoder_hid_dim_type")
            if model.encoder_hid_proj is not None and hid != "text_proj":
                raise ModelUnavailable(f"encoder_hid_dim_type {hid!r} is not supported")
            self.encoder_hid_proj = model.encoder_hid_proj
        elif any(hasattr(b, "skip_conv") for b in (*model.down_blocks, *model.up_blocks)):
            raise ModelUnavailable(
                "Unets with skip blocks (SkipDownBlock2D, AttnSkipUpBlock2D) are not supported"
            )
        self.enc = nn.ModuleList(down_units(model))
        self.mid = mid_unit(model)
        self.dec = nn.ModuleList(up_units(model))
        if len(self.enc) != len(self.dec):
            raise ModelUnavailable(
                f"the model's {len(self.enc)} down-block outputs do not pair with its "
                f"{len(self.dec)} up-block resnets"
            )
        self.conv_norm_out = model.conv_norm_out
        self.conv_act = model.conv_act
        self.conv_out = model.conv_out

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.center_input_sample:
            x = 2 * x - 1.0
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype=x.dtype))  # (N, D)
        if self.class_embedding is not None:
            if self.class_embed_type == "timestep":
                class_labels = self.time_proj(class_labels).to(dtype=x.dtype)
            class_emb = self.class_embedding(class_labels).to(dtype=x.dtype)
            emb = (
                torch.cat([emb, class_emb], dim=-1)
                if self.class_embeddings_concat
                else emb + class_emb
            )
        context = encoder_hidden_states
        if self.conditional:
            if self.add_embedding is not None:
                emb = emb + self.add_embedding(context)
            if self.time_embed_act is not None:
                emb = self.time_embed_act(emb)
            if self.encoder_hid_proj is not None:
                context = self.encoder_hid_proj(context)
        h = x
        hs = []  # down_block_res_samples
        for unit in self.enc:
            h = unit(h, emb, context)
            hs.append(h)
        if self.mid is not None:
            h = self.mid(h, emb, context)
        for unit in self.dec:
            h = unit(torch.cat([h, hs.pop()], dim=1), emb, context)
        if self.conv_norm_out is not None:
            h = self.conv_act(self.conv_norm_out(h))
        h = self.conv_out(h)
        if self.fourier:
            h = h / timesteps.reshape(-1, 1, 1, 1)
        return h


def block_names(wrapper: DiffusersUnet) -> dict[str, str]:
    names = {f"enc.{i}": f"enc[{i}]" for i in range(len(wrapper.enc))}
    if wrapper.mid is not None:
        names["mid"] = "mid"
    names.update({f"dec.{j}": f"dec[{j}]" for j in range(len(wrapper.dec))})
    return names


def is_leaf(qualname: str) -> bool:
    """Every module the wrapper's forward calls is kept whole: the units and the embeddings."""
    return "." not in qualname or (
        qualname.split(".")[0] in ("enc", "dec") and qualname.count(".") == 1
    )


# --------------------------------------------------------------------------- drop


def layer_shortcut(layer: nn.Module, prefix: str) -> list[str] | None:
    """Module paths whose composition is the layer's shortcut; ``[]`` identity, ``None`` none."""
    kind = type(layer).__name__
    if kind == "ResnetBlock2D":
        path = []
        for resample in ("upsample", "downsample"):
            r = getattr(layer, resample, None)
            if r is None:
                continue
            if not isinstance(r, nn.Module):  # fir / sde_vp kernels are plain functions
                return None
            path.append(f"{prefix}.{resample}")
        if layer.conv_shortcut is not None:
            path.append(f"{prefix}.conv_shortcut")
        return path
    if kind == "Attention":
        return [] if getattr(layer, "residual_connection", False) else None
    if kind == "Transformer2DModel":
        return []
    if kind == "Downsample2D" or kind == "Upsample2D":
        if getattr(layer, "use_conv", False) or getattr(layer, "use_conv_transpose", False):
            return None
        return [prefix]
    if kind in MID_BLOCKS:
        return []  # shape-preserving residual stack
    return None


def unit_shortcut(unit: Unit) -> list[str] | None:
    path: list[str] = []
    for k, layer in enumerate(unit.layers):
        sub = layer_shortcut(layer, f"layers.{k}")
        if sub is None:
            return None
        path += sub
    return path


def make_shortcut_builder(gm: fx.GraphModule):
    def build(graph: fx.Graph, node: fx.Node, x: fx.Node) -> fx.Node:
        # a unit without a shortcut path reaches here only when its shape is unchanged (the
        # resolver rejects the others), so dropping it leaves its input
        for rel in unit_shortcut(gm.get_submodule(node.target)) or []:
            x = graph.call_module(f"{node.target}.{rel}", (x,))
        return x

    return build


# --------------------------------------------------------------------------- loading


def locate(path: str | Path) -> tuple[Path, Path | None]:
    """The Unet's directory and its scheduler config (None when there is none)."""
    root = Path(path)
    if not root.is_dir():
        raise ModelUnavailable(
            f"no directory {root}: model diffusers takes a directory saved with save_pretrained "
            f"(a pipeline's, with unet/ inside, or a Unet's own)"
        )
    unet_dir = root / "unet" if (root / "unet" / "config.json").is_file() else root
    if not (unet_dir / "config.json").is_file():
        raise ModelUnavailable(f"no Unet config.json in {root} or {root / 'unet'}")
    for cand in (
        root / "scheduler" / "scheduler_config.json",
        root / "scheduler_config.json",
        unet_dir.parent / "scheduler" / "scheduler_config.json",
    ):
        if cand.is_file():
            return unet_dir, cand
    return unet_dir, None


def diffusion_spec(
    scheduler: dict[str, Any], out_channels: int, in_channels: int, where: str
) -> DiffusionSpec:
    """The noise schedule of a DDPM/DDIM scheduler config, as ablang's ``DiffusionSpec``."""
    steps = int(scheduler.get("num_train_timesteps", 1000))
    name = scheduler.get("beta_schedule", "linear")
    if scheduler.get("trained_betas") is not None or name not in SCHEDULES:
        raise ModelUnavailable(
            f"{where}: beta_schedule {name!r} is not supported; ablang knows linear and "
            f"squaredcos_cap_v2 (cosine)"
        )
    if name == "linear":
        expect = linear_betas(steps)
        lo, hi = float(scheduler.get("beta_start", 0.0001)), float(scheduler.get("beta_end", 0.02))
        if abs(lo - expect[0]) > 1e-9 or abs(hi - expect[-1]) > 1e-9:
            raise ModelUnavailable(
                f"{where}: a linear schedule from {lo:g} to {hi:g} over {steps} steps is not the "
                f"standard one ({expect[0]:g} to {expect[-1]:g}) that ablang implements"
            )
    prediction = scheduler.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise ModelUnavailable(
            f"{where}: prediction_type {prediction!r}: ablang's sampler takes epsilon"
        )
    variance = scheduler.get("variance_type", "fixed_small")
    learn_sigma = variance == "learned_range"
    if variance == "learned":
        raise ModelUnavailable(
            f"{where}: variance_type 'learned' is not supported (learned_range is)"
        )
    if learn_sigma and out_channels != 2 * in_channels:
        raise ModelUnavailable(
            f"{where}: learned_range variance needs {2 * in_channels} output channels"
        )
    return DiffusionSpec(steps, SCHEDULES[name], learn_sigma)


def weight_files(unet_dir: Path) -> list[Path]:
    files = sorted(unet_dir.glob("diffusion_pytorch_model*.safetensors"))
    return files or sorted(unet_dir.glob("diffusion_pytorch_model*.bin"))


def load_diffusers_unet(unet_dir: Path) -> nn.Module:
    try:
        import diffusers
    except ImportError as e:
        raise ModelUnavailable(
            f"model diffusers needs the diffusers package: {INSTALL_HINT}"
        ) from e
    config = json.loads((unet_dir / "config.json").read_text())
    name = config.get("_class_name")
    if name not in ("UNet2DModel", "UNet2DConditionModel"):
        raise ModelUnavailable(
            f"{unet_dir / 'config.json'} describes a {name}; "
            "ablang handles UNet2DModel and UNet2DConditionModel"
        )
    model = getattr(diffusers, name).from_pretrained(str(unet_dir), low_cpu_mem_usage=False)
    return model.float().eval().requires_grad_(False)


def _size(sample_size: Any) -> int:
    if isinstance(sample_size, (list, tuple)):
        if len(set(sample_size)) != 1:
            raise ModelUnavailable(f"non-square sample_size {tuple(sample_size)} is not supported")
        return int(sample_size[0])
    return int(sample_size)


def trace_diffusers(
    model: nn.Module, *, label: str, num_timesteps: int = 1000, context_length: int = 77
) -> TracedUnet:
    """Wrap, trace and mark a diffusers Unet; read its component table off the graph.

    ``context_length`` is the number of tokens of the example ``encoder_hidden_states`` the table
    is measured with (77, CLIP's, as Stable Diffusion uses).
    """
    cfg = model.config
    wrapper = DiffusersUnet(model).eval()
    size = _size(cfg.sample_size)
    example: list[torch.Tensor] = [
        torch.zeros(1, int(cfg.in_channels), size, size),
        torch.zeros(1, dtype=torch.long),
    ]
    inputs = ["x", "timesteps"]
    concrete: dict[str, Any] = {}
    if wrapper.conditional:
        dim = cfg.get("encoder_hid_dim") or cfg.cross_attention_dim
        dim = dim[0] if isinstance(dim, (list, tuple)) else dim
        example.append(torch.zeros(1, context_length, int(dim)))
        inputs.append("encoder_hidden_states")
    else:
        concrete["encoder_hidden_states"] = None
    if wrapper.class_embedding is not None:
        example.append(torch.zeros(1, dtype=torch.long))
        inputs.append("class_labels")
    else:
        concrete["class_labels"] = None

    # inputs fixed to None disappear from the traced signature, so it is ``inputs`` in order
    gm = trace(wrapper, is_leaf, concrete_args=concrete or None)
    mark_components(gm, block_names(wrapper))
    labels = {f"enc.{i}": u.label() for i, u in enumerate(wrapper.enc)}
    labels.update({f"dec.{j}": u.label() for j, u in enumerate(wrapper.dec)})
    labels["mid"] = "mid_block"

    def droppable(node: fx.Node, inp: tuple, out: tuple) -> tuple[bool, str]:
        unit = gm.get_submodule(node.target)
        if unit_shortcut(unit) is None and inp != out:
            return False, f"{unit.label()} changes the shape and has no shortcut path"
        return True, ""

    table = component_table(
        gm,
        tuple(example),
        model_label=label,
        image_size=size,
        num_timesteps=num_timesteps,
        prompt_kind="text"
        if wrapper.conditional
        else "class"
        if wrapper.class_embedding is not None
        else "none",
        droppable=droppable,
        module_label=lambda target: labels.get(target, target),
    )
    return TracedUnet(
        gm=gm,
        table=table,
        shortcut=make_shortcut_builder(gm),
        inputs=tuple(inputs),
        meta={"wrapper": wrapper, "model": model},
    )


def checksum_files(root: Path, unet_dir: Path, sched_path: Path | None, sd: bool) -> list[Path]:
    """What a run's checksum covers: the Unet's weights, the scheduler config (it drives
    sampling), and for Stable Diffusion the VAE's and text encoder's weights and the tokenizer."""
    files = weight_files(unet_dir)
    if sd:
        files += weight_files(root / "vae")
        enc = root / "text_encoder"
        files += sorted(enc.glob("model*.safetensors")) or sorted(enc.glob("pytorch_model*.bin"))
        files += sorted(p for p in (root / "tokenizer").iterdir() if p.is_file())
    return files + ([sched_path] if sched_path is not None else [])


class DiffusersAdapter(ModelAdapter):
    def load(self, device: torch.device) -> LoadedModel:
        from ablang.models import diffusers_sched, sd

        root = Path(self.spec.path or "")
        unet_dir, sched_path = locate(root)
        model = load_diffusers_unet(unet_dir)
        cfg = model.config
        c_in, c_out = int(cfg.in_channels), int(cfg.out_channels)
        sched_cfg = json.loads(sched_path.read_text()) if sched_path is not None else {}
        try:
            if sched_path is None:  # diffusers' defaults; 2 x C output channels: learned sigma
                diffusion = DiffusionSpec(1000, "linear", learn_sigma=c_out == 2 * c_in)
            else:
                diffusion = diffusion_spec(sched_cfg, c_out, c_in, str(sched_path))
        except ModelUnavailable:
            # the scheduler samples (scaled_linear, v-prediction, ...): ablang needs only T here
            diffusion = DiffusionSpec(int(sched_cfg.get("num_train_timesteps", 1000)), "linear")
        label = self.spec.label()
        traced = trace_diffusers(model, label=label, num_timesteps=diffusion.num_timesteps)
        own = sched_cfg.get("_class_name", "DDPMScheduler")
        traced.table = dataclasses.replace(
            traced.table, scheduler=own, schedulers=tuple(diffusers_sched.scheduler_names(own))
        )
        wrapper: DiffusersUnet = traced.meta["wrapper"]
        wrapper.to(device)
        size = _size(cfg.sample_size)
        kind = traced.table.prompt_kind
        num_classes = int(cfg.get("num_class_embeds") or 0)
        is_sd = sd.is_sd_pipeline(root)
        text = sd.load_text_to_image(root, device) if is_sd and kind == "text" else None

        def make_cond(prompts: list[str], dev: torch.device):
            if kind == "none":
                return {}, None
            if kind == "class":
                from ablang.models.adm import class_labels

                return {"class_labels": class_labels(prompts, num_classes).to(dev)}, None
            if text is not None:
                return text.conditioning(prompts, dev)
            raise ModelUnavailable(
                f"{label} is conditioned on encoder_hidden_states and is not a Stable Diffusion "
                f"pipeline directory (model_index.json with a text encoder), so ablang cannot "
                f"turn text prompts into them (inspect and tracing work)"
            )

        def trajectory(name: str, steps: int, eta: float, seeds: tuple[int, ...]):
            if sched_path is not None:
                scheduler = diffusers_sched.load_scheduler(
                    root, None if name == "pipeline" else name
                )
            else:  # a bare Unet directory: diffusers' defaults, as DDPMPipeline() would have
                import diffusers

                scheduler = getattr(diffusers, "DDPMScheduler" if name == "pipeline" else name)()
            sampler = diffusers_sched.DiffusersSampler(scheduler, steps, eta=eta)
            return diffusers_sched.SchedulerTrajectory(sampler, seeds, (c_in, size, size))

        if kind == "class":
            from ablang.models.adm import default_classes

            prompts = default_classes(num_classes)
        else:
            prompts = (
                ("unconditional",)
                if kind == "none"
                else ("a photograph of an astronaut riding a horse",)
            )
        return LoadedModel(
            label=label,
            unet=wrapper,
            traced=traced,
            diffusion=diffusion,
            image_shape=(c_in, size, size),
            checksum=sha256_file(*checksum_files(root, unet_dir, sched_path, is_sd)),
            default_guidance=7.5 if text is not None else 1.0,
            default_prompts=prompts,
            make_cond=make_cond,
            decode=text.decode if text is not None else None,
            trajectory=trajectory,
            emit={
                "diffusers": {
                    "root": str(root),
                    "unet_class": type(model).__name__,
                    "sd": text is not None,
                    "prompt_kind": kind,
                    "checksum_files": [
                        str(p.relative_to(root)) if p.is_relative_to(root) else str(p)
                        for p in checksum_files(root, unet_dir, sched_path, is_sd)
                    ],
                },
            },
        )
