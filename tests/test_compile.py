"""compile: schedules, segments, and the rewrites of every op on every component kind."""

from __future__ import annotations

import pytest
import torch

from ablang.compile import ProgramCache, Rule, build_program, schedule
from ablang.diffusion import Diffusion, DiffusionSpec, steps_of
from ablang.models.tiny_unet import timestep_embedding
from ablang.plan import Intervention, Window

from conftest import t_window, variant

X = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
T = torch.tensor([10, 700])
Y = torch.tensor([3, 10])


def run(model, rules, mode, cache=None):
    program = build_program(model.traced, frozenset(rules), mode)
    masks = {r: torch.ones(2, dtype=torch.bool) for r in program.mask_rules}
    return program(X, T, {"y": Y}, cache=cache, masks=masks)


def eager(unet, x, t, y, edit=lambda kind, i, h: h):
    """The built-in Unet's forward written out, with ``edit(kind, index, value)`` applied to
    every block output and skip, so tests can state an op's meaning independently of fx."""
    emb = unet.time_embed(timestep_embedding(t, unet.model_channels)) + unet.label_emb(y)
    hs, h = [], x
    for i, block in enumerate(unet.input_blocks):
        h = edit("enc", i, block(h, emb))
        hs.append(h)
    h = edit("mid", None, unet.middle_block(h, emb))
    for j, block in enumerate(unet.output_blocks):
        i = len(hs) - 1
        h = edit("dec", j, block(torch.cat([h, edit("skip", i, hs.pop())], 1), emb))
    return unet.out(h)


@pytest.mark.parametrize("mode", ["measure", "accelerate"])
def test_empty_rule_set_changes_nothing(random_model, mode):
    out, kept = run(random_model, [], mode)
    torch.testing.assert_close(out, random_model.unet(X, T, Y), rtol=0, atol=0)
    assert kept == {}


def test_trace_equals_eager(random_model):
    torch.testing.assert_close(
        random_model.traced.gm(X, T, Y), random_model.unet(X, T, Y), rtol=0, atol=0
    )
    torch.testing.assert_close(
        eager(random_model.unet, X, T, Y), random_model.unet(X, T, Y), rtol=0, atol=0
    )


def test_drop_skip_is_a_zeroed_skip(random_model):
    out, _ = run(random_model, [Rule("skip[3]", "drop")], "accelerate")
    expected = eager(
        random_model.unet,
        X,
        T,
        Y,
        lambda k, i, h: torch.zeros_like(h) if (k, i) == ("skip", 3) else h,
    )
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_drop_of_a_resampling_block_keeps_its_shortcut_path(random_model):
    unet = random_model.unet
    out, _ = run(random_model, [Rule("enc[2]", "drop")], "accelerate")

    def edit(kind, i, h):
        if (kind, i) == ("enc", 1):
            edit.prev = h
        if (kind, i) == ("enc", 2):  # a down-sampling ResBlock: avg-pool of its input, no conv
            rb = unet.input_blocks[2][0]
            return rb.skip_connection(rb.x_upd(edit.prev))
        return h

    torch.testing.assert_close(out, eager(unet, X, T, Y, edit), rtol=0, atol=0)


@pytest.mark.parametrize(
    "rule, kind, index, fn",
    [
        (Rule("dec[5]", "zero"), "dec", 5, lambda h: torch.zeros_like(h)),
        (Rule("mid", "scale", factor=0.5), "mid", None, lambda h: h * 0.5),
        (Rule("skip[6]", "scale", factor=1.5), "skip", 6, lambda h: h * 1.5),
        (Rule("enc[4]", "zero"), "enc", 4, lambda h: torch.zeros_like(h)),
        (Rule("skip[0]", "zero"), "skip", 0, lambda h: torch.zeros_like(h)),
    ],
)
def test_zero_and_scale_match_their_meaning(random_model, rule, kind, index, fn):
    expected = eager(
        random_model.unet, X, T, Y, lambda k, i, h: fn(h) if (k, i) == (kind, index) else h
    )
    for mode in ("measure", "accelerate"):
        out, _ = run(random_model, [rule], mode)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


ALL_RULES = [
    Rule(c, op, factor=f)
    for c in ("enc[3]", "enc[2]", "mid", "dec[0]", "dec[6]", "skip[1]", "skip[7]")
    for op, f in (("drop", None), ("zero", None), ("scale", 0.7))
]


