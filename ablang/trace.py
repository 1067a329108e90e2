"""Tracing a Unet with torch.fx, and reading its component table off the graph.

A model adapter traces its Unet into a flat ``GraphModule`` in which every component is visible:

- each encoder / middle / decoder block is one ``call_module`` node (the block is a leaf), marked
  ``node.meta["ablang"] = "enc[3]"``;
- each skip connection is an argument of a ``torch.cat`` node that feeds a decoder block; the cat
  node carries ``node.meta["ablang_skips"] = {"skip[3]": position in the cat's list}``.

From those marks ``component_table`` computes names, levels, resolutions, channels, parameters and
FLOP shares, so nothing about a model's size is hard-coded. The traced module shares parameters
with the eager model and is never used to modify it.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils.flop_counter import FlopCounterMode

from ablang.components import Component, ComponentTable

# (graph, block node, input value node) -> node computing the block's shortcut path, or None
ShortcutBuilder = Callable[[fx.Graph, fx.Node, fx.Node], "fx.Node | None"]


@dataclass
class TracedUnet:
    """A traced Unet with its components marked; see the module docstring for the marks.

    ``inputs`` are the placeholder names in call order (``x`` and ``timesteps`` first, then the
    conditioning). ``shortcut`` builds a block's shortcut path (what ``drop`` leaves when the
    block changes shape); ``droppable`` says for which blocks one exists.
    """

    gm: fx.GraphModule
    table: ComponentTable
    shortcut: ShortcutBuilder
    inputs: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def block_node(self, gm: fx.GraphModule, name: str) -> fx.Node:
        for node in gm.graph.nodes:
            if node.meta.get("ablang") == name:
                return node
        raise KeyError(name)

    def skip_site(self, gm: fx.GraphModule, name: str) -> tuple[fx.Node, int]:
        """The cat node that concatenates skip ``name`` and the skip's position in its list."""
        for node in gm.graph.nodes:
            pos = node.meta.get("ablang_skips", {}).get(name)
            if pos is not None:
                return node, pos
        raise KeyError(name)


class LeafTracer(fx.Tracer):
    """An fx tracer that keeps the modules ``is_block(qualified_name)`` selects as leaves.

    Models assert on input shapes at the top of ``forward`` (guided-diffusion's class-conditional
    ``assert y.shape == (x.shape[0],)``); a symbolic value cannot answer such a check, so the
    tracer answers it with True rather than having the model edited.
    """

    def __init__(
        self, is_block: Callable[[str], bool], extra_leaves: tuple[type, ...] = ()
    ) -> None:
        super().__init__()
        self.is_block = is_block
        self.extra_leaves = extra_leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if self.is_block(qualname) or isinstance(m, self.extra_leaves):
            return True
        return super().is_leaf_module(m, qualname)

    def to_bool(self, obj: fx.Proxy) -> bool:
        return True


def trace(
    model: nn.Module,
    is_block: Callable[[str], bool],
    concrete_args: dict[str, Any] | None = None,
    extra_leaves: tuple[type, ...] = (),
) -> fx.GraphModule:
    tracer = LeafTracer(is_block, extra_leaves)
    # fx stores the tensors it captures as constants on the root it traces; a shallow copy
    # takes them, so the user's model object is left exactly as it was (parameters are shared)
    graph = tracer.trace(copy.copy(model), concrete_args=concrete_args)
    if concrete_args:
        _drop_specialised_inputs(graph)
    for node in graph.nodes:
        # every remaining input is required: a rewrite appends inputs (``cache_enc_3``), which
        # may not follow one with a default (``y=None`` in guided-diffusion's signature)
        if node.op == "placeholder":
            node.args = ()
    gm = fx.GraphModule(tracer.root, graph, model.__class__.__name__ + "Traced")
    return gm


def _drop_specialised_inputs(graph: fx.Graph) -> None:
    """Remove the inputs that ``concrete_args`` fixed to None (``y`` of an unconditional model).

    fx keeps them as placeholders with a default and an ``_assert_is_none`` check, so callers
    would see an input that must not be given.
    """
    is_none_check = getattr(fx._symbolic_trace, "_assert_is_none", None)
    for node in list(graph.nodes):
        if node.op != "placeholder" or node.args != (None,):
            continue
        users = list(node.users)
        checks_only = all(
            u.op == "call_function" and u.target is is_none_check and not u.users for u in users
        )
        if checks_only:
            for u in users:
                graph.erase_node(u)
            graph.erase_node(node)


