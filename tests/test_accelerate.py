"""accelerate mode: whole trajectories give measure mode's images, and dead code really is gone.

Tolerance. Measure and accelerate mode run the same ops in the same order on the same rows. The
only differences: accelerate mode has removed the nodes that no longer feed the output (dead-code
elimination), and measure mode routes every rewritten value through ``torch.where`` with a mask,
which copies the selected values bit for bit. So with one variant per batch the final images are
*exactly* equal, and the tests below assert ``torch.equal``.

When measure mode batches several variants into one forward (as ``ablang run`` does), the
convolutions run on a larger batch and may take other kernels; those images agree to a few
float32 ULPs instead: at most ``4 * eps(1.0)`` (about 4.8e-7) absolute, the images lying in
[-1, 1]. That is asserted separately.
"""

from __future__ import annotations

import pytest
import torch
from conftest import make_plan, t_window, variant

from ablang.compile import Rule, schedule
from ablang.diffusion import Diffusion
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


def images(ex, base, v, mode):
    (samples,) = ex.run_batch([v], base, mode)
    return samples.images


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
        images(ex, base, v, "accelerate")
        fast = len(calls)
        calls.clear()
        images(ex, base, v, "measure")
        masked = len(calls)
    finally:
        handle.remove()
    assert (fast, masked) == (STEPS // 2, STEPS)  # one forward per step: guidance is batched
