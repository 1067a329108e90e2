"""emit: the generated sampler gives the executor's images, reads as its golden file, runs without
ablang's compiler, and is lint-clean.

The emitted programs are the accelerate-mode graphs written out as Python, and its loop makes the
same noise and takes the same steps as the executor, so its images equal the executor's exactly
(``torch.equal``), in accelerate mode and in measure mode (one variant per batch).

Golden file: ``tests/fixtures/emit/cache_drop_ddim.py``. It depends on torch.fx's code
generation, ruff's formatting and ablang's version; after an intended change, regenerate it with
``pytest tests/test_emit.py --update-golden`` and review the diff.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_module, make_plan, t_window, variant

import ablang
from ablang import runtime
from ablang.compile import ProgramCache
from ablang.diffusion import Diffusion
from ablang.emit import HEADER, emit_sampler, emit_source, format_source, runtime_parts
from ablang.errors import AblangError
from ablang.execute import Executor, make_setup
from ablang.plan import Intervention, Window

GOLDEN = Path(__file__).parent / "fixtures" / "emit"
REPO = Path(__file__).resolve().parent.parent
STEPS = 8

CACHE = variant("deep_cache", Intervention("cache", "dec[3]", t_window(0, 1000), every=2))
DROP = variant("drop_block", Intervention("drop", "enc[5]", t_window(0, 600)))
MIX = variant(
    "mix",
    Intervention("cache", "dec[1]", t_window(0, 800), every=3),
    Intervention("drop", "skip[2]", t_window(0, 400)),
    Intervention("scale", "mid", Window("step", 0, 3), factor=0.8),
)


def executor_images(model, plan, v):
    """The executor's images of ``v`` in accelerate and in measure mode."""
    diffusion = Diffusion(model.diffusion, plan.sampler.steps)
    ex = Executor(model, diffusion, make_setup(plan, model, diffusion), torch.device("cpu"))
    base = ex.baseline()
    (fast,) = ex.run_batch([v], base, "accelerate")
    (masked,) = ex.run_batch([v], base, "measure")
    return fast.images, masked.images, base.xs[-1], ex.programs