def mark_components(gm: fx.GraphModule, block_names: dict[str, str]) -> None:
    """Mark block nodes (``block_names``: module target -> "enc[3]"/"mid"/"dec[0]") and the skips.

    A skip is any encoder block's output that reaches a ``torch.cat`` whose result feeds a decoder
    block; it is named after the encoder block it carries: ``enc[i]`` -> ``skip[i]``.
    """
    enc_of: dict[fx.Node, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target in block_names:
            node.meta["ablang"] = block_names[node.target]
            m = re.fullmatch(r"enc\[(\d+)\]", block_names[node.target])
            if m:
                enc_of[node] = int(m.group(1))
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is torch.cat:
            parts = node.args[0]
            skips = {f"skip[{enc_of[p]}]": k for k, p in enumerate(parts) if k > 0 and p in enc_of}
            if skips:
                node.meta["ablang_skips"] = skips


def _flops_per_node(gm: fx.GraphModule, example: tuple) -> dict[str, float]:
    """FLOPs of each node of one forward, counted by torch's flop counter."""
    counts: dict[str, float] = {}

    class Counter(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            with FlopCounterMode(display=False) as fc:
                out = super().run_node(n)
            counts[n.name] = float(fc.get_total_flops())
            return out

    with torch.no_grad():
        Counter(gm).run(*example)
    return counts


def program_flops(gm: fx.GraphModule, example: tuple, kwargs: dict | None = None) -> float:
    """Total FLOPs of one call of ``gm`` on ``example``."""
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        gm(*example, **(kwargs or {}))
    return float(fc.get_total_flops())


def component_table(
    traced_gm: fx.GraphModule,
    example: tuple,
    *,
    model_label: str,
    image_size: int,
    num_timesteps: int,
    prompt_kind: str,
    droppable: Callable[[fx.Node, tuple, tuple], tuple[bool, str]],
    module_label: Callable[[str], str] = lambda target: target,
) -> ComponentTable:
    """Read the component table off a marked graph by running it once on ``example``.

    ``droppable(node, in_shape, out_shape)`` decides, per block, whether ``drop`` has a meaning
    (and why not).
    """
    ShapeProp(traced_gm).propagate(*example)
    flops = _flops_per_node(traced_gm, example)
    total = sum(flops.values()) or 1.0
    root = traced_gm
    comps: list[Component] = []
    dec_of_cat: dict[fx.Node, str] = {}
    for node in traced_gm.graph.nodes:
        for user in node.users:
            if node.meta.get("ablang_skips") and user.meta.get("ablang", "").startswith("dec"):
                dec_of_cat[node] = user.meta["ablang"]

    def level_of(res: int) -> int:
        return max(0, round(math.log2(image_size / res)))

    for node in traced_gm.graph.nodes:
        name = node.meta.get("ablang")
        if name:
            out = node.meta["tensor_meta"].shape
            inp = node.args[0].meta["tensor_meta"].shape
            mod = root.get_submodule(node.target)
            ok, note = droppable(node, tuple(inp), tuple(out))
            kind, idx = _split_name(name)
            # a block sits at the level of the skip it makes (enc) or takes (dec), so that
            # enc[i], skip[i] and the decoder block that concatenates it share one level
            res = int(inp[-1] if kind == "dec" else out[-1])
            comps.append(
                Component(
                    kind=kind,
                    index=idx,
                    level=level_of(res),
                    resolution=res,
                    channels=int(out[1]),
                    params=sum(p.numel() for p in mod.parameters()),
                    flops_share=flops.get(node.name, 0.0) / total,
                    droppable=ok,
                    drop_note=note,
                    module=module_label(node.target),
                )
            )
        for skip, pos in node.meta.get("ablang_skips", {}).items():
            src = node.args[0][pos]
            shape = src.meta["tensor_meta"].shape
            kind, idx = _split_name(skip)
            comps.append(
                Component(
                    kind="skip",
                    index=idx,
                    level=level_of(shape[-1]),
                    resolution=int(shape[-1]),
                    channels=int(shape[1]),
                    module=f"{module_label(src.target)} -> cat",
                    feeds=dec_of_cat.get(node),
                )
            )
    order = {"enc": 0, "mid": 1, "dec": 2, "skip": 3}
    comps.sort(key=lambda c: (order[c.kind], c.index or 0))
    return ComponentTable(
        model=model_label,
        components=tuple(comps),
        num_timesteps=num_timesteps,
        prompt_kind=prompt_kind,  # type: ignore[arg-type]
    )


def _split_name(name: str) -> tuple[str, int | None]:
    if name == "mid":
        return "mid", None
    m = re.fullmatch(r"(enc|dec|skip)\[(\d+)\]", name)
    assert m, name
    return m.group(1), int(m.group(2))


def constants_source(gm: fx.GraphModule, model: nn.Module, var: str = "model") -> list[str]:
    """Python lines that give ``model`` the tensors the trace captured as constants.

    A tensor a model builds without its inputs (guided-diffusion's timestep-embedding
    frequencies, ``th.arange(...)``) becomes ``_tensor_constant0`` of the traced module, which
    a freshly built model lacks; an emitted sampler runs the program's code on such a model, so
    it registers them first. The values are written out exactly (float32 -> Python float is
    exact).
    """
    # fx also sets the constants on the traced root as plain attributes, so hasattr would not
    # tell them apart: look at what the model's own state holds
    own = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    lines = []
    for node in gm.graph.nodes:
        if node.op != "get_attr" or node.target in own:
            continue
        if not isinstance(getattr(gm, node.target), torch.Tensor):
            continue
        value = getattr(gm, node.target)
        lines.append(
            f"{var}.register_buffer({node.target!r}, torch.tensor({value.tolist()!r}, "
            f"dtype={value.dtype}), persistent=False)"
        )
    return lines
