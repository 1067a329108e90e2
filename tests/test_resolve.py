"""resolve: plans (fixtures), every semantic error kind with its place, rendering."""

from __future__ import annotations

import dataclasses

import pytest
from abl_fixtures import (
    cases,
    check_output,
    expected_check,
    expected_plan,
    plan_of,
    plan_summary,
    tiny_table,
)

from ablang.errors import AblangError, AblangErrors, Note, Span, render_error
from ablang.parse import parse
from ablang.plan import Intervention, ModelSpec, SamplerSpec, Variant, Window
from ablang.resolve import model_spec, resolve


@pytest.mark.parametrize("abl", cases("plan"), ids=lambda p: p.stem)
def test_plan_fixture(abl):
    assert plan_summary(plan_of(abl.read_text("utf-8"), abl.name)) == expected_plan(abl)


@pytest.mark.parametrize("abl", cases("check"), ids=lambda p: p.stem)
def test_check_fixture(abl):
    assert check_output(abl.read_text("utf-8"), abl.name) == expected_check(abl)


TINY = object()  # the default: resolve against tiny_table()


def errors_of(text: str, table=TINY) -> list[AblangError]:
    with pytest.raises(AblangErrors) as e:
        resolve(parse(text), tiny_table() if table is TINY else table)
    return e.value.errors


def where(text: str, table=TINY) -> list[tuple[str, int, int]]:
    return [(e.code, e.span.line, e.span.col) for e in errors_of(text, table)]


# ---- the plan ---------------------------------------------------------------------------------


def test_defaults():
    plan = plan_of("model tiny")
    assert plan.model == ModelSpec("tiny")
    assert plan.sampler == SamplerSpec("ddpm", 100, 0.0, None)
    assert (plan.seed, plan.samples, plan.prompts, plan.metrics, plan.device) == (
        0,
        4,
        (),
        ("mse", "ssim"),
        "auto",
    )
    assert plan.variants == (Variant("baseline", (), "baseline"),)
    assert plan.num_timesteps == 1000


def test_baseline_first_then_file_order():
    plan = plan_of(
        "model tiny\nsweep zero mid for t in 0..1000 by 500\ndrop skip[3]\nvariant v {\n    zero mid\n}"
    )
    assert [v.origin for v in plan.variants] == ["baseline", "sweep", "sweep", "bare", "variant"]


def test_bare_line_is_one_variant_named_after_its_text():
    plan = plan_of("model tiny\ndrop   skip[3]  for t in 600..1000\ndrop enc[1], skip[0..2]")
    one, several = plan.variants[1:]
    assert one.name == "drop skip[3] for t in [600, 1000)"
    assert one.interventions == (Intervention("drop", "skip[3]", Window("t", 600, 1000)),)
    assert several.name == "drop enc[1], skip[0..2]"
    assert [i.component for i in several.interventions] == ["enc[1]", "skip[0]", "skip[1]"]


def test_sweep_grid():
    plan = plan_of("model tiny\nsweep scale skip[0, 1] by 0.5 for t in 0..1000 by 400")
    (sweep,) = plan.sweeps
    assert sweep.components == ("skip[0]", "skip[1]")
    assert sweep.windows == (Window("t", 0, 400), Window("t", 400, 800), Window("t", 800, 1000))
    assert sweep.params == (("factor", 0.5),)
    assert sweep.variants[1][2] == "sweep1: scale skip[1] by 0.5 for t in [800, 1000)"
    cell = plan.variant(sweep.variants[1][2])
    assert cell.interventions == (
        Intervention("scale", "skip[1]", Window("t", 800, 1000), factor=0.5),
    )
    assert len(plan.variants) == 1 + 6


def test_level_expands_to_the_table():
    table = tiny_table()
    plan = plan_of("model tiny\nzero level[2]")
    assert [i.component for i in plan.variants[1].interventions] == [
        c.name for c in table.at_level(2)
    ]


def test_sweep_leaves_out_wildcard_blocks_that_cannot_be_dropped():
    (sweep,) = plan_of("model tiny\nsweep drop enc[*]").sweeps
    assert sweep.components[0] == "enc[1]" and len(sweep.components) == 11


