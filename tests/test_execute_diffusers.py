"""``model diffusers "DIR"`` studies through the resolver, the Session and the Executor: the
baseline equals the user's own pipeline, variants continue from the baseline's scheduler state,
DeepCache's schedule is one ``cache`` line of a study, measure equals accelerate on the SD Unet.

Parity is ``torch.equal`` on images in [0, 1] (the pipelines' ``output_type="pt"``) for one
sample against ``pipe(..., generator=torch.Generator().manual_seed(seed))``.
"""

from __future__ import annotations

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("DeepCache")

import torch
from diffusers_fixtures import tiny_ddpm_pipeline, tiny_sd_pipeline

from ablang.compile import Rule
from ablang.errors import AblangErrors
from ablang.models.diffusers_sched import load_scheduler
from ablang.models.registry import load_adapter
from ablang.models.sd import to_unit
from ablang.parse import parse
from ablang.plan import Intervention, ModelSpec, Variant, Window
from ablang.resolve import resolve
from ablang.session import Session

STEPS = 5
PROMPT = "a photo of a red cat"
SEED = 3


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipes")
    return {
        "pixel": tiny_ddpm_pipeline(root / "pixel"),
        # linspace spacing: fractional timesteps (999.0, 749.25, ...)
        "euler": tiny_ddpm_pipeline(
            root / "euler", scheduler="EulerDiscreteScheduler", timestep_spacing="linspace"
        ),
        "sd": tiny_sd_pipeline(root / "sd"),
        "sd_v": tiny_sd_pipeline(root / "sd_v", prediction_type="v_prediction"),
    }


@pytest.fixture(scope="module")
def tables(dirs):
    return {
        k: load_adapter(ModelSpec("diffusers", str(d))).component_table() for k, d in dirs.items()
    }


def study(directory, sampler: str, body: str = "", prompts: bool = True) -> str:
    text = f'model diffusers "{directory}"\n{sampler}\nseed {SEED}\nsamples 1\nmetrics mse\n'
    return text + (f'prompts "{PROMPT}"\n' if prompts else "") + body


def session(dirs, tables, kind: str, sampler: str, body: str = "") -> Session:
    text = study(dirs[kind], sampler, body, prompts=kind.startswith("sd"))
    plan = resolve(parse(text, "s.abl"), tables[kind])
    return Session.from_plan(plan, "cpu")


# --------------------------------------------------------------------------- the pipelines


def pixel_reference(directory, scheduler: str | None, ddim: bool = False, **kwargs):
    from diffusers import DDIMPipeline, DDPMPipeline

    pipe = (DDIMPipeline if ddim else DDPMPipeline).from_pretrained(str(directory))
    pipe.scheduler = load_scheduler(directory, scheduler)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(SEED)
    return pipe(generator=gen, num_inference_steps=STEPS, output_type="pt", **kwargs).images


_SD_PIPES: dict = {}


def sd_pipe(directory):
    from diffusers import StableDiffusionPipeline

    if directory not in _SD_PIPES:
        pipe = StableDiffusionPipeline.from_pretrained(str(directory))
        pipe.set_progress_bar_config(disable=True)
        _SD_PIPES[directory] = pipe
    return _SD_PIPES[directory]


def sd_reference(directory, scheduler: str | None, guidance: float = 7.5, **kwargs):
    pipe = sd_pipe(directory)
    pipe.scheduler = load_scheduler(directory, scheduler)
    return pipe(
        PROMPT,
        generator=torch.Generator().manual_seed(SEED),
        num_inference_steps=STEPS,
        guidance_scale=guidance,
        output_type="pt",
        **kwargs,
    ).images


def baseline_images(s: Session) -> torch.Tensor:
    return to_unit(s.executor.baseline().images)


# --------------------------------------------------------------------------- baseline == pipeline


@pytest.mark.parametrize(
    ("line", "scheduler", "ddim", "kwargs"),
    [
        (f"sampler pipeline steps {STEPS}", None, False, {}),
        (f"sampler ddpm steps {STEPS}", "DDPMScheduler", False, {}),
        (f"sampler ddim steps {STEPS}", "DDIMScheduler", True, {"eta": 0.0}),
        (f"sampler DDIMScheduler steps {STEPS} eta 0.7", "DDIMScheduler", True, {"eta": 0.7}),
        (
            f"sampler DPMSolverMultistepScheduler steps {STEPS}",
            "DPMSolverMultistepScheduler",
            False,
            {},
        ),
    ],
)
def test_pixel_baseline_equals_the_pipeline(dirs, tables, line, scheduler, ddim, kwargs):
    s = session(dirs, tables, "pixel", line)
    assert s.setup.scheduler == (scheduler or "pipeline")
    ref = pixel_reference(dirs["pixel"], scheduler, ddim, **kwargs)
    assert torch.equal(baseline_images(s), ref)


