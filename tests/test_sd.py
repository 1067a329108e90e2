"""Stable Diffusion text to image: ablang's loop (the scheduler stepper, guidance by batch doubling
``[uncond; cond]``, the traced Unet, the VAE) against ``StableDiffusionPipeline`` itself, and
DeepCache's schedule as one ablang ``cache`` line.

Images are compared in [0, 1] (the pipeline's ``output_type="pt"``), bit for bit for a batch of
one seed; a batch of several seeds is bit-identical to the pipeline given the same list of
generators and within ``BATCH_TOL`` of each seed's batch-of-one call (float32 kernels at another
batch size sum in another order: measured ~1e-6).
"""

from __future__ import annotations

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import torch
from diffusers_fixtures import WORDS, tiny_sd_pipeline

from ablang.compile import ProgramCache, schedule
from ablang.diffusion import Step
from ablang.models.diffusers_sched import DiffusersSampler, guide, load_scheduler
from ablang.models.diffusers_unet import DiffusersUnet, trace_diffusers
from ablang.models.sd import is_sd_pipeline, load_text_to_image, to_unit
from ablang.plan import Intervention, Variant, Window

STEPS = 5
GUIDANCE = 7.5
PROMPT = "a photo of a red cat"
BATCH_TOL = 1e-5


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def sd_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    return {
        "epsilon": tiny_sd_pipeline(root / "eps"),
        "v_prediction": tiny_sd_pipeline(root / "v", prediction_type="v_prediction"),
    }


class Parts:
    """One pipeline directory loaded twice: as diffusers' pipeline and as ablang's parts."""

    def __init__(self, directory) -> None:
        from diffusers import StableDiffusionPipeline

        self.dir = directory
        self.pipe = StableDiffusionPipeline.from_pretrained(str(directory))
        self.pipe.set_progress_bar_config(disable=True)
        self.own = self.pipe.scheduler
        self.tti = load_text_to_image(directory)
        self.net = DiffusersUnet(self.pipe.unet).eval()

    def reference(self, scheduler: str | None, seeds, **kwargs) -> torch.Tensor:
        self.pipe.scheduler = load_scheduler(self.dir, scheduler)
        images = [
            self.pipe(
                PROMPT,
                generator=torch.Generator().manual_seed(s),
                num_inference_steps=STEPS,
                guidance_scale=GUIDANCE,
                output_type="pt",
                **kwargs,
            ).images
            for s in seeds
        ]
        return torch.cat(images)


@pytest.fixture(scope="module")
def sd(sd_dirs):
    return Parts(sd_dirs["epsilon"])


@pytest.fixture(scope="module")
def sd_v(sd_dirs):
    return Parts(sd_dirs["v_prediction"])


@torch.no_grad()
def generate(parts: Parts, sampler: DiffusersSampler, seeds, *, unet=None, state=None, forks=None):
    """ablang's text-to-image loop; returns the final state (latents in ``state.x``)."""
    unet = unet or parts.net
    cond, uncond = parts.tti.conditioning([PROMPT] * len(seeds), "cpu")
    context = torch.cat([uncond["encoder_hidden_states"], cond["encoder_hidden_states"]])
    st = state if state is not None else sampler.start(seeds, (4, 8, 8))
    while st.index < len(sampler):
        if forks is not None:
            forks[st.index] = st.fork()
        x = sampler.model_input(st)
        x2 = torch.cat([x, x])  # [uncond; cond], the pipeline's order
        out = unet(x2, sampler.t(st.index, x2.shape[0]), context)
        sampler.step(st, guide(out, GUIDANCE))
    return st


def image(parts: Parts, latents: torch.Tensor) -> torch.Tensor:
    return to_unit(parts.tti.decode(latents))


# --------------------------------------------------------------------------- loading, text