def test_search_plan():
    (s,) = plan_of(
        "model tiny\nmetrics ssim, fid\nsearch speedup where ssim >= 0.9 and fid <= +10% "
        "over drop, cache every 4 of skip[*] for t in 0..1000 by 500"
    ).searches
    assert s.name == "search" and s.ops == ("drop", "cache") and s.every == 4
    assert [(c.metric, c.cmp, c.value, c.relative) for c in s.constraints] == [
        ("ssim", ">=", 0.9, False),
        ("fid", "<=", 10.0, True),
    ]
    assert s.windows == (Window("t", 0, 500), Window("t", 500, 1000))
    assert len(s.components) == 12


def test_spans_point_back_into_the_study():
    plan = plan_of("model tiny\n\nvariant v {\n    drop skip[3]\n}")
    assert plan.variants[1].span.line == 3
    assert plan.variants[1].interventions[0].span == Span(4, 5, 4, 17)


def test_without_a_table_everything_else_is_checked():
    study = parse('model glide "base.pt"\nseed -1\ndrop skip[*] for t in 600..500\nzero skp[99]')
    with pytest.raises(AblangErrors) as e:
        resolve(study, None)
    assert [(x.code, x.span.line) for x in e.value.errors] == [
        ("bad-number", 2),
        ("empty-window", 3),
        ("unknown-component", 4),
    ]
    plan = resolve(
        parse(
            'model glide "base.pt"\ndrop skip[*], skip[-1], skip[2..4], skip[3] for t in 0..5000'
        ),
        None,
    )
    assert [i.component for i in plan.variants[1].interventions] == [
        "skip[*]",
        "skip[-1]",
        "skip[2..4]",
        "skip[3]",
    ]


def test_no_table_still_bounds_the_number_of_windows():
    assert [
        e.code
        for e in errors_of('model glide "x"\nsweep zero mid for t in 0..100000000 by 1', None)
    ] == ["too-many-windows"]


def test_model_spec_is_read_before_resolving():
    assert model_spec(parse('model adm "a.pt" config "a.json"')) == ModelSpec(
        "adm", "a.pt", "a.json"
    )
    assert model_spec(parse("model tinny")) is None
    assert model_spec(parse("seed 1")) is None


def test_plan_carries_source_and_checksum():
    plan = resolve(parse("model tiny"), tiny_table(), source_path="s.abl", sha256="ab12")
    assert (plan.source, plan.sha256) == ("s.abl", "ab12")


