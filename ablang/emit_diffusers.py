"""Emitted samplers for ``model diffusers "DIR"``: torch, diffusers (and transformers for Stable
Diffusion), no ablang.

As ``ablang/emit.py`` ships ``ablang/runtime.py`` verbatim, this ships ablang's own diffusers code
verbatim: the scheduler stepper (``diffusers_sched``: ``DiffusersSampler``, ``SchedulerState``,
``SchedulerTrajectory``), Stable Diffusion's text encoder / VAE parts (``sd``), and the Unet
wrapper the programs call into (``diffusers_unet.DiffusersUnet`` and its units), each module's
``from ablang...`` import replaced by a local ``ModelUnavailable``. Generated are only data and
the variant's programs, plus a short driver that runs the same loop as ``Executor.run_batch``:
``model_input`` -> the step's program, guided in the pipelines' ``[uncond; cond]`` order ->
``step``; then the VAE decodes. Same code, same scheduler, same seeds: the run's images.
"""

from __future__ import annotations

import ast
import inspect
import shlex
from types import ModuleType

import ablang
from ablang import runtime
from ablang.compile import ProgramCache, RuleSet, cache_input_name, schedule
from ablang.diffusion import Diffusion
from ablang.emit import HEADER, _program_names, _ranges, _section, function_source
from ablang.errors import AblangError
from ablang.execute import make_setup
from ablang.models import diffusers_sched, diffusers_unet, sd
from ablang.models.base import LoadedModel
from ablang.plan import Plan, Variant

# the parts of diffusers_unet that build and run the wrapper (not its tracing or loading)
UNET_NAMES = (
    "DOWN_BLOCKS",
    "UP_BLOCKS",
    "MID_BLOCKS",
    "_plain",
    "_resnet",
    "_cross_attention",
    "_cross_mid",
    "CALLS",
    "Unit",
    "_attention_kind",
    "_sampler_kind",
    "down_units",
    "up_units",
    "mid_unit",
    "DiffusersUnet",
)
RUNTIME_NAMES = ("per_sample", "Kept", "keep", "sha256_files", "save_grid")

_DOC = """\
{header} {version}. Do not edit: regenerate it
with the command in REGENERATE below.

A diffusers model's sampler: the study, variant and model it was made from are the constants
below; then ablang's diffusers code (copied verbatim: the scheduler stepper, Stable Diffusion's
text encoder and VAE, the Unet wrapper), one function per program of the Unet (the variant's
shortcuts compiled in), which program each step runs, and the loop. It needs torch and diffusers
(and transformers for Stable Diffusion), not ablang. Run it with --help for its options.
\"\"\""""

