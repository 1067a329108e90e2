"""resolve: ``ast.Study`` + the model's ``ComponentTable`` -> ``Plan``.

Every semantic check lives here and every error is collected, so ``ablang check`` shows them
all at once (``AblangErrors``, sorted by position). What resolution does:

- settings: each at most once (a second ``seed`` is an error pointing at both), values checked,
  defaults filled in (seed 0, samples 4, model's prompts, metrics mse + ssim, ddpm 100 steps,
  device auto);
- selectors expand to concrete components (``skip[*]``, ``skip[-1]``, ``skip[2..5]``,
  ``level[k]``), checked against the table;
- windows are checked against ``[0, T)`` (``for t``) or the sampler's steps (``for step``) and,
  in sweeps and searches, split by ``by W``;
- variants: the baseline first, then one per bare intervention line, one per ``variant`` block,
  one per cell of each sweep, in the order of the file.

Without a table (the model is not at hand) everything that does not need the model is still
checked; selectors that only the model can expand (``skip[*]``, ``skip[-1]``, ``level[k]``)
then stay as written in the plan's component names, so such a plan is for checking, not running.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ablang import ast
from ablang.components import KINDS, Component, ComponentTable
from ablang.errors import AblangError, AblangErrors, Note, Span, did_you_mean
from ablang.plan import (
    QUALITY_METRICS,
    Constraint,
    Emit,
    Intervention,
    ModelSpec,
    Plan,
    SamplerSpec,
    Search,
    Sweep,
    Variant,
    Window,
)

MODEL_KINDS = ("tiny", "glide", "adm", "diffusers")
SAMPLER_KINDS = ("ddpm", "ddim")
DEVICES = ("cpu", "cuda", "auto")
COST_METRICS = ("flops", "time", "speedup")  # always reported; accepted in `metrics` and left out
OBJECTIVES = ("speedup",)
# Metrics with a baseline value of their own; mse/psnr/ssim compare against the baseline images,
# so "+10% of the baseline's mse" has nothing to be relative to.
RELATIVE_METRICS = ("fid", "kid", "accuracy")
SEARCH_OPS = ("drop", "zero", "cache")
_EXAMPLE_BOUND = {"mse": "0.01", "psnr": "30", "ssim": "0.9"}
DEFAULT_METRICS = ("mse", "ssim")
DEFAULT_STEPS = 100
MAX_SEED = 2**63 - 1
MAX_WINDOWS = 10_000  # per sweep or search; a bound so that a typo cannot exhaust memory
BASELINE = "baseline"


def model_spec(study: ast.Study) -> ModelSpec | None:
    """The study's model, read before resolving so the caller can load the component table.
    None when the study names no model or names it wrongly (``resolve`` reports why)."""
    for stmt in study.statements:
        if isinstance(stmt, ast.ModelStmt):
            r = _Resolver(study, None)
            return r.model(stmt)
    return None


def resolve(
    study: ast.Study,
    table: ComponentTable | None,
    *,
    source_path: str = "",
    sha256: str = "",
) -> Plan:
    """The plan of ``study`` for the model whose components are ``table`` (None: not at hand).

    Raises ``AblangErrors`` with every error in the study.
    """
    r = _Resolver(study, table)
    plan = r.run(source_path or study.path, sha256)
    if r.errors:
        path = source_path or study.path
        for e in r.errors:
            e.path = e.path or path
        raise AblangErrors(
            sorted(r.errors, key=lambda e: (e.span.line, e.span.col) if e.span else (0, 0))
        )
    return plan


@dataclass(frozen=True)
class _Picked:
    """One component a selector picked, and whether the study named it on its own."""

    name: str
    span: Span
    explicit: bool  # skip[3] or mid, not skip[*], skip[2..5] or level[1]
    component: Component | None


class _Resolver:
    def __init__(self, study: ast.Study, table: ComponentTable | None) -> None:
        self.study = study
        self.table = table
        self.by_name = {c.name: c for c in table.components} if table else {}
        self.sizes = (
            {k: table.count(k) for k in KINDS} | {"level": table.num_levels} if table else {}
        )
        self.errors: list[AblangError] = []
        self.steps = DEFAULT_STEPS  # the sampler's, once known; bounds `for step` windows

    def error(
        self, message: str, span: Span | None, code: str, hint: str | None = None, notes=()
    ) -> None:
        self.errors.append(AblangError(message, span, hint=hint, code=code, notes=tuple(notes)))

    # ---- the whole study ----------------------------------------------------------------

    def run(self, source: str, sha256: str) -> Plan:
        settings = self.settings()
        model = self.model(settings["model"]) if "model" in settings else None
        if "model" not in settings:
            self.error(
                "the study names no model",
                Span(1, 1, 1, 2),
                "missing-model",
                hint="add a line such as `model tiny`",
            )
        sampler = self.sampler(settings.get("sampler"))
        self.steps = sampler.steps
        metrics = self.metrics(settings.get("metrics"), settings.get("model"))
        variants, sweeps, searches = self.variants(metrics)
        emits = self.emits(variants, searches)
        title = settings["study"].title.value if "study" in settings else ""
        return Plan(
            model=model or ModelSpec("tiny"),
            sampler=sampler,
            title=title,
            source=source,
            sha256=sha256,
            seed=self.count(settings.get("seed"), "seed", minimum=0, default=0, maximum=MAX_SEED),
            samples=self.count(settings.get("samples"), "samples", minimum=1, default=4),
            prompts=self.prompts(settings.get("prompts")),
            metrics=metrics,
            device=self.device(settings.get("device")),
            variants=variants,
            sweeps=sweeps,
            searches=searches,
            emits=emits,
            num_timesteps=self.table.num_timesteps if self.table else 1000,
        )

    def settings(self) -> dict[str, ast.Setting]:
        """Each setting statement by key; a second one of a key is an error, not an override."""
        seen: dict[str, ast.Setting] = {}
        for stmt in self.study.statements:
            if not isinstance(stmt, ast.Setting):
                continue
            first = seen.get(stmt.KEY)
            if first is not None:
                self.error(
                    f"`{stmt.KEY}` is set twice",
                    stmt.span,
                    "duplicate-setting",
                    hint="keep one; a later setting does not override an earlier one",
                    notes=[Note("first set here", first.span)],
                )
            else:
                seen[stmt.KEY] = stmt
        return seen

    # ---- settings -----------------------------------------------------------------------

    def model(self, stmt: ast.ModelStmt) -> ModelSpec | None:
        kind = stmt.kind.value
        if kind not in MODEL_KINDS:
            self.error(
                f"unknown model `{kind}`",
                stmt.kind.span,
                "unknown-model",
                hint=did_you_mean(kind, MODEL_KINDS) or "models: " + ", ".join(MODEL_KINDS),
            )
            return None
        usage = {
            "tiny": "model tiny",
            "glide": 'model glide "PATH"',
            "adm": 'model adm "PATH" config "JSON"',
            "diffusers": 'model diffusers "DIR"',
        }[kind]
        wants_path, wants_config = kind != "tiny", kind == "adm"
        problem = None
        if stmt.path is not None and not wants_path:
            problem = "takes no path"
        elif stmt.path is None and wants_path:
            problem = "needs a path"
        elif stmt.config is not None and not wants_config:
            problem = "takes no config"
        elif stmt.config is None and wants_config:
            problem = "needs a config file"
        elif stmt.path is not None and not stmt.path.value.strip():
            problem = "needs a path, not an empty string"
        if problem:
            self.error(f"model {kind} {problem}", stmt.span, "model-args", hint=f"write `{usage}`")
            return None
        return ModelSpec(
            kind,
            stmt.path.value if stmt.path else None,
            stmt.config.value if stmt.config else None,
            span=stmt.span,
        )

    def sampler(self, stmt: ast.SamplerStmt | None) -> SamplerSpec:
        if stmt is None:
            return SamplerSpec()
        kind = stmt.kind.value
        if kind not in SAMPLER_KINDS:
            self.error(
                f"unknown sampler `{kind}`",
                stmt.kind.span,
                "unknown-sampler",
                hint=did_you_mean(kind, SAMPLER_KINDS) or "samplers: ddpm, ddim",
            )
            kind = "ddpm"
        values: dict[str, ast.SamplerOption] = {}
        for opt in stmt.options:
            if opt.key in values:
                self.error(
                    f"`{opt.key}` is given twice",
                    opt.span,
                    "duplicate-setting",
                    notes=[Note("first given here", values[opt.key].span)],
                )
            else:
                values[opt.key] = opt
        steps, eta, guidance = DEFAULT_STEPS, 0.0, None
        if "steps" in values:
            limit = self.table.num_timesteps if self.table else None
            steps = self.count(
                values["steps"],
                "steps",
                minimum=1,
                default=DEFAULT_STEPS,
                maximum=limit,
                why=f"the model has {limit} diffusion steps to respace" if limit else "",
            )
        if "eta" in values:
            eta = self.real(
                values["eta"].value,
                "eta",
                0.0,
                lo=0.0,
                hi=1.0,
                why="0 is deterministic DDIM, 1 has DDPM's variance",
            )
            if kind != "ddim":
                self.error(
                    "`eta` belongs to the ddim sampler",
                    values["eta"].span,
                    "sampler-option",
                    hint="remove it, or write `sampler ddim ...`",
                )
        if "guidance" in values:
            guidance = self.real(
                values["guidance"].value,
                "guidance",
                None,
                lo=0.0,
                why="0 is unconditional, 1 is conditional without guidance",
            )
            if self.table is not None and self.table.prompt_kind == "none":
                self.error(
                    "the model is unconditional: guidance has nothing to guide",
                    values["guidance"].span,
                    "guidance-unconditional",
                    hint="remove `guidance`",
                )
        return SamplerSpec(kind, steps, eta, guidance)

    def count(
        self,
        node,
        what: str,
        *,
        minimum: int,
        default: int,
        maximum: int | None = None,
        why: str = "",
    ) -> int:
        """A whole-number setting (``seed 0``, ``samples 16``, ``steps 100``, ``every 2``)."""
        if node is None:
            return default
        number: ast.Number = node if isinstance(node, ast.Number) else node.value
        if not number.is_int:
            self.error(
                f"`{what}` takes a whole number, not {number.text}", number.span, "bad-number"
            )
            return default
        v = number.value
        if v < minimum or (maximum is not None and v > maximum):
            bound = f"at least {minimum}" if v < minimum else f"at most {maximum}"
            self.error(
                f"`{what}` must be {bound}, not {number.text}",
                number.span,
                "bad-number",
                hint=why or None,
            )
            return default
        return v

    def real(
        self,
        number: ast.Number,
        what: str,
        default,
        *,
        lo: float | None = None,
        hi: float | None = None,
        why: str = "",
    ) -> float:
        try:
            v = float(number.value)
        except OverflowError:  # an integer literal beyond float range
            v = math.inf
        bad = not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi)
        if bad:
            limits = [f"at least {lo:g}"] if lo is not None else []
            limits += [f"at most {hi:g}"] if hi is not None else []
            bound = " and ".join(limits) or "a finite number"
            self.error(
                f"`{what}` must be {bound}, not {number.text}",
                number.span,
                "bad-number",
                hint=why or None,
            )
            return default
        return v

    def prompts(self, stmt: ast.PromptsStmt | None) -> tuple[str, ...]:
        if stmt is None:
            return ()
        kind = self.table.prompt_kind if self.table else None
        if kind == "none":
            self.error(
                "the model is unconditional: it takes no prompts",
                stmt.span,
                "prompts",
                hint="remove the prompts line",
            )
            return ()
        for p in stmt.prompts:
            if kind == "class" and not p.value.strip().isdigit():
                self.error(
                    f'the model takes class labels, not "{p.value}"',
                    p.span,
                    "prompts",
                    hint='write class numbers such as "3", "7"',
                )
            elif kind == "text" and not p.value.strip():
                self.error(
                    "an empty prompt", p.span, "prompts", hint="write the text to generate from"
                )
        return tuple(p.value for p in stmt.prompts)

    def metrics(self, stmt: ast.MetricsStmt | None, model: ast.ModelStmt | None) -> tuple[str, ...]:
        if stmt is None:
            return DEFAULT_METRICS
        out: list[str] = []
        seen: dict[str, ast.Name] = {}
        for m in stmt.metrics:
            name = m.value
            if name in seen:
                self.error(
                    f"`{name}` is listed twice",
                    m.span,
                    "duplicate-metric",
                    notes=[Note("first listed here", seen[name].span)],
                )
                continue
            seen[name] = m
            if name in COST_METRICS:
                continue  # cost is always reported
            if name not in QUALITY_METRICS:
                self.error(
                    f"unknown metric `{name}`",
                    m.span,
                    "unknown-metric",
                    hint=did_you_mean(name, QUALITY_METRICS + COST_METRICS)
                    or "metrics: " + ", ".join(QUALITY_METRICS),
                )
                continue
            if name == "accuracy" and model is not None and model.kind.value != "tiny":
                self.error(
                    "`accuracy` needs the built-in model's digit classifier",
                    m.span,
                    "accuracy-needs-tiny",
                    hint="use it with `model tiny`, or remove it",
                )
                continue
            out.append(name)
        return tuple(out)

    def device(self, stmt: ast.DeviceStmt | None) -> str:
        if stmt is None:
            return "auto"
        name = stmt.device.value
        if name not in DEVICES:
            self.error(
                f"unknown device `{name}`",
                stmt.device.span,
                "unknown-device",
                hint=did_you_mean(name, DEVICES) or "devices: cpu, cuda, auto",
            )
            return "auto"
        return name

    # ---- windows ------------------------------------------------------------------------

    def windows(self, w: ast.Window | None, split: bool) -> list[Window] | None:
        """The plan windows of ``w``: one, or with ``by W`` (only where ``split``) several.
        None after an error."""
        if w is None:
            return [Window()]
        ok = True
        for end in (w.lo, w.hi):
            if not end.is_int:
                self.error(f"window ends are whole numbers, not {end.text}", end.span, "bad-number")
                ok = False
        if not ok:
            return None
        lo, hi = w.lo.value, w.hi.value
        upper = hi + 1 if w.inclusive else hi
        dots = "..=" if w.inclusive else ".."
        if lo < 0:
            self.error(f"{w.var} starts at 0, not {lo}", w.lo.span, "window-range")
            return None
        if lo >= upper:
            if lo > hi:
                self.error(
                    f"the window {lo}{dots}{hi} is reversed",
                    w.span,
                    "empty-window",
                    hint=f"write {hi}{dots}{lo}",
                )
            else:
                self.error(
                    f"the window {lo}..{hi} is empty ({lo} <= {w.var} < {hi})",
                    w.span,
                    "empty-window",
                    hint=f"write {lo}..={hi} for the single {w.var} = {lo}",
                )
            return None
        if w.var == "t" and self.table is not None and upper > self.table.num_timesteps:
            T = self.table.num_timesteps
            self.error(
                f"the window ends past t = {T - 1}: this model's t runs from 0 to {T - 1}",
                w.hi.span,
                "window-range",
                hint=f"write {lo}..{T}",
            )
            return None
        if w.var == "step" and upper > self.steps:
            self.error(
                f"the window ends past step {self.steps - 1}: the sampler makes {self.steps} steps",
                w.hi.span,
                "window-range",
                hint=f"write {lo}..{self.steps}",
            )
            return None
        if w.by is None:
            return [Window(w.var, lo, hi, w.inclusive, span=w.span)]
        if not split:
            self.error(
                "`by` splits a range into windows only in a sweep or a search",
                w.by.span,
                "by-outside-sweep",
                hint="remove `by ...`, or write this line as `sweep ...`",
            )
            return None
        width = self.count(w.by, "by", minimum=1, default=0)
        if not width:
            return None
        if (upper - lo) // width > MAX_WINDOWS:
            self.error(
                f"`by {width}` splits {lo}{dots}{hi} into more than {MAX_WINDOWS} windows",
                w.by.span,
                "too-many-windows",
                hint="split it into wider windows",
            )
            return None
        # Consecutive half-open windows of `width`; an inclusive range keeps its inclusive end.
        out = []
        for start in range(lo, upper, width):
            end = start + width
            if end >= upper:
                out.append(Window(w.var, start, hi, w.inclusive, span=w.span))
            else:
                out.append(Window(w.var, start, end, False, span=w.span))
        return out

    # ---- selectors ----------------------------------------------------------------------

    def select(self, targets: tuple[ast.Selector, ...]) -> list[_Picked] | None:
        """The components ``targets`` pick, in the order written. None after an error."""
        picked: list[_Picked] = []
        ok = True
        for sel in targets:
            got = self.select_one(sel)
            if got is None:
                ok = False
            else:
                picked += got
        return picked if ok else None

    def select_one(self, sel: ast.Selector) -> list[_Picked] | None:
        kind = sel.kind.value
        if kind == "mid":
            if sel.indices is not None:
                self.error(
                    "`mid` is a single block and takes no index",
                    sel.span,
                    "selector",
                    hint="write `mid`",
                )
                return None
            return [self.pick("mid", sel.span, True)]
        if kind not in KINDS and kind != "level":
            hint = did_you_mean(kind, KINDS + ("level",), fmt="{}" + (sel.code()[len(kind) :]))
            self.error(
                f"no component `{sel.code()}`",
                sel.kind.span,
                "unknown-component",
                hint=hint or "components: enc[i], mid, dec[i], skip[i], level[k]",
            )
            return None
        if sel.indices is None:
            self.error(
                f"`{kind}` needs an index",
                sel.span,
                "selector",
                hint=f"write {kind}[0], {kind}[-1], {kind}[2..5], {kind}[1, 4] or {kind}[*]",
            )
            return None
        n = self.size(kind)
        out: list[_Picked] = []
        for item in sel.indices:
            idxs = self.indices(kind, item, n)
            if idxs is None:
                return None
            explicit = isinstance(item, ast.IndexAt)
            for i in idxs:
                if isinstance(i, str):  # no table: as written
                    out.append(_Picked(i, item.span, explicit, None))
                elif kind == "level":
                    out += [_Picked(c.name, item.span, False, c) for c in self.table.at_level(i)]
                else:
                    out.append(self.pick(f"{kind}[{i}]", item.span, explicit))
        return out

    def pick(self, name: str, span: Span, explicit: bool) -> _Picked:
        return _Picked(name, span, explicit, self.by_name.get(name))

    def size(self, kind: str) -> int | None:
        return self.sizes.get(kind)

    def have(self, kind: str, n: int) -> str:
        if kind == "level":
            return f"the model has levels 0 to {n - 1}" if n else "the model has no levels"
        return (
            f"the model has {kind}[0] to {kind}[{n - 1}]"
            if n
            else f"the model has no {kind} components"
        )

    def indices(self, kind: str, item: ast.Index, n: int | None) -> list[int | str] | None:
        """Concrete indices of one bracket item; strings where only the model could tell."""
        if isinstance(item, ast.IndexAll):
            return list(range(n)) if n is not None else [f"{kind}[*]"]
        ends = [item.index] if isinstance(item, ast.IndexAt) else [item.lo, item.hi]
        for e in ends:
            if not e.is_int:
                self.error(
                    f"component indices are whole numbers, not {e.text}", e.span, "bad-number"
                )
                return None
        if isinstance(item, ast.IndexAt):
            i = item.index.value
            if n is None:
                return [f"{kind}[{i}]"]
            j = i + n if i < 0 else i
            if not 0 <= j < n:
                self.error(
                    f"no component {kind}[{i}]: {self.have(kind, n)}", item.span, "index-range"
                )
                return None
            return [j]
        lo, hi = item.lo.value, item.hi.value
        if n is not None:
            lo, hi = (lo + n if lo < 0 else lo), (hi + n if hi < 0 else hi)
        upper = hi + 1 if item.inclusive else hi
        if lo >= upper and (n is not None or (lo >= 0 and hi >= 0)):
            self.error(
                f"`{kind}[{item.code()}]` selects nothing",
                item.span,
                "empty-selection",
                hint=f"a range A..B runs from A up to B-1; write {kind}[{item.hi.text}..{item.lo.text}]"
                if lo > upper
                else None,
            )
            return None
        if n is None:
            return [f"{kind}[{item.code()}]"]  # only the model can expand it
        if lo < 0 or upper > n:
            self.error(
                f"`{kind}[{item.code()}]` reaches past the model's components: {self.have(kind, n)}",
                item.span,
                "index-range",
            )
            return None
        return list(range(lo, upper))

    # ---- interventions and variants -----------------------------------------------------

    def interventions(
        self, iv: ast.Intervention, context: str
    ) -> tuple[list[Intervention], list[Window]] | None:
        """The plan interventions of one line: components x windows. ``context`` is "bare",
        "variant" or "sweep"; only a sweep may split its window with ``by``."""
        picked = self.select(iv.targets)
        windows = self.windows(iv.window, split=context == "sweep")
        params = self.params(iv)
        if picked is None or windows is None or params is None:
            return None
        errors = len(self.errors)
        picked = self.droppable(iv.op, picked, leave_out_wildcards=context == "sweep")
        if context == "sweep":
            picked = self.distinct(picked)
        if len(self.errors) > errors:
            return None
        if not picked:
            self.error(
                "this sweep selects no component that can be dropped",
                iv.span,
                "not-droppable",
                hint="use `zero` instead of `drop`",
            )
            return None
        factor, every = params
        out = [
            Intervention(iv.op, p.name, w, factor, every, span=iv.span)
            for p in picked
            for w in windows
        ]
        return out, windows

    def params(self, iv: ast.Intervention) -> tuple[float | None, int | None] | None:
        if iv.op == "scale":
            v = self.real(iv.factor, "by", None)
            return None if v is None else (v, None)
        if iv.op == "cache":
            every = self.count(iv.every, "every", minimum=1, default=0)
            return None if not every else (None, every)
        return None, None

    def droppable(self, op: str, picked: list[_Picked], leave_out_wildcards: bool) -> list[_Picked]:
        """``drop`` of a block whose output shape differs from its input and that has no shortcut
        of its own has no meaning. Named on its own it is an error; picked by a wildcard in a
        sweep or search it is left out of the grid."""
        if op != "drop":
            return picked
        out = []
        for p in picked:
            c = p.component
            if c is None or c.droppable:
                out.append(p)
            elif not (leave_out_wildcards and not p.explicit):
                where = f" ({c.module})" if c.module else ""
                why = (
                    c.drop_note
                    or "its output has another shape than its input and it has no shortcut path"
                )
                self.error(
                    f"{c.name}{where} cannot be dropped: {why}",
                    p.span,
                    "not-droppable",
                    hint=f"use `zero {c.name}` to replace its output with zeros",
                )
        return out

    def distinct(self, picked: list[_Picked]) -> list[_Picked]:
        seen: dict[str, _Picked] = {}
        for p in picked:
            if p.name in seen:
                self.error(
                    f"{p.name} is selected twice",
                    p.span,
                    "duplicate-component",
                    notes=[Note("first selected here", seen[p.name].span)],
                )
            else:
                seen[p.name] = p
        return list(seen.values())

    def overlaps(self, interventions: list[Intervention]) -> None:
        """Two interventions on one component in one variant must not be active at once."""
        by_component: dict[str, list[Intervention]] = {}
        for iv in interventions:
            for other in by_component.get(iv.component, ()):
                a, b = other.window, iv.window
                if "all" not in (a.kind, b.kind) and a.kind != b.kind:
                    self.error(
                        f"{iv.component} has a `for t` and a `for step` window in one variant",
                        iv.span,
                        "mixed-windows",
                        hint="write both windows in t or both in steps, so that they can be checked for overlap",
                        notes=[Note(f"the other one: {other.label()}", other.span)],
                    )
                elif "all" in (a.kind, b.kind) or (a.lo < b.upper and b.lo < a.upper):
                    self.error(
                        f"two interventions on {iv.component} overlap: {other.label()} and {iv.label()}",
                        iv.span,
                        "overlap",
                        hint="give them windows that do not overlap, or put them in different variants",
                        notes=[Note("the first one", other.span)],
                    )
            by_component.setdefault(iv.component, []).append(iv)

    def variants(
        self, metrics: tuple[str, ...]
    ) -> tuple[tuple[Variant, ...], tuple[Sweep, ...], tuple[Search, ...]]:
        variants = [Variant(BASELINE, (), "baseline")]
        names: dict[str, Span | None] = {BASELINE: None}
        sweeps: list[Sweep] = []
        searches: list[Search] = []
        unnamed = 0

        def add(variant: Variant, name_span: Span) -> None:
            if variant.name in names:
                first = names[variant.name]
                if first is None:
                    self.error(
                        "`baseline` is the name of the unchanged model",
                        name_span,
                        "duplicate-variant",
                        hint="choose another name",
                    )
                else:
                    self.error(
                        f"a second variant `{variant.name}`",
                        name_span,
                        "duplicate-variant",
                        hint="variant names must be different",
                        notes=[Note("the first one", first)],
                    )
                return
            names[variant.name] = name_span
            variants.append(variant)

        for stmt in self.study.statements:
            if isinstance(stmt, ast.Intervention):
                got = self.interventions(stmt, "bare")
                if got is not None:
                    ivs, _ = got
                    self.overlaps(ivs)
                    add(
                        Variant(self.bare_name(stmt, ivs), tuple(ivs), "bare", span=stmt.span),
                        stmt.span,
                    )
            elif isinstance(stmt, ast.VariantBlock):
                ivs = []
                for line in stmt.body:
                    got = self.interventions(line, "variant")
                    if got is not None:
                        ivs += got[0]
                if not stmt.body:
                    self.error(
                        f"variant `{stmt.name.value}` has no interventions",
                        stmt.span,
                        "empty-variant",
                        hint="add drop, zero, scale or cache lines, or remove the block",
                    )
                self.overlaps(ivs)
                # Added even when a line of it failed (the plan is not returned then), so that
                # its name still counts for duplicates and for `emit ... from`.
                add(Variant(stmt.name.value, tuple(ivs), "variant", span=stmt.span), stmt.name.span)
            elif isinstance(stmt, ast.SweepStmt):
                sweep = self.sweep(stmt, f"sweep{len(sweeps) + 1}")
                if sweep is not None:
                    sweep_obj, cells = sweep
                    sweeps.append(sweep_obj)
                    for v in cells:
                        add(v, stmt.span)
            elif isinstance(stmt, ast.SearchStmt):
                unnamed += stmt.name is None
                search = self.search(stmt, metrics, default_name=_nth("search", unnamed))
                if search is not None:
                    if any(s.name == search.name for s in searches):
                        self.error(
                            f"a second search `{search.name}`",
                            stmt.span,
                            "duplicate-search",
                            hint="give each search its own name: `search NAME speedup where ...`",
                        )
                    else:
                        searches.append(search)
        for search in searches:  # `emit ... from NAME` must know which one NAME means
            if search.name in names:
                self.error(
                    f"`{search.name}` names both a variant and a search",
                    search.span,
                    "duplicate-search",
                    hint="give the search its own name: `search NAME speedup where ...`",
                )
        return tuple(variants), tuple(sweeps), tuple(searches)

    def bare_name(self, stmt: ast.Intervention, ivs: list[Intervention]) -> str:
        """A bare line's variant is named after its canonical text; one component by its own
        name (``drop skip[11] ...`` for ``skip[-1]``), several by the selector as written."""
        first = ivs[0]
        if len({iv.component for iv in ivs}) == 1:
            return first.label()
        targets = ", ".join(s.code() for s in stmt.targets)
        return Intervention(first.op, targets, first.window, first.factor, first.every).label()

    def sweep(self, stmt: ast.SweepStmt, name: str) -> tuple[Sweep, list[Variant]] | None:
        iv = stmt.intervention
        got = self.interventions(iv, "sweep")
        if got is None:
            return None
        ivs, windows = got
        components = tuple(dict.fromkeys(i.component for i in ivs))
        cells = [Variant(f"{name}: {i.label()}", (i,), "sweep", span=stmt.span) for i in ivs]
        matrix = tuple(
            tuple(cells[r * len(windows) + c].name for c in range(len(windows)))
            for r in range(len(components))
        )
        params = tuple((k, v) for k, v in ivs[0].params.items())
        return Sweep(name, iv.op, params, components, tuple(windows), matrix, span=stmt.span), cells

    # ---- searches and emitted samplers --------------------------------------------------

    def search(
        self, stmt: ast.SearchStmt, metrics: tuple[str, ...], default_name: str
    ) -> Search | None:
        ok = True
        objective = stmt.objective.value
        if objective not in OBJECTIVES:
            self.error(
                f"unknown objective `{objective}`",
                stmt.objective.span,
                "unknown-objective",
                hint=did_you_mean(objective, OBJECTIVES) or "a search maximises `speedup`",
            )
            ok = False
        constraints = []
        for c in stmt.constraints:
            got = self.constraint(c, metrics)
            ok = ok and got is not None
            if got is not None:
                constraints.append(got)
        ops: list[str] = []
        every = 2
        for op in stmt.ops:
            if op.op not in SEARCH_OPS:
                self.error(
                    f"a search does not try `{op.op}`",
                    op.span,
                    "search-op",
                    hint="a search tries drop, zero and cache; use a sweep to scale",
                )
                ok = False
            elif op.op in ops:
                self.error(f"`{op.op}` is listed twice", op.span, "search-op")
                ok = False
            else:
                ops.append(op.op)
                if op.every is not None:
                    every = self.count(op.every, "every", minimum=1, default=0)
                    ok = ok and bool(every)
        picked = self.select(stmt.targets)
        windows = self.windows(stmt.window, split=True)
        if picked is None or windows is None or not ok:
            return None
        # With other ops listed too, a block that cannot be dropped stays a candidate for those;
        # the search skips the (block, drop) pairs that the table marks not droppable.
        if ops == ["drop"]:
            picked = self.droppable("drop", picked, leave_out_wildcards=True)
        picked = self.distinct(picked)
        name = stmt.name.value if stmt.name is not None else default_name
        return Search(
            name,
            objective,
            tuple(constraints),
            tuple(ops),
            tuple(p.name for p in picked),
            tuple(windows),
            every,
            span=stmt.span,
        )

    def constraint(self, c: ast.Constraint, metrics: tuple[str, ...]) -> Constraint | None:
        name = c.metric.value
        if name not in QUALITY_METRICS:
            self.error(
                f"unknown metric `{name}`",
                c.metric.span,
                "unknown-metric",
                hint=did_you_mean(name, QUALITY_METRICS)
                or "metrics: " + ", ".join(QUALITY_METRICS),
            )
            return None
        if name not in metrics:
            self.error(
                f"the search bounds `{name}` but the study does not measure it",
                c.metric.span,
                "metric-not-measured",
                hint=f"add {name} to the study's `metrics` line",
            )
            return None
        value = self.real(c.value, name, None)
        if value is None:
            return None
        if c.percent:
            if c.value.text[0] not in "+-":
                self.error(
                    f"a change from the baseline has a sign: +{c.value.text}% or -{c.value.text}%",
                    c.value.span,
                    "unsigned-percent",
                    hint=f"`{name} {c.cmp} +{c.value.text}%` allows {name} to rise by up to {c.value.text}%",
                )
                return None
            if name not in RELATIVE_METRICS:
                self.error(
                    f"{name} is measured against the baseline's images, so it has no baseline value "
                    "to change by a percentage",
                    c.span,
                    "relative-metric",
                    hint=f"bound it by a value, such as `{name} {c.cmp} {_EXAMPLE_BOUND[name]}`",
                )
                return None
        return Constraint(name, c.cmp, value, c.percent, span=c.span)

    def emits(
        self, variants: tuple[Variant, ...], searches: tuple[Search, ...] = ()
    ) -> tuple[Emit, ...]:
        # a search's name stands for its best variant, known once the run has searched
        named = [v.name for v in variants if v.origin in ("baseline", "variant")]
        named += [s.name for s in searches]
        out: list[Emit] = []
        paths: dict[str, Span] = {}
        for stmt in self.study.statements:
            if not isinstance(stmt, ast.EmitStmt):
                continue
            name, path = stmt.variant.value, stmt.path.value
            if name not in named:
                self.error(
                    f"no variant named `{name}`",
                    stmt.variant.span,
                    "unknown-variant",
                    hint=did_you_mean(name, named)
                    or "emit takes the name of a `variant NAME { ... }` block or of a search",
                )
            elif not path.strip():
                self.error(
                    "emit needs a file name",
                    stmt.path.span,
                    "emit-path",
                    hint='write `emit sampler "fast.py" from NAME`',
                )
            elif path in paths:
                self.error(
                    f'a second sampler is written to "{path}"',
                    stmt.path.span,
                    "duplicate-emit",
                    notes=[Note("the first one", paths[path])],
                )
            else:
                paths[path] = stmt.path.span
                out.append(Emit(path, name, span=stmt.span))
        return tuple(out)


def _nth(name: str, k: int) -> str:
    """``search``, ``search2``, ``search3``: the names of unnamed searches in order."""
    return name if k == 1 else f"{name}{k}"
