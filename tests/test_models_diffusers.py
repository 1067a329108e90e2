"""The ``diffusers`` adapter on small random-weight ``UNet2DModel`` / ``UNet2DConditionModel``s
saved with ``save_pretrained`` to tmp dirs (a flat Unet dir and a pipeline dir).

Checked against the diffusers model's own ``forward(...).sample`` and its own blocks: the trace,
the component table (one ``enc`` per ``down_block_res_samples`` entry), ``drop skip[i]`` and
``drop`` of a unit through ``ablang.compile``, the noise schedule read from the scheduler config.
"""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers", reason="the diffusers adapter needs diffusers")

from diffusers import UNet2DConditionModel, UNet2DModel

from ablang.compile import Rule, build_program
from ablang.models import ModelUnavailable
from ablang.models.diffusers_unet import diffusion_spec, trace_diffusers
from ablang.models.registry import load_adapter
from ablang.plan import ModelSpec

CPU = torch.device("cpu")
SMALL = {
    "sample_size": 16,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "norm_num_groups": 8,
}
DDPM_LINEAR = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "variance_type": "fixed_large",
    "clip_sample": True,
}
DDIM_COSINE = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
}


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def uncond_unet() -> UNet2DModel:
    return UNet2DModel(
        **SMALL,
        in_channels=3,
        out_channels=3,
        attention_head_dim=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )


