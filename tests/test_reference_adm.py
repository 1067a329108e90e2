"""ablang's baseline equals guided-diffusion's own sampling loops, with the same noise.

A small random-weight ``UNetModel`` and its diffusion are built by guided-diffusion's
``create_model_and_diffusion`` from a config; ablang loads the same weights and config as a
study's ``model adm`` line would (adapter, trace, executor). The reference's ``p_sample_loop`` /
``ddim_sample_loop`` starts from ablang's starting noise (``noise=``), and its per-step
``th.randn_like`` is replaced by ablang's per-step noise, so both see the same numbers.

DDPM is bit-identical. DDIM is too: ablang computes DDIM's sigma and square roots on float32
scalars, as ``ddim_sample`` does on float32 tensors (in float64 they differ in the last bits,
about 1e-6 after a few steps); the tolerance below is therefore 0 as well.
"""

from __future__ import annotations

import json

import pytest
import torch

from ablang import runtime
from ablang.diffusion import Diffusion, space_timesteps
from ablang.execute import Executor, make_setup
from ablang.models.adm import AdmAdapter
from ablang.plan import ModelSpec, Plan, SamplerSpec, Variant

gd_script = pytest.importorskip("guided_diffusion.script_util", reason="needs guided-diffusion-sdk")
from guided_diffusion.respace import space_timesteps as gd_space_timesteps

SMALL = {
    "image_size": 16,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "8",
    "num_heads": 2,
    "dropout": 0.0,
}


def test_space_timesteps_equals_guided_diffusions_for_every_step_count():
    for n in range(1, 1001):
        assert space_timesteps(1000, n) == sorted(gd_space_timesteps(1000, [n])), n
    for total, n in [(4000, 100), (4000, 1000), (4000, 4000), (50, 7), (20, 20)]:
        assert space_timesteps(total, n) == sorted(gd_space_timesteps(total, [n]))


def reference(config: dict, respacing: str):
    """guided-diffusion's model (random weights) and respaced diffusion for ``config``."""
    args = gd_script.model_and_diffusion_defaults()
    args.update({k: v for k, v in config.items() if k in args})
    args["timestep_respacing"] = respacing
    torch.manual_seed(0)
    model, diffusion = gd_script.create_model_and_diffusion(**args)
    with torch.no_grad():
        for p in model.parameters():  # the init zeroes the output conv: every image would be 0
            p.normal_(0, 0.05)
    if config.get("sigma_small"):  # create_model_and_diffusion does not pass sigma_small on
        diffusion = gd_script.create_gaussian_diffusion(
            steps=args["diffusion_steps"],
            learn_sigma=args["learn_sigma"],
            sigma_small=True,
            noise_schedule=args["noise_schedule"],
            rescale_timesteps=args["rescale_timesteps"],
            timestep_respacing=respacing,
        )
    return model.eval(), diffusion


class FeedNoise:
    """Stands in for ``th.randn_like`` inside the reference loop: step k gets ``noise[k]``."""

    def __init__(self, noise: torch.Tensor) -> None:
        self.noise, self.k = noise, 0

    def __call__(self, x, *args, **kwargs):
        out = self.noise[self.k].to(x.dtype)
        self.k += 1
        assert out.shape == x.shape
        return out


CASES = [
    # id, config (on top of SMALL), T, steps, sampler, eta
    (
        "learned-cosine-ddpm-respaced",
        {"learn_sigma": True, "noise_schedule": "cosine"},
        100,
        10,
        "ddpm",
        0.0,
    ),
    (
        "learned-linear-rescaled-ddim-respaced",
        {"learn_sigma": True, "rescale_timesteps": True},
        100,
        8,
        "ddim",
        0.0,
    ),
    (
        "learned-cosine-ddim-eta",
        {"learn_sigma": True, "noise_schedule": "cosine"},
        100,
        6,
        "ddim",
        0.5,
    ),
    ("large-linear-ddpm-full", {}, 40, 40, "ddpm", 0.0),
    (
        "large-cosine-rescaled-ddpm-respaced",
        {"noise_schedule": "cosine", "rescale_timesteps": True},
        100,
        9,
        "ddpm",
        0.0,
    ),
    ("large-linear-ddim-full", {}, 40, 40, "ddim", 0.0),
    (
        "small-linear-rescaled-ddpm-full",
        {"sigma_small": True, "rescale_timesteps": True},
        40,
        40,
        "ddpm",
        0.0,
    ),
    (
        "small-cosine-ddim-respaced",
        {"sigma_small": True, "noise_schedule": "cosine"},
        100,
        7,
        "ddim",
        0.0,
    ),
    (
        "small-cosine-ddpm-respaced-21",
        {"sigma_small": True, "noise_schedule": "cosine"},
        1000,
        21,
        "ddpm",
        0.0,
    ),
    ("class-cond-large-linear-ddpm", {"class_cond": True}, 50, 10, "ddpm", 0.0),
    ("improved-family-rescales", {"family": "improved-diffusion"}, 40, 10, "ddpm", 0.0),
]