def test_pipeline_directory_and_tokenizer(sd):
    assert is_sd_pipeline(sd.dir) and not is_sd_pipeline(sd.dir / "unet")
    tok = sd.tti.tokenizer
    ids = tok("a photo of a red cat").input_ids
    # bos, one token per known word, eos; padded to CLIP's 77 for the Unet
    assert len(ids) == 2 + 6 and ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert all(len(tok(w).input_ids) == 3 for w in WORDS)
    cond, uncond = sd.tti.conditioning(["a photo of a cat", "a dog"], "cpu")
    c, u = cond["encoder_hidden_states"], uncond["encoder_hidden_states"]
    assert c.shape == u.shape == (2, 77, 16)
    assert not torch.equal(c[0], c[1])
    assert torch.equal(u[0], u[1])  # the empty prompt, twice


def test_text_encoding_equals_the_pipelines(sd):
    ours_c, ours_u = sd.tti.conditioning([PROMPT], "cpu")
    theirs_c, theirs_u = sd.pipe.encode_prompt(PROMPT, "cpu", 1, True)
    assert torch.equal(ours_c["encoder_hidden_states"], theirs_c)
    assert torch.equal(ours_u["encoder_hidden_states"], theirs_u)


# --------------------------------------------------------------------------- baseline == pipeline

CASES = [
    (None, None),  # the directory's own: PNDM, as SD 1.x ships
    ("DDPMScheduler", None),
    ("DDIMScheduler", 0.0),
    ("DDIMScheduler", 0.7),
    ("DPMSolverMultistepScheduler", None),  # DPM-Solver++ 2M, diffusers' default options
    ("EulerDiscreteScheduler", None),
    ("EulerAncestralDiscreteScheduler", None),
    ("UniPCMultistepScheduler", None),
]


@pytest.mark.parametrize(("name", "eta"), CASES)
def test_sd_baseline_equals_the_pipeline(sd, name, eta):
    kwargs = {} if eta is None else {"eta": eta}
    sampler = DiffusersSampler.from_dir(sd.dir, STEPS, name=name, eta=eta)
    ref = sd.reference(name, [3], **kwargs)
    ours = image(sd, generate(sd, sampler, [3]).x)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize(
    "name", ["DDIMScheduler", "DPMSolverMultistepScheduler", "EulerDiscreteScheduler"]
)
def test_v_prediction_equals_the_pipeline(sd_v, name):
    assert sd_v.own.config.prediction_type == "v_prediction"
    sampler = DiffusersSampler.from_dir(sd_v.dir, STEPS, name=name)
    assert torch.equal(image(sd_v, generate(sd_v, sampler, [6]).x), sd_v.reference(name, [6]))


def test_traced_unet_equals_the_pipeline(sd, traced):
    """The traced graph ablang compiles (empty rule set) gives the pipeline's images."""
    program = ProgramCache(traced).get(frozenset(), "accelerate")

    def unet(x, t, context):
        return program(x, t, {"encoder_hidden_states": context})[0]

    sampler = DiffusersSampler.from_dir(sd.dir, STEPS, name="DPMSolverMultistepScheduler")
    ours = image(sd, generate(sd, sampler, [4], unet=unet).x)
    assert torch.equal(ours, sd.reference("DPMSolverMultistepScheduler", [4]))


def test_batch_of_seeds(sd):
    seeds = [1, 2]
    sampler = DiffusersSampler.from_dir(sd.dir, STEPS, name="EulerAncestralDiscreteScheduler")
    ours = image(sd, generate(sd, sampler, seeds).x)
    sd.pipe.scheduler = load_scheduler(sd.dir, "EulerAncestralDiscreteScheduler")
    batched = sd.pipe(
        [PROMPT] * 2,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        output_type="pt",
    ).images
    assert torch.equal(ours, batched)
    alone = sd.reference("EulerAncestralDiscreteScheduler", seeds)
    assert (ours - alone).abs().max() <= BATCH_TOL


# --------------------------------------------------------------------------- prefix sharing


