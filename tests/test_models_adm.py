"""The ``adm`` adapter on small random-weight guided-diffusion ``UNetModel``s saved to a tmp dir.

Checked: the traced graph computes what the model computes; the component table is the model's
own block structure (counts, resolutions, channels, parameters, skip pairing); ``drop skip[i]``
and ``drop`` of a block through ``ablang.compile`` equal a hand-written forward of the model with
that part removed; loading errors say what is wrong. GLIDE shares all of this (tests/
test_models_glide.py runs where glide-text2im is installed).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

pytest.importorskip("guided_diffusion", reason="the adm adapter needs guided-diffusion-sdk")

from guided_diffusion.nn import timestep_embedding

from ablang.compile import Rule, build_program
from ablang.models import ModelUnavailable
from ablang.models.adm import AdmConfig, build_unet
from ablang.models.registry import load_adapter
from ablang.plan import ModelSpec

CPU = torch.device("cpu")

# class-conditional, learned variance, cosine, residual up/down blocks (every block droppable
# but enc[0])
CLASS_COND = {
    "image_size": 16,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "8",
    "num_head_channels": 16,
    "class_cond": True,
    "num_classes": 5,
    "learn_sigma": True,
    "noise_schedule": "cosine",
    "resblock_updown": True,
    "use_scale_shift_norm": True,
    "dropout": 0.0,
    "use_fp16": True,
}
# unconditional, fixed variance, linear, convolutional resamplers (not droppable)
UNCOND = {
    "image_size": 16,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": [1, 2],
    "attention_resolutions": [8],
    "num_heads": 2,
    "class_cond": False,
    "learn_sigma": False,
    "noise_schedule": "linear",
    "resblock_updown": False,
    "use_scale_shift_norm": False,
    "timestep_respacing": "100",
}


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (guided-diffusion zero-initialises its output convolutions,
    which would hide a wrong graph behind zeros)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def save_adm(tmp, name: str, cfg: dict) -> ModelSpec:
    (tmp / f"{name}.json").write_text(json.dumps(cfg))
    model = randomize(build_unet(AdmConfig.from_dict(cfg)[0]))
    torch.save(model.state_dict(), tmp / f"{name}.pt")
    return ModelSpec("adm", str(tmp / f"{name}.pt"), str(tmp / f"{name}.json"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adm")
    return {
        name: load_adapter(save_adm(tmp, name, cfg)).load(CPU)
        for name, cfg in (("class", CLASS_COND), ("uncond", UNCOND))
    }


def inputs(loaded, n: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *loaded.image_shape, generator=g)
    t = torch.tensor([3, 742, 999, 500][:n])
    cond, _ = loaded.make_cond([str(k % 5) for k in range(n)], CPU)
    return x, t, cond


def block_io(model: torch.nn.Module, x, t, cond) -> dict[str, tuple[tuple, tuple]]:
    """(input shape, output shape) of every input/middle/output block, from the eager model."""
    shapes: dict[str, tuple[tuple, tuple]] = {}
    hooks = []
    for name, module in model.named_modules():
        if (
            name == "middle_block"
            or name.count(".") == 1
            and name.split(".")[0] in ("input_blocks", "output_blocks")
        ):
            hooks.append(
                module.register_forward_hook(
                    lambda m, a, out, name=name: shapes.__setitem__(
                        name, (tuple(a[0].shape), tuple(out.shape))
                    )
                )
            )
    with torch.no_grad():
        model(x, t, **cond)
    for h in hooks:
        h.remove()
    return shapes


def adm_forward(model, x, t, y=None, *, zero_skips=(), bypass=None):
    """guided-diffusion's ``UNetModel.forward`` written out, with skips zeroed and blocks bypassed
    (``bypass``: block name -> what replaces it, a function of its input)."""
    bypass = bypass or {}
    emb = model.time_embed(timestep_embedding(t, model.model_channels))
    if y is not None:
        emb = emb + model.label_emb(y)
    hs, h = [], x
    for i, block in enumerate(model.input_blocks):
        h = bypass[f"enc[{i}]"](h) if f"enc[{i}]" in bypass else block(h, emb)
        hs.append(h)
    h = bypass["mid"](h) if "mid" in bypass else model.middle_block(h, emb)
    for j, block in enumerate(model.output_blocks):
        i = len(hs) - 1
        skip = hs.pop()
        if i in zero_skips:
            skip = torch.zeros_like(skip)
        h = torch.cat([h, skip], dim=1)
        h = bypass[f"dec[{j}]"](h) if f"dec[{j}]" in bypass else block(h, emb)
    return model.out(h)


def run_program(loaded, rules, x, t, cond, mode="accelerate"):
    program = build_program(loaded.traced, frozenset(rules), mode)
    masks = {r: torch.ones(x.shape[0], dtype=torch.bool) for r in program.mask_rules}
    with torch.no_grad():
        out, _ = program(x, t, cond, masks=masks)
    return out


# --------------------------------------------------------------------------- tracing


@pytest.mark.parametrize("name", ["class", "uncond"])
def test_trace_equals_eager(models, name):
    loaded = models[name]
    x, t, cond = inputs(loaded)
    with torch.no_grad():
        want = loaded.unet(x, t, **cond)
        got = loaded.traced.gm(x, t, **cond)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # and by position, in the order the adapter declares
    with torch.no_grad():
        got = loaded.traced.gm(x, t, *(cond[k] for k in loaded.traced.inputs[2:]))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_inputs_and_conditioning(models):
    cls, unc = models["class"], models["uncond"]
    assert cls.traced.inputs == ("x", "timesteps", "y")
    assert unc.traced.inputs == ("x", "timesteps")  # y fixed to None is not an input at all
    placeholders = [n.name for n in unc.traced.gm.graph.nodes if n.op == "placeholder"]
    assert placeholders == ["x", "timesteps"]
    cond, uncond = cls.make_cond(["1", "4"], CPU)
    assert torch.equal(cond["y"], torch.tensor([1, 4])) and uncond is None
    assert cls.default_guidance == 1.0  # no null class: no classifier-free guidance
    assert unc.make_cond(["unconditional"], CPU) == ({}, None)
    with pytest.raises(ModelUnavailable, match="class indices 0..4"):
        cls.make_cond(["7"], CPU)
    assert cls.table.prompt_kind == "class" and unc.table.prompt_kind == "none"


def test_diffusion_and_facts(models):
    cls, unc = models["class"], models["uncond"]
    assert (cls.diffusion.schedule, cls.diffusion.learn_sigma, cls.diffusion.num_timesteps) == (
        "cosine",
        True,
        1000,
    )
    assert (unc.diffusion.schedule, unc.diffusion.learn_sigma) == ("linear", False)
    assert cls.image_shape == (3, 16, 16)
    x, t, cond = inputs(cls)
    assert cls.traced.gm(x, t, **cond).shape[1] == 6  # learned variance: 2 x 3 channels
    assert len(cls.checksum) == 64
    assert cls.label.startswith('adm "') and 'config "' in cls.label
    # use_fp16 models run in fp32
    assert all(p.dtype == torch.float32 for p in cls.unet.parameters())


# --------------------------------------------------------------------------- components


@pytest.mark.parametrize("name", ["class", "uncond"])
def test_component_table_is_the_models_structure(models, name):
    loaded = models[name]
    model, table = loaded.unet, loaded.table
    n_in, n_out = len(model.input_blocks), len(model.output_blocks)
    assert table.count("enc") == n_in == 4  # conv, res | down, res: 2 levels x 1 block
    assert table.count("dec") == n_out == 4
    assert table.count("skip") == n_in and table.count("mid") == 1
    x, t, cond = inputs(loaded, n=1)
    io = block_io(model, x, t, cond)
    for i in range(n_in):
        c, (_, out) = table[f"enc[{i}]"], io[f"input_blocks.{i}"]
        assert (c.channels, c.resolution) == (out[1], out[-1])
        assert c.params == sum(p.numel() for p in model.input_blocks[i].parameters())
        assert c.module == f"input_blocks.{i}"
        s = table[f"skip[{i}]"]
        assert (s.channels, s.resolution, s.level) == (out[1], out[-1], c.level)
        assert s.feeds == f"dec[{n_out - 1 - i}]"  # hs.pop(): the last encoder output first
    for j in range(n_out):
        c, (inp, out) = table[f"dec[{j}]"], io[f"output_blocks.{j}"]
        assert (c.channels, c.resolution) == (out[1], inp[-1])
        assert c.params == sum(p.numel() for p in model.output_blocks[j].parameters())
    assert table["mid"].channels == io["middle_block"][1][1]
    assert [c.level for c in table.of_kind("enc")] == [0, 0, 1, 1]
    assert [c.level for c in table.of_kind("dec")] == [1, 1, 0, 0]
    assert table.num_levels == 2
    assert 0.5 < sum(c.flops_share for c in table.components) <= 1.0


def test_droppable_follows_shortcut_paths(models):
    cls, unc = models["class"].table, models["uncond"].table
    assert not cls["enc[0]"].droppable and "Conv2d" in cls["enc[0]"].drop_note
    # residual down/up blocks keep x_upd (+ skip_connection): droppable
    assert cls["enc[2]"].droppable and cls["dec[1]"].droppable
    # convolutional resamplers have no shortcut
    assert not unc["enc[2]"].droppable and "Downsample" in unc["enc[2]"].drop_note
    assert not unc["dec[1]"].droppable and "Upsample" in unc["dec[1]"].drop_note
    assert all(c.droppable for c in cls.of_kind("skip"))


# --------------------------------------------------------------------------- interventions


@pytest.mark.parametrize("name", ["class", "uncond"])
@pytest.mark.parametrize("skip", [0, 2, 3])
def test_drop_skip_equals_handwritten_forward(models, name, skip):
    loaded = models[name]
    x, t, cond = inputs(loaded)
    y = cond.get("y")
    with torch.no_grad():
        assert torch.allclose(
            adm_forward(loaded.unet, x, t, y), loaded.unet(x, t, **cond), atol=1e-6
        )
        want = adm_forward(loaded.unet, x, t, y, zero_skips={skip})
    for mode in ("accelerate", "measure"):
        got = run_program(loaded, [Rule(f"skip[{skip}]", "drop")], x, t, cond, mode)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert not torch.allclose(want, loaded.unet(x, t, **cond), atol=1e-3)


def test_drop_skip_by_editing_the_graph(models):
    """The marks alone suffice: replacing the cat's input by zeros in a copy of the graph."""
    loaded = models["class"]
    x, t, cond = inputs(loaded)
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(loaded.traced.gm.graph, {}))  # node_copy keeps node.meta
    for node in graph.nodes:
        pos = node.meta.get("ablang_skips", {}).get("skip[1]")
        if pos is not None:
            parts = list(node.args[0])
            with graph.inserting_before(node):
                parts[pos] = graph.call_function(torch.zeros_like, (parts[pos],))
            node.args = (parts, *node.args[1:])
    graph.lint()
    gm = torch.fx.GraphModule(loaded.traced.gm, graph)
    with torch.no_grad():
        torch.testing.assert_close(
            gm(x, t, **cond),
            adm_forward(loaded.unet, x, t, cond["y"], zero_skips={1}),
            atol=1e-5,
            rtol=0,
        )