# ---- errors: every kind, with its place ------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("seed 1", [("missing-model", 1, 1)]),
        ("model tiny\ndrop skp[3]", [("unknown-component", 2, 6)]),
        ("model tiny\ndrop skip[12]", [("index-range", 2, 11)]),
        ("model tiny\ndrop skip[-13]", [("index-range", 2, 11)]),
        ("model tiny\ndrop level[4]", [("index-range", 2, 12)]),
        ("model tiny\ndrop skip[10..13]", [("index-range", 2, 11)]),
        ("model tiny\ndrop skip[5..2]", [("empty-selection", 2, 11)]),
        ("model tiny\ndrop mid[1]", [("selector", 2, 6)]),
        ("model tiny\ndrop skip", [("selector", 2, 6)]),
        ("model tiny\ndrop mid for t in 600..500", [("empty-window", 2, 10)]),
        ("model tiny\ndrop mid for t in 600..600", [("empty-window", 2, 10)]),
        ("model tiny\ndrop mid for t in 600..1001", [("window-range", 2, 24)]),
        ("model tiny\ndrop mid for t in 0..=1000", [("window-range", 2, 23)]),
        (
            "model tiny\nsampler ddpm steps 50\ndrop mid for step in 0..51",
            [("window-range", 3, 25)],
        ),
        ("model tiny\ndrop mid for t in 0..1000 by 100", [("by-outside-sweep", 2, 30)]),
        (
            "model tiny\nvariant v {\n    drop mid for t in 0..10\n    zero mid for t in 5..20\n}",
            [("overlap", 4, 5)],
        ),
        (
            "model tiny\nvariant v {\n    drop mid\n    zero mid for step in 5..20\n}",
            [("overlap", 4, 5)],
        ),
        (
            "model tiny\nvariant v {\n    drop mid for t in 0..10\n    zero mid for step in 5..20\n}",
            [("mixed-windows", 4, 5)],
        ),
        ("model tiny\nseed 1\nseed 2", [("duplicate-setting", 3, 1)]),
        ("model tiny\nsampler ddim eta 0 eta 1", [("duplicate-setting", 2, 20)]),
        (
            "model tiny\nvariant a {\n    zero mid\n}\nvariant a {\n    drop mid\n}",
            [("duplicate-variant", 5, 9)],
        ),
        ("model tiny\nvariant baseline {\n    zero mid\n}", [("duplicate-variant", 2, 9)]),
        ("model tiny\ndrop mid\ndrop mid", [("duplicate-variant", 3, 1)]),
        ('model tiny\nemit sampler "a.py" from late', [("unknown-variant", 2, 26)]),
        ("model tiny\nmetrics mse, ssmi", [("unknown-metric", 2, 14)]),
        ("model tiny\nmetrics mse, mse", [("duplicate-metric", 2, 14)]),
        ('model glide "g.pt"\nmetrics accuracy', [("accuracy-needs-tiny", 2, 9)]),
        ("model tiny\nsampler ddpm steps 0", [("bad-number", 2, 20)]),
        ("model tiny\nsampler ddpm steps 2.5", [("bad-number", 2, 20)]),
        ("model tiny\ncache mid every 0", [("bad-number", 2, 17)]),
        ("model tiny\nseed -1", [("bad-number", 2, 6)]),
        ("model tiny\nsamples 0", [("bad-number", 2, 9)]),
        ("model tiny\nsampler ddpm guidance -0.5", [("bad-number", 2, 23)]),
        ("model tiny\nsampler ddim eta 1.5", [("bad-number", 2, 18)]),
        ("model tiny\nsampler ddpm eta 0.5", [("sampler-option", 2, 14)]),
        ("model tiny\ndrop enc[0]", [("not-droppable", 2, 10)]),
        ("model tiny\ndrop enc[0..2]", [("not-droppable", 2, 10)]),
        ("model tiny\nsweep drop enc[0], enc[1]", [("not-droppable", 2, 16)]),
        ("model tiny\nvariant v {\n}", [("empty-variant", 2, 1)]),
        ("model tinny", [("unknown-model", 1, 7)]),
        ('model tiny "x.pt"', [("model-args", 1, 1)]),
        ("model glide", [("model-args", 1, 1)]),
        ('model adm "a.pt"', [("model-args", 1, 1)]),
        ('model glide ""', [("model-args", 1, 1)]),
        ("model tiny\nsampler dpm", [("unknown-sampler", 2, 9)]),
        ("model tiny\ndevice gpu", [("unknown-device", 2, 8)]),
        ('model tiny\nprompts "cat"', [("prompts", 2, 9)]),
        ("model tiny\nsweep zero skip[3], skip[*]", [("duplicate-component", 2, 21)]),
        (
            "model tiny\nsearch fastest where ssim >= 0.9 over drop of mid",
            [("unknown-objective", 2, 8)],
        ),
        (
            "model tiny\nsearch speedup where fid <= +10% over drop of mid",
            [("metric-not-measured", 2, 22)],
        ),
        (
            "model tiny\nmetrics fid\nsearch speedup where fid <= 10% over drop of mid",
            [("unsigned-percent", 3, 29)],
        ),
        (
            "model tiny\nsearch speedup where ssim >= -1% over drop of mid",
            [("relative-metric", 2, 22)],
        ),
        (
            "model tiny\nsearch speedup where ssim >= 0.9 over scale by 2 of mid",
            [("search-op", 2, 39)],
        ),
        (
            "model tiny\nsearch speedup where ssim >= 0.9 over zero, zero of mid",
            [("search-op", 2, 45)],
        ),
        (
            "model tiny\nsearch a speedup where ssim >= 0.9 over zero of mid\nsearch a speedup where ssim >= 0.9 over zero of mid",
            [("duplicate-search", 3, 1)],
        ),
        (
            'model tiny\nvariant v {\n    zero mid\n}\nemit sampler "a.py" from v\nemit sampler "a.py" from v',
            [("duplicate-emit", 6, 14)],
        ),
    ],
)
def test_error_kinds(text, expected):
    assert where(text) == expected


def test_all_errors_of_a_file_come_together_in_order():
    text = 'model tiny\nseed -1\ndrop skp[3]\nvariant v {\n    drop skip[99]\n}\nemit sampler "x.py" from w'
    assert [e.span.line for e in errors_of(text)] == [2, 3, 5, 7]


def test_hints_and_notes():
    (err,) = errors_of("model tiny\ndrop skp[3] for t in 0..10")
    assert err.hint == "did you mean skip[3]?"
    (err,) = errors_of("model tiny\ndrop skip[12]")
    assert "skip[0] to skip[11]" in err.message
    (err,) = errors_of("model tiny\nseed 1\nsamples 2\nseed 2")
    assert err.notes == (Note("first set here", Span(2, 1, 2, 7)),)
    (err,) = errors_of("model tiny\nmetrics mse, ssmi")
    assert err.hint == "did you mean ssim?"
    (err,) = errors_of("model tiny\ndrop enc[0]")
    assert (
        "input_blocks.0" in err.message
        and err.hint == "use `zero enc[0]` to replace its output with zeros"
    )


