"""search: bounds and sensitivities on known numbers, the Pareto front, and whole searches on the
random-weight model (6 steps, one sample of two digits): every point marked feasible keeps every
bound, the best is feasible and the fastest feasible point, the greedy's combinations are exact
(a full re-run of the best gives its numbers), and the same plan twice gives the same search.

The random-weight model changes its images only a little (mse ~1e-7..1e-6), so the bounds here
are tight ones, chosen so that some candidates break them alone and some combinations too."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import pytest
import torch
from conftest import make_plan, t_window
from rich.console import Console

from ablang.compile import schedule
from ablang.cost import FlopCounter
from ablang.diffusion import Diffusion
from ablang.execute import Executor, make_setup
from ablang.measure import Measure
from ablang.models import tiny
from ablang.plan import Constraint, Intervention, Search, Validation, Variant, Window
from ablang.report import save_search_png, search_table
from ablang.search import (
    Point,
    SearchOptions,
    ValidationSet,
    _Search,
    bound,
    combine,
    conflicts,
    holds,
    overlaps,
    pareto_front,
    run_search,
    slack_used,
    validation_set,
)

CPU = torch.device("cpu")
HALVES = (t_window(0, 500), t_window(500, 1000))
SEARCH = Search(
    "search",
    "speedup",
    (Constraint("mse", "<=", 1e-6), Constraint("fid", "<=", 0.01, relative=True)),
    ("drop", "cache"),
    ("enc[0]", "enc[3]", "mid", "dec[5]", "dec[6]", "skip[2]"),
    HALVES,
    2,
)


# --------------------------------------------------------------------------- bounds


def test_a_relative_bound_moves_the_baseline_by_a_share_of_its_size():
    assert bound(Constraint("fid", "<=", 10.0, relative=True), 20.0) == pytest.approx(22.0)
    assert bound(Constraint("accuracy", ">=", -2.0, relative=True), 0.5) == pytest.approx(0.49)
    # a negative baseline (kid can be) still moves up for +P%
    assert bound(Constraint("kid", "<=", 10.0, relative=True), -0.02) == pytest.approx(-0.018)
    assert bound(Constraint("ssim", ">=", 0.9), 1.0) == 0.9


@pytest.mark.parametrize(
    ("cmp", "value", "limit", "ok"),
    [
        (">=", 0.9, 0.9, True),
        (">", 0.9, 0.9, False),
        ("<=", 1.0, 1.0, True),
        ("<", 1.0, 1.0, False),
        (">=", math.nan, 0.0, False),
        ("<=", math.inf, 1.0, False),
    ],
)
def test_holds(cmp, value, limit, ok):
    assert holds(cmp, value, limit) is ok


def test_slack_used_is_zero_at_the_baseline_and_one_at_the_bound():
    assert slack_used(">=", 1.0, 1.0, 0.9) == 0.0
    assert slack_used(">=", 0.95, 1.0, 0.9) == pytest.approx(0.5)
    assert slack_used(">=", 0.9, 1.0, 0.9) == pytest.approx(1.0)
    assert slack_used("<=", 33.0, 30.0, 33.0) == pytest.approx(1.0)
    assert slack_used("<=", 25.0, 30.0, 33.0) == 0.0  # better than the baseline
    assert slack_used(">=", 60.0, math.inf, 30.0) == pytest.approx(0.5)  # psnr of the baseline
    assert slack_used("<=", math.nan, 0.0, 1.0) == math.inf


def test_overlap_and_conflict():
    a, b = t_window(0, 500), t_window(500, 1000)
    assert not overlaps(a, b) and overlaps(a, t_window(400, 600)) and overlaps(a, Window())
    assert overlaps(t_window(0, 500, inclusive=True), b)
    ivs = (Intervention("drop", "dec[5]", a),)
    assert conflicts(ivs, Intervention("cache", "dec[5]", a, every=2))
    assert not conflicts(ivs, Intervention("cache", "dec[5]", b, every=2))
    assert not conflicts(ivs, Intervention("drop", "dec[6]", a))
    uncond = (Intervention("cache", "dec[5]", a, every=3, side="uncond"),)
    assert not conflicts(uncond, Intervention("drop", "dec[5]", a, side="cond"))
    assert conflicts(uncond, Intervention("cache", "dec[5]", a, every=2, side="uncond"))
    assert conflicts(uncond, Intervention("drop", "dec[5]", a))  # both halves include uncond


def test_a_cache_takes_its_siblings_place():
    """The greedy may swap a cache for the same cache with another period (same component,
    window and side); anything else that overlaps still conflicts."""
    w = HALVES[0]
    every2 = Intervention("cache", "dec[5]", w, every=2)
    every6 = Intervention("cache", "dec[5]", w, every=6, extrapolate=True)
    mid = Intervention("drop", "mid", w)
    assert combine((mid, every2), every6) == (mid, every6)
    assert combine((every2,), Intervention("drop", "dec[5]", w)) is None
    assert combine((every2,), Intervention("cache", "dec[5]", t_window(0, 700), every=6)) is None
    assert combine((every2,), dataclasses.replace(every6, side="uncond")) is None
    other = Intervention("cache", "dec[5]", HALVES[1], every=6)
    assert combine((every2,), other) == (every2, other)


def test_pareto_front():
    pts = [
        Point("a", "single", (), 1.0, {"ssim": 1.0, "fid": 10.0}, True),
        Point("b", "single", (), 1.5, {"ssim": 0.9, "fid": 12.0}, True),
        Point("c", "single", (), 1.4, {"ssim": 0.8, "fid": 11.0}, True),  # beaten on ssim by b
        Point("d", "single", (), 2.0, {"ssim": 0.5, "fid": 30.0}, False),
        Point("e", "single", (), 1.5, {"ssim": 0.9, "fid": 12.0}, True),  # a tie with b: b stays
    ]
    assert pareto_front(pts, "ssim") == (0, 1, 3)
    assert pareto_front(pts, "fid") == (0, 2, 1, 3)  # lower is better for fid


# --------------------------------------------------------------------------- whole searches


@pytest.fixture(scope="module")
def setting(random_model):
    """An executor, baseline, metrics and FLOP counter for the random model; fid from the
    shipped digit classifier's features."""
    model = dataclasses.replace(
        random_model, features=tiny.features, reference_features=tiny.reference_features
    )
    plan = dataclasses.replace(make_plan(steps=6, samples=1), metrics=("mse", "ssim", "fid"))
    diffusion = Diffusion(model.diffusion, plan.sampler.steps)
    ex = Executor(model, diffusion, make_setup(plan, model, diffusion), CPU)
    baseline = ex.baseline()
    measure = Measure(plan.metrics, model, baseline.xs[-1], ex.setup.prompts)
    flops = FlopCounter(model, ex.programs, ex.doubled)
    return ex, baseline, measure, flops


