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

``tests/test_imports.py`` keeps this order: no module imports a later stage, and no import cycle.
"""

__version__ = "0.1.0"
