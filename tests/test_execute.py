"""execute: the shared baseline prefix, batched chunks, determinism and guidance batching, on the
random-weight model (every block matters there)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import make_plan, t_window, variant

from ablang import runtime
from ablang.compile import schedule
from ablang.diffusion import Diffusion
from ablang.execute import Executor, batches, make_setup
from ablang.plan import Intervention, Window

CPU = torch.device("cpu")

# steps 10 visit t = 999, 888, ..., 111, 0: "t in 0..500" is active from step 5 on
LATE_DROP = variant("late_drop", Intervention("drop", "skip[3]", t_window(0, 500)))
LATE_SCALE = variant("late_scale", Intervention("scale", "mid", t_window(0, 500), factor=0.5))
LATE_CACHE = variant("late_cache", Intervention("cache", "dec[6]", t_window(0, 700), every=3))
EARLY_ZERO = variant("early_zero", Intervention("zero", "enc[4]", t_window(600, 1000)))
MIXED = variant(
    "mixed",
    Intervention("drop", "enc[5]", t_window(300, 800)),
    Intervention("cache", "dec[2]", t_window(0, 500), every=3),
)
ALWAYS = variant("always", Intervention("scale", "skip[0]", Window(), factor=1.5))


def plan(*variants, **kw):
    """make_plan with one sample per prompt (two prompts): enough for these tests, and fast."""
    return make_plan(*variants, **{"samples": 1, **kw})


def executor(model, plan) -> Executor:
    diffusion = Diffusion(model.diffusion, plan.sampler.steps)
    return Executor(model, diffusion, make_setup(plan, model, diffusion), CPU)


def full_run(ex: Executor, v, mode: str) -> torch.Tensor:
    """The variant's whole trajectory from x_T, one step at a time with its own rules: what a run
    without prefix sharing would compute."""
    sched = schedule(v, list(ex.setup.steps))
    x = ex.x_T.clone()
    cache: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for step in ex.setup.steps:
            x = ex.forward(x, step, [sched.per_step[step.index]], [cache], mode)
    return x


# --------------------------------------------------------------------------- prefix sharing


@pytest.mark.parametrize("mode", ["measure", "accelerate"])
@pytest.mark.parametrize("v", [LATE_DROP, LATE_CACHE, MIXED], ids=lambda v: v.name)
def test_prefix_sharing_equals_a_full_run(random_model, v, mode):
    ex = executor(random_model, plan(v))
    start = schedule(v, list(ex.setup.steps)).first_active
    assert 0 < start < len(ex.setup.steps)  # the test means something only with a shared prefix
    base = ex.baseline()
    (shared,) = ex.run_batch([v], base, mode)
    assert shared.start_step == start
    full = full_run(ex, v, mode)
    torch.testing.assert_close(shared.images, full, rtol=0, atol=1e-6)
    assert not torch.allclose(
        shared.images, base.xs[-1], atol=1e-4
    )  # the variant did change something


def test_prefix_sharing_with_ddim_noise(random_model):
    """With eta > 0 every step draws noise: a variant starting at step k uses the noise of steps
    k, k+1, ..., exactly as a full run does."""
    ex = executor(random_model, plan(LATE_DROP, kind="ddim", eta=0.5))
    (shared,) = ex.run_batch([LATE_DROP], ex.baseline(), "measure")
    torch.testing.assert_close(shared.images, full_run(ex, LATE_DROP, "measure"), rtol=0, atol=1e-6)


def test_a_variant_starts_where_its_first_rule_does(random_model):
    ex = executor(random_model, plan(LATE_DROP, EARLY_ZERO, ALWAYS))
    base = ex.baseline()
    starts = {
        s.variant: s.start_step
        for v in (LATE_DROP, EARLY_ZERO, ALWAYS)
        for s in ex.run_batch([v], base, "measure")
    }
    assert starts == {"late_drop": 5, "early_zero": 0, "always": 0}
    # a variant active only at its last step shares everything before it
    last = variant("last", Intervention("drop", "skip[1]", Window("step", 9, 10)))
    before = ex.evaluations
    (s,) = ex.run_batch([last], base, "measure")
    assert s.start_step == 9 and ex.evaluations - before == s.evaluations == 1 * ex.n * 2


# --------------------------------------------------------------------------- determinism


def test_the_same_plan_twice_gives_identical_images(random_model):
    p = plan(LATE_DROP, LATE_CACHE, EARLY_ZERO)
    runs = []
    for _ in range(2):
        ex = executor(random_model, p)
        base = ex.baseline()
        images = [base.xs[-1]]
        for group in batches(list(p.variants[1:]), list(ex.setup.steps), 2):
            images += [s.images for s in ex.run_batch(group, base, "measure")]
        runs.append(images)
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_baseline_does_not_depend_on_the_variants(random_model):
    alone = executor(random_model, plan()).baseline()
    ex = executor(random_model, plan(LATE_DROP, LATE_CACHE, ALWAYS))
    base = ex.baseline()
    kept = [x.clone() for x in base.xs]
    ex.run_batch([LATE_DROP, LATE_CACHE, ALWAYS], base, "measure")
    ex.run_batch([LATE_CACHE], base, "accelerate")
    assert len(base.xs) == len(ex.setup.steps) + 1
    for a, b, c in zip(alone.xs, base.xs, kept):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(b, c, rtol=0, atol=0)  # running variants left it untouched


def test_a_samples_image_does_not_depend_on_the_other_prompts(random_model):
    both = executor(random_model, plan(prompts=("3", "7"), samples=2)).baseline().xs[-1]
    one = executor(random_model, plan(prompts=("7",), samples=2)).baseline().xs[-1]
    torch.testing.assert_close(both[2:], one, rtol=1e-5, atol=1e-5)


def test_running_variants_does_not_modify_the_model(random_model):
    state = {k: v.clone() for k, v in random_model.unet.state_dict().items()}
    ex = executor(random_model, plan(MIXED, LATE_CACHE))
    base = ex.baseline()
    ex.run_batch([MIXED, LATE_CACHE], base, "measure")
    ex.run_batch([MIXED], base, "accelerate")
    for k, v in random_model.unet.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert not random_model.unet.training


# --------------------------------------------------------------------------- batching


def test_batched_chunks_equal_single_runs(random_model):
    group = [LATE_DROP, LATE_CACHE, MIXED, EARLY_ZERO, ALWAYS]
    ex = executor(random_model, plan(*group))
    base = ex.baseline()
    batched = ex.run_batch(group, base, "measure")
    assert [s.variant for s in batched] == [v.name for v in group]
    for v, b in zip(group, batched):
        (single,) = ex.run_batch([v], base, "measure")
        assert b.images.shape == single.images.shape == (ex.n, 1, 32, 32)
        torch.testing.assert_close(b.images, single.images, rtol=1e-5, atol=1e-5)
    # chunks that start later run the shared steps with no rules: all from the earliest start
    assert {s.start_step for s in batched} == {0}


def test_measure_and_accelerate_give_the_same_images(random_model):
    ex = executor(random_model, plan(MIXED))
    base = ex.baseline()
    for v in (LATE_DROP, LATE_CACHE, MIXED, EARLY_ZERO):
        (m,) = ex.run_batch([v], base, "measure")
        (a,) = ex.run_batch([v], base, "accelerate")
        torch.testing.assert_close(m.images, a.images, rtol=1e-5, atol=1e-5)


def test_channels_last_inputs_give_the_same_images(random_model):
    p = plan(LATE_CACHE)
    ex = executor(random_model, p)
    ex_cl = executor(dataclasses.replace(random_model, channels_last=True), p)
    base, base_cl = ex.baseline(), ex_cl.baseline()
    torch.testing.assert_close(base_cl.xs[-1], base.xs[-1], rtol=1e-5, atol=1e-5)
    (a,) = ex.run_batch([LATE_CACHE], base, "measure")
    (b,) = ex_cl.run_batch([LATE_CACHE], base, "measure")
    torch.testing.assert_close(b.images, a.images, rtol=1e-5, atol=1e-5)


def test_batches_group_by_start_step():
    from ablang.diffusion import DiffusionSpec, steps_of

    steps = steps_of(Diffusion(DiffusionSpec(), 10))
    vs = [LATE_DROP, EARLY_ZERO, LATE_SCALE, ALWAYS, LATE_CACHE]
    groups = batches(vs, steps, max_chunks=2)
    names = [[v.name for v in g] for g in groups]
    # early_zero and always start at step 0; late_cache (t < 700) at step 3; the others at 5
    assert names == [["early_zero", "always"], ["late_cache"], ["late_drop", "late_scale"]]
    assert [[v.name for v in g] for g in batches(vs, steps, max_chunks=1)] == [
        [n] for g in names for n in g
    ]


# --------------------------------------------------------------------------- guidance


@pytest.mark.parametrize("guidance, rows", [(1.0, 1), (3.0, 2)])
def test_guidance_doubles_the_batch_only_when_it_has_to(random_model, guidance, rows):
    ex = executor(random_model, plan(LATE_DROP, guidance=guidance))
    assert ex.doubled == (guidance != 1.0)
    base = ex.baseline()
    assert ex.evaluations == 10 * ex.n * rows
    (s,) = ex.run_batch([LATE_DROP], base, "measure")
    assert s.evaluations == (10 - 5) * ex.n * rows
    assert ex.evaluations == 15 * ex.n * rows


def test_guidance_one_is_the_conditional_model(random_model):
    """With guidance 1 a step uses the plain conditional prediction."""
    ex = executor(random_model, plan(guidance=1.0, steps=4))
    x = ex.x_T.clone()
    step = ex.setup.steps[0]
    y = torch.tensor([3, 7])
    t = torch.full((2,), step.t, dtype=torch.long)
    with torch.no_grad():
        eps = random_model.unet(x, t, y)
        got = ex.forward(x, step, [frozenset()], [{}], "accelerate")
    expected = runtime.step(ex.table, step.index, x, eps, ex.noise[0])
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_guidance_three_combines_cond_and_uncond(random_model):
    ex = executor(random_model, plan(guidance=3.0, steps=4))
    x = ex.x_T.clone()
    step = ex.setup.steps[1]
    t = torch.full((2,), step.t, dtype=torch.long)
    with torch.no_grad():
        c = random_model.unet(x, t, torch.tensor([3, 7]))
        u = random_model.unet(x, t, torch.full((2,), 10))
        got = ex.forward(x, step, [frozenset()], [{}], "accelerate")
    expected = runtime.step(ex.table, step.index, x, u + 3.0 * (c - u), ex.noise[1])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_setup_orders_samples_by_prompt():
    from ablang.diffusion import DiffusionSpec

    class M:  # only what make_setup reads
        default_prompts, default_guidance = ("0", "1"), 3.0
        trajectory = None  # ablang's own DDPM/DDIM table, not a diffusers scheduler

    p = dataclasses.replace(make_plan(prompts=("3", "7"), samples=2), seed=10)
    setup = make_setup(p, M, Diffusion(DiffusionSpec(), 10))
    assert setup.prompts == ("3", "3", "7", "7")
    assert setup.seeds == (10, 11, 10, 11)
    assert setup.guidance == 3.0 and setup.kind == "ddpm"
    assert [s.t for s in setup.steps][:2] == [999, 888]


def test_noise_per_image_gives_every_image_its_own_draw(random_model):
    """``noise per image``: prompt p's seeds move by p * 2**24, so no two images share a draw;
    the first prompt keeps the default's seeds, and an image is the one its seed makes alone.
    Past the stride a seed could repeat another prompt's: the runtime refuses it."""
    shared = dataclasses.replace(plan(prompts=("3", "7"), samples=2), seed=10)
    own = dataclasses.replace(shared, noise="image")
    stride = 2**24
    ex_shared, ex_own = executor(random_model, shared), executor(random_model, own)
    assert ex_shared.setup.seeds == (10, 11, 10, 11)
    assert ex_own.setup.seeds == (10, 11, 10 + stride, 11 + stride)
    assert ex_own.setup.prompts == ex_shared.setup.prompts
    x = ex_own.x_T
    assert torch.equal(x[:2], ex_shared.x_T[:2])
    assert all(not torch.equal(x[i], x[j]) for i in range(4) for j in range(i))
    assert torch.equal(ex_shared.x_T[0], ex_shared.x_T[2])  # the default: columns share noise
    alone = executor(random_model, dataclasses.replace(shared, prompts=("7",), seed=10 + stride))
    torch.testing.assert_close(
        ex_own.baseline().xs[-1][2:], alone.baseline().xs[-1], rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="seeds below 16777216"):
        executor(random_model, dataclasses.replace(own, seed=stride - 1))