@pytest.mark.parametrize("sampler, eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.5)])
@pytest.mark.parametrize("v", [CACHE, DROP, MIX], ids=lambda v: v.name)
def test_emitted_sampler_reproduces_the_executor(random_model, tmp_path, v, sampler, eta):
    plan = make_plan(v, steps=STEPS, kind=sampler, eta=eta, samples=2)  # 2 prompts x 2 = 4 images
    fast, masked, baseline, programs = executor_images(random_model, plan, v)
    path = emit_sampler(plan, v, random_model, tmp_path / "fast.py", programs)
    module = load_module(path)
    got = module.sample(n=2, prompts=["3", "7"], seed=0)  # loads the fixture's weights file
    assert got.shape == (4, 1, 32, 32)
    assert torch.equal(got, fast) and torch.equal(got, masked), (got - fast).abs().max().item()
    assert (got - baseline).abs().max() > 1e-5  # the shortcuts are really in it
    assert module.PROGRAM_OF_STEP[0] == 0 and len(module.PROGRAM_OF_STEP) == STEPS


def test_emitted_sampler_keeps_noise_per_image(random_model, tmp_path):
    """A study with ``noise per image``: the emitted sampler gives every image its own draw, as
    the executor does."""
    plan = dataclasses.replace(make_plan(MIX, steps=STEPS, samples=2), noise="image")
    fast, masked, _, programs = executor_images(random_model, plan, MIX)
    module = load_module(emit_sampler(plan, MIX, random_model, tmp_path / "fast.py", programs))
    assert module.SEED_STRIDE == 2**24
    got = module.sample(n=2, prompts=["3", "7"], seed=0)
    assert torch.equal(got, fast) and torch.equal(got, masked), (got - fast).abs().max().item()
    shared = dataclasses.replace(plan, noise="sample")
    other, _, _, _ = executor_images(random_model, shared, MIX)
    assert torch.equal(other[:2], got[:2]) and not torch.equal(other[2:], got[2:])


SIDED = variant(
    "sided",
    Intervention("cache", "dec[1]", t_window(0, 800), every=3, side="uncond"),
    Intervention("drop", "skip[2]", t_window(0, 400), side="cond"),
    Intervention("scale", "mid", Window("step", 0, 3), factor=0.8),
    Intervention("zero", "enc[4]", Window("step", 2, 5), side="uncond"),
)
SCHEDULES = variant(
    "schedules",
    Intervention("cache", "dec[2]", Window("step", 0, 8), every=1, grow=1),
    Intervention("cache", "skip[5]", t_window(0, 1000), at=(700, 200), at_kind="t"),
    Intervention("cache", "enc[6]", Window("step", 2, 8), at=(5,), side="cond"),
    Intervention("cache", "dec[4]", t_window(0, 1000), every=3, extrapolate=True),
)


def emitted_like_accelerate(model, tmp_path, v, sampler, eta):
    """Emit ``v`` (2 images) and check its images: accelerate mode's bit for bit (the same
    half-size forwards), measure mode's to a few ULPs (one doubled, masked forward), not the
    baseline's. Returns the emitted module."""
    plan = make_plan(v, steps=STEPS, kind=sampler, eta=eta, samples=1)
    fast, masked, baseline, programs = executor_images(model, plan, v)
    module = load_module(emit_sampler(plan, v, model, tmp_path / f"{v.name}.py", programs))
    got = module.sample(n=1, prompts=["3", "7"], seed=0)
    assert torch.equal(got, fast), (got - fast).abs().max().item()
    torch.testing.assert_close(masked, got, rtol=0, atol=4 * torch.finfo(torch.float32).eps)
    assert (got - baseline).abs().max() > 1e-5
    return module


@pytest.mark.parametrize("sampler, eta", [("ddpm", 0.0), ("ddim", 0.5)])
@pytest.mark.parametrize("v", [SIDED, SCHEDULES], ids=lambda v: v.name)
def test_emitted_one_sided_and_scheduled_reproduce_the_executor(
    random_model, tmp_path, v, sampler, eta
):
    """Interventions on one half of guidance (the halves run as two programs where they differ)
    and cache schedules beyond `every N`: the sampler's images are accelerate mode's bit for bit
    (the same half-size forwards), measure mode's to a few ULPs (one doubled, masked forward)."""
    module = emitted_like_accelerate(random_model, tmp_path, v, sampler, eta)
    split = [p != q for p, q in zip(module.PROGRAM_OF_STEP, module.UNCOND_PROGRAM_OF_STEP)]
    assert any(split) and not all(split)  # some steps run the halves apart, some together


GUIDED = variant(
    "guided",
    Intervention("cache", "dec[4]", Window("step", 0, 8), every=2, extrapolate=True),
    Intervention("cache", "guidance", Window("step", 0, 6), every=2, extrapolate=True),
    Intervention("drop", "guidance", Window("step", 6, 8)),
)
CATCH_UP = variant(
    "catch_up",
    Intervention("drop", "guidance", Window("step", 0, 3)),
    Intervention("cache", "dec[5]", Window("step", 0, 8), every=2, extrapolate=True),
)


@pytest.mark.parametrize(
    "sampler, eta, v", [("ddpm", 0.0, GUIDED), ("ddim", 0.5, GUIDED), ("ddpm", 0.0, CATCH_UP)]
)
def test_emitted_guidance_rules_reproduce_the_executor(random_model, tmp_path, sampler, eta, v):
    """`cache guidance` and `drop guidance`: where the unconditional half idles the sampler runs
    the conditional half alone (GUIDANCE_OF_STEP), bit for bit accelerate mode's images; a
    cache the idle half missed is computed when it runs again."""
    module = emitted_like_accelerate(random_model, tmp_path, v, sampler, eta)
    if v is GUIDED:
        assert module.GUIDANCE_OF_STEP == (1, 3, 1, 3, 1, 3, 4, 4)
        assert module.UNCOND_PROGRAM_OF_STEP == module.PROGRAM_OF_STEP  # none for idle halves
    else:
        assert module.GUIDANCE_OF_STEP == (4, 4, 4, 0, 0, 0, 0, 0)
        assert module.UNCOND_PROGRAM_OF_STEP[3] != module.PROGRAM_OF_STEP[3]  # it catches up


def test_guidance_emit_needs_guidance(random_model, tmp_path):
    plan = make_plan(GUIDED, steps=STEPS, guidance=1.0)
    with pytest.raises(AblangError, match="on guidance itself"):
        emit_sampler(plan, GUIDED, random_model, tmp_path / "x.py")


def test_one_sided_emit_needs_guidance(random_model, tmp_path):
    plan = make_plan(SIDED, steps=STEPS, guidance=1.0)
    with pytest.raises(AblangError, match="one side of guidance"):
        emit_sampler(plan, SIDED, random_model, tmp_path / "x.py")


def test_emitted_baseline_is_the_plain_model(random_model, tmp_path):
    plan = make_plan(steps=STEPS)
    _, _, baseline, programs = executor_images(random_model, plan, plan.baseline)
    module = load_module(
        emit_sampler(plan, plan.baseline, random_model, tmp_path / "base.py", programs)
    )
    assert [f.__name__ for f in module.PROGRAMS] == ["unet_full"]
    assert torch.equal(module.sample(n=2, prompts=["3", "7"]), baseline)


# --------------------------------------------------------------------------- golden text


def test_emitted_source_matches_its_golden_file(random_model, update_golden):
    """A small variant (ddim 4 steps; a cache and a skip drop: three programs), emitted with
    fixed inputs so that the text does not depend on where the tests run."""
    model = dataclasses.replace(
        random_model,
        checksum="0" * 64,
        emit={**random_model.emit, "weights": "weights/random_tiny.pt"},
    )
    v = variant(
        "cache_drop",
        Intervention("cache", "dec[3]", t_window(0, 700), every=2),
        Intervention("drop", "skip[6]", t_window(700, 1000)),
    )
    plan = dataclasses.replace(
        make_plan(v, steps=4, kind="ddim"), source="studies/golden.abl", title="golden"
    )
    text = format_source(emit_source(plan, v, model, ProgramCache(model.traced)))
    golden = GOLDEN / "cache_drop_ddim.py"
    if update_golden:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    expected = golden.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    expected.splitlines(True), text.splitlines(True), str(golden), "emitted"
                )
            )[:80]
        )
        pytest.fail(
            f"the emitted source differs from {golden.name} "
            f"(regenerate: pytest tests/test_emit.py --update-golden):\n{diff}"
        )
    assert text.startswith(f'"""Accelerated sampler generated by ablang {ablang.__version__}.')
    assert 'VARIANT = "cache_drop"' in text and "def unet_cache_dec3_reuse(m, " in text