@pytest.mark.parametrize(
    "name", ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler", None]
)  # None: the directory's PNDM
def test_sd_resume_from_snapshot(sd, name):
    sampler = DiffusersSampler.from_dir(sd.dir, STEPS, name=name)
    forks: dict = {}
    base = generate(sd, sampler, [2], forks=forks).x
    k = len(sampler) // 2
    assert torch.equal(generate(sd, sampler, [2], state=forks[k].fork()).x, base)


# --------------------------------------------------------------------------- DeepCache


@pytest.fixture(scope="module")
def traced(sd):
    return trace_diffusers(sd.pipe.unet, label="sd")


def deepcache_component(traced, branch: int) -> str:
    """DeepCache's ``cache_branch_id`` b as an ablang component, for Unets whose up blocks have
    three layers (``layers_per_block=2``, as SD 1.x/2.x): ``dec[D - 2 - b]`` of ``D`` units."""
    return f"dec[{traced.table.count('dec') - 2 - branch}]"


def deepcache_images(sd, name, branch, interval):
    DeepCache = pytest.importorskip("DeepCache")
    helper = DeepCache.DeepCacheSDHelper(pipe=sd.pipe)
    helper.set_params(cache_interval=interval, cache_branch_id=branch)
    helper.enable()
    try:
        return sd.reference(name, [1])
    finally:
        helper.disable()


def ablang_images(sd, traced, name, interventions):
    """The stepper driving ablang's compiled programs (accelerate mode) for one variant; also
    the number of modules each Unet evaluation ran."""
    programs = ProgramCache(traced)
    sampler = DiffusersSampler.from_dir(sd.dir, STEPS, name=name)
    steps = [Step(i, int(t), len(sampler) - 1 - i) for i, t in enumerate(sampler.timesteps)]
    rules = schedule(Variant("v", tuple(interventions)), steps)
    cache: dict = {}
    ran: list[int] = []

    def unet(x, t, context):
        program = programs.get(rules.per_step[len(ran)], "accelerate")
        ran.append(program.count_modules())
        out, kept = program(x, t, {"encoder_hidden_states": context}, cache=cache)
        cache.update(kept)
        return out

    return image(sd, generate(sd, sampler, [1], unet=unet).x), ran


@pytest.mark.parametrize(("branch", "interval"), [(0, 3), (1, 2), (4, 2)])
def test_deepcache_is_one_cache_line(sd, traced, branch, interval):
    """``DeepCacheSDHelper(cache_branch_id=b, cache_interval=N)`` makes the images of ablang's
    ``cache dec[D-2-b] every N`` (compiled, accelerate mode), bit for bit."""
    name = "DDIMScheduler"  # no repeated timesteps: both count steps alike
    ref = deepcache_images(sd, name, branch, interval)
    assert not torch.equal(ref, sd.reference(name, [1]))  # the cache does change the images
    line = Intervention("cache", deepcache_component(traced, branch), every=interval)
    ours, ran = ablang_images(sd, traced, name, [line])
    assert torch.equal(ours, ref)
    full = ProgramCache(traced).get(frozenset(), "accelerate").count_modules()
    assert ran[0] == full and min(ran) < full  # reuse steps really skip work


def test_deepcache_counts_pndm_steps_by_timestep(sd, traced):
    """SD's PNDM visits its second timestep twice; DeepCache indexes steps by timestep value, so
    with N = 2 it computes at evaluations 0 and 4 (of 6), not 0, 2, 4: two windows say that."""
    comp = deepcache_component(traced, 0)
    ref = deepcache_images(sd, None, 0, 2)
    plain, _ = ablang_images(sd, traced, None, [Intervention("cache", comp, every=2)])
    assert not torch.equal(plain, ref)
    windows = [
        Intervention("cache", comp, Window("step", 0, 4), every=4),
        Intervention("cache", comp, Window("step", 4, 6), every=2),
    ]
    ours, _ = ablang_images(sd, traced, None, windows)
    assert torch.equal(ours, ref)