def search(setting, s=SEARCH, **options):
    ex, baseline, measure, flops = setting
    return run_search(s, ex, baseline, measure, flops, SearchOptions(batch=4, **options))


@pytest.fixture(scope="module")
def found(setting):
    return search(setting)


def keeps_bounds(result, metrics: dict) -> bool:
    return all(
        holds(c.cmp, metrics[c.metric], b) for c, b in zip(result.search.constraints, result.bounds)
    )


def test_every_feasible_point_keeps_every_bound(found):
    assert found.points[0].kind == "baseline" and found.points[0].feasible
    assert any(p.feasible for p in found.points[1:]) and any(not p.feasible for p in found.points)
    for p in found.points:
        assert p.feasible == keeps_bounds(found, p.metrics), p.label
    assert found.bounds[0] == 1e-6
    base_fid = found.baseline_metrics["fid"]
    assert found.bounds[1] == pytest.approx(base_fid * 1.0001)


def test_the_best_is_feasible_and_the_fastest_feasible_point(found):
    best = found.best
    assert best.label == "search" and best.feasible and keeps_bounds(found, best.metrics)
    assert best.speedup > 1.2
    assert best.speedup == max(p.speedup for p in found.points if p.feasible)
    assert found.best_variant().name == "search" and found.best_variant().origin == "search"


