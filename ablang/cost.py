"""What a variant costs: Unet FLOPs per image along its trajectory, counted on the programs.

FLOPs are counted by ``torch.utils.flop_counter`` on the *accelerate* program of every rule set
(one image, once per rule set), so they are what the variant costs when its shortcuts are really
taken, whichever mode ran it. Guidance by batch doubling counts two forwards per image and step:
the conditional half's program and the unconditional half's, which differ where an intervention
acts on one side of guidance; at a step where ``drop guidance`` or a reuse of ``cache guidance``
idles the unconditional half, only the conditional one counts.
"""

from __future__ import annotations

import torch

from ablang import runtime
from ablang.compile import (
    ProgramCache,
    RuleSet,
    Schedule,
    cache_input_name,
    guidance_of,
    halves,
    value_shape,
)
from ablang.models.base import LoadedModel
from ablang.trace import program_flops


class FlopCounter:
    def __init__(self, model: LoadedModel, programs: ProgramCache, doubled: bool) -> None:
        self.model, self.programs = model, programs
        self.doubled = doubled
        c, h, w = model.image_shape
        cond, _ = model.make_cond(
            [model.default_prompts[0]] if model.default_prompts else [""], torch.device("cpu")
        )
        self._x = torch.zeros(1, c, h, w)
        self._t = torch.full((1,), model.diffusion.num_timesteps // 2, dtype=torch.long)
        self._cond = cond
        self._per_rules: dict[RuleSet, float] = {}

    def per_step(self, rules: RuleSet) -> float:
        """FLOPs of one image-forward under side-free ``rules``."""
        if rules not in self._per_rules:
            program = self.programs.get(rules, "accelerate")
            device = next(iter(self.model.unet.parameters())).device
            kwargs = dict(self._cond)
            kwargs[program.inputs[0]], kwargs[program.inputs[1]] = (
                self._x.to(device),
                self._t.to(device),
            )
            for comp in program.cache_inputs:
                kwargs[cache_input_name(comp)] = torch.zeros(
                    value_shape(self.model.traced, comp), device=device
                )
            kwargs = {
                k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()
            }
            self._per_rules[rules] = program_flops(program.gm, (), kwargs)
        return self._per_rules[rules]

    def trajectory(self, sched: Schedule) -> float:
        """FLOPs per generated image over the whole trajectory: per step, the conditional
        half's program, plus the unconditional half's when it runs."""
        total = 0.0
        for rules in sched.per_step:
            cond, uncond = halves(rules)
            both = self.doubled and runtime.both_halves(guidance_of(rules))
            total += self.per_step(cond) + (self.per_step(uncond) if both else 0.0)
        return total