def test_drop_blocks_equal_handwritten_forward(models):
    loaded = models["class"]
    model = loaded.unet
    x, t, cond = inputs(loaded)
    down = model.input_blocks[2][0]  # ResBlock(down=True): x_upd, identity skip_connection
    up_res, up = model.output_blocks[1][0], model.output_blocks[1][2]  # ResBlock + up ResBlock
    cases = {
        "enc[1]": lambda h: h,  # shape unchanged: identity
        "enc[2]": lambda h: down.skip_connection(down.x_upd(h)),
        "dec[1]": lambda h: up.skip_connection(up.x_upd(up_res.skip_connection(h))),
        "mid": lambda h: h,
    }
    for comp, path in cases.items():
        with torch.no_grad():
            want = adm_forward(model, x, t, cond["y"], bypass={comp: path})
        got = run_program(loaded, [Rule(comp, "drop")], x, t, cond)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=comp)


def test_cache_program_is_valid_python(models):
    """A reuse step adds an input after the model's own; the traced signature has no defaults."""
    loaded = models["class"]
    x, t, cond = inputs(loaded)
    program = build_program(
        loaded.traced, frozenset({Rule("dec[0]", "cache", phase="compute")}), "accelerate"
    )
    with torch.no_grad():
        out, kept = program(x, t, cond)
    reuse = build_program(
        loaded.traced, frozenset({Rule("dec[0]", "cache", phase="reuse")}), "accelerate"
    )
    with torch.no_grad():
        again, _ = reuse(x, t, cond, cache=kept)
    torch.testing.assert_close(again, out, atol=1e-5, rtol=0)
    assert reuse.count_modules() < program.count_modules()


