"""ablang: ablation studies of diffusion Unets, written as small ``.abl`` files.

How a study flows, and where each stage lives (docs/architecture.md has a paragraph per module)::

    study.abl --parse--> ast.Study --resolve--> Plan --Session--> model, diffusion, setup, programs
     (text)   parse.py   ast.py     resolve/   plan.py session.py (models/, diffusion.py,
              syntax_errors.py      (passes)                       execute.py, compile.py)
                                                  |
        --compile--> Schedule, Program --execute--> Samples --measure--> Results --report-->
          compile.py                     execute.py          measure.py  results.py report.py
                                         journal.py          cost.py               heatmap.py
                                                  +--search--> SearchResult (search.py)
                                                  +--emit--> a standalone sampler (emit.py)

- ``errors.py``: positioned errors for people (file:line:col, the line, a caret, a hint).
- ``components.py``: the model-independent component table (enc/mid/dec/skip, levels).
- ``results.py``: the result dataclasses every stage after ``measure`` shares.
- ``trace.py``: torch.fx tracing of a Unet and the component table read off the graph.
- ``diffusion.py``: noise schedules, respacing as guided-diffusion does it, the per-step tables.
- ``models/``: the only model-specific code. ``kinds.py`` is the table of model kinds,
  ``registry.py`` picks the adapter; ``tiny_unet.py`` is the built-in model (torch only),
  ``adm_family.py`` what GLIDE, guided-diffusion and the built-in model share, and
  ``tiny.py``/``adm.py``/``glide.py``/``diffusers_unet.py`` the adapters.
- ``session.py``: one plan's model, diffusion, setup, programs, executor and FLOP counter.
- ``bands.py``: the composition/detail split of a change (DCT low-pass) and the identity metric;
  ``phases.py``: a sweep's phase summary (terminal table, results.json, line plot).
- ``fmt.py`` formats studies, ``lexer.py`` highlights them, ``train.py`` trains ``tiny``.
- ``runtime.py``: the sampling loop, written once (torch only): noise per seed, guidance by
  batch doubling, the DDPM/DDIM step, the grid writer; the executor runs it and every emitted
  sampler carries its source verbatim.
- ``preflight.py``: what only a study's sizes reveal (fid/kid image counts, memory), for ``check``.
- ``fsio.py`` replaces files atomically; ``runlock.py`` keeps one run per output directory
  (docs/reliability.md says what is promised about files and how it is tested).
- ``run.py`` runs a plan as a sequence of named steps (``ablang run``); ``cli.py`` +
  ``commands/`` are the command line.
- ``api.py`` is ablang from Python (``load``, ``parse``, ``inspect``, ``open_run``, below);
  ``analysis.py`` a run's results as DataFrames and figures, read back by ``run_dir.py``;
  ``html.py`` notebook tables; ``mlflow_log.py`` logs a run to MLflow (docs/python.md).

``tests/test_imports.py`` keeps this order: no module imports a later stage, and no import cycle.

From Python::

    import ablang
    results = ablang.load("studies/quickstart.abl").run()
    results.table()
"""

from __future__ import annotations

__version__ = "0.1.0"

# The public API lives in ``ablang.api`` (the top of the pipeline); the package only forwards
# to it on first use (PEP 562), so ``import ablang`` stays light and every module may import
# ``ablang`` for its version without depending on the stages above it.
_API = ("Components", "Emitted", "Study", "StudyError", "inspect", "load", "open_run")

__all__ = [
    "Components",
    "Emitted",
    "RunResults",
    "Study",
    "StudyError",
    "__version__",
    "inspect",
    "load",
    "open_run",
    "parse",
]


def __getattr__(name: str):
    if name in _API:
        from ablang import api

        return getattr(api, name)
    if name == "RunResults":
        from ablang.analysis import RunResults

        return RunResults
    raise AttributeError(f"module 'ablang' has no attribute {name!r}")


# ``ablang.parse`` is both a module (the parser) and the API function. The module is imported
# first, so that the function bound below is the last word: a submodule sets its package
# attribute only on its first import.
from ablang import parse as _parse_module  # noqa: F401


def parse(text: str, name: str = "<study>"):
    """A checked study from ``text`` (a notebook cell): ``ablang.api.parse``."""
    from ablang import api

    return api.parse(text, name)
