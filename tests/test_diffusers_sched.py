"""The diffusers scheduler stepper against diffusers' own pixel pipelines, and prefix sharing.

Parity is asserted bit for bit (``torch.equal``) where the batch is the pipeline's: a batch of
one sample against ``pipe(generator=torch.Generator().manual_seed(seed))``, and a batch of
several against the pipeline called with the same list of per-sample generators. Across batch
sizes float32 kernels may sum in another order (about 1e-6 on these models); that is the
tolerance stated for "sample i of a batch == the pipeline's batch of one".
"""

from __future__ import annotations

import pytest

pytest.importorskip("diffusers")

import torch
from diffusers_fixtures import tiny_ddpm_pipeline

from ablang.models import ModelUnavailable
from ablang.models.diffusers_sched import (
    DiffusersSampler,
    load_scheduler,
    scheduler_names,
    unknown_scheduler,
)
from ablang.models.diffusers_unet import DiffusersUnet

STEPS = 6
OWN = (
    "DDPMScheduler",
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "PNDMScheduler",
)
BATCH_TOL = 1e-5  # float32 kernels at another batch size; the measured gap is ~1e-6


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def pixel_dirs(tmp_path_factory):
    """One pixel pipeline per scheduler it ships with; the same Unet weights in each."""
    root = tmp_path_factory.mktemp("pixel")
    return {name: tiny_ddpm_pipeline(root / name, scheduler=name) for name in OWN}


@pytest.fixture(scope="module")
def unet(pixel_dirs):
    from diffusers import UNet2DModel

    model = UNet2DModel.from_pretrained(str(pixel_dirs["DDPMScheduler"] / "unet"))
    return model.eval().requires_grad_(False)


def pipeline(directory, scheduler=None, ddim=False):
    from diffusers import DDIMPipeline, DDPMPipeline

    pipe = (DDIMPipeline if ddim else DDPMPipeline).from_pretrained(str(directory))
    if scheduler is not None:
        pipe.scheduler = scheduler
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference(pipe, seeds, **kwargs) -> torch.Tensor:
    """The pipeline's images for each seed alone, [0, 1]."""
    return torch.cat(
        [
            pipe(
                generator=torch.Generator().manual_seed(s),
                num_inference_steps=STEPS,
                output_type="pt",
                **kwargs,
            ).images
            for s in seeds
        ]
    )


@torch.no_grad()
def sample(sampler: DiffusersSampler, model, seeds, *, hook=None, state=None, forks=None):
    """ablang's loop with a pixel Unet (wrapped as ablang traces it); ``hook(i, out)`` may change
    the model output at step i (a stand-in for a variant); ``forks`` collects a snapshot before
    every step. Returns the final state."""
    net = DiffusersUnet(model).eval()
    st = state if state is not None else sampler.start(seeds, (3, 16, 16))
    while st.index < len(sampler):
        if forks is not None:
            forks[st.index] = st.fork()
        x = sampler.model_input(st)
        out = net(x, sampler.t(st.index, x.shape[0]))
        if hook is not None:
            out = hook(st.index, out)
        sampler.step(st, out)
    return st


def unit(x: torch.Tensor) -> torch.Tensor:
    return (x / 2 + 0.5).clamp(0, 1)  # DDPMPipeline's own conversion


# --------------------------------------------------------------------------- loading


def test_own_scheduler_and_by_name(pixel_dirs):
    for name, directory in pixel_dirs.items():
        assert type(load_scheduler(directory)).__name__ == name
    own = load_scheduler(pixel_dirs["DPMSolverMultistepScheduler"])
    assert type(own).__name__ == "DPMSolverMultistepScheduler"
    other = load_scheduler(pixel_dirs["DDPMScheduler"], "EulerDiscreteScheduler")
    assert type(other).__name__ == "EulerDiscreteScheduler"
    assert other.config.beta_schedule == "linear"  # the directory's config carried over
    assert "UniPCMultistepScheduler" in scheduler_names("DDPMScheduler")
    third = load_scheduler(
        pixel_dirs["DDPMScheduler"], "DPMSolverMultistepScheduler", {"solver_order": 3}
    )
    assert third.config.solver_order == 3 and third.config.num_train_timesteps == 1000


