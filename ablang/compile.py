"""compile: a variant and the sampler's steps -> segments, and programs (rewritten fx graphs).

A variant's trajectory splits into *segments*: runs of steps in which the set of active rules is
constant. A *rule* is one intervention as it acts at a step: ``cache`` becomes ``compute`` (run
the component and keep its value) or ``reuse`` (take the kept value) depending on the step.

For each distinct rule set one *program* is built from the traced Unet, in one of two modes with
one semantics:

- **measure**: every rule takes a boolean mask over the batch (``mask_<n>``, ``[N]``), so variants
  with different rules can share one batched forward; nothing is removed from the graph.
- **accelerate**: the rules apply to the whole batch and dead code is eliminated, so computation
  that only fed a dropped, zeroed or reused value is really not executed.

Each op is one rewrite function, registered in ``REWRITES``; ``build_program`` applies them in the
order the rules are sorted. Programs are cached per rule set (``ProgramCache``).

A rule acts on one or both halves of classifier-free guidance (``Rule.side``). Programs know
nothing of sides: ``halves(rules)`` gives the side-free rule set of each half, and a step whose
halves differ is *split*: its conditional and unconditional halves run as two programs (in
measure mode, one program whose masks select rows per chunk and half).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import torch
from torch import fx

from ablang import runtime
from ablang.diffusion import Step
from ablang.plan import GUIDANCE, Intervention, Side, Variant
from ablang.trace import TracedUnet

Mode = Literal["measure", "accelerate"]


@dataclass(frozen=True, order=True)
class Rule:
    """One intervention as it acts at one step. ``phase`` is set for cache only."""

    component: str
    op: str
    factor: float | None = None
    phase: Literal["compute", "reuse"] | None = None
    side: Side = "both"
    extrapolate: bool = False  # a reuse step of `cache ... extrapolated`

    def label(self) -> str:
        extra = f" by {self.factor:g}" if self.factor is not None else ""
        extra += (
            f" ({self.phase}{', extrapolated' if self.extrapolate else ''})" if self.phase else ""
        )
        extra += f" on {self.side}" if self.side != "both" else ""
        return f"{self.op} {self.component}{extra}"

    def on(self, side: Side) -> Rule:
        return Rule(self.component, self.op, self.factor, self.phase, side, self.extrapolate)


RuleSet = frozenset[Rule]
HALVES: tuple[Side, Side] = ("cond", "uncond")  # the batch of guidance by doubling: [cond; uncond]

# Rules on GUIDANCE (`drop guidance`, `cache guidance`) act on the sampler's combination of the
# two halves, not on the Unet: programs never see them (``half`` leaves them out); the executor,
# the emitted runtime and the FLOP count read them through ``guidance_of``.


def half(rules: RuleSet, side: Side) -> RuleSet:
    """The side-free Unet rules acting on one half ("cond" or "uncond") of a guided batch."""
    return frozenset(
        r.on("both") for r in rules if r.side in ("both", side) and r.component != GUIDANCE
    )


def guidance_of(rules: RuleSet) -> int:
    """What guidance does at a step with ``rules``, as ``runtime.GUIDED`` (both halves run),
    ``runtime.KEEP`` (a compute step of ``cache guidance``: both run and the guidance term is
    kept), ``runtime.REUSE`` / ``runtime.EXTRAPOLATE`` (a reuse step: only the conditional half
    runs, plus the kept term) or ``runtime.UNGUIDED`` (``drop guidance``: the conditional half
    alone)."""
    for r in rules:
        if r.component != GUIDANCE:
            continue
        if r.op == "drop":
            return runtime.UNGUIDED
        if r.phase == "reuse":
            return runtime.EXTRAPOLATE if r.extrapolate else runtime.REUSE
        return runtime.KEEP
    return runtime.GUIDED


def halves(rules: RuleSet) -> tuple[RuleSet, RuleSet]:
    """``(conditional half's rules, unconditional half's rules)``, sides stripped."""
    return half(rules, "cond"), half(rules, "uncond")


def is_split(rules: RuleSet) -> bool:
    """Whether the two halves of guidance run different programs at this step."""
    cond, uncond = halves(rules)
    return cond != uncond


@dataclass(frozen=True)
class Segment:
    """Steps ``start <= index < stop`` share the rule set ``rules``."""

    start: int
    stop: int
    rules: RuleSet


@dataclass(frozen=True)
class Schedule:
    """What a variant does at every step of the trajectory."""

    variant: str
    per_step: tuple[RuleSet, ...]  # indexed by step index (0 = first, noisiest)

    @property
    def segments(self) -> tuple[Segment, ...]:
        out: list[Segment] = []
        for k, rules in enumerate(self.per_step):
            if out and out[-1].rules == rules:
                out[-1] = Segment(out[-1].start, k + 1, rules)
            else:
                out.append(Segment(k, k + 1, rules))
        return tuple(out)

    @property
    def one_sided(self) -> bool:
        """Whether any rule acts on one half of guidance only (the run must be guided)."""
        return any(r.side != "both" for rules in self.per_step for r in rules)

    @property
    def needs_guidance(self) -> bool:
        """Whether the run must be guided: a rule acts on one half of guidance only, or on
        guidance itself (`drop guidance`, `cache guidance`)."""
        return self.one_sided or any(
            r.component == GUIDANCE for rules in self.per_step for r in rules
        )

    @property
    def first_active(self) -> int:
        """Index of the first step with any rule; ``len(per_step)`` when there is none. Before
        it, the variant's trajectory is the baseline's."""
        for k, rules in enumerate(self.per_step):
            if rules:
                return k
        return len(self.per_step)


def schedule(variant: Variant, steps: list[Step]) -> Schedule:
    """Rules active at each step. A cache computes at the first step of its window and then as
    its schedule says (``computes``), and reuses the last computed value at every other step."""
    per_step: list[set[Rule]] = [set() for _ in steps]
    for iv in variant.interventions:
        inside = [s for s in steps if iv.window.contains(s.t, s.index)]
        compute = computes(iv, inside) if iv.op == "cache" else set()
        for step in inside:
            per_step[step.index].add(_rule(iv, step.index in compute))
    _catch_up(per_step)
    return Schedule(variant.name, tuple(frozenset(s) for s in per_step))


def _catch_up(per_step: list[set[Rule]]) -> None:
    """Where `drop guidance` or a reuse of `cache guidance` idles the unconditional half at a
    step where one of its caches would compute, that half computes it instead at the next step
    it runs (it would otherwise reuse a value it never computed, or a stale one); the
    conditional half keeps its own schedule."""
    missed: set[str] = set()
    for rules in per_step:
        unet = [r for r in rules if r.component != GUIDANCE and r.side in ("both", "uncond")]
        if not runtime.both_halves(guidance_of(frozenset(rules))):
            missed |= {r.component for r in unet if r.phase == "compute"}
            continue
        for r in unet:
            if r.phase == "reuse" and r.component in missed:
                rules.discard(r)
                if r.side == "both":
                    rules.add(r.on("cond"))
                rules.add(Rule(r.component, "cache", phase="compute", side="uncond"))
        missed -= {r.component for r in rules if r.phase == "compute" and r.side != "cond"}


def computes(iv: Intervention, inside: list[Step]) -> set[int]:
    """The step indices at which ``cache`` computes, of the steps ``inside`` its window (in
    visiting order, noisiest first).

    ``every N``: every N-th step of the window. ``every N growing by G``: the intervals between
    computes are N, N+G, N+2G, ...: dense at the window's start (the noisy steps, where the
    image's composition forms and features change fastest), sparse towards its end.
    ``at step A, B``: those steps; ``at t A, B``: for each t, the first step at or below it.
    The window's first step always computes: a cache has nothing to reuse before it.
    """
    if not inside:
        return set()
    out = {inside[0].index}
    if iv.at is not None:
        for v in iv.at:
            if iv.at_kind == "step":
                out |= {s.index for s in inside if s.index == v}
            else:
                below = [s.index for s in inside if s.t <= v]
                out |= set(below[:1])
        return out
    assert iv.every, "cache needs `every N` or `at ...`"
    k, gap = 0, iv.every
    while k < len(inside):
        out.add(inside[k].index)
        k += gap
        gap += iv.grow or 0
    return out


def _rule(iv: Intervention, compute: bool) -> Rule:
    if iv.op == "cache" and compute:
        return Rule(iv.component, "cache", phase="compute", side=iv.side)
    if iv.op == "cache":  # the program is a plain reuse's; the executor extrapolates its input
        return Rule(iv.component, "cache", phase="reuse", side=iv.side, extrapolate=iv.extrapolate)
    if iv.op == "scale":
        return Rule(iv.component, "scale", factor=float(iv.factor), side=iv.side)  # type: ignore[arg-type]
    return Rule(iv.component, iv.op, side=iv.side)


# --------------------------------------------------------------------------- graph rewrites


@dataclass
class Site:
    """Where a component's value lives in a graph being rewritten.

    For a block: ``node`` is the block's call_module node, its value is the node itself. For a
    skip: the value is ``cat.args[0][pos]``, and only that use of it is rewritten (the encoder
    block's output also feeds the next encoder block).
    """

    component: str
    node: fx.Node  # block node, or the cat node for a skip
    pos: int | None = None  # skip: position in the cat's list
    original: fx.Node | None = None  # the value before any rewrite (it carries the shape)

    @property
    def value(self) -> fx.Node:
        return self.node if self.pos is None else self.node.args[0][self.pos]

    def consumers(self) -> list[fx.Node]:
        """The nodes that read the component's value, captured before a rewrite adds its own."""
        return list(self.node.users) if self.pos is None else [self.node]

    def replace(self, new: fx.Node, consumers: list[fx.Node]) -> None:
        """Make ``consumers`` read ``new`` instead of the component's value."""
        if self.pos is None:
            for user in consumers:
                user.replace_input_with(self.node, new)
        else:
            parts = list(self.node.args[0])
            parts[self.pos] = new
            self.node.args = (parts, *self.node.args[1:])


@dataclass
class RewriteContext:
    graph: fx.Graph
    traced: TracedUnet
    x: fx.Node  # the Unet's image input, for the batch size of generated zeros
    masked: bool
    cache_outputs: dict[str, fx.Node]
    cache_inputs: list[str]
    mask_inputs: list[str]

    def placeholder(self, name: str) -> fx.Node:
        first = next(n for n in self.graph.nodes if n.op != "placeholder")
        with self.graph.inserting_before(first):
            return self.graph.placeholder(name)


def _after(graph: fx.Graph, node: fx.Node):
    """Insert new nodes after ``node``, in the order they are created (``inserting_after`` would
    put each one directly after ``node``, reversing them)."""
    return graph.inserting_before(node.next)


def cache_input_name(component: str) -> str:
    """The program input that carries a reused value: ``dec[3]`` -> ``cache_dec_3``."""
    return "cache_" + component.replace("[", "_").replace("]", "")


def _zeros_like(ctx: RewriteContext, value: fx.Node) -> fx.Node:
    """Zeros of ``value``'s shape without computing ``value`` (so that it can become dead)."""
    meta = value.meta["tensor_meta"]
    n = ctx.graph.call_method("size", (ctx.x, 0))
    return ctx.graph.call_method("new_zeros", (ctx.x, (n, *meta.shape[1:])), {"dtype": meta.dtype})


def _apply(ctx: RewriteContext, site: Site, new: fx.Node, consumers: list[fx.Node]) -> None:
    """Route ``consumers`` to ``new``; in measure mode only for the batch elements of the mask."""
    if ctx.masked:
        name = f"mask_{len(ctx.mask_inputs)}"
        ctx.mask_inputs.append(name)
        mask = ctx.placeholder(name)
        old = site.value
        order = {n: k for k, n in enumerate(ctx.graph.nodes)}
        with _after(ctx.graph, max(new, old, key=order.__getitem__)):
            shaped = ctx.graph.call_method("view", (mask, -1, 1, 1, 1))
            new = ctx.graph.call_function(torch.where, (shaped, new, old))
    site.replace(new, consumers)


def rewrite_drop(ctx: RewriteContext, site: Site, rule: Rule) -> None:
    """``drop enc[3]``: the block's output becomes its shortcut path of its input (identity where
    the shape is unchanged); ``drop skip[3]``: the decoder receives zeros in its channels."""
    if site.pos is not None:
        rewrite_zero(ctx, site, rule)
        return
    consumers = site.consumers()
    with _after(ctx.graph, site.node):
        new = ctx.traced.shortcut(ctx.graph, site.node, site.node.args[0])
    _apply(ctx, site, new, consumers)


def rewrite_zero(ctx: RewriteContext, site: Site, rule: Rule) -> None:
    """``zero C``: C's output is replaced by zeros of the same shape."""
    consumers = site.consumers()
    with _after(ctx.graph, site.value if site.pos is None else site.node.prev):
        new = _zeros_like(ctx, site.original or site.value)
    _apply(ctx, site, new, consumers)


def rewrite_scale(ctx: RewriteContext, site: Site, rule: Rule) -> None:
    """``scale C by F``: C's output times F."""
    consumers = site.consumers()
    with _after(ctx.graph, site.value if site.pos is None else site.node.prev):
        new = ctx.graph.call_function(operator.mul, (site.value, rule.factor))
    _apply(ctx, site, new, consumers)


def rewrite_cache(ctx: RewriteContext, site: Site, rule: Rule) -> None:
    """``cache C``: a compute step also returns C's value; a reuse step takes it as an input
    (``cache_<C>``), so everything that only fed C is dead there."""
    if rule.phase == "compute":
        ctx.cache_outputs[rule.component] = site.value
        return
    consumers = site.consumers()
    ctx.cache_inputs.append(rule.component)
    cached = ctx.placeholder(cache_input_name(rule.component))
    if ctx.masked:  # other batch elements may be at a compute step of the same cache
        ctx.cache_outputs[rule.component] = site.value
    _apply(ctx, site, cached, consumers)


REWRITES: dict[str, Callable[[RewriteContext, Site, Rule], None]] = {
    "drop": rewrite_drop,
    "zero": rewrite_zero,
    "scale": rewrite_scale,
    "cache": rewrite_cache,
}


# --------------------------------------------------------------------------- programs


@dataclass
class Program:
    """A rewritten Unet for one rule set.

    ``gm(x, timesteps, *cond, *cache inputs, *masks)`` returns ``(out, (cached values...))``;
    ``cache_outputs`` names those values, ``cache_inputs`` and ``mask_rules`` name the extra
    inputs in order.
    """

    gm: fx.GraphModule
    rules: tuple[Rule, ...]
    mode: Mode
    inputs: tuple[str, ...]
    cache_inputs: tuple[str, ...]
    cache_outputs: tuple[str, ...]
    mask_rules: tuple[Rule, ...]  # measure mode: the rule each mask input belongs to

    def __call__(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: dict[str, Any],
        cache: dict[str, torch.Tensor] | None = None,
        masks: dict[Rule, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        kwargs = dict(cond)
        kwargs[self.inputs[0]], kwargs[self.inputs[1]] = x, t
        for comp in self.cache_inputs:
            kwargs[cache_input_name(comp)] = cache[comp]  # type: ignore[index]
        for k, rule in enumerate(self.mask_rules):
            kwargs[f"mask_{k}"] = masks[rule]  # type: ignore[index]
        out, kept = self.gm(**kwargs)
        return out, dict(zip(self.cache_outputs, kept))

    @cached_property
    def extrapolated(self) -> tuple[str, ...]:
        """The cache inputs whose reuse extrapolates (``cache ... extrapolated``)."""
        return tuple(r.component for r in self.rules if r.extrapolate)

    def count_modules(self) -> int:
        """call_module nodes left in the graph (what DCE removed is gone from this count)."""
        return sum(1 for n in self.gm.graph.nodes if n.op == "call_module")


def _sites(gm: fx.GraphModule) -> dict[str, Site]:
    sites: dict[str, Site] = {}
    for node in gm.graph.nodes:
        if "ablang" in node.meta:
            sites[node.meta["ablang"]] = Site(node.meta["ablang"], node, None, node)
        for skip, pos in node.meta.get("ablang_skips", {}).items():
            sites[skip] = Site(skip, node, pos, node.args[0][pos])
    return sites


def build_program(traced: TracedUnet, rules: RuleSet, mode: Mode) -> Program:
    """Copy the traced graph, apply every rule's rewrite, and (accelerate) remove dead code."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    out_val = graph.graph_copy(traced.gm.graph, env)
    for old, new in env.items():  # graph_copy keeps meta; be explicit for the marks we rely on
        new.meta.update(old.meta)
    gm_tmp = fx.GraphModule(traced.gm, graph)
    sites = _sites(gm_tmp)
    x = next(n for n in graph.nodes if n.op == "placeholder" and n.name == traced.inputs[0])
    ctx = RewriteContext(graph, traced, x, mode == "measure", {}, [], [])
    ordered = tuple(sorted(rules))
    mask_rules: list[Rule] = []
    for rule in ordered:
        before = len(ctx.mask_inputs)
        REWRITES[rule.op](ctx, sites[rule.component], rule)
        mask_rules += [rule] * (len(ctx.mask_inputs) - before)
    cache_names = tuple(ctx.cache_outputs)
    graph.output((out_val, tuple(ctx.cache_outputs[c] for c in cache_names)))
    if mode == "accelerate":
        graph.eliminate_dead_code()
    graph.lint()
    gm = fx.GraphModule(traced.gm, graph, "Program")
    return Program(
        gm=gm,
        rules=ordered,
        mode=mode,
        inputs=traced.inputs,
        cache_inputs=tuple(ctx.cache_inputs),
        cache_outputs=cache_names,
        mask_rules=tuple(mask_rules),
    )


class ProgramCache:
    """Programs are built once per (rule set, mode) and shared by every variant and run."""

    def __init__(self, traced: TracedUnet) -> None:
        self.traced = traced
        self._programs: dict[tuple[RuleSet, Mode], Program] = {}

    def get(self, rules: RuleSet, mode: Mode) -> Program:
        """The program of side-free ``rules`` (a split step asks once per half: ``halves``)."""
        assert all(r.side == "both" for r in rules), "programs are built per half"
        key = (rules, mode)
        if key not in self._programs:
            self._programs[key] = build_program(self.traced, rules, mode)
        return self._programs[key]

    def __len__(self) -> int:
        return len(self._programs)


def value_shape(traced: TracedUnet, component: str) -> tuple[int, ...]:
    """Shape of one image's value of ``component`` (``(1, C, H, W)``), from the traced graph."""
    site = _sites(traced.gm)[component]
    return (1, *site.value.meta["tensor_meta"].shape[1:])
