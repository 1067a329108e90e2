"""ablang: ablation studies of diffusion Unets, written as small ``.abl`` files.

How a study flows, and where each stage lives::

    study.abl --parse--> AST --resolve--> Plan --compile--> Programs --execute--> Samples --measure--> Results --report-->
     (text)   parse.py  ast.py resolve.py plan.py compile.py           execute.py           measure.py         report.py
              syntax_errors.py                 |                       journal.py           cost.py            heatmap.py
                                               +--emit--> standalone accelerated sampler (emit.py)
                                               +--search--> the fastest variant within a quality budget (search.py)

- ``errors.py``: positioned errors for people (file:line:col, the line, a caret, a hint).
- ``components.py``: the model-independent component table (enc/mid/dec/skip, levels).
- ``trace.py``: torch.fx tracing of a Unet and the component table read off the graph.
- ``diffusion.py``: noise schedules, GLIDE-style respacing, DDPM/DDIM steps, guidance.
- ``models/``: the only model-specific code. ``tiny_unet.py`` is the built-in model (torch
  only), ``adm_family.py`` what GLIDE, guided-diffusion and the built-in model share, and
  ``tiny.py``/``adm.py``/``glide.py``/``diffusers_unet.py`` the adapters.
- ``fmt.py`` formats studies, ``lexer.py`` highlights them, ``train.py`` trains ``tiny``.
- ``run.py`` wires the stages for ``ablang run``; ``cli.py`` + ``commands/`` are the command line.
- ``api.py`` is ablang from Python (``load``, ``parse``, ``inspect``, ``open_run``, below);
  ``analysis.py`` a run's results as DataFrames and figures, read back by ``run_dir.py``;
  ``html.py`` notebook tables; ``mlflow_log.py`` logs a run to MLflow (docs/python.md).

From Python::

    import ablang
    results = ablang.load("studies/quickstart.abl").run()
    results.table()
"""

from __future__ import annotations

__version__ = "0.1.0"

# ``ablang.parse`` is both a module (the parser) and the API function. The module is imported
# first, so that binding the function below is the last word: a submodule sets its package
# attribute only on its first import.
from ablang import parse as _parse_module  # noqa: F401
from ablang.api import (
    Components,
    Emitted,
    Study,
    StudyError,
    inspect,
    load,
    open_run,
    parse,
)

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
    # RunResults needs torch; imported on first use so that ``import ablang`` stays light
    if name == "RunResults":
        from ablang.analysis import RunResults

        return RunResults
    raise AttributeError(f"module 'ablang' has no attribute {name!r}")
