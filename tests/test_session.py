"""Session: one plan's model, diffusion, setup, programs, executor and FLOP counter, built from a
plan or from a model line alone, with no command line."""

import torch

from ablang.execute import Executor, make_setup
from ablang.plan import Intervention, ModelSpec, SamplerSpec, Variant
from ablang.session import Session, component_table, pick_device


def test_a_session_from_a_model_line_samples_like_an_executor_built_by_hand():
    session = Session.from_model(
        ModelSpec("tiny"), SamplerSpec("ddim", 4), prompts=("3", "7"), samples=1, device="cpu"
    )
    assert session.device == torch.device("cpu")
    assert session.setup.prompts == ("3", "7") and session.setup.seeds == (0, 0)
    assert len(session.steps) == 4 == len(session.setup.steps)
    assert session.setup == make_setup(session.plan, session.model, session.diffusion)
    # the guidance rule without drawing the noise, then the executor's own
    doubled = session.doubled
    assert "executor" not in session.__dict__
    assert session.executor.doubled == doubled
    assert session.images_per_forward == 2 * (2 if doubled else 1)

    ours = session.executor.baseline().xs[-1]
    by_hand = Executor(session.model, session.diffusion, session.setup, session.device)
    assert torch.equal(ours, by_hand.baseline().xs[-1])


def test_flops_of_a_variant_that_drops_a_skip_are_fewer_than_the_baselines():
    session = Session.from_model(ModelSpec("tiny"), SamplerSpec("ddim", 3), ("1",), 1, 0, "cpu")
    base = session.trajectory_flops(session.plan.baseline)
    fewer = session.trajectory_flops(Variant("v", (Intervention("drop", "mid"),), "variant"))
    assert 0 < fewer < base
    assert session.schedule(session.plan.baseline) is session.schedule(session.plan.baseline)


def test_the_component_table_needs_no_weights_and_auto_picks_a_device():
    table = component_table(ModelSpec("tiny"))
    assert table.model == "tiny" and table.count("skip") > 0
    assert pick_device("auto").type in ("cpu", "cuda")