@pytest.mark.parametrize(
    "scheduler",
    [
        None,  # SD's own PNDM (skip_prk_steps: its second timestep twice)
        "DDIMScheduler",
        "DPMSolverMultistepScheduler",
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "UniPCMultistepScheduler",
    ],
)
def test_sd_baseline_equals_the_pipeline(dirs, tables, scheduler):
    line = f"sampler {scheduler or 'pipeline'} steps {STEPS}"
    s = session(dirs, tables, "sd", line)
    assert s.setup.guidance == 7.5 and s.executor.doubled  # the pipeline's default guidance
    assert torch.equal(baseline_images(s), sd_reference(dirs["sd"], scheduler))


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "DPMSolverMultistepScheduler"])
def test_sd_v_prediction_equals_the_pipeline(dirs, tables, scheduler):
    s = session(dirs, tables, "sd_v", f"sampler {scheduler} steps {STEPS} guidance 5")
    assert torch.equal(baseline_images(s), sd_reference(dirs["sd_v"], scheduler, guidance=5.0))


def test_time_windows_use_the_schedulers_timesteps(dirs, tables):
    """Euler with linspace spacing has fractional timesteps; `for t in` windows test them as they
    are, `for step in` the step index; the Unet sees them as float32, as in the pipeline."""
    from diffusers import EulerDiscreteScheduler

    s = session(dirs, tables, "euler", f"sampler pipeline steps {STEPS}")
    ref = EulerDiscreteScheduler.from_config(load_scheduler(dirs["euler"]).config)
    ref.set_timesteps(STEPS)
    assert [st.t for st in s.steps] == [t.item() for t in ref.timesteps]
    assert any(isinstance(st.t, float) and not st.t.is_integer() for st in s.steps)
    assert [st.index for st in s.steps] == list(range(STEPS))
    assert s.executor.sampler.model_t(1, 2, s.device).dtype == torch.float32
    w = Window("t", 0, 500)
    inside = [st.index for st in s.steps if w.contains(st.t, st.index)]
    assert inside == [k for k, t in enumerate(ref.timesteps.tolist()) if 0 <= t < 500]
    assert 0 < len(inside) < STEPS
    body = "variant late {\n    drop skip[1] for t in 0..500\n}\n"
    s = session(dirs, tables, "euler", f"sampler pipeline steps {STEPS}", body)
    (late,) = s.executor.run_batch([s.plan.variant("late")], s.executor.baseline(), "accelerate")
    assert late.start_step == inside[0]


# --------------------------------------------------------------------------- prefix sharing


def full_rerun(s: Session, variant: Variant) -> torch.Tensor:
    """The variant from x_T, every step its own (nothing taken from the baseline)."""
    from ablang.compile import schedule

    ex = s.executor
    sched = schedule(variant, s.steps)
    state, caches = ex.sampler.start(ex.device), [{}]
    with torch.no_grad():
        for k, step in enumerate(s.steps):
            out = ex.output(
                ex.sampler.model_input(state), step, [sched.per_step[k]], caches, "accelerate"
            )
            ex.sampler.step(state, out)
    return ex.images(ex.sampler.x(state))


@pytest.mark.parametrize(
    "scheduler", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "pipeline"]
)
def test_variants_continue_from_the_baselines_scheduler_state(dirs, tables, scheduler):
    """DPM-Solver++ 2M, UniPC and SD's PNDM keep a history; a variant starting at step 3 from
    the baseline's fork equals a full re-run, bit for bit. Batched in measure mode (another
    program, masks, twice the batch: float32 sums in another order) within 1e-5."""
    s = session(dirs, tables, "sd", f"sampler {scheduler} steps {STEPS}")
    late = Variant("late", (Intervention("drop", "skip[1]", Window("step", 3, STEPS)),))
    other = Variant("other", (Intervention("scale", "mid", Window("step", 3, STEPS), factor=0.5),))
    base = s.executor.baseline()
    (alone,) = s.executor.run_batch([late], base, "accelerate")
    assert alone.start_step == 3
    full = full_rerun(s, late)
    assert torch.equal(alone.images, full)
    assert not torch.equal(full, base.images)
    batched = s.executor.run_batch([late, other], base, "measure")
    assert torch.allclose(batched[0].images, full, atol=1e-5, rtol=0)
    assert torch.allclose(batched[1].images, full_rerun(s, other), atol=1e-5, rtol=0)