@pytest.mark.parametrize("rule", ALL_RULES, ids=lambda r: r.label())
def test_measure_equals_accelerate_for_every_op_and_kind(random_model, rule):
    m_out, _ = run(random_model, [rule], "measure")
    a_out, _ = run(random_model, [rule], "accelerate")
    torch.testing.assert_close(m_out, a_out, rtol=0, atol=0)
    assert (a_out - random_model.unet(X, T, Y)).abs().max() > 1e-6  # the op has an effect


@pytest.mark.parametrize("component", ["dec[3]", "enc[5]", "mid", "skip[2]"])
def test_cache_reuse_returns_the_computed_value(random_model, component):
    for mode in ("measure", "accelerate"):
        out1, kept = run(random_model, [Rule(component, "cache", phase="compute")], mode)
        assert set(kept) == {component}
        out2, _ = run(random_model, [Rule(component, "cache", phase="reuse")], mode, cache=kept)
        torch.testing.assert_close(out1, out2, rtol=0, atol=0)
        # a stale value really is used: a different cached value changes the output
        out3, _ = run(
            random_model,
            [Rule(component, "cache", phase="reuse")],
            mode,
            cache={component: kept[component] * 0.0},
        )
        assert (out3 - out1).abs().max() > 1e-4


def test_dead_code_elimination_removes_modules(random_model):
    cache = ProgramCache(random_model.traced)
    full = cache.get(frozenset(), "accelerate").count_modules()
    reuse = cache.get(frozenset({Rule("dec[3]", "cache", phase="reuse")}), "accelerate")
    zero = cache.get(frozenset({Rule("dec[5]", "zero")}), "accelerate")
    # dec[3] reused: enc[4..7], mid and dec[0..3] are gone (8 blocks + nothing else)
    assert reuse.count_modules() == full - 9
    assert zero.count_modules() < full - 10
    measure = cache.get(frozenset({Rule("dec[3]", "cache", phase="reuse")}), "measure")
    assert measure.count_modules() == full  # measure mode keeps everything
    names = {n.target for n in reuse.gm.graph.nodes if n.op == "call_module"}
    assert (
        "middle_block" not in names and "input_blocks.4" not in names and "input_blocks.3" in names
    )


def test_programs_are_built_once_per_rule_set(random_model):
    cache = ProgramCache(random_model.traced)
    a = cache.get(frozenset({Rule("mid", "drop")}), "accelerate")
    assert cache.get(frozenset({Rule("mid", "drop")}), "accelerate") is a
    assert len(cache) == 1


def test_model_untouched_by_programs_and_errors(random_model):
    before = {k: v.clone() for k, v in random_model.unet.state_dict().items()}
    ref = random_model.unet(X, T, Y)
    run(random_model, [Rule("enc[2]", "drop"), Rule("dec[1]", "scale", factor=3.0)], "accelerate")
    with pytest.raises(KeyError):
        build_program(random_model.traced, frozenset({Rule("dec[99]", "drop")}), "accelerate")
    after = random_model.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    torch.testing.assert_close(random_model.unet(X, T, Y), ref, rtol=0, atol=0)


def test_schedule_windows_and_cache_phases():
    steps = steps_of(Diffusion(DiffusionSpec(), 10))  # t = 999, 888, ..., 0
    v = variant(
        "v",
        Intervention("drop", "skip[3]", t_window(600, 1000)),
        Intervention("cache", "dec[3]", Window("step", 4, 8), every=3),
    )
    s = schedule(v, steps)
    ts = [st.t for st in steps]
    assert ts[0] == 999 and ts[-1] == 0
    for st in steps:
        assert (Rule("skip[3]", "drop") in s.per_step[st.index]) == (600 <= st.t < 1000)
    phases = [next((r.phase for r in s.per_step[k] if r.op == "cache"), None) for k in range(10)]
    assert phases == [None] * 4 + ["compute", "reuse", "reuse", "compute"] + [None] * 2
    assert s.first_active == 0
    assert [seg.start for seg in s.segments] == [0, 4, 5, 7, 8]


def test_inclusive_window_includes_its_end():
    steps = steps_of(Diffusion(DiffusionSpec(), 10))
    t_last = steps[1].t  # 888
    half = schedule(variant("a", Intervention("zero", "mid", t_window(0, t_last))), steps)
    closed = schedule(
        variant("b", Intervention("zero", "mid", t_window(0, t_last, inclusive=True))), steps
    )
    assert not half.per_step[1] and closed.per_step[1]
    assert half.first_active == 2 and closed.first_active == 1
