"""The ``glide`` adapter.

Where glide-text2im is not installed (it is not on PyPI), loading must say how to install it and
run nothing; that is checked here everywhere. The rest needs glide-text2im and runs where it is
importable, on a small GLIDE-architecture model (the published options with fewer channels,
levels and transformer layers) saved to a tmp dir. What GLIDE shares with guided-diffusion (block
structure, leaf tracing, skip order, drop shortcuts) is tested on guided-diffusion in
tests/test_models_adm.py.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from ablang.compile import Rule, build_program
from ablang.models import ModelUnavailable
from ablang.models.registry import load_adapter
from ablang.plan import ModelSpec

CPU = torch.device("cpu")
HAVE_GLIDE = importlib.util.find_spec("glide_text2im") is not None
NEEDS_GLIDE = "needs glide-text2im: pip install git+https://github.com/openai/glide-text2im"
# The published base's options with a small Unet and text transformer (GLIDE's create_model wants
# 2 ** (levels + 2) == image_size).
SMALL = {
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


@pytest.mark.skipif(HAVE_GLIDE, reason="glide-text2im is installed here")
def test_without_glide_text2im_loading_says_how_to_install(tmp_path):
    ckpt = tmp_path / "base.pt"
    ckpt.write_bytes(b"")
    with pytest.raises(
        ModelUnavailable, match=r"pip install git\+https://github.com/openai/glide-text2im"
    ):
        load_adapter(ModelSpec("glide", str(ckpt))).load(CPU)
    with pytest.raises(ModelUnavailable, match="glide-text2im"):
        load_adapter(ModelSpec("glide", str(tmp_path / "missing.pt"))).component_table()


# --------------------------------------------------------------------------- with glide-text2im


@pytest.fixture(scope="module")
def glide(tmp_path_factory):
    pytest.importorskip("glide_text2im", reason=NEEDS_GLIDE)
    from ablang.models.glide import build_model, options

    tmp = tmp_path_factory.mktemp("glide")
    (tmp / "small.json").write_text(json.dumps(SMALL))
    model = build_model(options(SMALL))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # GLIDE zero-initialises its output convolutions
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    torch.save(model.state_dict(), tmp / "small.pt")
    loaded = load_adapter(ModelSpec("glide", str(tmp / "small.pt"), str(tmp / "small.json"))).load(
        CPU
    )
    return loaded, tmp


def prompts_batch(loaded, n: int = 2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 16, 16, generator=g)
    t = torch.tensor([12, 876][:n])
    cond, uncond = loaded.make_cond(["an oil painting of a corgi", "a red cube"][:n], CPU)
    return x, t, cond, uncond


def test_trace_equals_eager(glide):
    loaded, _ = glide
    x, t, cond, uncond = prompts_batch(loaded)
    with torch.no_grad():
        for c in (cond, uncond):
            torch.testing.assert_close(
                loaded.traced.gm(x, t, **c), loaded.unet(x, t, **c), atol=1e-5, rtol=0
            )


def test_conditioning_follows_the_notebook(glide):
    loaded, _ = glide
    tok = loaded.unet.tokenizer
    cond, uncond = loaded.make_cond(["a corgi", "a red cube"], CPU)
    tokens, mask = tok.padded_tokens_and_mask(tok.encode("a corgi"), SMALL["text_ctx"])
    assert cond["tokens"][0].tolist() == tokens and cond["mask"][0].tolist() == mask
    assert cond["mask"].dtype == torch.bool and cond["tokens"].shape == (2, SMALL["text_ctx"])
    empty, _ = tok.padded_tokens_and_mask([], SMALL["text_ctx"])
    assert uncond["tokens"].tolist() == [empty, empty] and not uncond["mask"].any()
    assert loaded.traced.inputs == ("x", "timesteps", "tokens", "mask")
    assert loaded.default_guidance == 3.0 and loaded.table.prompt_kind == "text"
    assert (
        loaded.diffusion.schedule,
        loaded.diffusion.learn_sigma,
        loaded.diffusion.num_timesteps,
    ) == (
        "cosine",
        True,
        1000,
    )


def test_text_encoder_is_not_a_component(glide):
    loaded, _ = glide
    gm = loaded.traced.gm
    transformer = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == "transformer"]
    assert len(transformer) == 1 and "ablang" not in transformer[0].meta
    assert not any(
        c.module.startswith(("transformer", "token_embedding")) for c in loaded.table.components
    )


def test_component_table_is_the_models_structure(glide):
    loaded, _ = glide
    model, table = loaded.unet, loaded.table
    n_in, n_out = len(model.input_blocks), len(model.output_blocks)
    assert (
        (table.count("enc"), table.count("dec"), table.count("skip"))
        == (n_in, n_out, n_in)
        == (4, 4, 4)
    )
    assert [c.resolution for c in table.of_kind("enc")] == [16, 16, 8, 8]
    assert [c.channels for c in table.of_kind("enc")] == [32, 32, 32, 64]
    assert [c.feeds for c in table.of_kind("skip")] == ["dec[3]", "dec[2]", "dec[1]", "dec[0]"]
    for i in range(n_in):
        assert table[f"enc[{i}]"].params == sum(
            p.numel() for p in model.input_blocks[i].parameters()
        )
    # resblock_updown: GLIDE's resampling blocks keep x_upd, so every block but the first conv drops
    assert [c.name for c in table.components if not c.droppable] == ["enc[0]"]


def test_drop_skip_equals_handwritten_forward(glide):
    loaded, _ = glide
    model = loaded.unet
    x, t, cond, _ = prompts_batch(loaded)
    from glide_text2im.nn import timestep_embedding

    def forward(zero: int) -> torch.Tensor:
        # Text2ImUNet.forward written out, skip[zero] replaced by zeros
        emb = model.time_embed(timestep_embedding(t, model.model_channels))
        text = model.get_text_emb(cond["tokens"], cond["mask"])
        emb = emb + text["xf_proj"].to(emb)
        hs, h = [], x
        for block in model.input_blocks:
            h = block(h, emb, text["xf_out"])
            hs.append(h)
        h = model.middle_block(h, emb, text["xf_out"])
        for block in model.output_blocks:
            i, skip = len(hs) - 1, hs.pop()
            h = block(
                torch.cat([h, torch.zeros_like(skip) if i == zero else skip], dim=1),
                emb,
                text["xf_out"],
            )
        return model.out(h)

    for skip in (0, 3):
        program = build_program(
            loaded.traced, frozenset({Rule(f"skip[{skip}]", "drop")}), "accelerate"
        )
        with torch.no_grad():
            got, _ = program(x, t, cond)
            torch.testing.assert_close(got, forward(skip), atol=1e-5, rtol=0)


def test_bad_files(glide, tmp_path):
    _, tmp = glide
    with pytest.raises(ModelUnavailable, match="no GLIDE checkpoint.*base.pt"):
        load_adapter(ModelSpec("glide", str(tmp_path / "base.pt"))).load(CPU)
    (tmp_path / "other.json").write_text(json.dumps({**SMALL, "num_channels": 64}))
    with pytest.raises(ModelUnavailable, match="is not GLIDE's base model"):
        load_adapter(ModelSpec("glide", str(tmp / "small.pt"), str(tmp_path / "other.json"))).load(
            CPU
        )
    (tmp_path / "typo.json").write_text(json.dumps({"num_chanels": 64}))
    with pytest.raises(ModelUnavailable, match="num_chanels"):
        load_adapter(ModelSpec("glide", str(tmp / "small.pt"), str(tmp_path / "typo.json"))).load(
            CPU
        )


@pytest.mark.slow
def test_published_base_architecture():
    """GLIDE base from its own defaults (random weights): the table docs/models.md describes."""
    pytest.importorskip("glide_text2im", reason=NEEDS_GLIDE)
    from ablang.models.adm_family import trace_adm
    from ablang.models.glide import build_model, empty_tokens, options

    model = build_model(options()).requires_grad_(False)
    assert sum(p.numel() for p in model.parameters()) == 385_030_726
    example = (
        torch.zeros(1, 3, 64, 64),
        torch.zeros(1, dtype=torch.long),
        *empty_tokens(model, 1, 128, CPU).values(),
    )
    table = trace_adm(
        model,
        example,
        label="glide",
        image_size=64,
        num_timesteps=1000,
        prompt_kind="text",
        inputs=("x", "timesteps", "tokens", "mask"),
        extra_leaves=("transformer",),
    ).table
    assert (table.count("enc"), table.count("dec"), table.count("skip"), table.num_levels) == (
        16,
        16,
        16,
        4,
    )
    assert [c.resolution for c in table.of_kind("enc")] == [64] * 4 + [32] * 4 + [16] * 4 + [8] * 4
    assert [c.channels for c in table.of_kind("skip")] == [192] * 5 + [384] * 4 + [576] * 4 + [
        768
    ] * 3
    assert [c.channels for c in table.of_kind("dec")] == [768] * 4 + [576] * 4 + [384] * 4 + [
        192
    ] * 4