_DRIVER = '''
def verify_files(root=ROOT):
    """Stop unless the directory's files are the ones this sampler was generated for."""
    digest = sha256_files([os.path.join(root, p) for p in CHECKSUM_FILES])
    if digest != CHECKSUM:
        raise SystemExit(
            f"{root} has sha256 {digest}, not {CHECKSUM}: these are not the files this "
            "sampler was generated for (pass --no-verify to use them anyway)"
        )


def load_model(device, root=ROOT):
    """The Unet (wrapped as ablang traced it: the programs call its units) and, for Stable
    Diffusion, the text encoder, tokenizer and VAE; all fp32, eval mode."""
    import diffusers

    unet_dir = os.path.join(root, "unet")
    if not os.path.isfile(os.path.join(unet_dir, "config.json")):
        unet_dir = root
    model = getattr(diffusers, UNET_CLASS).from_pretrained(unet_dir, low_cpu_mem_usage=False)
    net = DiffusersUnet(model.float().eval().requires_grad_(False)).to(device)
    return net, (load_text_to_image(root, device) if TEXT else None)


def make_scheduler(root=ROOT):
    """The scheduler the run sampled with, built from the directory's config."""
    if scheduler_config_path(root) is None:  # a bare Unet directory: diffusers' defaults
        import diffusers

        return getattr(diffusers, "DDPMScheduler" if SCHEDULER == "pipeline" else SCHEDULER)()
    return load_scheduler(root, None if SCHEDULER == "pipeline" else SCHEDULER)


def make_cond(text, prompts, device):
    if PROMPT_KIND == "none":
        return {}, None
    if PROMPT_KIND == "class":
        labels = torch.tensor([int(p) for p in prompts], dtype=torch.long, device=device)
        return {"class_labels": labels}, None
    return text.conditioning(prompts, device)


@torch.no_grad()
def sample(n=4, prompts=DEFAULT_PROMPTS, seed=0, device="cpu", root=ROOT, verify=True, parts=None):
    """n images per prompt, ``[len(prompts) * n x 3 x H x W]`` in [-1, 1]; sample i of prompt
    p uses seed ``seed + i + p * SEED_STRIDE``, as ``ablang run`` does. The directory's files are
    checked against CHECKSUM first unless ``verify=False``; ``parts`` is ``load_model``'s result."""
    device = torch.device(device)
    if verify:
        verify_files(root)
    net, text = parts if parts is not None else load_model(device, root)
    prompts, seeds = per_sample(list(prompts), n, seed, SEED_STRIDE)
    sampler = DiffusersSampler(make_scheduler(root), STEPS, eta=ETA)
    traj = SchedulerTrajectory(sampler, seeds, IMAGE_SHAPE)
    state = traj.start(device)
    cond, uncond = make_cond(text, prompts, device)
    if GUIDANCE == 1.0:
        uncond = None
    cache = {}
    for k, p in enumerate(PROGRAM_OF_STEP):

        def unet(x, t, c, p=p, k=k):
            line = CACHE_EXTRAPOLATE[p]
            inputs = {
                a: cache[name].at(k, name in line) for name, a in zip(CACHE_INPUTS[p], CACHE_ARGS[p])
            }
            out, kept = PROGRAMS[p](net, x, t, **c, **inputs)
            for name, value in zip(CACHE_OUTPUTS[p], kept):
                keep(cache, name, value, k)
            return out

        x = traj.model_input(state)
        t = traj.model_t(k, x.shape[0], device)
        out = traj.guided_output(unet, x, t, cond, uncond, GUIDANCE, x.shape[1], CHANNELS_LAST)
        traj.step(state, out)
    return (text.decode(state.x) if text is not None else state.x).cpu()


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4, help="images per prompt")
    parser.add_argument("--prompts", default="|".join(DEFAULT_PROMPTS), help="|-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--root", default=ROOT, help="the diffusers directory")
    parser.add_argument("--no-verify", action="store_true", help="skip the files' checksum")
    parser.add_argument("-o", "--out", default="samples.png")
    parser.add_argument("--tensor", help="also save the images as a torch tensor here")
    args = parser.parse_args(argv)
    verify = not args.no_verify
    images = sample(args.n, args.prompts.split("|"), args.seed, args.device, args.root, verify)
    save_grid(images, args.out, nrow=args.n)
    if args.tensor:
        torch.save(images, args.tensor)
    print(f"{len(images)} images -> {args.out}")
'''


def _module_parts(module: ModuleType, names: tuple[str, ...] | None = None) -> tuple[str, str]:
    """(import lines other than ``__future__`` and ablang's, the module's definitions) of
    ``module``'s source: all of them, or the top-level ones named ``names``, in file order."""
    src = inspect.getsource(module)
    tree = ast.parse(src)
    lines = src.splitlines(keepends=True)
    imports, body = [], []
    for node in tree.body:
        text = "".join(lines[node.lineno - 1 : node.end_lineno])
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and (
                node.module == "__future__" or (node.module or "").startswith("ablang")
            ):
                continue
            imports.append(text)
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the module docstring
        if names is not None and _defined(node) not in names:
            continue
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        body.append("".join(lines[first - 1 : node.end_lineno]))
    return "".join(imports), "\n\n".join(b.rstrip() for b in body)


