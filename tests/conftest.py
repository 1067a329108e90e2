"""Shared fixtures: a small random-weight model of the built-in architecture, fast to run, and
helpers to build plans without a study file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from ablang.diffusion import DiffusionSpec
from ablang.models import tiny
from ablang.models.adm_family import trace_adm
from ablang.models.base import LoadedModel
from ablang.models.tiny_unet import TinyUnet
from ablang.plan import Intervention, ModelSpec, Plan, SamplerSpec, Variant, Window
from ablang.train import save_checkpoint


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files (tests/fixtures/emit/) from the current output instead of comparing",
    )


@pytest.fixture
def update_golden(request) -> bool:
    """True when the run was asked to rewrite golden files (``pytest --update-golden``)."""
    return bool(request.config.getoption("--update-golden"))


def random_unet(seed: int = 0) -> TinyUnet:
    """The built-in architecture with random weights large enough that every block matters
    (the real init zeroes each residual branch's last conv)."""
    torch.manual_seed(seed)
    m = TinyUnet().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05)
    return m.requires_grad_(False)


def loaded(unet: TinyUnet, weights: str = "") -> LoadedModel:
    example = (
        torch.zeros(1, 1, 32, 32),
        torch.zeros(1, dtype=torch.long),
        torch.zeros(1, dtype=torch.long),
    )
    traced = trace_adm(
        unet,
        example,
        label="tiny",
        image_size=32,
        num_timesteps=1000,
        prompt_kind="class",
        inputs=("x", "timesteps", "y"),
    )

    def make_cond(prompts, device):
        y = tiny.labels(prompts).to(device)
        return {"y": y}, {"y": torch.full_like(y, 10)}

    checksum = tiny.sha256(Path(weights)) if weights else "random"  # what emitted samplers verify
    return LoadedModel(
        "tiny",
        unet,
        traced,
        DiffusionSpec(),
        (1, 32, 32),
        checksum,
        3.0,
        tiny.DIGITS,
        make_cond,
        emit={
            "imports": ["from ablang.models.tiny_unet import TinyUnet, TinyUnetConfig"],
            "weights": weights,
            "source": tiny.EMIT_SOURCE,
        },
    )


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> LoadedModel:
    unet = random_unet()
    path = tmp_path_factory.mktemp("weights") / "random_tiny.pt"
    save_checkpoint(Path(path), unet, 0)
    # reload as the emitted sampler will (fp16 round trip), so both use the same weights
    return loaded(tiny.load_unet(Path(path)), str(path))


def t_window(lo: int, hi: int, inclusive: bool = False) -> Window:
    return Window("t", lo, hi, inclusive)


def variant(name: str, *ivs: Intervention) -> Variant:
    return Variant(name, tuple(ivs), "variant")


def make_plan(
    *variants: Variant,
    steps: int = 10,
    kind: str = "ddpm",
    guidance: float | None = None,
    prompts=("3", "7"),
    samples: int = 2,
    eta: float = 0.0,
) -> Plan:
    return Plan(
        model=ModelSpec("tiny"),
        sampler=SamplerSpec(kind, steps, eta, guidance),
        prompts=tuple(prompts),
        samples=samples,
        variants=(Variant("baseline", (), "baseline"), *variants),
        source="test.abl",
    )


def load_module(path: Path, name: str = "emitted") -> ModuleType:
    """Import a generated sampler from its file, as ``python -c "import ..."`` would."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect and dataclasses find a class's module through it
    spec.loader.exec_module(module)
    return module