# --------------------------------------------------------------------------- loading errors


def test_missing_checkpoint(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(UNCOND))
    with pytest.raises(ModelUnavailable, match="no checkpoint at"):
        load_adapter(ModelSpec("adm", str(tmp_path / "missing.pt"), str(tmp_path / "c.json"))).load(
            CPU
        )


def test_missing_or_bad_config(tmp_path):
    with pytest.raises(ModelUnavailable, match="config"):
        load_adapter(ModelSpec("adm", str(tmp_path / "m.pt"))).load(CPU)
    with pytest.raises(ModelUnavailable, match="no config file"):
        load_adapter(ModelSpec("adm", str(tmp_path / "m.pt"), str(tmp_path / "nope.json"))).load(
            CPU
        )
    (tmp_path / "bad.json").write_text(json.dumps({**UNCOND, "noise_schedule": "sigmoid"}))
    with pytest.raises(ModelUnavailable, match="sigmoid"):
        load_adapter(ModelSpec("adm", str(tmp_path / "m.pt"), str(tmp_path / "bad.json"))).load(CPU)


def test_config_that_does_not_fit_the_checkpoint(tmp_path):
    spec = save_adm(tmp_path, "m", UNCOND)
    (tmp_path / "wrong.json").write_text(
        json.dumps({**UNCOND, "num_channels": 64, "num_chanels": 32})
    )
    with pytest.raises(
        ModelUnavailable, match=r"does not fit.*num_chanels \(did you mean num_channels\?\)"
    ):
        load_adapter(ModelSpec("adm", spec.path, str(tmp_path / "wrong.json"))).load(CPU)


