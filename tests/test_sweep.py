"""Cheap sweeps: a whole sweep run the way ``ablang run`` runs it (the shared baseline prefix,
variants that start at the same step as chunks of one batched forward in measure mode) gives
each variant the images it gets run alone from x_T, and spends fewer Unet evaluations.

On the random-weight model, 6 steps (t = 999, 799, 599, 399, 199, 0), one sample of two digits,
guidance 3 (batch doubling), so that every variant's chunk has conditional and unconditional
rows. Convolutions may differ by a few ULPs with the batch size, hence the 1e-5 tolerance."""

from __future__ import annotations

import pytest
import torch
from conftest import make_plan

from ablang.compile import schedule
from ablang.diffusion import Diffusion
from ablang.execute import Executor, batches, make_setup
from ablang.parse import parse
from ablang.resolve import resolve

CPU = torch.device("cpu")
STEPS = 6


def sweep_variants(random_model, line: str):
    """The variants of one ``sweep`` line, resolved against the model's component table."""
    study = parse(f"model tiny\nsampler ddpm steps {STEPS}\n{line}\n", "sweep.abl")
    return list(resolve(study, random_model.table).variants[1:])


def executor(model, variants) -> Executor:
    plan = make_plan(*variants, steps=STEPS, samples=1)
    diffusion = Diffusion(model.diffusion, STEPS)
    return Executor(model, diffusion, make_setup(plan, model, diffusion), CPU)


def alone(ex: Executor, v) -> torch.Tensor:
    """The variant's whole trajectory from x_T, with nothing shared: the naive way."""
    sched = schedule(v, list(ex.setup.steps))
    x, cache = ex.x_T.clone(), {}
    with torch.no_grad():
        for step in ex.setup.steps:
            x = ex.forward(x, step, [sched.per_step[step.index]], [cache], "accelerate")
    return x


SWEEPS = [
    "sweep drop skip[*] for t in 0..1000 by 400",
    "sweep cache dec[4..8] every 2 for t in 0..1000 by 500",
    "sweep drop enc[5..8], mid, dec[0..3] for t in 0..1000 by 500",
]


@pytest.mark.parametrize("line", SWEEPS)
def test_a_batched_sweep_equals_every_variant_run_alone(random_model, line):
    variants = sweep_variants(random_model, line)
    ex = executor(random_model, variants)
    steps = list(ex.setup.steps)
    baseline = ex.baseline()
    groups = batches(variants, steps, max_chunks=6)
    assert any(len(g) > 1 for g in groups)  # some forwards really are batched
    before = ex.evaluations
    got = {}
    for group in groups:
        for s in ex.run_batch(group, baseline, "measure"):
            got[s.variant] = s
    shared = ex.evaluations - before

    naive = 0
    for v in variants:
        before = ex.evaluations
        want = alone(ex, v)
        naive += ex.evaluations - before
        torch.testing.assert_close(got[v.name].images, want, rtol=1e-5, atol=1e-5, msg=v.name)
        assert got[v.name].start_step == schedule(v, steps).first_active
    # every variant pays for its own steps only; the steps before its window are the baseline's
    rows = 2 * ex.n
    assert shared == sum(len(steps) - schedule(v, steps).first_active for v in variants) * rows
    assert naive == len(variants) * len(steps) * rows
    assert shared < naive


def test_a_variant_is_the_same_in_any_batch(random_model):
    """Chunk k of a batch does not depend on the other chunks, nor on its place in the batch."""
    variants = sweep_variants(random_model, SWEEPS[0])
    ex = executor(random_model, variants)
    baseline = ex.baseline()
    first = [v for v in variants if schedule(v, list(ex.setup.steps)).first_active == 0]
    forward = {s.variant: s.images for s in ex.run_batch(first, baseline, "measure")}
    backward = {s.variant: s.images for s in ex.run_batch(first[::-1], baseline, "measure")}
    for v in first:
        torch.testing.assert_close(forward[v.name], backward[v.name], rtol=1e-5, atol=1e-5)
