"""Shared helpers for the language tests: a component table shaped like the built-in model, and
the one reader of the text fixtures.

Fixtures:

- ``tests/fixtures/check/<name>.abl`` + ``<name>.err``: the study and the exact error output of
  ``ablang check`` for it (every error rendered, as ``render_error`` writes it);
- ``tests/fixtures/plan/<name>.abl`` + ``<name>.json``: the study and a summary of its plan.

To write the expected files for new fixtures (then read them before committing):
``python tests/abl_fixtures.py --update``. Existing expected files are never overwritten.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ablang.components import Component, ComponentTable
from ablang.errors import AblangError, AblangErrors, as_list, render_errors
from ablang.parse import parse
from ablang.plan import Plan
from ablang.resolve import model_spec, resolve

FIXTURES = Path(__file__).parent / "fixtures"
RESOLUTIONS = (32, 16, 8, 4)


def tiny_table() -> ComponentTable:
    """12 encoder blocks over levels 0..3 (32, 16, 8, 4 pixels), mid, 12 decoder blocks, and 12
    skips where skip[i] carries enc[i] into dec[11-i]; enc[0] is the plain conv_in and cannot be
    dropped (3 -> 64 channels, no shortcut). T = 1000, class labels as prompts."""
    comps = []
    for i in range(12):
        level = i // 3
        conv_in = i == 0
        comps.append(
            Component(
                "enc",
                i,
                level,
                RESOLUTIONS[level],
                64 * (1 + level),
                params=1000 + i,
                flops_share=0.02,
                droppable=not conv_in,
                drop_note="conv_in maps 3 image channels to 64 and has no shortcut"
                if conv_in
                else "",
                module=f"input_blocks.{i}",
            )
        )
    comps.append(
        Component("mid", None, 3, 4, 256, params=5000, flops_share=0.1, module="middle_block")
    )
    for j in range(12):
        level = 3 - j // 3
        comps.append(
            Component(
                "dec",
                j,
                level,
                RESOLUTIONS[level],
                64 * (1 + level),
                params=2000 + j,
                flops_share=0.04,
                module=f"output_blocks.{j}",
            )
        )
    for i in range(12):
        level = i // 3
        comps.append(
            Component(
                "skip",
                i,
                level,
                RESOLUTIONS[level],
                64 * (1 + level),
                module=f"hs[{i}]",
                feeds=f"dec[{11 - i}]",
            )
        )
    return ComponentTable("tiny", tuple(comps), num_timesteps=1000, prompt_kind="class")


def plan_summary(plan: Plan) -> dict:
    """What a plan fixture pins: everything but spans, in JSON types."""
    return {
        "model": plan.model.label(),
        "sampler": {
            "kind": plan.sampler.kind,
            "steps": plan.sampler.steps,
            "eta": plan.sampler.eta,
            "guidance": plan.sampler.guidance,
        },
        "title": plan.title,
        "seed": plan.seed,
        "samples": plan.samples,
        "prompts": list(plan.prompts),
        "metrics": list(plan.metrics),
        "device": plan.device,
        "num_timesteps": plan.num_timesteps,
        "variants": {v.name: [iv.label() for iv in v.interventions] for v in plan.variants},
        "origins": {v.name: v.origin for v in plan.variants},
        "sweeps": [
            {
                "name": s.name,
                "op": s.op,
                "params": dict(s.params),
                "components": list(s.components),
                "windows": [w.label() for w in s.windows],
                "variants": [list(r) for r in s.variants],
            }
            for s in plan.sweeps
        ],
        "searches": [
            {
                "name": s.name,
                "objective": s.objective,
                "constraints": [[c.metric, c.cmp, c.value, c.relative] for c in s.constraints],
                "ops": list(s.ops),
                "components": list(s.components),
                "windows": [w.label() for w in s.windows],
                "every": s.every,
                "periods": list(s.cache_periods),
                "validation": None
                if s.validation is None
                else [s.validation.samples, list(s.validation.seeds)],
            }
            for s in plan.searches
        ],
        "emits": [[e.path, e.variant] for e in plan.emits],
    }


def check_output(text: str, path: str, table: ComponentTable | None = None) -> str:
    """What ``ablang check`` prints for a study against ``table`` ("" when it is clean)."""
    try:
        study = parse(text, path)
        resolve(study, table if table is not None else tiny_table(), source_path=path)
    except (AblangError, AblangErrors) as e:
        return render_errors(as_list(e), text, path) + "\n"
    return ""


def plan_of(text: str, path: str = "<study>") -> Plan:
    study = parse(text, path)
    assert model_spec(study) is not None
    return resolve(study, tiny_table(), source_path=path)


def cases(kind: str) -> list[Path]:
    return sorted((FIXTURES / kind).glob("*.abl"))


def expected_check(abl: Path) -> str:
    return abl.with_suffix(".err").read_text(encoding="utf-8")


def expected_plan(abl: Path) -> dict:
    return json.loads(abl.with_suffix(".json").read_text(encoding="utf-8"))


def _update() -> None:
    for abl in cases("check"):
        err = abl.with_suffix(".err")
        if not err.exists():
            err.write_text(check_output(abl.read_text("utf-8"), abl.name), encoding="utf-8")
            print("wrote", err)
    for abl in cases("plan"):
        out = abl.with_suffix(".json")
        if not out.exists():
            out.write_text(
                json.dumps(plan_summary(plan_of(abl.read_text("utf-8"), abl.name)), indent=2) + "\n"
            )
            print("wrote", out)


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        _update()
    else:
        print(__doc__)
