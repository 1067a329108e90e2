"""The ADM family: openai's guided-diffusion / improved-diffusion ``UNetModel``, GLIDE's
``Text2ImUNet`` and ablang's built-in model share one module structure, handled here once.

- components: ``input_blocks[i]`` -> ``enc[i]``, ``middle_block`` -> ``mid``, ``output_blocks[i]``
  -> ``dec[i]`` (each a ``TimestepEmbedSequential``, traced as a leaf);
- skips: ``hs.pop()`` -> ``th.cat`` in ``forward``, read off the traced graph;
- a block's shortcut path (what ``drop`` leaves): per layer, a ``ResBlock`` keeps
  ``skip_connection(x_upd(x))``, an ``AttentionBlock`` is an identity (its output is ``x + ...``),
  a parameter-free ``Upsample``/``Downsample`` stays; any other layer (a plain conv, a conv
  resampler) has no shortcut, so the block cannot be dropped (``zero`` it instead).
"""

from __future__ import annotations

import re
from typing import cast

from torch import fx, nn

from ablang.trace import TracedUnet, component_table, mark_components, trace

BLOCK = re.compile(r"(input_blocks\.\d+|middle_block|output_blocks\.\d+)")


def is_block(qualname: str) -> bool:
    return BLOCK.fullmatch(qualname) is not None


def block_names(model: nn.Module) -> dict[str, str]:
    enc, dec = cast(nn.ModuleList, model.input_blocks), cast(nn.ModuleList, model.output_blocks)
    names = {f"input_blocks.{i}": f"enc[{i}]" for i in range(len(enc))}
    names["middle_block"] = "mid"
    names.update({f"output_blocks.{i}": f"dec[{i}]" for i in range(len(dec))})
    return names


def layer_shortcut(layer: nn.Module) -> list[str] | None:
    """Submodule paths (relative to ``layer``) whose composition is the layer's shortcut path;
    ``[]`` is an identity, ``[""]`` the layer itself, ``None`` no shortcut."""
    kind = type(layer).__name__
    if kind == "ResBlock":
        path = ["x_upd"] if getattr(layer, "updown", False) else []
        if not isinstance(layer.skip_connection, nn.Identity):
            path.append("skip_connection")
        return path
    if kind in ("AttentionBlock", "Identity"):
        return []
    if kind in ("Upsample", "Downsample") and not getattr(layer, "use_conv", False):
        return [""]
    return None


def block_shortcut(block: nn.Module) -> list[str] | None:
    """Shortcut of a whole ``TimestepEmbedSequential``, as paths relative to it."""
    path: list[str] = []
    layers = list(block) if isinstance(block, nn.Sequential) else [block]
    for k, layer in enumerate(layers):
        sub = layer_shortcut(layer)
        if sub is None:
            return None
        prefix = str(k) if isinstance(block, nn.Sequential) else ""
        path += [".".join(p for p in (prefix, s) if p) for s in sub]
    return path


def make_shortcut_builder(gm: fx.GraphModule):
    def build(graph: fx.Graph, node: fx.Node, x: fx.Node) -> fx.Node:
        target = str(node.target)  # a block is a call_module node: its target is its path
        path = block_shortcut(gm.get_submodule(target)) or []
        # a block without a shortcut path reaches here only when its shape is unchanged (the
        # resolver rejects the others), so dropping it leaves its input
        for rel in path:
            x = graph.call_module(f"{target}.{rel}" if rel else target, (x,))
        return x

    return build


def trace_adm(
    model: nn.Module,
    example: tuple,
    *,
    label: str,
    image_size: int,
    num_timesteps: int,
    prompt_kind: str,
    inputs: tuple[str, ...],
    concrete_args: dict | None = None,
    extra_leaves: tuple[str, ...] = (),
) -> TracedUnet:
    """Trace an ADM-family Unet with its blocks as leaves, mark the components, read the table.

    ``extra_leaves`` names further submodules to keep whole (not components), such as GLIDE's
    text ``transformer``, whose shape arithmetic a symbolic trace cannot follow.
    """
    gm = trace(model, lambda q: is_block(q) or q in extra_leaves, concrete_args=concrete_args)
    mark_components(gm, block_names(model))

    def droppable(node: fx.Node, inp: tuple, out: tuple) -> tuple[bool, str]:
        block = gm.get_submodule(str(node.target))  # a call_module node
        if block_shortcut(block) is None and inp != out:
            kinds = ", ".join(type(m).__name__ for m in block.children())
            return False, f"{node.target} ({kinds}) changes the shape and has no shortcut path"
        return True, ""

    table = component_table(
        gm,
        example,
        model_label=label,
        image_size=image_size,
        num_timesteps=num_timesteps,
        prompt_kind=prompt_kind,
        droppable=droppable,
    )
    return TracedUnet(gm=gm, table=table, shortcut=make_shortcut_builder(gm), inputs=inputs)