def test_journaled_baseline_without_states_is_sampled_again(dirs, tables):
    s = session(dirs, tables, "sd", f"sampler DPMSolverMultistepScheduler steps {STEPS}")
    base = s.executor.baseline()
    late = Variant("late", (Intervention("drop", "skip[1]", Window("step", 2, STEPS)),))
    (want,) = s.executor.run_batch([late], base, "accelerate")
    base.states = None  # as a journal reads it back
    (got,) = s.executor.run_batch([late], base, "accelerate")
    assert torch.equal(got.images, want.images)


# --------------------------------------------------------------------------- measure == accelerate


def test_measure_equals_accelerate_for_every_op_on_the_sd_unet(dirs, tables):
    s = session(dirs, tables, "sd", f"sampler DDIMScheduler steps {STEPS}")
    ivs = [
        Intervention("drop", "skip[2]", Window("step", 1, STEPS)),
        Intervention("zero", "enc[1]", Window("step", 1, STEPS)),
        Intervention("scale", "dec[4]", Window("step", 1, STEPS), factor=0.7),
        Intervention("cache", "dec[5]", Window("step", 1, STEPS), every=2),
        Intervention("drop", "mid", Window("step", 1, STEPS)),
    ]
    variants = [Variant(f"v{k}", (iv,)) for k, iv in enumerate(ivs)]
    base = s.executor.baseline()
    measured = s.executor.run_batch(variants, base, "measure")
    for v, m in zip(variants, measured):
        (acc,) = s.executor.run_batch([v], base, "accelerate")
        assert torch.allclose(m.images, acc.images, atol=1e-5, rtol=0), v.name
        assert not torch.equal(acc.images, base.images), v.name


def test_one_sided_interventions_act_on_their_half_of_the_pipelines_batch(dirs, tables):
    """diffusers batches guidance as ``[uncond; cond]``: a one-sided rule's mask (measure) and
    the split halves (accelerate) must both find its half by name, so the modes agree, and the
    two sides give different images."""
    s = session(dirs, tables, "sd", f"sampler DDIMScheduler steps {STEPS}")
    window = Window("step", 1, STEPS)
    variants = [
        Variant(f"{op}_{side}", (Intervention(op, comp, window, side=side, **kw),))
        for op, comp, kw in [("drop", "skip[2]", {}), ("cache", "dec[5]", {"every": 2})]
        for side in ("cond", "uncond")
    ]
    base = s.executor.baseline()
    measured = s.executor.run_batch(variants, base, "measure")
    for v, m in zip(variants, measured):
        (acc,) = s.executor.run_batch([v], base, "accelerate")
        assert torch.allclose(m.images, acc.images, atol=1e-5, rtol=0), v.name
        assert not torch.equal(acc.images, base.images), v.name
    assert not torch.allclose(measured[0].images, measured[1].images, atol=1e-3)


def test_drop_guidance_everywhere_is_the_pipeline_without_guidance(dirs, tables):
    """`drop guidance` at every step runs the conditional half alone: the pipeline's own
    images at guidance_scale 1, bit for bit; measure mode (doubled batch, halves combined per
    chunk) agrees."""
    s = session(dirs, tables, "sd", f"sampler DDIMScheduler steps {STEPS}")
    v = Variant("unguided", (Intervention("drop", "guidance", Window("step", 0, STEPS)),))
    base = s.executor.baseline()
    (acc,) = s.executor.run_batch([v], base, "accelerate")
    (mea,) = s.executor.run_batch([v], base, "measure")
    assert torch.equal(to_unit(acc.images), sd_reference(dirs["sd"], "DDIMScheduler", 1.0))
    assert torch.allclose(mea.images, acc.images, atol=1e-5, rtol=0)