# --------------------------------------------------------------------------- the runtime inside


def test_emitted_runtime_is_ablangs_runtime_verbatim(random_model, tmp_path):
    """The sampler's code is runtime.py's, byte for byte, and every runtime function of the
    imported sampler has runtime.py's source."""
    plan = make_plan(MIX, steps=4, samples=1)
    path = emit_sampler(plan, MIX, random_model, tmp_path / "fast.py")
    text = path.read_text(encoding="utf-8")
    imports, body = runtime_parts()
    assert body.rstrip() in text and imports in text
    module = load_module(path)
    names = [n for n, f in vars(runtime).items() if inspect.isfunction(f) or inspect.isclass(f)]
    own = [n for n in names if getattr(runtime, n).__module__ == runtime.__name__]
    assert {"step", "ddpm_step", "ddim_step", "guided_output", "make_noise", "sample_loop"} <= set(
        own
    )
    for name in own:
        assert inspect.getsource(getattr(module, name)) == inspect.getsource(
            getattr(runtime, name)
        ), name


@pytest.mark.parametrize("sampler, eta", [("ddpm", 0.0), ("ddim", 0.5)])
def test_one_emitted_step_is_the_runtimes_step(random_model, tmp_path, sampler, eta):
    plan = make_plan(CACHE, steps=6, kind=sampler, eta=eta, samples=1)
    module = load_module(emit_sampler(plan, CACHE, random_model, tmp_path / "fast.py"))
    diffusion = Diffusion(random_model.diffusion, 6)
    table = diffusion.table(sampler, eta)
    emitted = module.StepTable.from_rows(module.SCHEDULE, **module.SAMPLER)
    assert emitted.rows() == table.rows() and emitted.variance == table.variance
    g = torch.Generator().manual_seed(3)
    x, out, noise = (torch.randn(2, 1, 32, 32, generator=g) for _ in range(3))
    for k in range(6):
        torch.testing.assert_close(
            module.step(emitted, k, x, out, noise),
            runtime.step(table, k, x, out, noise),
            rtol=0,
            atol=0,
        )


