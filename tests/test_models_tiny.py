"""The built-in model ``tiny``: shipped files and checksums, component table, determinism, and
that the trained weights really make the digits they are asked for."""

from __future__ import annotations

import dataclasses
import shutil
import socket

import pytest
import torch
from conftest import load_module, make_plan

from ablang.diffusion import Diffusion
from ablang.emit import emit_sampler
from ablang.execute import Executor, make_setup
from ablang.models import ModelUnavailable, tiny
from ablang.models.digits import FEATURE_DIM
from ablang.models.registry import load_adapter
from ablang.models.tiny_unet import TinyUnet
from ablang.plan import ModelSpec, Plan, SamplerSpec

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    return load_adapter(ModelSpec("tiny")).load(CPU)


def sample(model, prompts, *, steps, samples=1, seed=0, guidance=3.0, kind="ddpm"):
    plan = Plan(
        model=ModelSpec("tiny"),
        sampler=SamplerSpec(kind, steps, 0.0, guidance),
        seed=seed,
        samples=samples,
        prompts=tuple(prompts),
    )
    diffusion = Diffusion(model.diffusion, steps)
    setup = make_setup(plan, model, diffusion)
    ex = Executor(model, diffusion, setup, CPU)
    return ex.baseline().xs[-1], list(setup.prompts), ex


# --------------------------------------------------------------------------- shipped files


@pytest.mark.parametrize("name", [tiny.WEIGHTS, tiny.CLASSIFIER, tiny.REFERENCE])
def test_shipped_files_match_their_checksums(name):
    path = tiny.data_path(name)
    assert path.exists(), f"{name} is not in the package"
    assert tiny.CHECKSUMS[name], f"no checksum recorded for {name}"
    assert tiny.sha256(path) == tiny.CHECKSUMS[name]


def test_the_model_loads_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the built-in model must load without the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    loaded = load_adapter(ModelSpec("tiny")).load(CPU)
    assert isinstance(loaded.unet, TinyUnet)
    assert loaded.checksum == tiny.CHECKSUMS[tiny.WEIGHTS]
    assert not loaded.unet.training
    assert not any(p.requires_grad for p in loaded.unet.parameters())


def test_a_corrupted_checkpoint_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / tiny.WEIGHTS
    shutil.copyfile(tiny.data_path(tiny.WEIGHTS), bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the middle of the weights
    bad.write_bytes(bytes(data))
    real = tiny.data_path
    monkeypatch.setattr(tiny, "data_path", lambda name: bad if name == tiny.WEIGHTS else real(name))
    with pytest.raises(ModelUnavailable, match="checksum"):
        load_adapter(ModelSpec("tiny")).load(CPU)


def test_a_missing_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tiny, "data_path", lambda name: tmp_path / name)
    with pytest.raises(ModelUnavailable, match="missing"):
        load_adapter(ModelSpec("tiny")).load(CPU)


# --------------------------------------------------------------------------- components


def test_component_table(model):
    table = model.table
    assert table.model == "tiny" and table.num_timesteps == 1000 and table.prompt_kind == "class"
    assert [c.name for c in table.of_kind("enc")] == [f"enc[{i}]" for i in range(8)]
    assert [c.name for c in table.of_kind("dec")] == [f"dec[{i}]" for i in range(8)]
    assert [c.name for c in table.of_kind("skip")] == [f"skip[{i}]" for i in range(8)]
    assert table.count("mid") == 1
    assert table.num_levels == 4
    assert sorted({c.level for c in table.components}) == [0, 1, 2, 3]
    assert [c.level for c in table.of_kind("enc")] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [c.level for c in table.of_kind("dec")] == [3, 3, 2, 2, 1, 1, 0, 0]
    assert [c.resolution for c in table.of_kind("enc")] == [32, 32, 16, 16, 8, 8, 4, 4]
    assert table["mid"].level == 3
    for i in range(8):
        skip = table[f"skip[{i}]"]
        assert skip.feeds == f"dec[{7 - i}]"
        assert skip.level == table[f"enc[{i}]"].level == table[f"dec[{7 - i}]"].level
        assert skip.droppable
    assert not table["enc[0]"].droppable and table["enc[0]"].drop_note
    assert all(c.droppable for c in table.components if c.name != "enc[0]")
    blocks = [c for c in table.components if c.kind != "skip"]
    assert sum(c.flops_share for c in blocks) == pytest.approx(1.0, abs=0.05)