def test_unknown_scheduler_names_the_choices(pixel_dirs):
    with pytest.raises(ModelUnavailable) as err:
        load_scheduler(pixel_dirs["DDPMScheduler"], "UniPCMultistepSchedular")
    assert "did you mean UniPCMultistepScheduler?" in str(err.value)
    assert "DDIMScheduler" in unknown_scheduler("nope", "DDPMScheduler")


def test_eta_only_where_step_takes_it(pixel_dirs):
    with pytest.raises(ModelUnavailable, match="no eta"):
        DiffusersSampler.from_dir(pixel_dirs["DDPMScheduler"], STEPS, eta=0.5)
    ddim = DiffusersSampler.from_dir(pixel_dirs["DDIMScheduler"], STEPS, eta=0.5)
    assert ddim.options == {"eta": 0.5}


def test_timesteps_are_the_schedulers(pixel_dirs):
    sampler = DiffusersSampler.from_dir(pixel_dirs["DDIMScheduler"], STEPS)
    # "leading" spacing: 1000 // 6 = 166 apart, noisiest first
    assert sampler.timesteps == (830, 664, 498, 332, 166, 0)
    t = sampler.t(2, 4)
    assert t.shape == (4,) and t.dtype == torch.int64 and int(t[0]) == 498


# --------------------------------------------------------------------------- baseline == pipeline


# DDPMPipeline passes ``generator=`` to every scheduler's step, and PNDM's and UniPC's take
# none (a TypeError inside diffusers), so their pipeline parity is shown on SD (tests/test_sd.py)
@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler"])
def test_baseline_equals_the_pipeline(pixel_dirs, unet, name):
    sampler = DiffusersSampler.from_dir(pixel_dirs[name], STEPS)
    ref = reference(pipeline(pixel_dirs[name]), [5])
    ours = unit(sample(sampler, unet, [5]).x)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("eta", [0.0, 0.8])
def test_ddim_eta_equals_ddim_pipeline(pixel_dirs, unet, eta):
    sampler = DiffusersSampler.from_dir(
        pixel_dirs["DDPMScheduler"], STEPS, name="DDIMScheduler", eta=eta
    )
    ref = reference(pipeline(pixel_dirs["DDPMScheduler"], ddim=True), [2], eta=eta)
    assert torch.equal(unit(sample(sampler, unet, [2]).x), ref)


def test_batch_of_seeds_equals_pipeline_with_generator_list(pixel_dirs, unet):
    seeds = [7, 8, 9]
    sampler = DiffusersSampler.from_dir(pixel_dirs["DDPMScheduler"], STEPS)
    pipe = pipeline(pixel_dirs["DDPMScheduler"])
    batched = pipe(
        batch_size=3,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        num_inference_steps=STEPS,
        output_type="pt",
    ).images
    ours = unit(sample(sampler, unet, seeds).x)
    assert torch.equal(ours, batched)
    alone = reference(pipe, seeds)
    assert (ours - alone).abs().max() <= BATCH_TOL
    # each seed's noise is its own: different seeds, different images
    assert (ours[0] - ours[1]).abs().max() > 0.05


# --------------------------------------------------------------------------- prefix sharing

SOLVERS = (
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "PNDMScheduler",
    "DDPMScheduler",
    "DDIMScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "DEISMultistepScheduler",
    "HeunDiscreteScheduler",
)


def _variant(k: int):
    """Scales the model output from step k on: active only after the shared prefix."""
    return lambda i, out: out * 0.9 if i >= k else out