def class_unet() -> UNet2DModel:
    return UNet2DModel(
        **SMALL,
        in_channels=3,
        out_channels=6,
        num_class_embeds=5,
        attention_head_dim=8,
        down_block_types=("ResnetDownsampleBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "ResnetUpsampleBlock2D"),
        upsample_type="resnet",
    )


def cond_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        **SMALL,
        in_channels=4,
        out_channels=4,
        cross_attention_dim=32,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (eager diffusers model, ModelSpec of its saved directory)."""
    tmp = tmp_path_factory.mktemp("diffusers")
    out = {}
    # a flat Unet dir with scheduler_config.json beside it, as google/ddpm-cifar10-32 is laid out
    m = randomize(uncond_unet())
    m.save_pretrained(tmp / "uncond")
    (tmp / "uncond" / "scheduler_config.json").write_text(json.dumps(DDPM_LINEAR))
    out["uncond"] = (m, ModelSpec("diffusers", str(tmp / "uncond")))
    m = randomize(class_unet(), 1)
    m.save_pretrained(tmp / "class")
    out["class"] = (m, ModelSpec("diffusers", str(tmp / "class")))
    # a pipeline dir: unet/ and scheduler/
    m = randomize(cond_unet(), 2)
    m.save_pretrained(tmp / "pipe" / "unet")
    (tmp / "pipe" / "scheduler").mkdir()
    (tmp / "pipe" / "scheduler" / "scheduler_config.json").write_text(json.dumps(DDIM_COSINE))
    out["cond"] = (m, ModelSpec("diffusers", str(tmp / "pipe")))
    return out


@pytest.fixture(scope="module")
def models(saved):
    return {name: load_adapter(spec).load(CPU) for name, (_, spec) in saved.items()}


def example(name: str, n: int = 2, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    c = 4 if name == "cond" else 3
    x = torch.randn(n, c, 16, 16, generator=g)
    t = torch.tensor([7, 911, 500, 0][:n])
    cond: dict = {}
    if name == "cond":
        cond["encoder_hidden_states"] = torch.randn(n, 5, 32, generator=g)
    if name == "class":
        cond["class_labels"] = torch.tensor([1, 4, 0, 2][:n])
    return x, t, cond


def eager(model, x, t, cond) -> torch.Tensor:
    with torch.no_grad():
        return model(x, t, **cond).sample


def handwritten(model, x, t, cond, *, zero_skips=(), shortcut_last_up=False) -> torch.Tensor:
    """The diffusers model's top-level forward written out over its own blocks, with entries of
    ``down_block_res_samples`` zeroed before the up blocks see them; ``shortcut_last_up``
    replaces the last up block's last resnet by its ``conv_shortcut`` (what ``drop`` leaves)."""
    ctx = cond.get("encoder_hidden_states")
    emb = model.time_embedding(model.time_proj(t).to(x.dtype))
    if model.class_embedding is not None:
        emb = emb + model.class_embedding(cond["class_labels"])
    h = model.conv_in(x)
    res = [h]
    for block in model.down_blocks:
        if getattr(block, "has_cross_attention", False):
            h, r = block(h, emb, encoder_hidden_states=ctx)
        else:
            h, r = block(hidden_states=h, temb=emb)
        res += r
    res = [torch.zeros_like(r) if i in zero_skips else r for i, r in enumerate(res)]
    if getattr(model.mid_block, "has_cross_attention", False):
        h = model.mid_block(h, emb, encoder_hidden_states=ctx)
    else:
        h = model.mid_block(h, emb)
    for b, block in enumerate(model.up_blocks):
        n = len(block.resnets)
        r, res = tuple(res[-n:]), res[:-n]
        if shortcut_last_up and b == len(model.up_blocks) - 1:
            for j, resnet in enumerate(block.resnets):
                h = torch.cat([h, r[-1 - j]], dim=1)
                h = resnet.conv_shortcut(h) if j == n - 1 else resnet(h, emb)
        elif getattr(block, "has_cross_attention", False):
            h = block(h, r, emb, encoder_hidden_states=ctx)
        else:
            h = block(h, r, emb)
    return model.conv_out(model.conv_act(model.conv_norm_out(h)))


def run_program(loaded, rules, x, t, cond, mode="accelerate") -> torch.Tensor:
    program = build_program(loaded.traced, frozenset(rules), mode)
    masks = {r: torch.ones(x.shape[0], dtype=torch.bool) for r in program.mask_rules}
    with torch.no_grad():
        out, _ = program(x, t, cond, masks=masks)
    return out


# --------------------------------------------------------------------------- tracing


@pytest.mark.parametrize("name", ["uncond", "class", "cond"])
def test_trace_equals_diffusers_forward(saved, models, name):
    model, loaded = saved[name][0], models[name]
    x, t, cond = example(name)
    want = eager(model, x, t, cond)
    with torch.no_grad():
        got = loaded.traced.gm(x, t, **cond)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        # LoadedModel.unet is the same forward, eagerly (ADM's calling convention)
        torch.testing.assert_close(loaded.unet(x, t, **cond), want, atol=1e-5, rtol=0)
        # the handwritten reference of the tests below is the model too
        torch.testing.assert_close(handwritten(model, x, t, cond), want, atol=1e-5, rtol=0)


def test_each_component_is_one_node_and_parameters_are_shared(saved, models):
    loaded = models["cond"]
    marks = [n.meta["ablang"] for n in loaded.traced.gm.graph.nodes if "ablang" in n.meta]
    assert sorted(marks) == sorted(c.name for c in loaded.table.components if c.kind != "skip")
    unet_params = {id(p) for p in loaded.unet.parameters()}
    assert {id(p) for p in loaded.traced.gm.parameters()} <= unet_params
    assert loaded.traced.inputs == ("x", "timesteps", "encoder_hidden_states")
    assert models["uncond"].traced.inputs == ("x", "timesteps")
    assert models["class"].traced.inputs == ("x", "timesteps", "class_labels")


# --------------------------------------------------------------------------- components


def down_res_samples(model, x, t, cond) -> list[tuple]:
    """Shapes of the model's own ``down_block_res_samples``, in order."""
    shapes = [tuple(model.conv_in(x).shape)]
    hooks = [
        b.register_forward_hook(lambda m, a, out: shapes.extend(tuple(r.shape) for r in out[1]))
        for b in model.down_blocks
    ]
    eager(model, x, t, cond)
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize("name", ["uncond", "class", "cond"])
def test_component_table_is_the_models_structure(saved, models, name):
    model, table = saved[name][0], models[name].table
    x, t, cond = example(name, n=1)
    res = down_res_samples(model, x, t, cond)
    n = len(res)
    assert n == 1 + sum(len(b.resnets) + (b.downsamplers is not None) for b in model.down_blocks)
    assert table.count("enc") == table.count("skip") == n
    assert table.count("dec") == sum(len(b.resnets) for b in model.up_blocks) == n
    for i, shape in enumerate(res):
        enc, skip = table[f"enc[{i}]"], table[f"skip[{i}]"]
        assert (enc.channels, enc.resolution) == (shape[1], shape[-1])
        assert (skip.channels, skip.resolution) == (shape[1], shape[-1])
        assert skip.feeds == f"dec[{n - 1 - i}]"
    # decoder units: block by block, one per resnet, channels of that resnet, at its skip's level
    j = 0
    for b, block in enumerate(model.up_blocks):
        for k, resnet in enumerate(block.resnets):
            dec = table[f"dec[{j}]"]
            assert dec.module.startswith(f"up_blocks.{b}.resnets.{k}")
            assert dec.channels == resnet.out_channels
            assert dec.resolution == table[f"skip[{n - 1 - j}]"].resolution
            own = sum(p.numel() for p in resnet.parameters())
            if getattr(block, "attentions", None) is not None:
                own += sum(p.numel() for p in block.attentions[k].parameters())
            if k == len(block.resnets) - 1 and block.upsamplers is not None:
                own += sum(p.numel() for p in block.upsamplers.parameters())
                assert dec.module.endswith("upsamplers.0")
            assert dec.params == own
            j += 1
    assert table["enc[0]"].module == "conv_in" and not table["enc[0]"].droppable
    assert table["mid"].params == sum(p.numel() for p in model.mid_block.parameters())
    assert table["mid"].resolution == res[-1][-1]


def test_prompt_kinds_and_conditioning(models):
    assert [models[k].table.prompt_kind for k in ("uncond", "class", "cond")] == [
        "none",
        "class",
        "text",
    ]
    assert models["uncond"].make_cond(["unconditional"], CPU) == ({}, None)
    cond, uncond = models["class"].make_cond(["3", "0"], CPU)
    assert torch.equal(cond["class_labels"], torch.tensor([3, 0])) and uncond is None
    with pytest.raises(ModelUnavailable, match="encoder_hidden_states"):
        models["cond"].make_cond(["a corgi"], CPU)


def test_droppable_units(models):
    table = models["uncond"].table
    # DownBlock2D's conv downsampler and an up unit ending in a conv upsampler: no shortcut
    assert not table["enc[2]"].droppable and "downsamplers.0" in table["enc[2]"].drop_note
    assert not table["dec[1]"].droppable and "upsamplers.0" in table["dec[1]"].drop_note
    assert table["enc[3]"].droppable  # resnet (conv_shortcut 32 -> 64) + attention
    # resnet down/upsamplers keep their resampling of the input: droppable
    cls = models["class"].table
    assert cls["enc[2]"].droppable and cls["enc[2]"].module == "down_blocks.0.downsamplers.0"
    assert cls["dec[1]"].droppable and cls["dec[1]"].module.endswith("upsamplers.0")


# --------------------------------------------------------------------------- interventions


@pytest.mark.parametrize("name", ["uncond", "cond"])
@pytest.mark.parametrize("skip", [0, 2, 3])
def test_drop_skip_equals_handwritten_forward(saved, models, name, skip):
    model, loaded = saved[name][0], models[name]
    x, t, cond = example(name)
    with torch.no_grad():
        want = handwritten(model, x, t, cond, zero_skips={skip})
    for mode in ("accelerate", "measure"):
        torch.testing.assert_close(
            run_program(loaded, [Rule(f"skip[{skip}]", "drop")], x, t, cond, mode),
            want,
            atol=1e-5,
            rtol=0,
        )
    assert not torch.allclose(want, eager(model, x, t, cond), atol=1e-3)


def test_drop_decoder_unit_leaves_its_conv_shortcut(saved, models):
    model, loaded = saved["uncond"]
    loaded = models["uncond"]
    x, t, cond = example("uncond")
    last = loaded.table.count("dec") - 1
    with torch.no_grad():
        want = handwritten(model, x, t, cond, shortcut_last_up=True)
    torch.testing.assert_close(
        run_program(loaded, [Rule(f"dec[{last}]", "drop")], x, t, cond), want, atol=1e-5, rtol=0
    )


def test_cache_reuse_removes_the_encoder_below(models):
    loaded = models["cond"]
    x, t, cond = example("cond")
    compute = build_program(
        loaded.traced, frozenset({Rule("dec[1]", "cache", phase="compute")}), "accelerate"
    )
    with torch.no_grad():
        out, kept = compute(x, t, cond)
    reuse = build_program(
        loaded.traced, frozenset({Rule("dec[1]", "cache", phase="reuse")}), "accelerate"
    )
    with torch.no_grad():
        again, _ = reuse(x, t, cond, cache=kept)
    torch.testing.assert_close(again, out, atol=1e-5, rtol=0)
    left = {n.target for n in reuse.gm.graph.nodes if n.op == "call_module"}
    # dec[1] took skip[2] and everything below it: enc[2], enc[3], mid, dec[0] are dead
    assert (
        not {"enc.2", "enc.3", "mid", "dec.0", "dec.1"} & left
        and {"enc.0", "enc.1", "dec.2"} <= left
    )


# --------------------------------------------------------------------------- loading


def test_noise_schedules(models):
    assert models["uncond"].diffusion.schedule == "linear"  # scheduler_config.json beside the unet
    assert models["cond"].diffusion.schedule == "cosine"  # scheduler/ of a pipeline dir
    assert models["class"].diffusion.schedule == "linear"  # no scheduler: diffusers' defaults
    assert models["class"].diffusion.learn_sigma  # 6 = 2 x 3 output channels
    assert not models["uncond"].diffusion.learn_sigma
    spec = diffusion_spec({"variance_type": "learned_range"}, 6, 3, "s")
    assert spec.learn_sigma and spec.num_timesteps == 1000


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
            "scaled_linear",
        ),
        (
            {"beta_schedule": "linear", "beta_start": 0.001, "beta_end": 0.02},
            "not the standard one",
        ),
        ({"prediction_type": "v_prediction"}, "v_prediction"),
        ({"variance_type": "learned_range"}, "output channels"),
    ],
)
def test_unsupported_schedulers_are_clear_errors(config, message):
    with pytest.raises(ModelUnavailable, match=message):
        diffusion_spec(config, 3, 3, "scheduler_config.json")


