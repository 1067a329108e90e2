"""accelerate mode: whole trajectories give measure mode's images, and dead code really is gone.

Tolerance. Measure and accelerate mode run the same ops in the same order on the same rows. The
only differences: accelerate mode has removed the nodes that no longer feed the output (dead-code
elimination), and measure mode routes every rewritten value through ``torch.where`` with a mask,
which copies the selected values bit for bit. So with one variant per batch the final images are
*exactly* equal, and the tests below assert ``torch.equal``.

When measure mode batches several variants into one forward (as ``ablang run`` does), the
convolutions run on a larger batch and may take other kernels; those images agree to a few
float32 ULPs instead: at most ``4 * eps(1.0)`` (about 4.8e-7) absolute, the images lying in
[-1, 1]. That is asserted separately. The same holds for an intervention on one side of
guidance: at a step where the halves differ, accelerate mode runs two half-size forwards
(``runtime.guided_halves``) and measure mode one doubled, masked forward.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import make_plan, t_window, variant

from ablang.compile import Rule, schedule
from ablang.diffusion import Diffusion
from ablang.errors import AblangError
from ablang.execute import Executor, make_setup
from ablang.plan import Intervention, Window

STEPS = 8  # t = 999, 856, 714, 571, 428, 285, 142, 0
ULPS = 4 * torch.finfo(torch.float32).eps  # batched measure mode vs accelerate mode
KINDS = {"enc": "enc[3]", "mid": "mid", "dec": "dec[2]", "skip": "skip[4]"}
OPS = ("drop", "zero", "scale", "cache")


def one(op: str, component: str) -> Intervention:
    """``op component for t in 0..800`` (scale by 0.7, cache every 2): active from step 2 on."""
    return Intervention(
        op,
        component,
        t_window(0, 800),
        factor=0.7 if op == "scale" else None,
        every=2 if op == "cache" else None,
    )


def name(op: str, kind: str) -> str:
    return f"{op}_{kind}"


VARIANTS = {
    name(op, kind): variant(name(op, kind), one(op, comp))
    for op in OPS
    for kind, comp in KINDS.items()
}
MIXED = variant(
    "mixed",
    Intervention("cache", "dec[3]", t_window(0, 1000), every=3),
    Intervention("drop", "skip[2]", t_window(0, 500)),
    Intervention("scale", "mid", t_window(500, 1000), factor=0.5),
    Intervention("zero", "enc[6]", Window("step", 5, 8)),
    Intervention("drop", "dec[6]", t_window(0, 300)),
)


def executor(model, kind: str = "ddpm", eta: float = 0.0, samples: int = 1, variants=()):
    plan = make_plan(*variants, steps=STEPS, kind=kind, eta=eta, samples=samples)
    diffusion = Diffusion(model.diffusion, STEPS)
    ex = Executor(model, diffusion, make_setup(plan, model, diffusion), torch.device("cpu"))
    return ex, ex.baseline()


@pytest.fixture(scope="module")
def ddpm(random_model):
    """2 prompts x 1 sample = 2 images (4 rows with guidance), 8 DDPM steps."""
    return executor(random_model, variants=tuple(VARIANTS.values()))


# (executor id, variant, mode) -> (executor, images): tests compare against shared ones. The
# executor is held so that its id cannot be reused by a later executor (a test's own executor is
# freed when the test ends, and CPython may give the next one the same id: stale images).
_IMAGES: dict = {}


def images(ex, base, v, mode):
    key = (id(ex), v, mode)
    if key not in _IMAGES:
        (samples,) = ex.run_batch([v], base, mode)
        _IMAGES[key] = (ex, samples.images)
    return _IMAGES[key][1]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("op", OPS)
def test_accelerate_equals_measure_on_whole_trajectories(ddpm, op, kind):
    ex, base = ddpm
    v = VARIANTS[name(op, kind)]
    fast, masked = images(ex, base, v, "accelerate"), images(ex, base, v, "measure")
    assert torch.equal(fast, masked), (fast - masked).abs().max().item()
    assert (fast - base.xs[-1]).abs().max() > 1e-5  # the variant does change the images


@pytest.mark.parametrize("op", OPS)
def test_batched_measure_agrees_to_a_few_ulps(ddpm, op):
    """The four component kinds of one op in one batched measure forward, as ``ablang run``
    batches variants, against each variant alone in accelerate mode."""
    ex, base = ddpm
    group = [VARIANTS[name(op, kind)] for kind in KINDS]
    assert len({schedule(v, list(ex.setup.steps)).first_active for v in group}) == 1
    for v, batched in zip(group, ex.run_batch(group, base, "measure")):
        fast = images(ex, base, v, "accelerate")
        torch.testing.assert_close(batched.images, fast, rtol=0, atol=ULPS)


@pytest.mark.parametrize(
    "sampler, eta, samples", [("ddpm", 0.0, 2), ("ddim", 0.0, 1), ("ddim", 0.5, 2)]
)
def test_mixed_variant_on_each_sampler(random_model, sampler, eta, samples):
    """All four ops on several kinds at once, t and step windows, 2 or 4 images."""
    ex, base = executor(random_model, sampler, eta, samples, (MIXED,))
    fast, masked = images(ex, base, MIXED, "accelerate"), images(ex, base, MIXED, "measure")
    assert fast.shape == (2 * samples, 1, 32, 32)
    assert torch.equal(fast, masked)
    assert (fast - base.xs[-1]).abs().max() > 1e-5


# --------------------------------------------------------------------------- dead code


def modules(program) -> set[str]:
    return {n.target for n in program.gm.graph.nodes if n.op == "call_module"}


def blocks(*names: str) -> set[str]:
    """``enc[4]`` -> ``input_blocks.4``, ``mid`` -> ``middle_block``, ``dec[0]`` -> ``output_blocks.0``."""
    out = set()
    for n in names:
        kind, _, i = n.partition("[")
        prefix = {"enc": "input_blocks.", "dec": "output_blocks."}.get(kind)
        out.add("middle_block" if kind == "mid" else prefix + i.rstrip("]"))
    return out


def test_dce_removes_what_only_fed_a_reused_or_zeroed_value(ddpm):
    """Per program of a cache variant and of a zero variant, which call_module nodes are left."""
    ex, base = ddpm
    steps = list(ex.setup.steps)
    full = modules(ex.programs.get(frozenset(), "accelerate"))
    assert blocks("enc[0]", "enc[7]", "mid", "dec[7]") <= full

    cache = variant("c", Intervention("cache", "dec[3]", t_window(0, 1000), every=2))
    images(ex, base, cache, "accelerate")
    per_step = schedule(cache, steps).per_step
    compute = ex.programs.get(per_step[0], "accelerate")
    reuse = ex.programs.get(per_step[1], "accelerate")
    assert per_step[1] == {Rule("dec[3]", "cache", phase="reuse")}
    assert modules(compute) == full  # a compute step runs everything and keeps dec[3]
    # a reuse step: dec[3] and all that only fed it (enc[4..7], mid, dec[0..3]) are gone
    assert full - modules(reuse) == blocks(
        "enc[4]", "enc[5]", "enc[6]", "enc[7]", "mid", "dec[0]", "dec[1]", "dec[2]", "dec[3]"
    )
    assert reuse.count_modules() == compute.count_modules() - 9

    zero = ex.programs.get(frozenset({Rule("dec[5]", "zero")}), "accelerate")
    # zeroing dec[5] kills the whole path under it: enc[2..7] (enc[2] and enc[3] feed only that
    # path and its skips), mid and dec[0..5]; enc[0..1] still feed dec[6..7] through skips
    assert full - modules(zero) == blocks(
        *(f"enc[{i}]" for i in range(2, 8)), "mid", *(f"dec[{i}]" for i in range(6))
    )
    # zeroing a skip removes nothing: enc[4]'s output also feeds enc[5]
    assert modules(ex.programs.get(frozenset({Rule("skip[4]", "zero")}), "accelerate")) == full
    # measure mode keeps every node: masks decide per batch element
    assert ex.programs.get(per_step[1], "measure").count_modules() == len(full)


def test_accelerate_mode_really_skips_the_calls(ddpm, random_model):
    """Count the middle block's forward calls along a trajectory: the programs share the eager
    model's submodules, so a hook on it sees every call."""
    ex, base = ddpm
    v = variant("c", Intervention("cache", "dec[3]", t_window(0, 1000), every=2))
    calls = []
    handle = random_model.unet.middle_block.register_forward_hook(lambda *a: calls.append(1))
    try:
        ex.run_batch([v], base, "accelerate")  # not images(): it may have run v already
        fast = len(calls)
        calls.clear()
        ex.run_batch([v], base, "measure")
        masked = len(calls)
    finally:
        handle.remove()
    assert (fast, masked) == (STEPS // 2, STEPS)  # one forward per step: guidance is batched


# --------------------------------------------------------------------------- one side of guidance


def sided(op: str, component: str, side: str) -> Intervention:
    return dataclasses.replace(one(op, component), side=side)


SIDED_CASES = [  # every op on every kind, the side alternating so that both sides meet each
    (op, kind, ("cond", "uncond")[(i + j) % 2])
    for i, op in enumerate(OPS)
    for j, kind in enumerate(KINDS)
]


@pytest.mark.parametrize("op, kind, side", SIDED_CASES)
def test_one_sided_accelerate_equals_measure(ddpm, op, kind, side):
    """Accelerate mode runs the halves of guidance as two programs on two half-size batches
    where they differ; measure mode masks the rows of one half of the doubled batch. The
    convolutions then run on other batch sizes (as when measure mode batches variants), so the
    images agree to a few ULPs; and they are neither the both-sided intervention's nor the
    baseline's."""
    ex, base = ddpm
    v = variant(f"{op}_{kind}_{side}", sided(op, KINDS[kind], side))
    fast, masked = images(ex, base, v, "accelerate"), images(ex, base, v, "measure")
    torch.testing.assert_close(masked, fast, rtol=0, atol=ULPS)
    assert (fast - base.xs[-1]).abs().max() > 1e-5
    assert (fast - images(ex, base, VARIANTS[name(op, kind)], "accelerate")).abs().max() > 1e-5


def test_cond_and_uncond_together_are_both(ddpm):
    """``drop C on cond`` + ``drop C on uncond`` is ``drop C``: the halves run one program."""
    ex, base = ddpm
    halves = variant("halves", sided("drop", "skip[4]", "cond"), sided("drop", "skip[4]", "uncond"))
    fast = images(ex, base, halves, "accelerate")
    assert torch.equal(fast, images(ex, base, VARIANTS["drop_skip"], "accelerate"))
    assert torch.equal(fast, images(ex, base, halves, "measure"))


ONE_SIDED_MIX = variant(
    "one_sided_mix",
    Intervention("cache", "dec[3]", t_window(0, 1000), every=3, side="uncond"),
    Intervention("cache", "dec[3]", t_window(0, 1000), every=2, side="cond"),
    Intervention("drop", "skip[2]", t_window(0, 500), side="cond"),
    Intervention("scale", "mid", t_window(500, 1000), factor=0.5),
    Intervention("zero", "enc[6]", Window("step", 5, 8), side="uncond"),
)


def test_one_sided_mix_batched_with_others(ddpm):
    """One-sided and both-sided variants in one batched measure forward (masks per chunk and
    half) agree with each alone in accelerate mode to a few ULPs."""
    ex, base = ddpm
    group = [ONE_SIDED_MIX, variant("both", one("cache", "dec[3]")), *CACHE_SCHEDULES[:2]]
    group = [v for v in group if schedule(v, list(ex.setup.steps)).first_active == 0]
    assert len(group) >= 2
    for v, batched in zip(group, ex.run_batch(group, base, "measure")):
        fast = images(ex, base, v, "accelerate")
        torch.testing.assert_close(batched.images, fast, rtol=0, atol=ULPS)
        assert (fast - base.xs[-1]).abs().max() > 1e-5


def test_one_sided_needs_guidance(random_model):
    """Without guidance there is no unconditional half: the run stops before sampling."""
    plan = make_plan(steps=STEPS, guidance=1.0)
    diffusion = Diffusion(random_model.diffusion, STEPS)
    setup = make_setup(plan, random_model, diffusion)
    ex = Executor(random_model, diffusion, setup, torch.device("cpu"))
    assert not ex.doubled
    with pytest.raises(AblangError, match="needs classifier-free guidance") as e:
        ex.check_sides(variant("u", sided("drop", "skip[4]", "uncond")))
    assert e.value.code == "side-unguided"
    ex.check_sides(VARIANTS["drop_skip"])  # both halves: fine


# --------------------------------------------------------------------------- cache schedules

CACHE_SCHEDULES = [
    variant("grow", Intervention("cache", "dec[2]", Window("step", 0, 8), every=1, grow=1)),
    variant("at_step", Intervention("cache", "mid", Window("step", 0, 8), at=(3, 4, 7))),
    variant(
        "at_t",
        Intervention("cache", "enc[3]", t_window(0, 1000), at=(700, 300), at_kind="t"),
    ),
    variant("grow_skip", Intervention("cache", "skip[4]", t_window(0, 800), every=2, grow=2)),
    variant(
        "at_uncond",
        Intervention("cache", "dec[5]", Window("step", 1, 8), at=(4,), side="uncond"),
    ),
    variant(
        "extrapolated",
        Intervention("cache", "dec[2]", Window("step", 0, 8), every=3, extrapolate=True),
    ),
    variant(
        "extrapolated_uncond",
        Intervention(
            "cache", "dec[5]", Window("step", 1, 8), at=(3, 5), side="uncond", extrapolate=True
        ),
        Intervention("cache", "mid", t_window(0, 1000), every=2, extrapolate=True),
    ),
]


@pytest.mark.parametrize("v", CACHE_SCHEDULES, ids=lambda v: v.name)
def test_cache_schedules_accelerate_equals_measure(ddpm, v):
    """Exactly equal; to a few ULPs where the cache is on one side (two half-size forwards)."""
    ex, base = ddpm
    fast, masked = images(ex, base, v, "accelerate"), images(ex, base, v, "measure")
    one_sided = any(iv.side != "both" for iv in v.interventions)
    torch.testing.assert_close(masked, fast, rtol=0, atol=ULPS if one_sided else 0)
    assert (fast - base.xs[-1]).abs().max() > 1e-5


def test_cache_schedules_compute_where_they_say(ddpm):
    """Steps (t = 999, 856, 714, 571, 428, 285, 142, 0) at which each cache computes."""
    ex, _ = ddpm
    steps = list(ex.setup.steps)

    def computing(v):
        return [
            k
            for k, rules in enumerate(schedule(v, steps).per_step)
            if any(r.phase == "compute" for r in rules)
        ]

    assert computing(CACHE_SCHEDULES[0]) == [0, 1, 3, 6]  # intervals 1, 2, 3
    assert computing(CACHE_SCHEDULES[1]) == [0, 3, 4, 7]  # the window's first step, then 3, 4, 7
    assert computing(CACHE_SCHEDULES[2]) == [0, 3, 5]  # t 700 -> 571, t 300 -> 285
    assert computing(CACHE_SCHEDULES[3]) == [
        2,
        4,
    ]  # window from t 714: intervals 2, 4 (then past it)
    assert computing(CACHE_SCHEDULES[4]) == [1, 4]


def test_extrapolated_reuse_continues_the_line_through_the_last_two(ddpm):
    """`cache ... extrapolated` against a direct computation: the eager Unet with dec[2]'s output
    replaced at each reuse step by v_b + (v_b - v_a) (k - b) / (b - a), where a < b are the last
    two computing steps (plain reuse while only one has computed)."""
    ex, base = ddpm
    v = CACHE_SCHEDULES[5]
    fast = images(ex, base, v, "accelerate")
    plain = dataclasses.replace(v.interventions[0], extrapolate=False)
    reused = images(ex, base, variant("plain", plain), "accelerate")
    assert (fast - reused).abs().max() > 1e-5  # the line is not the last value

    block = ex.model.unet.output_blocks[2]
    kept: list[tuple[int, torch.Tensor]] = []
    step = {"k": 0}

    def hook(module, args, out):
        k = step["k"]
        if k % 3 == 0:  # every 3 from the window's first step (0)
            kept.append((k, out))
            return out
        if len(kept) < 2:
            return kept[-1][1]
        (a, va), (b, vb) = kept[-2:]
        return vb + (vb - va) * ((k - b) / (b - a))

    from ablang import runtime

    handle = block.register_forward_hook(hook)
    try:
        table = ex.sampler.table
        final = ex.x_T

        def output(k, x):
            step["k"] = k
            t = runtime.model_timesteps(table, k, x.shape[0], x.device)
            return runtime.guided_output(
                lambda xi, ti, c: ex.model.unet(xi, ti, **c),
                x,
                t,
                ex.cond,
                ex.uncond,
                ex.setup.guidance,
                ex.channels,
            )

        with torch.no_grad():
            for _, final in runtime.sample_loop(table, ex.x_T, ex.noise, output):
                pass
    finally:
        handle.remove()
    torch.testing.assert_close(fast, final, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- guidance itself


def on_guidance(op: str, window: Window, every: int | None = None, extrapolate=False):
    return Intervention(op, "guidance", window, every=every, extrapolate=extrapolate)


GUIDANCE_VARIANTS = [
    variant("drop_guidance", on_guidance("drop", t_window(0, 500))),
    variant("cache_guidance", on_guidance("cache", Window("step", 1, 8), every=3)),
    variant(
        "cache_guidance_extrapolated",
        on_guidance("cache", Window("step", 0, 8), every=3, extrapolate=True),
    ),
    variant(  # DeepCache and the guidance cache on one schedule, a one-sided drop besides
        "with_unet_cache",
        Intervention("cache", "dec[5]", Window("step", 0, 8), every=2, extrapolate=True),
        on_guidance("cache", Window("step", 0, 8), every=2, extrapolate=True),
        Intervention("drop", "skip[2]", t_window(0, 400), side="uncond"),
    ),
    variant(  # the unconditional half idles at dec[5]'s computes: it catches up at step 3
        "catch_up",
        on_guidance("drop", Window("step", 0, 3)),
        Intervention("cache", "dec[5]", Window("step", 0, 8), every=2),
    ),
]


@pytest.mark.parametrize("v", GUIDANCE_VARIANTS, ids=lambda v: v.name)
def test_guidance_rules_accelerate_equals_measure(ddpm, v):
    """Where the unconditional half idles, accelerate mode runs a half-size forward and measure
    mode the doubled, masked one: a few ULPs, as for one-sided interventions."""
    ex, base = ddpm
    fast, masked = images(ex, base, v, "accelerate"), images(ex, base, v, "measure")
    torch.testing.assert_close(masked, fast, rtol=0, atol=ULPS)
    assert (fast - base.xs[-1]).abs().max() > 1e-5


def test_guidance_rules_batched_with_others(ddpm):
    """Chunks whose unconditional half idles next to chunks whose does not, in one forward."""
    ex, base = ddpm
    group = [GUIDANCE_VARIANTS[2], GUIDANCE_VARIANTS[3], variant("both", one("cache", "dec[3]"))]
    group = [v for v in group if schedule(v, list(ex.setup.steps)).first_active == 0]
    assert len(group) == 2
    for v, batched in zip(group, ex.run_batch(group, base, "measure")):
        torch.testing.assert_close(
            batched.images, images(ex, base, v, "accelerate"), rtol=0, atol=ULPS
        )


def test_cache_guidance_is_the_direct_computation(ddpm):
    """`cache guidance every 3 extrapolated` against the eager Unet: both halves at steps 0, 3
    and 6, the guidance term ``guided - cond`` kept there; at the other steps the conditional
    half alone plus the line through the last two terms (the last term while only one)."""
    from ablang import runtime

    ex, base = ddpm
    fast = images(ex, base, GUIDANCE_VARIANTS[2], "accelerate")
    table, g, ch = ex.sampler.table, ex.setup.guidance, ex.channels
    terms: list[tuple[int, torch.Tensor]] = []

    def unet(x, t, c):
        return ex.model.unet(x, t, **c)

    def output(k, x):
        t = runtime.model_timesteps(table, k, x.shape[0], x.device)
        c = unet(x, t, ex.cond)
        if k % 3 == 0:
            u = unet(x, t, ex.uncond)
            guided = torch.cat([u[:, :ch] + g * (c[:, :ch] - u[:, :ch]), c[:, ch:]], dim=1)
            terms.append((k, guided - c))
            return guided
        if len(terms) < 2:
            return c + terms[-1][1]
        (a, da), (b, db) = terms[-2:]
        return c + db + (db - da) * ((k - b) / (b - a))

    final = ex.x_T
    with torch.no_grad():
        for _, final in runtime.sample_loop(table, ex.x_T, ex.noise, output):
            pass
    torch.testing.assert_close(fast, final, rtol=0, atol=1e-5)
    assert (fast - base.xs[-1]).abs().max() > 1e-3


def test_drop_guidance_everywhere_is_the_conditional_model(random_model):
    """`drop guidance` at every step samples the conditional half alone: guidance 1's images."""
    v = variant("unguided", on_guidance("drop", t_window(0, 1000)))
    ex, base = executor(random_model, variants=(v,))
    plain, plain_base = executor(random_model)
    ex1 = Executor(
        random_model,
        plain.diffusion,
        make_setup(make_plan(steps=STEPS, guidance=1.0, samples=1), random_model, plain.diffusion),
        torch.device("cpu"),
    )
    conditional = ex1.baseline().xs[-1]
    assert torch.equal(images(ex, base, v, "accelerate"), conditional)
    assert (conditional - plain_base.xs[-1]).abs().max() > 1e-3  # guidance 3 is another model


def test_idle_unconditional_half_is_not_computed(ddpm, random_model):
    """The middle block's batch per step: both halves (4 rows) at the guidance cache's compute
    steps, the conditional half (2 rows) at its reuse steps; measure mode always 4."""
    ex, base = ddpm
    rows: list[int] = []
    handle = random_model.unet.middle_block.register_forward_hook(
        lambda m, args, out: rows.append(args[0].shape[0])
    )
    try:
        ex.run_batch([GUIDANCE_VARIANTS[2]], base, "accelerate")
        fast = list(rows)
        rows.clear()
        ex.run_batch([GUIDANCE_VARIANTS[2]], base, "measure")
    finally:
        handle.remove()
    assert fast == [4, 2, 2, 4, 2, 2, 4, 2]
    assert rows == [4] * STEPS


def test_guidance_rules_need_guidance(random_model):
    plan = make_plan(steps=STEPS, guidance=1.0)
    diffusion = Diffusion(random_model.diffusion, STEPS)
    ex = Executor(
        random_model, diffusion, make_setup(plan, random_model, diffusion), torch.device("cpu")
    )
    with pytest.raises(AblangError, match="needs classifier-free guidance") as e:
        ex.check_sides(GUIDANCE_VARIANTS[0])
    assert e.value.code == "guidance-unguided"


def test_an_idle_half_computes_its_missed_caches_when_it_runs_again(ddpm):
    """dec[5] computes at steps 0, 2, 4, 6; the unconditional half idles at 0..2, so it computes
    dec[5] at step 3 (the conditional half reuses there) and follows the schedule from 4 on."""
    ex, _ = ddpm
    per_step = schedule(GUIDANCE_VARIANTS[4], list(ex.setup.steps)).per_step
    assert per_step[3] == {
        Rule("dec[5]", "cache", phase="reuse", side="cond"),
        Rule("dec[5]", "cache", phase="compute", side="uncond"),
    }
    assert per_step[5] == {Rule("dec[5]", "cache", phase="reuse")}
    assert Rule("dec[5]", "cache", phase="reuse") in per_step[1]  # idle there: nothing to do