def test_unconditional_model_takes_no_prompts_or_guidance():
    table = dataclasses.replace(tiny_table(), prompt_kind="none")
    assert where('model tiny\nprompts "3"\nsampler ddpm guidance 3', table) == [
        ("prompts", 2, 1),
        ("guidance-unconditional", 3, 14),
    ]


def test_cost_metrics_are_accepted_and_left_out():
    assert plan_of("model tiny\nmetrics ssim, speedup, flops, time").metrics == ("ssim",)


# ---- rendering ---------------------------------------------------------------------------------


def test_render_error():
    source = "model tiny\n\tdrop skp[3] for t in 600..1000\n"
    err = AblangError(
        "no component `skp[3]`", Span(2, 7, 2, 10), hint="did you mean skip[3]?", path="s.abl"
    )
    assert render_error(err, source) == (
        "s.abl:2:7: error: no component `skp[3]`\n"
        "    \tdrop skp[3] for t in 600..1000\n"
        "    \t     ^^^\n"
        "hint: did you mean skip[3]?"
    )


def test_render_error_with_a_note_and_no_source():
    err = AblangError(
        "`seed` is set twice", Span(3, 1, 3, 7), notes=(Note("first set here", Span(1, 1, 1, 7)),)
    )
    assert render_error(err, "seed 0\n\nseed 1", "x.abl").splitlines() == [
        "x.abl:3:1: error: `seed` is set twice",
        "    seed 1",
        "    ^^^^^^",
        "x.abl:1:1: note: first set here",
        "    seed 0",
        "    ^^^^^^",
    ]
    assert render_error(AblangError("no file", None), None, "x.abl") == "x.abl: error: no file"


def test_render_error_rich_highlights_the_line():
    from rich.console import Console

    from ablang.errors import render_error_rich

    console = Console(record=True, width=100, color_system="truecolor", force_terminal=True)
    err = AblangError(
        "no component `skp[3]`", Span(1, 6, 1, 9), hint="did you mean skip[3]?", path="s.abl"
    )
    console.print(render_error_rich(err, "drop skp[3] for t in 600..1000"))
    text = console.export_text(clear=False)
    assert "s.abl:1:6: error: no component `skp[3]`" in text and "     ^^^" in text
    assert "hint: did you mean skip[3]?" in text
    assert "\x1b[" in console.export_text(styles=True)


def test_sides_and_cache_schedules_in_the_plan():
    study = parse(
        "model tiny\nsampler ddpm steps 10 guidance 3\n"
        "cache dec[5] at t 100, 900 on uncond\n"
        "sweep cache mid at step 0, 4, 6 for step in 0..10 by 5\n"
    )
    plan = resolve(study, tiny_table())
    (iv,) = plan.variants[1].interventions
    assert (iv.side, iv.at, iv.at_kind) == ("uncond", (900, 100), "t")  # in visiting order
    assert iv.label() == "cache dec[5] at t 900, 100 on uncond"
    cells = [v.interventions[0].at for v in plan.variants[2:]]
    assert cells == [(0, 4), (6,)]  # each sweep cell keeps the entries inside its window


def test_noise_per_image():
    assert (plan_of("model tiny").noise, plan_of("model tiny").seed_stride) == ("sample", 0)
    plan = plan_of("model tiny\nseed 7\nnoise per image")
    assert (plan.noise, plan.seed_stride, plan.seed) == ("image", 2**24, 7)
    last = 2**24 - 4  # seeds 2**24 - 4 .. 2**24 - 1: the last ones allowed
    assert plan_of(f"model tiny\nnoise per image\nseed {last}").seed == last
    assert where(f"model tiny\nnoise per image\nseed {last + 1}") == [("seed-range", 3, 6)]
    # the seeds of 257 prompts would pass 2**32 (checked without the model: any prompts)
    prompts = ", ".join(f'"p{i}"' for i in range(257))
    text = f"model tiny\nnoise per image\nprompts {prompts}"
    assert where(text, None) == [("seed-range", 3, 1)]
    resolve(parse(text.replace(', "p256"', "")), None)  # 256 are fine