@pytest.mark.slow
def test_emitted_sampler_matches_the_run(tmp_path):
    """The emitted sampler rebuilds guided-diffusion's UNetModel (and the trace's constants) on
    its own and makes the run's images."""
    from conftest import load_module

    from ablang.parse import parse
    from ablang.resolve import resolve
    from ablang.run import RunOptions, run_plan

    spec = save_adm(tmp_path, "m", CLASS_COND)
    study = (
        f'model adm "{spec.path}" config "{spec.config}"\n'
        'sampler ddpm steps 3\nseed 0\nsamples 1\nprompts "1", "3"\nmetrics mse\n'
        "variant v {\n    cache dec[0] every 2\n    drop skip[1] for t in 0..500\n}\n"
        'emit sampler "fast.py" from v\n'  # relative to the study file, in tmp_path
    )
    table = load_adapter(spec).component_table()
    plan = resolve(parse(study, "s.abl"), table, source_path=str(tmp_path / "s.abl"))
    run_plan(plan, RunOptions(out=tmp_path / "run", device="cpu"))
    fast = load_module(tmp_path / "fast.py", "fast_adm")
    images = fast.sample(n=1, prompts=("1", "3"), seed=0)
    runs = [
        torch.load(p, weights_only=True)
        for p in sorted((tmp_path / "run" / "samples").glob("*.pt"))
    ]
    assert any(torch.equal(images, r) for r in runs)


def test_guidance_on_a_model_without_a_null_class_is_a_resolve_error(tmp_path, models):
    """guided-diffusion's class-conditional models have no unconditional half: `guidance 3` is
    a positioned error at check time, and the executor refuses it too (results.json can never
    claim a guidance that was not applied)."""
    from ablang.diffusion import Diffusion
    from ablang.errors import AblangError, AblangErrors
    from ablang.execute import Executor, make_setup
    from ablang.parse import parse
    from ablang.resolve import resolve

    spec = save_adm(tmp_path, "g", CLASS_COND)
    table = models["class"].table
    head = f'model adm "{spec.path}" config "{spec.config}"\nprompts "1"\n'
    with pytest.raises(AblangErrors) as err:
        resolve(parse(head + "sampler ddpm steps 3 guidance 3.0\n", "s.abl"), table)
    (e,) = err.value.errors
    assert e.code == "guidance-unavailable" and (e.span.line, e.span.col) == (3, 22)
    assert "no null class" in e.message and e.hint
    plan = resolve(parse(head + "sampler ddpm steps 3 guidance 1\n", "s.abl"), table)
    assert plan.sampler.guidance == 1.0
    forced = dataclasses.replace(plan, sampler=dataclasses.replace(plan.sampler, guidance=3.0))
    loaded = models["class"]
    d = Diffusion(loaded.diffusion, 3)
    with pytest.raises(AblangError, match="guidance 3 needs an unconditional prediction"):
        Executor(loaded, d, make_setup(forced, loaded, d), torch.device("cpu"))
