"""trace: leaf tracing leaves the traced model object exactly as it was."""

from __future__ import annotations

import torch

from ablang.models.adm import AdmConfig, build_unet
from ablang.models.adm_family import trace_adm

from test_models_adm import UNCOND


def test_tracing_does_not_touch_the_model():
    # guided-diffusion's timestep embedding makes fx capture a tensor constant; fx stores such
    # constants on the module it traces, which must not be the user's model
    cfg, _ = AdmConfig.from_dict(UNCOND)
    model = build_unet(cfg).eval()
    attrs = set(vars(model))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    size = cfg.image_size
    example = (torch.randn(1, 3, size, size), torch.tensor([5]))
    traced = trace_adm(
        model,
        example,
        label="adm",
        image_size=size,
        num_timesteps=1000,
        prompt_kind="none",
        inputs=("x", "timesteps"),
        concrete_args={"y": None},
    )
    assert any(n.op == "get_attr" for n in traced.gm.graph.nodes)  # a constant was captured
    assert set(vars(model)) == attrs
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
