"""cost: FLOPs per image along a schedule, each half of guidance counted with its own program."""

from __future__ import annotations

from conftest import t_window, variant

from ablang.compile import ProgramCache, schedule
from ablang.cost import FlopCounter
from ablang.diffusion import Diffusion, steps_of
from ablang.plan import Intervention


def test_a_split_step_costs_the_cond_program_plus_the_uncond_program(random_model):
    steps = steps_of(Diffusion(random_model.diffusion, 8))
    guided = FlopCounter(random_model, ProgramCache(random_model.traced), doubled=True)
    single = FlopCounter(random_model, ProgramCache(random_model.traced), doubled=False)

    def flops(counter, side=None):
        ivs = (
            ()
            if side is None
            else (Intervention("cache", "dec[5]", t_window(0, 1000), every=2, side=side),)
        )
        return counter.trajectory(schedule(variant("v", *ivs), steps))

    full, both = flops(guided), flops(guided, "both")
    assert both < full  # the cache really saves work
    assert flops(guided, "uncond") == flops(guided, "cond") == (full + both) / 2
    assert flops(single) == full / 2 and flops(single, "both") == both / 2


def test_an_idle_unconditional_half_costs_nothing(random_model):
    """`cache guidance every 2` over 8 steps: both halves at 4 steps, the conditional half alone
    at the other 4, so 12 of the baseline's 16 half-forwards; `drop guidance` everywhere: 8."""
    steps = steps_of(Diffusion(random_model.diffusion, 8))
    counter = FlopCounter(random_model, ProgramCache(random_model.traced), doubled=True)

    def flops(*ivs):
        return counter.trajectory(schedule(variant("v", *ivs), steps))

    full = flops()
    cached = flops(Intervention("cache", "guidance", t_window(0, 1000), every=2))
    dropped = flops(Intervention("drop", "guidance", t_window(0, 1000)))
    assert cached == full * 12 / 16 and dropped == full / 2