def _defined(node: ast.stmt) -> str | None:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
        return node.name
    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def emit_source(plan: Plan, variant: Variant, model: LoadedModel, programs: ProgramCache) -> str:
    """The generated module's text (not yet formatted)."""
    info = model.emit["diffusers"]
    diffusion = Diffusion(model.diffusion, plan.sampler.steps)
    setup = make_setup(plan, model, diffusion)
    if setup.scheduler is None:
        raise AblangError(f"{model.label} has no scheduler to emit", code="emit")
    sched = schedule(variant, list(setup.steps))
    if sched.needs_guidance:
        # the generated loop runs one program over the doubled batch; splitting it per half (or
        # idling one) is what ablang/runtime's emitted samplers do, not written for the
        # scheduler's loop yet
        raise AblangError(
            f"variant `{variant.name}` acts on one side of guidance or on guidance itself; "
            f"emitted samplers for diffusers models run both halves with one program",
            variant.span,
            code="emit",
            hint="`ablang run` measures it (both modes); emit a variant without `on ...` "
            "and guidance lines",
        )
    rule_sets: list[RuleSet] = []
    for rules in sched.per_step:
        if rules not in rule_sets:
            rule_sets.append(rules)
    names = _program_names(rule_sets)
    progs = [programs.get(r, "accelerate") for r in rule_sets]
    of_step = tuple(rule_sets.index(r) for r in sched.per_step)
    listed = "\n".join(
        f"    {names[k]},  # steps {', '.join(_ranges([i for i, p in enumerate(of_step) if p == k]))}"
        for k in range(len(names))
    )
    regenerate = (
        f"ablang run {shlex.quote(plan.source)}  # its search finds this variant"
        if variant.origin == "search"
        else f"ablang emit {shlex.quote(plan.source)} {shlex.quote(variant.name)}"
    )
    sources = [
        _module_parts(diffusers_sched),
        _module_parts(sd),
        _module_parts(diffusers_unet, UNET_NAMES),
    ]
    run_src = "\n\n".join(inspect.getsource(getattr(runtime, n)).rstrip() for n in RUNTIME_NAMES)
    imports = "".join(i for i, _ in sources) + "import hashlib\nimport os\n"
    parts = [
        _DOC.format(header=HEADER, version=ablang.__version__),
        (
            "from __future__ import annotations\n\n" + imports + "\n"
            f"STUDY = {plan.source!r}\n"
            f"TITLE = {plan.title or ''!r}\n"
            f"VARIANT = {variant.name!r}\n"
            f"INTERVENTIONS = {tuple(iv.label() for iv in variant.interventions)!r}\n"
            f"REGENERATE = {regenerate!r}\n"
            f"MODEL = {model.label!r}"
        ),
        _section("the model"),
        (
            f"ROOT = {info['root']!r}\n"
            f"CHECKSUM = {model.checksum!r}  # sha256 of these files, checked before sampling\n"
            f"CHECKSUM_FILES = {tuple(info['checksum_files'])!r}\n"
            f"UNET_CLASS = {info['unet_class']!r}\n"
            f"TEXT = {bool(info['sd'])!r}  # Stable Diffusion: text encoder, tokenizer, VAE\n"
            f"PROMPT_KIND = {info['prompt_kind']!r}\n"
            f"IMAGE_SHAPE = {tuple(model.image_shape)!r}  # the Unet's x (latents for SD)\n"
            f"CHANNELS_LAST = {model.channels_last!r}\n"
            f"DEFAULT_PROMPTS = {tuple(model.default_prompts)!r}\n"
            f"SEED_STRIDE = {plan.seed_stride!r}  # prompt p's sample i: seed + i + p * SEED_STRIDE\n"
            f"GUIDANCE = {setup.guidance!r}\n"
            f"SCHEDULER = {setup.scheduler!r}  # 'pipeline': the directory's own\n"
            f"STEPS = {plan.sampler.steps!r}\n"
            f"ETA = {setup.eta!r}"
        ),
        _section("ablang's diffusers code, verbatim"),
        (
            "class ModelUnavailable(Exception):\n"
            '    """The directory is not a model this sampler can load."""'
        ),
        *(body for _, body in sources),
        run_src,
        _section("the Unet, one function per program"),
        *(function_source(p, n) for p, n in zip(progs, names)),
        (
            "# PROGRAMS[k] runs at the steps listed beside it; PROGRAM_OF_STEP[i] is step i's program\n"
            "# (step i is the scheduler's i-th Unet evaluation). Program k reads the cached values of\n"
            "# CACHE_INPUTS[k] (as its arguments CACHE_ARGS[k]) and returns those of CACHE_OUTPUTS[k];\n"
            "# those in CACHE_EXTRAPOLATE[k] continue the line through their last two values.\n"
            f"PROGRAMS = (\n{listed}\n)\n"
            f"PROGRAM_OF_STEP = {of_step!r}\n"
            f"CACHE_INPUTS = {tuple(p.cache_inputs for p in progs)!r}\n"
            f"CACHE_ARGS = {tuple(tuple(map(cache_input_name, p.cache_inputs)) for p in progs)!r}\n"
            f"CACHE_OUTPUTS = {tuple(p.cache_outputs for p in progs)!r}\n"
            f"CACHE_EXTRAPOLATE = {tuple(p.extrapolated for p in progs)!r}"
        ),
        _section("the loop"),
        _DRIVER.strip(),
        'if __name__ == "__main__":\n    main()',
    ]
    return "\n\n\n".join(parts) + "\n"