@pytest.mark.parametrize(
    "config, T, steps, kind, eta", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_baseline_equals_the_reference_loop(tmp_path, monkeypatch, config, T, steps, kind, eta):
    config = {**SMALL, **config, "diffusion_steps": T}
    if config.get("family") == "improved-diffusion":  # its defaults, written out for the reference
        ref_config = {**config, "rescale_timesteps": True}
    else:
        ref_config = config
    model, ref = reference(ref_config, "" if steps == T else str(steps))
    ckpt, cfg = tmp_path / "model.pt", tmp_path / "model.json"
    torch.save(model.state_dict(), ckpt)
    cfg.write_text(json.dumps(config))

    loaded = AdmAdapter(ModelSpec("adm", str(ckpt), str(cfg))).load(torch.device("cpu"))
    assert loaded.diffusion.rescale_timesteps == bool(ref.rescale_timesteps)
    prompts = ("3", "7") if config.get("class_cond") else ("unconditional",)
    plan = Plan(
        model=ModelSpec("adm", str(ckpt), str(cfg)),
        sampler=SamplerSpec(kind, steps, eta, None),
        prompts=prompts if config.get("class_cond") else (),
        samples=2,
        variants=(Variant("baseline", (), "baseline"),),
        source="ref.abl",
    )
    diffusion = Diffusion(loaded.diffusion, steps)
    ex = Executor(loaded, diffusion, make_setup(plan, loaded, diffusion), torch.device("cpu"))
    ours = ex.baseline().xs[-1]

    assert diffusion.timesteps == ref.timestep_map
    kwargs = (
        {"y": torch.tensor([int(p) for p in ex.setup.prompts])} if config.get("class_cond") else {}
    )
    monkeypatch.setattr(torch, "randn_like", FeedNoise(ex.noise))
    loop = ref.ddim_sample_loop if kind == "ddim" else ref.p_sample_loop
    extra = {"eta": eta} if kind == "ddim" else {}
    with torch.no_grad():
        theirs = loop(
            model,
            tuple(ours.shape),
            noise=ex.x_T.clone(),
            clip_denoised=True,
            model_kwargs=kwargs,
            device="cpu",
            **extra,
        )
    assert torch.isfinite(ours).all()
    assert (ours - theirs).abs().max().item() == 0.0, (ours - theirs).abs().max().item()
    assert ours.std() > 0.05  # a real image batch, not all zeros


def test_one_step_of_each_variance_equals_p_sample():
    """The runtime's step against ``p_sample`` for a fixed model output, every variance."""
    from guided_diffusion import gaussian_diffusion as gd
    from guided_diffusion.respace import SpacedDiffusion

    from ablang.diffusion import DiffusionSpec

    g = torch.Generator().manual_seed(0)
    x, eps, v = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))
    v = v.tanh()
    for var_type, spec in [
        (gd.ModelVarType.FIXED_SMALL, DiffusionSpec(100, "linear")),
        (gd.ModelVarType.FIXED_LARGE, DiffusionSpec(100, "linear", sigma_small=False)),
        (gd.ModelVarType.LEARNED_RANGE, DiffusionSpec(100, "linear", learn_sigma=True)),
    ]:
        ref = SpacedDiffusion(
            use_timesteps=gd_space_timesteps(100, "10"),
            betas=gd.get_named_beta_schedule("linear", 100),
            model_mean_type=gd.ModelMeanType.EPSILON,
            model_var_type=var_type,
            loss_type=gd.LossType.MSE,
        )
        table = Diffusion(spec, 10).table("ddpm")
        out = torch.cat([eps, v], 1) if spec.learn_sigma else eps
        for k in range(10):
            t = torch.full((2,), 9 - k, dtype=torch.long)
            torch.manual_seed(5)
            expected = ref.p_sample(lambda x_, t_, out=out: out, x, t, clip_denoised=True)["sample"]
            torch.manual_seed(5)
            got = runtime.step(table, k, x, out, torch.randn_like(x))
            assert torch.equal(got, expected), (spec.variance, k)