@pytest.mark.parametrize("name", SOLVERS)
def test_variant_from_snapshot_equals_full_rerun(pixel_dirs, unet, name):
    sampler = DiffusersSampler.from_dir(pixel_dirs["DDPMScheduler"], STEPS, name=name)
    seeds = [1, 2]
    forks = {}
    base = sample(sampler, unet, seeds, forks=forks).x
    # not the last step: with set_alpha_to_one False, PNDM's and DDIM's last step (t=0 to the
    # final alpha, equal to alpha_0) gives the model output a zero coefficient
    for k in (2, len(sampler) // 2 + 1):
        rerun = sample(sampler, unet, seeds, hook=_variant(k)).x
        resumed = sample(sampler, unet, seeds, hook=_variant(k), state=forks[k].fork()).x
        assert torch.equal(resumed, rerun), f"{name}: resumed at step {k}"
        assert not torch.equal(rerun, base)
    # the baseline itself resumes bit for bit from any of its snapshots
    again = sample(sampler, unet, seeds, state=forks[2].fork()).x
    assert torch.equal(again, base)


@pytest.mark.parametrize(
    "name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "PNDMScheduler"]
)
def test_solver_state_matters(pixel_dirs, unet, name):
    """Restarting from x alone, with a fresh scheduler placed at the same step, is not the same
    trajectory for these solvers: their history is part of the state a fork must carry."""
    sampler = DiffusersSampler.from_dir(pixel_dirs["DDPMScheduler"], STEPS, name=name)
    forks = {}
    base = sample(sampler, unet, [4], forks=forks).x
    k = 3
    naive = sampler.start([4], (3, 16, 16))
    naive.x, naive.index = forks[k].x.clone(), k
    naive.generators = forks[k].fork().generators
    if hasattr(naive.scheduler, "_step_index"):
        naive.scheduler._step_index = k
    naive_out = sample(sampler, unet, [4], state=naive).x
    assert not torch.equal(naive_out, base)
    assert torch.equal(sample(sampler, unet, [4], state=forks[k].fork()).x, base)


def test_fork_is_independent(pixel_dirs, unet):
    sampler = DiffusersSampler.from_dir(
        pixel_dirs["DDPMScheduler"], STEPS, name="DPMSolverMultistepScheduler"
    )
    st = sampler.start([0], (3, 16, 16))
    sample_one = sampler.model_input(st)
    sampler.step(st, DiffusersUnet(unet)(sample_one, sampler.t(0, 1)))
    snap, other = st.repeat(2)
    outputs_before = [None if o is None else o.clone() for o in snap.scheduler.model_outputs]
    sample(sampler, unet, [0], state=st)
    assert snap.index == other.index == 1 and st.index == len(sampler)
    assert snap.scheduler is not other.scheduler and torch.equal(snap.x, other.x)
    for a, b in zip(snap.scheduler.model_outputs, outputs_before):
        assert (a is None and b is None) or torch.equal(a, b)


# --------------------------------------------------------------------------- DeepCache


def test_deepcache_on_the_pixel_pipeline(pixel_dirs, unet):
    """``DeepCacheSDHelper(cache_branch_id=2, cache_interval=2)`` on ``DDPMPipeline`` makes the
    images of ablang's ``cache dec[D-2-2] every 2`` (D = 9 dec units here), bit for bit."""
    DeepCache = pytest.importorskip("DeepCache")
    from ablang.compile import ProgramCache, schedule
    from ablang.diffusion import Step
    from ablang.models.diffusers_unet import trace_diffusers
    from ablang.plan import Intervention, Variant

    pipe = pipeline(pixel_dirs["DDPMScheduler"])
    helper = DeepCache.DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=2, cache_branch_id=2)
    helper.enable()
    try:
        ref = reference(pipe, [1])
    finally:
        helper.disable()

    traced = trace_diffusers(pipe.unet, label="pixel")
    line = Intervention("cache", f"dec[{traced.table.count('dec') - 2 - 2}]", every=2)
    sampler = DiffusersSampler.from_dir(pixel_dirs["DDPMScheduler"], STEPS)
    steps = [Step(i, int(t), len(sampler) - 1 - i) for i, t in enumerate(sampler.timesteps)]
    rules = schedule(Variant("deepcache", (line,)), steps)
    programs, cache = ProgramCache(traced), {}
    st = sampler.start([1], (3, 16, 16))
    with torch.no_grad():
        while st.index < len(sampler):
            x = sampler.model_input(st)
            program = programs.get(rules.per_step[st.index], "accelerate")
            out, kept = program(x, sampler.t(st.index, 1), {}, cache=cache)
            cache.update(kept)
            sampler.step(st, out)
    assert torch.equal(unit(st.x), ref)
    assert not torch.equal(ref, reference(pipe, [1]))