def test_missing_or_foreign_directories(tmp_path):
    with pytest.raises(ModelUnavailable, match="no directory"):
        load_adapter(ModelSpec("diffusers", str(tmp_path / "nope"))).load(CPU)
    with pytest.raises(ModelUnavailable, match="no Unet config.json"):
        load_adapter(ModelSpec("diffusers", str(tmp_path))).load(CPU)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(ModelUnavailable, match="AutoencoderKL"):
        load_adapter(ModelSpec("diffusers", str(tmp_path))).load(CPU)


@pytest.mark.slow
def test_ddpm_cifar10_32_table():
    """google/ddpm-cifar10-32's architecture (random weights): the table docs/models.md shows."""
    model = (
        UNet2DModel(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            block_out_channels=(128, 256, 256, 256),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
            downsample_padding=0,
            flip_sin_to_cos=False,
            freq_shift=1,
            norm_eps=1e-6,
            attention_head_dim=None,
        )
        .eval()
        .requires_grad_(False)
    )
    assert sum(p.numel() for p in model.parameters()) == 35_746_307
    table = trace_diffusers(model, label='diffusers "models/ddpm-cifar10-32"').table
    assert (table.count("enc"), table.count("dec"), table.count("skip"), table.num_levels) == (
        12,
        12,
        12,
        4,
    )
    assert [c.resolution for c in table.of_kind("enc")] == [
        32,
        32,
        32,
        16,
        16,
        16,
        8,
        8,
        8,
        4,
        4,
        4,
    ]
    assert [c.channels for c in table.of_kind("skip")] == [128, 128, 128, 128] + [256] * 8
    assert [c.name for c in table.components if c.kind != "skip" and not c.droppable] == [
        "enc[0]",
        "enc[3]",
        "enc[6]",
        "enc[9]",
        "dec[2]",
        "dec[5]",
        "dec[8]",
    ]
    assert table["dec[8]"].module == (
        "up_blocks.2.resnets.2 + up_blocks.2.attentions.2 + up_blocks.2.upsamplers.0"
    )


@pytest.mark.slow
def test_emitted_sampler_matches_the_run(saved, tmp_path):
    """The emitted sampler wraps the saved diffusers Unet as ablang traced it and makes the
    run's images."""
    from conftest import load_module

    from ablang.parse import parse
    from ablang.resolve import resolve
    from ablang.run import RunOptions, run_plan

    spec = saved["uncond"][1]
    study = (
        f'model diffusers "{spec.path}"\nsampler ddpm steps 3\nseed 0\nsamples 2\nmetrics mse\n'
        "variant v {\n    cache dec[0] every 2\n    drop skip[1] for t in 0..500\n}\n"
        'emit sampler "fast.py" from v\n'  # relative to the study file, in tmp_path
    )
    table = load_adapter(spec).component_table()
    plan = resolve(parse(study, "s.abl"), table, source_path=str(tmp_path / "s.abl"))
    run_plan(plan, RunOptions(out=tmp_path / "run", device="cpu"))
    fast = load_module(tmp_path / "fast.py", "fast_diffusers")
    images = fast.sample(n=2, seed=0)
    runs = [
        torch.load(p, weights_only=True)
        for p in sorted((tmp_path / "run" / "samples").glob("*.pt"))
    ]
    assert any(torch.equal(images, r) for r in runs)