def test_config_family_and_variance_keys():
    from ablang.models.adm import AdmConfig

    assert AdmConfig.from_dict({})[0].diffusion().variance == "fixed_large"
    assert AdmConfig.from_dict({"sigma_small": "True"})[0].diffusion().variance == "fixed_small"
    assert AdmConfig.from_dict({"learn_sigma": True})[0].diffusion().variance == "learned_range"
    assert not AdmConfig.from_dict({})[0].diffusion().rescale_timesteps
    improved = AdmConfig.from_dict({"family": "improved-diffusion"})[0].diffusion()
    assert improved.rescale_timesteps
    assert (
        not AdmConfig.from_dict({"family": "improved-diffusion", "rescale_timesteps": False})[0]
        .diffusion()
        .rescale_timesteps
    )
    from ablang.models import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="family"):
        AdmConfig.from_dict({"family": "openai"})


# --------------------------------------------------------------------------- GLIDE

GLIDE_SMALL = {  # the published base's options with a small Unet and text transformer
    "image_size": 16,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "num_head_channels": 16,
    "attention_resolutions": "8",
    "xf_width": 32,
    "xf_layers": 1,
    "xf_heads": 2,
    "text_ctx": 16,
    "dropout": 0.0,
}


@pytest.mark.parametrize("steps", [10, 21])
def test_glide_baseline_equals_the_notebooks_guided_p_sample_loop(tmp_path, monkeypatch, steps):
    """GLIDE's notebook: ``p_sample_loop`` on the doubled batch with its guidance ``model_fn``."""
    pytest.importorskip("glide_text2im", reason="needs glide-text2im (not on PyPI)")
    from ablang.models.glide import build_model, options
    from ablang.models.registry import load_adapter

    opts = options(GLIDE_SMALL)
    model = build_model(opts)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # GLIDE zero-initialises its output convolutions
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    (tmp_path / "small.json").write_text(json.dumps(GLIDE_SMALL))
    torch.save(model.state_dict(), tmp_path / "small.pt")
    spec = ModelSpec("glide", str(tmp_path / "small.pt"), str(tmp_path / "small.json"))
    loaded = load_adapter(spec).load(torch.device("cpu"))
    plan = Plan(
        model=spec,
        sampler=SamplerSpec("ddpm", steps, 0.0, 3.0),
        prompts=("an oil painting of a corgi",),
        samples=2,
        variants=(Variant("baseline", (), "baseline"),),
        source="glide.abl",
    )
    diffusion = Diffusion(loaded.diffusion, steps)
    ex = Executor(loaded, diffusion, make_setup(plan, loaded, diffusion), torch.device("cpu"))
    ours = ex.baseline().xs[-1]

    from glide_text2im.model_creation import create_model_and_diffusion

    _, ref = create_model_and_diffusion(**{**opts, "timestep_respacing": str(steps)})
    assert diffusion.timesteps == ref.timestep_map
    guidance_scale = 3.0

    def model_fn(x_t, ts, **kwargs):  # verbatim from notebooks/text2im.ipynb
        half = x_t[: len(x_t) // 2]
        combined = torch.cat([half, half], dim=0)
        model_out = model(combined, ts, **kwargs)
        eps, rest = model_out[:, :3], model_out[:, 3:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + guidance_scale * (cond_eps - uncond_eps)
        eps = torch.cat([half_eps, half_eps], dim=0)
        return torch.cat([eps, rest], dim=1)

    kwargs = {k: torch.cat([ex.cond[k], ex.uncond[k]]) for k in ("tokens", "mask")}
    monkeypatch.setattr(torch, "randn_like", FeedNoise(torch.cat([ex.noise, ex.noise], dim=1)))
    with torch.no_grad():
        full = ref.p_sample_loop(
            model_fn,
            (4, 3, 16, 16),
            noise=torch.cat([ex.x_T, ex.x_T]),
            device="cpu",
            clip_denoised=True,
            model_kwargs=kwargs,
        )
    theirs = full[:2]
    assert torch.isfinite(ours).all() and ours.std() > 0.05
    assert (ours - theirs).abs().max().item() == 0.0, (ours - theirs).abs().max().item()