def test_cache_guidance_finds_the_conditional_half_in_the_pipelines_batch(dirs, tables):
    """The guidance term is guided - cond, cond being the second half of ``[uncond; cond]``:
    both modes agree, and the images are neither the baseline's nor the unguided ones."""
    s = session(dirs, tables, "sd", f"sampler DDIMScheduler steps {STEPS}")
    window = Window("step", 0, STEPS)
    cached = Variant("cached", (Intervention("cache", "guidance", window, every=2),))
    unguided = Variant("unguided", (Intervention("drop", "guidance", window),))
    base = s.executor.baseline()
    (acc,) = s.executor.run_batch([cached], base, "accelerate")
    mea, off = s.executor.run_batch([cached, unguided], base, "measure")
    assert torch.allclose(mea.images, acc.images, atol=1e-5, rtol=0)
    assert not torch.allclose(acc.images, base.images, atol=1e-4)
    assert not torch.allclose(acc.images, off.images, atol=1e-3)


def test_diffusers_emitter_refuses_one_sided_variants(dirs, tables):
    from ablang.emit import emit_source
    from ablang.errors import AblangError

    s = session(dirs, tables, "sd", f"sampler DDIMScheduler steps {STEPS}")
    iv = Intervention("drop", "skip[2]", Window("step", 1, STEPS), side="uncond")
    with pytest.raises(AblangError, match="one side of guidance"):
        emit_source(s.plan, Variant("v", (iv,)), s.model, s.executor.programs)


# --------------------------------------------------------------------------- DeepCache


def deepcache(pipe, call, branch: int, interval: int):
    from DeepCache import DeepCacheSDHelper

    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=branch)
    helper.enable()
    try:
        return call()
    finally:
        helper.disable()


@pytest.mark.parametrize(("branch", "interval"), [(0, 2), (1, 3), (2, 2)])
def test_deepcache_equals_a_cache_line_on_the_pixel_pipeline(dirs, tables, branch, interval):
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(str(dirs["pixel"]))
    pipe.set_progress_bar_config(disable=True)

    def call():
        gen = torch.Generator().manual_seed(SEED)
        return pipe(generator=gen, num_inference_steps=STEPS, output_type="pt").images

    ref = deepcache(pipe, call, branch, interval)
    comp = f"dec[{tables['pixel'].count('dec') - 2 - branch}]"
    body = f"variant dc {{\n    cache {comp} every {interval}\n}}\n"
    s = session(dirs, tables, "pixel", f"sampler pipeline steps {STEPS}", body)
    (got,) = s.executor.run_batch([s.plan.variant("dc")], s.executor.baseline(), "accelerate")
    assert torch.equal(to_unit(got.images), ref)
    assert not torch.equal(ref, call())


@pytest.mark.parametrize(("branch", "interval"), [(0, 3), (1, 2), (4, 2)])
def test_deepcache_equals_a_cache_line_on_sd(dirs, tables, branch, interval):
    pipe = sd_pipe(dirs["sd"])
    ref = deepcache(pipe, lambda: sd_reference(dirs["sd"], "DDIMScheduler"), branch, interval)
    comp = f"dec[{tables['sd'].count('dec') - 2 - branch}]"
    body = f"variant dc {{\n    cache {comp} every {interval}\n}}\n"
    s = session(dirs, tables, "sd", f"sampler DDIMScheduler steps {STEPS}", body)
    (got,) = s.executor.run_batch([s.plan.variant("dc")], s.executor.baseline(), "accelerate")
    assert torch.equal(to_unit(got.images), ref)


# --------------------------------------------------------------------------- the language


def errors(text: str, table) -> list:
    with pytest.raises(AblangErrors) as e:
        resolve(parse(text, "s.abl"), table)
    return e.value.errors


def test_unknown_scheduler_names_the_choices(dirs, tables):
    (err,) = errors(study(dirs["sd"], "sampler DPMSolverMultistep steps 5"), tables["sd"])
    assert err.code == "unknown-sampler" and err.span.line == 2
    assert "did you mean DPMSolverMultistepScheduler" in err.hint and "pipeline" in err.hint


def test_diffusers_samplers_need_a_diffusers_model():
    (err,) = errors("model tiny\nsampler pipeline steps 5\n", None)
    assert err.code == "sampler-model" and err.span.col == 9
    (err,) = errors("model tiny\nsampler EulerDiscreteScheduler\n", None)
    assert err.code == "sampler-model"


def test_eta_only_for_ddim_schedulers(dirs, tables):
    (err,) = errors(study(dirs["sd"], "sampler EulerDiscreteScheduler eta 0.5"), tables["sd"])
    assert err.code == "sampler-option"
    (err,) = errors(study(dirs["sd"], "sampler pipeline eta 0.5"), tables["sd"])  # PNDM
    assert err.code == "sampler-option"


