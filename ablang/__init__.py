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
- ``bands.py``: the composition/detail split of a change (DCT low-pass) and the identity metric;
  ``phases.py``: a sweep's phase summary (terminal table, results.json, line plot).
- ``fmt.py`` formats studies, ``lexer.py`` highlights them, ``train.py`` trains ``tiny``.
- ``run.py`` wires the stages for ``ablang run``; ``cli.py`` + ``commands/`` are the command line.
"""

__version__ = "0.1.0"