def test_the_path_only_accepts_feasible_faster_combinations(found):
    outcomes = {p.outcome for p in found.path}
    assert {"accepted", "infeasible alone", "conflict"} <= outcomes
    speed = 1.0
    for step in found.path:
        if step.outcome in ("accepted", "rejected", "deferred"):
            assert step.combined is not None
        else:
            assert step.combined is None
        if step.outcome == "accepted":
            assert step.combined.feasible and step.combined.speedup > speed
            speed = step.combined.speedup
        if step.outcome == "infeasible alone":
            assert not step.alone.feasible
    accepted = [s.candidate for s in found.path if s.outcome == "accepted"]
    assert set(found.best.interventions) | set(found.redundant) == set(accepted)
    assert not set(found.best.interventions) & set(found.redundant)
    # drop of enc[0] has no meaning (a conv_in); drop/cache of a skip saves nothing
    labels = {s.candidate.label() for s in found.path}
    assert not any("enc[0]" in lb and lb.startswith("drop") for lb in labels)
    assert not any("skip[2]" in lb for lb in labels)
    # every candidate ends with one decision; a deferred one was measured again later
    final = [s.candidate for s in found.path if s.outcome != "deferred"]
    assert len(final) == len(set(final)) == found.candidates["measured"]
    assert found.candidates["not droppable"] == 2


def test_the_best_measured_from_its_own_start_matches_a_full_run(setting, found):
    """The greedy measured the best from the previous variant's state; a full run from x_T with
    the best's own rules must give the same numbers."""
    ex, _, measure, _ = setting
    sched = schedule(found.best_variant(), list(ex.setup.steps))
    x, cache = ex.x_T.clone(), {}
    with torch.no_grad():
        for step in ex.setup.steps:
            x = ex.forward(x, step, [sched.per_step[step.index]], [cache], "accelerate")
    again = measure.metrics(x)
    for m, v in found.best.metrics.items():
        assert again[m] == pytest.approx(v, rel=1e-4, abs=1e-9), m


def test_an_intervention_on_a_block_that_is_dead_anyway_is_redundant(setting):
    ex, baseline, measure, flops = setting
    s = _Search(SEARCH, ex, baseline, measure, flops, SearchOptions(), None)
    late = HALVES[0]
    cache5 = Intervention("cache", "dec[5]", late, every=2)
    # where dec[5] is reused, dec[3] feeds nothing: caching or dropping it changes nothing there
    assert s.redundant((cache5,), Intervention("cache", "dec[3]", late, every=2))
    assert not s.redundant((cache5,), Intervention("drop", "dec[3]", late))  # computed steps
    assert not s.redundant((cache5,), Intervention("cache", "dec[3]", HALVES[1], every=2))
    assert not s.redundant((cache5,), Intervention("cache", "dec[6]", late, every=2))
    # reused on the unconditional half only: dec[3] still feeds the conditional half
    uncond5 = Intervention("cache", "dec[5]", late, every=2, side="uncond")
    assert not s.redundant((uncond5,), Intervention("cache", "dec[3]", late, every=2))
    assert s.redundant((uncond5,), Intervention("cache", "dec[3]", late, every=2, side="uncond"))
    kept = s.simplify((Intervention("cache", "dec[3]", late, every=2), cache5))
    assert kept == (cache5,)
    assert s.in_order((cache5, Intervention("drop", "mid", HALVES[1]))) == (
        Intervention("drop", "mid", HALVES[1]),
        cache5,
    )  # the noisier window first


def test_the_same_search_twice_gives_the_same_path_and_best(setting, found):
    again = search(setting)
    one, two = found.to_json(), again.to_json()
    one.pop("seconds"), two.pop("seconds")
    assert one == two


def test_lookahead_measures_more_but_decides_the_same(setting, found):
    ahead = search(setting, lookahead=3)
    assert [(s.candidate, s.outcome) for s in ahead.path] == [
        (s.candidate, s.outcome) for s in found.path
    ]
    assert ahead.best.interventions == found.best.interventions
    for a, b in zip(ahead.path, found.path):
        if a.combined:
            for m in a.combined.metrics:
                assert a.combined.metrics[m] == pytest.approx(
                    b.combined.metrics[m], rel=1e-4, abs=1e-9
                )


def test_max_trials_stops_the_greedy(setting):
    short = search(setting, max_trials=2)
    assert sum(s.combined is not None for s in short.path) == 2
    assert short.best.feasible


def test_an_unreachable_bound_leaves_the_baseline(setting):
    s = dataclasses.replace(SEARCH, constraints=(Constraint("mse", "<", 0.0),))
    none = search(setting, s)
    assert not none.best.interventions and none.best.speedup == 1.0
    assert not none.best.feasible  # mse < 0 does not hold for the baseline either
    assert all(not p.feasible for p in none.points)