def test_guidance_only_for_text_models(dirs, tables):
    (err,) = errors(
        study(dirs["pixel"], "sampler pipeline guidance 3", prompts=False), tables["pixel"]
    )
    assert err.code == "guidance-unconditional"
    plan = resolve(parse(study(dirs["sd"], "sampler pipeline guidance 3"), "s.abl"), tables["sd"])
    assert plan.sampler.guidance == 3.0 and plan.sampler.scheduler == "pipeline"


def test_default_sampler_is_the_pipelines(dirs, tables):
    text = f'model diffusers "{dirs["sd"]}"\n'
    plan = resolve(parse(text, "s.abl"), tables["sd"])
    assert plan.sampler.scheduler == "pipeline"
    assert tables["sd"].scheduler == "PNDMScheduler"
    assert "UniPCMultistepScheduler" in tables["sd"].schedulers


def test_cache_rules_reach_the_sd_unet(dirs, tables):
    """Sanity for the DeepCache tests: the cache line compiles to reuse steps on the SD Unet."""
    s = session(dirs, tables, "sd", f"sampler DDIMScheduler steps {STEPS}")
    rule = Rule("dec[6]", "cache", phase="reuse")
    prog = s.programs.get(frozenset({rule}), "accelerate")
    assert prog.count_modules() < s.programs.get(frozenset(), "accelerate").count_modules()


# --------------------------------------------------------------------------- emitted samplers


@pytest.mark.slow
def test_emitted_sd_sampler_reproduces_the_run_without_ablang(dirs, tables, tmp_path):
    """`ablang run` a study, emit its variant, run the emitted file in a subprocess in which
    ``import ablang`` fails: the same images, bit for bit."""
    import subprocess
    import sys

    from ablang.run import RunOptions, run_plan

    body = (
        "variant v {\n    cache dec[6] every 2\n    drop skip[1] for step in 2..5\n}\n"
        'emit sampler "fast.py" from v\n'
    )
    text = study(dirs["sd"], f"sampler DPMSolverMultistepScheduler steps {STEPS}", body)
    plan = resolve(parse(text, "s.abl"), tables["sd"], source_path=str(tmp_path / "s.abl"))
    run_plan(plan, RunOptions(out=tmp_path / "run", device="cpu"))
    src = (tmp_path / "fast.py").read_text()
    assert "import ablang" not in src and "from ablang" not in src
    script = (
        "import runpy, sys\n"
        "sys.modules['ablang'] = None  # any import of ablang fails\n"
        f"sys.argv = ['fast.py', '--n', '1', '--prompts', {PROMPT!r}, '--seed', '{SEED}',"
        f" '-o', 'g.png', '--tensor', 't.pt']\n"
        "runpy.run_path('fast.py', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    images = torch.load(tmp_path / "t.pt", weights_only=True)
    runs = [
        torch.load(p, weights_only=True)
        for p in sorted((tmp_path / "run" / "samples").glob("*.pt"))
    ]
    assert any(torch.equal(images, r) for r in runs)


@pytest.mark.parametrize("scheduler", ["DPMSolverMultistepScheduler", "PNDMScheduler"])
def test_search_on_a_stateful_scheduler_resumes_whole_states(dirs, tables, scheduler):
    """The greedy runs each combination from its current variant's state at the combination's
    first step; with a multistep solver that state includes the solver's history. Every point it
    measured equals a fresh run of the same interventions from the baseline."""
    from ablang.measure import Measure
    from ablang.search import SearchOptions, run_search

    body = (
        "search fast speedup where mse <= 1 over drop, cache every 2 of dec[1], dec[2], skip[1]"
        " for step in 0..6 by 2 validate 0 samples\n"
    )
    s = session(dirs, tables, "pixel", f"sampler {scheduler} steps 6", body)
    ex = s.executor
    base = ex.baseline()
    measure = Measure(("mse",), s.model, base.images, ex.setup.prompts)
    got = run_search(s.plan.searches[0], ex, base, measure, s.flops, SearchOptions(batch=4))
    combos = [p for p in got.points if p.kind == "combination"]
    assert combos, "the greedy measured no combination"
    assert any(len(p.interventions) > 1 for p in combos)
    for p in got.points:
        if not p.interventions:
            continue
        (fresh,) = ex.run_batch([Variant("fresh", p.interventions)], base, "accelerate")
        want = measure.metrics(fresh.images)["mse"]
        assert p.metrics["mse"] == pytest.approx(want, rel=1e-4, abs=1e-9), p.label
