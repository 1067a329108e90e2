"""ablang: ablation studies of diffusion Unets, written as small ``.abl`` files.

How a study flows, and where each stage lives::

    study.abl --parse--> AST --resolve--> Plan --compile--> Program --execute--> Samples --measure--> Results --report-->
     (text)   parse.py  ast.py resolve.py plan.py compile.py        execute.py           measure.py          report.py
                                            |
                                            +--emit--> standalone accelerated sampler (emit.py)

- ``errors.py``: positioned errors for people (file:line:col, caret, hint).
- ``components.py``: the model-independent component table (enc/mid/dec/skip, levels).
- ``models/``: the only model-specific code. ``tiny_unet.py`` is the built-in model,
  ``tiny.py``/``adm.py``/``glide.py``/``diffusers.py`` adapt each family.
- ``diffusion.py``: noise schedules, respacing, DDPM/DDIM sampling with guidance.
- ``trace.py``: torch.fx tracing of a Unet and the component table read off the graph.
- ``cli.py`` + ``commands/``: the ``ablang`` command line.
"""

__version__ = "0.1.0"