def test_results_json_table_and_plot(found, tmp_path):
    doc = json.loads(json.dumps(found.to_json(), allow_nan=False))
    assert {"name", "objective", "constraints", "best", "path", "pareto"} <= set(doc)
    assert doc["best"]["name"] == "search" and doc["best"]["speedup"] == found.best.speedup
    assert [c["bound"] for c in doc["constraints"]] == list(found.bounds)
    assert set(doc["pareto"]) == {"mse", "fid"}
    for point in doc["pareto"]["mse"]:
        assert doc["points"][point["point"]]["label"] == point["label"]
    console = Console(file=io.StringIO(), width=160)
    console.print(search_table(found))
    text = console.file.getvalue()
    assert "accepted" in text and "best:" in text
    png = save_search_png(found, tmp_path / "search_search.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- validation


@pytest.fixture(scope="module")
def checking(setting):
    """The validation images of the search tests: one sample per digit from seed 1 (the study
    has seed 0)."""
    ex, _, measure, _ = setting
    plan = dataclasses.replace(make_plan(steps=6, samples=1), metrics=measure.names)
    return validation_set(
        plan, Validation(1, 1), ex.model, ex.diffusion, CPU, ex.programs, measure.names,
        measure.options,
    )  # fmt: skip


@pytest.fixture(scope="module")
def validated(setting, checking):
    ex, baseline, measure, flops = setting
    return run_search(SEARCH, ex, baseline, measure, flops, SearchOptions(batch=4), None, checking)


def test_validation_uses_other_seeds_and_shares_no_image(setting, checking, validated):
    ex, baseline, _, _ = setting
    assert set(checking.seeds).isdisjoint(ex.setup.seeds)
    assert set(validated.validation_seeds) == set(checking.seeds)
    assert checking.executor.setup.prompts == ex.setup.prompts  # the same digits, other noise
    for a in checking.executor.x_T:
        assert not any(torch.equal(a, b) for b in ex.x_T)
    for a in checking.baseline.xs[-1]:
        assert not any(torch.equal(a, b) for b in baseline.xs[-1])
    # a validated point's numbers are its own measurement there, not the study's numbers
    measured = [p for p in validated.points if p.validation is not None and p.interventions]
    assert measured and any(p.validation["mse"] != p.metrics["mse"] for p in measured)


def test_validation_with_noise_per_image_shares_no_draw(setting):
    """With ``noise per image`` the study's images and the validation's are all distinct draws:
    the study's 2 samples of 10 digits are 20 draws, the validation's 20 others."""
    ex, _, measure, _ = setting
    plan = dataclasses.replace(make_plan(steps=6, samples=2), noise="image", metrics=measure.names)
    prompts = [str(d) for d in range(10)]
    plan = dataclasses.replace(plan, prompts=tuple(prompts))
    study = make_setup(plan, ex.model, ex.diffusion)
    val = validation_set(
        plan, Validation(2, 2), ex.model, ex.diffusion, CPU, ex.programs, measure.names,
        measure.options,
    )  # fmt: skip
    seeds = [*study.seeds, *val.seeds]
    assert len(set(seeds)) == len(seeds) == 40
    x = torch.cat([Executor(ex.model, ex.diffusion, study, CPU).x_T, val.executor.x_T])
    assert all(not torch.equal(x[i], x[j]) for i in range(len(x)) for j in range(i))


def test_a_validated_point_is_feasible_only_where_both_hold(validated):
    assert validated.validation_bounds is not None
    for p in (*validated.points, validated.best):
        both = p.fits and p.fits_validation is True
        assert p.feasible == both
        if p.fits_validation is not None:
            assert p.fits_validation == all(
                holds(c.cmp, p.validation[c.metric], b)
                for c, b in zip(validated.search.constraints, validated.validation_bounds)
            )
    best = validated.best
    assert best.feasible and best.fits_validation
    # no point that holds on both is faster than the best
    assert all(p.speedup <= best.speedup * (1 + 1e-9) for p in validated.points if p.feasible)


class _FailsOn(ValidationSet):
    """Validation images on which the listed variants break every bound (a search that fits
    its own images and not others)."""

    def __init__(self, real: ValidationSet, failing: set) -> None:
        super().__init__(real.executor, real.baseline, real.measure)
        self.failing = failing

    def metrics(self, ivs):
        got = super().metrics(ivs)
        return {m: math.inf for m in got} if ivs in self.failing else got


def test_a_point_infeasible_on_validation_is_never_reported_feasible(setting, checking, found):
    """The unvalidated search's best breaks the bounds on the validation images: it is not
    reported feasible anywhere, and the best is the fastest point that holds on both."""
    ex, baseline, measure, flops = setting
    assert found.best.interventions, "the search must find something for this test to mean it"
    bad = set()
    for p in found.points:  # the best as measured (before redundant interventions went)
        if p.feasible and p.speedup >= max(q.speedup for q in found.points if q.feasible) - 1e-9:
            bad.add(p.interventions)
    failing = _FailsOn(checking, bad)
    got = run_search(SEARCH, ex, baseline, measure, flops, SearchOptions(batch=4), None, failing)
    for p in got.points:
        if p.interventions in bad:
            assert p.fits and p.fits_validation is False and not p.feasible
    for step in got.path:
        if step.combined is not None and step.combined.interventions in bad:
            assert not step.combined.feasible
    assert got.best.feasible and got.best.fits_validation
    assert got.best.speedup < found.best.speedup
    ok = [p for p in got.points if p.feasible]
    assert got.best.speedup >= max(p.speedup for p in ok) - 1e-9


def test_validation_failing_everything_leaves_the_baseline(setting, checking):
    ex, baseline, measure, flops = setting
    everything = _FailsOn(checking, set())
    everything.metrics = lambda ivs: (  # type: ignore[method-assign]
        ValidationSet.metrics(everything, ivs)
        if not ivs
        else dict.fromkeys(measure.names, math.inf)
    )
    got = run_search(SEARCH, ex, baseline, measure, flops, SearchOptions(batch=4), None, everything)
    assert any(p.fits for p in got.points if p.interventions)  # it fit its own images
    assert not got.best.interventions and got.best.feasible
    assert not any(p.feasible for p in got.points if p.interventions)


def test_validated_results_json_and_table(validated):
    doc = json.loads(json.dumps(validated.to_json(), allow_nan=False))
    assert doc["validation"]["seeds"] == list(validated.validation_seeds)
    assert doc["best"]["validation"] == validated.best.validation
    console = Console(file=io.StringIO(), width=200)
    console.print(search_table(validated))
    text = console.file.getvalue()
    assert "val. mse" in text and "val. fid" in text and "feasible" in text


def test_several_cache_periods_are_candidates_of_their_own(setting):
    ex, baseline, measure, flops = setting
    s = dataclasses.replace(SEARCH, ops=("cache",), every=2, periods=(2, 3))
    cands, _ = _Search(s, ex, baseline, measure, flops, SearchOptions(), None).candidates()
    assert {iv.every for iv in cands} == {2, 3}
    assert {(iv.component, iv.window) for iv in cands if iv.every == 2} == {
        (iv.component, iv.window) for iv in cands if iv.every == 3
    }


# --------------------------------------------------------------------------- in a run


@pytest.mark.slow
def test_a_run_searches_reports_and_emits_the_best(tmp_path):
    """``ablang run`` on the built-in model (10 steps, one sample of two digits): the best
    variant joins the results under the search's name, results.json has the search's outcome,
    the Pareto plot is written, and ``emit sampler ... from search`` writes the best variant."""
    from ablang.commands.check import check_file
    from ablang.plan import Emit
    from ablang.run import RunOptions, run_plan

    study = tmp_path / "search.abl"
    study.write_text(
        'model tiny\nsampler ddpm steps 10 guidance 3.0\nsamples 1\nprompts "3", "7"\n'
        "metrics ssim, fid\n"
        "search speedup where ssim >= 0.5 and fid <= +50% over drop, cache every 2 of "
        "dec[5..8] for t in 0..1000 by 500\n"
    )
    checked = check_file(study)
    assert checked.plan is not None, checked.errors
    sampler = tmp_path / "fast.py"
    plan = dataclasses.replace(checked.plan, emits=(Emit(str(sampler), "search"),))
    out = tmp_path / "run"
    res = run_plan(plan, RunOptions(out=out, device="cpu"), Console(file=io.StringIO(), width=160))

    (found,) = res.searches
    best = res.variant("search")
    assert best.origin == "search" and best.interventions == found.best.interventions
    assert best.metrics == found.best.metrics
    assert best.cost.flops_ratio == pytest.approx(1 / found.best.speedup)
    doc = json.loads((out / "results.json").read_text())
    (entry,) = doc["searches"]
    assert (
        entry["best"]["name"] == "search"
        and entry["path"]
        and set(entry["pareto"]) == {"ssim", "fid"}
    )
    assert doc["variants"][-1]["name"] == "search"
    assert (out / "search_search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "grids" / "search.png").exists()
    text = sampler.read_text()
    assert 'VARIANT = "search"' in text
    for iv in found.best.interventions:
        assert iv.label() in text


def test_candidates_carry_the_side_of_their_op(setting):
    """`over drop on uncond, cache of ...`: each op's candidates act on its side of guidance,
    and their FLOPs count each half's program."""
    ex, baseline, measure, flops = setting
    sided = dataclasses.replace(
        SEARCH, ops=("drop", "cache"), sides=(("drop", "uncond"),), components=("dec[5]",)
    )
    s = _Search(sided, ex, baseline, measure, flops, SearchOptions(min_saving=0.0), None)
    grid = {(iv.op, iv.side) for iv in s.candidates()[0]}
    assert grid == {("drop", "uncond"), ("cache", "both")}
    one = Intervention("drop", "dec[5]", HALVES[0], side="uncond")
    both = Intervention("drop", "dec[5]", HALVES[0])
    assert 1.0 < s.speedup((one,)) < s.speedup((both,))


def test_guidance_is_a_candidate_for_drop_and_cache_only(setting):
    """`over drop, zero, cache of dec[5], guidance`: guidance gets drop and cache candidates, no
    zero; its cache saves the unconditional half at its reuse steps, and it is never simplified
    away as dead code (no program contains it)."""
    ex, baseline, measure, flops = setting
    s = dataclasses.replace(
        SEARCH, ops=("drop", "zero", "cache"), components=("dec[5]", "guidance"), every=2
    )
    srch = _Search(s, ex, baseline, measure, flops, SearchOptions(min_saving=0.0), None)
    cands, counts = srch.candidates()
    assert {iv.op for iv in cands if iv.component == "guidance"} == {"drop", "cache"}
    assert counts["not droppable"] == len(HALVES)  # zero guidance, per window
    cache = Intervention("cache", "guidance", t_window(0, 1000), every=2)
    assert srch.speedup((cache,)) == pytest.approx(4 / 3, rel=0.01)  # 6 steps: 9 of 12 halves
    dec = Intervention("cache", "dec[5]", t_window(0, 1000), every=2)
    assert srch.simplify((dec, cache)) == (dec, cache)


def test_a_search_over_guidance_finds_a_feasible_faster_variant(setting):
    """A guidance cache within loose bounds is accepted, and its point's images are the
    executor's for that variant."""
    ex, baseline, measure, _ = setting
    s = dataclasses.replace(
        SEARCH,
        constraints=(Constraint("ssim", ">=", 0.5),),
        ops=("cache",),
        components=("guidance",),
        every=2,
    )
    result = search(setting, s)
    assert result.best.speedup > 1.0 and result.best.feasible
    assert all(iv.component == "guidance" for iv in result.best.interventions)
    (full,) = ex.run_batch([result.best_variant()], baseline, "accelerate")
    assert measure.metrics(full.images)["ssim"] == pytest.approx(result.best.metrics["ssim"])


def test_every_combination_measured_from_a_resumed_state_matches_a_full_run(setting):
    """Extrapolated caches continue their line across windows (dec[5]'s and the guidance
    term's), so a combination resumed at a window's start needs the values the current variant
    holds there: every accepted point's metrics equal a full run's from x_T."""
    ex, baseline, measure, _ = setting
    thirds = (Window("step", 0, 2), Window("step", 2, 4), Window("step", 4, 6))
    s = dataclasses.replace(
        SEARCH,
        constraints=(Constraint("ssim", ">=", 0.0),),
        ops=("cache",),
        components=("dec[5]", "guidance"),
        windows=thirds,
        every=2,
        periods=(2, 3),
        extrapolated=(2, 3),
    )
    result = search(setting, s)
    accepted = [p.combined for p in result.path if p.outcome == "accepted"]
    assert len(accepted) >= 4 and any(
        iv.component == "dec[5]" and iv.window != thirds[0] for iv in accepted[-1].interventions
    )
    for point in accepted:
        (full,) = ex.run_batch([Variant("v", point.interventions)], baseline, "accelerate")
        again = measure.metrics(full.images)
        assert again["mse"] == pytest.approx(point.metrics["mse"], rel=1e-5), point.label


class Scripted(_Search):
    """The greedy on made-up figures: each candidate saves a fixed share of the FLOPs, and a
    combination's mse is the sum of its members' plus a penalty for pairs that hurt together
    (images are never computed: the search sees only these numbers)."""

    def __init__(self, setting, saving, cost, penalty):
        ex, baseline, measure, flops = setting
        s = dataclasses.replace(SEARCH, constraints=(Constraint("mse", "<=", 1.0),))
        super().__init__(s, ex, baseline, measure, flops, SearchOptions(), None)
        self.saving, self.cost, self.penalty = saving, cost, penalty

    def speedup(self, ivs):
        return 1.0 / (1.0 - sum(self.saving.get(iv, 0.0) for iv in ivs))

    def mse(self, ivs):
        pairs = sum(p for pair, p in self.penalty.items() if set(pair) <= set(ivs))
        return sum(self.cost[iv] for iv in ivs) + pairs

    def measure_with(self, current, new):
        return [(self.combined(current, iv), dict(current.states)) for iv in new]

    def point(self, label, kind, ivs, images):
        metrics = {"mse": self.mse(ivs)}
        p = Point(label, kind, ivs, self.speedup(ivs), metrics, self.feasible(metrics))
        self.points.append(p)
        return p


# Three candidates on made-up figures: A saves most for least; B's ratio alone (0.2 / 0.3)
# beats C's (0.22 / 0.35); what they cost together is each test's penalty.
A, B, C = (
    Intervention("drop", "mid", HALVES[0]),
    Intervention("cache", "dec[5]", HALVES[1], every=2),
    Intervention("drop", "enc[3]", HALVES[1]),
)


def scripted_greedy(setting, penalty):
    s = Scripted(
        setting,
        saving={A: 0.3, B: 0.2, C: 0.22},
        cost={A: 0.1, B: 0.3, C: 0.35},
        penalty=penalty,
    )
    base = s.point("baseline", "baseline", (), None)
    alone = [s.point(iv.label(), "single", (iv,), None) for iv in (A, B, C)]
    current, path = s.greedy(base, [A, B, C], alone)
    return s, current, path


def test_a_candidate_that_costs_more_with_the_current_variant_waits_for_cheaper_ones(setting):
    """A and B hurt together far more than alone. B's ratio alone (0.2 / 0.3) is better than
    C's (0.22 / 0.35), but with A it adds 0.85 to the mse: it is deferred, C goes in first, and B
    no longer fits. Taken in the order of their figures alone (A, B) the search would stop at
    a 2.00x; with C in B's place it reaches 2.08x."""
    a, b, c = A, B, C
    _, current, path = scripted_greedy(setting, {(a, b): 0.55})
    assert [(st.candidate, st.outcome) for st in path] == [
        (a, "accepted"),
        (b, "deferred"),
        (c, "accepted"),
        (b, "rejected"),
    ]
    assert path[1].combined.metrics["mse"] == pytest.approx(0.95)  # it fitted, but at a price
    assert path[3].combined.metrics["mse"] == pytest.approx(1.3)
    assert set(current.interventions) == {a, c}
    assert current.point.speedup == pytest.approx(1 / (1 - 0.52))


def test_the_path_lists_a_deferred_candidate_where_it_was_finally_accepted(setting):
    """B is measured first and its ratio drops to 0.5; C's then drops to 0.34, so B is first
    again and accepted without a new measurement: its row follows C's deferral."""
    a, b, c = A, B, C
    s, current, path = scripted_greedy(setting, {(a, b): 0.1, (a, c): 0.3})
    assert [(st.candidate, st.outcome) for st in path] == [
        (a, "accepted"),
        (c, "deferred"),
        (b, "accepted"),
        (c, "rejected"),
    ]
    assert path[2].combined.metrics["mse"] == pytest.approx(0.5)
    assert set(current.interventions) == {a, b}
    measured = [p for p in s.points if p.kind == "combination"]
    # A, B, C, then C again: B's acceptance reused its measurement
    assert [p.interventions[-1] for p in measured] == [a, b, c, c]