HOSTILE = "C:\\xyz\\Users \"\"\" ''' $(rm -rf x) `touch pwned` \n\x00 {title}"


def test_hostile_study_strings_are_data(random_model, tmp_path):
    plan = dataclasses.replace(
        make_plan(CACHE, steps=3, samples=1), title=HOSTILE, source="studies/$(rm -rf x)\"'.abl"
    )
    path = emit_sampler(plan, CACHE, random_model, tmp_path / "fast.py")
    module = load_module(path)
    assert module.TITLE == HOSTILE and module.STUDY == plan.source
    assert not (tmp_path / "pwned").exists()
    compile(path.read_text(encoding="utf-8"), str(path), "exec")


def test_emit_never_overwrites_a_foreign_file(random_model, tmp_path):
    plan = make_plan(steps=3, samples=1)
    mine = tmp_path / "mine.py"
    mine.write_text("print('my own work')\n")
    with pytest.raises(AblangError, match="not a sampler ablang generated"):
        emit_sampler(plan, plan.baseline, random_model, mine)
    assert mine.read_text() == "print('my own work')\n"
    emit_sampler(plan, plan.baseline, random_model, mine, force=True)
    assert mine.read_text(encoding="utf-8").startswith(HEADER)
    emit_sampler(plan, plan.baseline, random_model, mine)  # its own output: replaced freely
    assert [p.name for p in tmp_path.iterdir()] == ["mine.py"]  # no temporary file left


def test_emitted_sampler_checks_its_weights(random_model, tmp_path):
    plan = make_plan(steps=2, samples=1)
    module = load_module(emit_sampler(plan, plan.baseline, random_model, tmp_path / "base.py"))
    good = module.sample(n=1, prompts=["3"])  # the checksum matches
    module.CHECKSUM = "0" * 64  # as if the weights file had been replaced
    with pytest.raises(SystemExit, match="not the weights this sampler was generated for"):
        module.sample(n=1, prompts=["3"])
    with pytest.raises(SystemExit):
        module.main(["--n", "1", "--prompts", "3", "-o", str(tmp_path / "a.png")])
    assert torch.equal(module.sample(n=1, prompts=["3"], verify=False), good)
    module.main(["--n", "1", "--prompts", "3", "--no-verify", "-o", str(tmp_path / "b.png")])
    assert (tmp_path / "b.png").exists() and not (tmp_path / "a.png").exists()


# --------------------------------------------------------------------------- standalone