# --------------------------------------------------------------------------- sampling


def test_on_cpu_the_network_runs_channels_last(model):
    """A 1-channel image fits both layouts (torch takes it as NCHW), so only channels-last
    weights make the convolutions run channels-last, the faster layout for small ones on CPU."""
    assert model.channels_last
    outputs = []
    convs = [m for m in model.unet.modules() if isinstance(m, torch.nn.Conv2d)]
    handles = [c.register_forward_hook(lambda m, a, out: outputs.append(out)) for c in convs]
    try:
        with torch.no_grad():
            model.traced.gm(
                torch.randn(2, 1, 32, 32), torch.tensor([900, 100]), torch.tensor([3, 10])
            )
    finally:
        for h in handles:
            h.remove()
    wide = [o for o in outputs if o.shape[1] > 1]  # a 1-channel output has no layout either
    assert len(wide) > 10
    assert all(
        o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous() for o in wide
    )


def test_the_emitted_load_model_chooses_the_layout_as_the_adapter(model, tmp_path):
    plan = make_plan(steps=2)
    for last in (True, False):
        path = emit_sampler(
            plan,
            plan.baseline,
            dataclasses.replace(model, channels_last=last),
            tmp_path / f"s{last}.py",
        )
        unet = load_module(path, path.stem).load_model(CPU)
        weight = unet.input_blocks[1][0].in_layers[2].weight  # a 3x3 convolution's
        assert weight.is_contiguous(memory_format=torch.channels_last) is last
        for name, value in model.unet.state_dict().items():
            assert torch.equal(unet.state_dict()[name], value), name


def test_a_fixed_seed_gives_the_same_images_twice(model):
    a, _, _ = sample(model, ["3", "7"], steps=5, seed=4)
    b, _, _ = sample(model, ["3", "7"], steps=5, seed=4)
    c, _, _ = sample(model, ["3", "7"], steps=5, seed=5)
    assert a.shape == (2, 1, 32, 32)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


@pytest.mark.slow
def test_the_trained_model_makes_the_requested_digits(model):
    digits = [str(d) for d in range(10)]
    images, prompts, ex = sample(model, digits, steps=50, guidance=3.0)
    assert ex.doubled and ex.evaluations == 50 * 2 * 10
    assert images.min() >= -1.0 - 1e-4 and images.max() <= 1.0 + 1e-4
    correct = tiny.accuracy(images, prompts)
    assert correct.float().mean().item() >= 0.8, f"recognised: {correct.tolist()}"


# --------------------------------------------------------------------------- helpers


def test_accuracy_and_features_helpers():
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    ok = tiny.accuracy(images, ["1", "2", "3"])
    assert ok.shape == (3,) and ok.dtype == torch.bool
    feats = tiny.features(images)
    assert feats.shape == (3, FEATURE_DIM) and feats.dtype == torch.float32
    ref = tiny.reference_features()
    assert ref.shape == (5000, FEATURE_DIM) and ref.dtype == torch.float32


def test_prompts_must_be_digits():
    assert tiny.labels(["0", "9"]).tolist() == [0, 9]
    with pytest.raises(ModelUnavailable, match="digits"):
        tiny.labels(["cat"])


def test_conditioning_uses_the_null_label(model):
    cond, uncond = model.make_cond(["3", "7"], CPU)
    assert cond["y"].tolist() == [3, 7]
    assert uncond["y"].tolist() == [10, 10]