# Runs in a fresh interpreter: hides the installed ablang (editable finder, repo paths), puts a
# directory holding only ablang/__init__.py, ablang/models/__init__.py and tiny_unet.py first,
# runs the emitted sampler and reports which ablang modules were imported.
CHILD = r"""
import importlib.util, json, sys
from pathlib import Path

root, emitted, out = sys.argv[1:4]
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
sys.path[:] = [p for p in sys.path if p and "__editable__" not in p and not (Path(p) / "ablang").exists()]
sys.path.insert(0, root)
sys.path_importer_cache.clear()
assert importlib.util.find_spec("ablang.compile") is None, "the compiler is still importable"

spec = importlib.util.spec_from_file_location("emitted", emitted)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import torch
torch.save(module.sample(n=1, prompts=["3", "7"], seed=0), out)
print(json.dumps({
    "modules": sorted(m for m in sys.modules if m == "ablang" or m.startswith("ablang.")),
    "tiny_unet": sys.modules["ablang.models.tiny_unet"].__file__,
}))
"""


def test_emitted_sampler_runs_without_ablangs_compiler(random_model, tmp_path):
    plan = make_plan(MIX, steps=STEPS, samples=1)  # 2 images
    fast, _, _, programs = executor_images(random_model, plan, MIX)
    path = emit_sampler(plan, MIX, random_model, tmp_path / "fast.py", programs)

    text = path.read_text(encoding="utf-8")
    imports = re.findall(r"^\s*((?:import|from)\s+ablang\b.*)$", text, re.MULTILINE)
    assert imports == ["from ablang.models.tiny_unet import TinyUnet, TinyUnetConfig"]

    root = tmp_path / "minimal"
    (root / "ablang" / "models").mkdir(parents=True)
    (root / "ablang" / "__init__.py").write_text("")
    (root / "ablang" / "models" / "__init__.py").write_text("")
    shutil.copy(
        REPO / "ablang" / "models" / "tiny_unet.py", root / "ablang" / "models" / "tiny_unet.py"
    )
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    out = tmp_path / "images.pt"
    done = subprocess.run(
        [sys.executable, "-I", str(child), str(root), str(path), str(out)],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["modules"] == ["ablang", "ablang.models", "ablang.models.tiny_unet"]
    assert (
        Path(report["tiny_unet"]).resolve()
        == (root / "ablang" / "models" / "tiny_unet.py").resolve()
    )
    assert torch.equal(torch.load(out, weights_only=True), fast)


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_emitted_sampler_is_lint_clean(random_model, tmp_path):
    plan = make_plan(MIX, steps=STEPS, samples=1)
    path = emit_sampler(plan, MIX, random_model, tmp_path / "fast.py")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--config",
            str(REPO / "pyproject.toml"),
            str(path),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- ablang emit

STUDY = """\
model tiny
sampler ddim steps 6 guidance 2.0
samples 1
prompts "3"
variant fast {
    cache dec[5] every 2
}
drop mid for t in 0..300
"""


def test_emit_command_writes_a_runnable_sampler(tmp_path, capsys):
    from ablang.cli import main

    study = tmp_path / "s.abl"
    study.write_text(STUDY)
    out = tmp_path / "fast.py"
    assert main(["emit", str(study), "fast", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    speedup = float(re.search(r"FLOP-bound speedup (\d+\.\d+)x", printed).group(1))
    assert 1.2 < speedup < 2.0  # dec[5] and all under it skipped on 2 of 6 steps
    done = subprocess.run(
        [
            sys.executable,
            str(out),
            "--n",
            "1",
            "--prompts",
            "3,7",
            "-o",
            str(tmp_path / "grid.png"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "2 images" in done.stdout and (tmp_path / "grid.png").exists()


def test_emit_command_errors(tmp_path, capsys):
    from ablang.cli import main

    study = tmp_path / "s.abl"
    study.write_text(STUDY)
    assert main(["emit", str(study), "fsat", "-o", str(tmp_path / "x.py")]) == 2
    err = capsys.readouterr().err
    assert "no variant `fsat`; it has: baseline, fast" in err and "did you mean fast?" in err
    assert not (tmp_path / "x.py").exists()

    study.write_text(STUDY.replace("dec[5]", "dec[55]"))
    assert main(["emit", str(study), "fast", "-o", str(tmp_path / "x.py")]) == 2
    assert "dec[55]" in capsys.readouterr().err
