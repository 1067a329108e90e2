"""parse: study text -> ``ast.Study``.

The grammar is ``grammar/ablang.lark`` (shipped as ``ablang.grammar``); Lark parses it LALR with
a contextual lexer and ``propagate_positions=True``, and ``_Build`` turns the tree into the frozen
dataclasses of ``ablang.ast``, each with its span (from the tree's ``meta``). Comments are ignored by the grammar but
collected through a lexer callback, because ``ablang fmt`` must keep them.

Syntax errors become ``AblangError``s in plain words (``ablang.syntax_errors``). After an error
the offending line is blanked and the text parsed again, so one run reports every broken line,
not only the first; all of them are raised together as ``AblangErrors``.
"""

from __future__ import annotations

import functools
import re
import threading
from importlib import resources
from pathlib import Path
from typing import Any, cast

from lark import Lark, Token, Tree, UnexpectedInput

from ablang import ast
from ablang.errors import AblangError, AblangErrors, Span
from ablang.syntax_errors import recovery_line, syntax_error

MAX_SYNTAX_ERRORS = 20


def grammar_text() -> str:
    """The grammar, from the installed package or, in a source checkout, from ``grammar/``."""
    try:
        return (resources.files("ablang.grammar") / "ablang.lark").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return (Path(__file__).resolve().parent.parent / "grammar" / "ablang.lark").read_text(
            "utf-8"
        )


class _NameEverywhere:
    """A no-op post-lexer whose only job is ``always_accept``: NAME is tried in every lexer state,
    so keywords only ever match whole words (``dropx`` is a NAME, not ``drop`` + ``x``)."""

    always_accept = ("NAME",)

    def process(self, stream):
        return stream


class _Comments:
    """Lexer callback that keeps the comment tokens the grammar ignores."""

    def __init__(self) -> None:
        self.tokens: list[Token] = []

    def __call__(self, token: Token) -> Token:
        self.tokens.append(token)
        return token


@functools.lru_cache(maxsize=1)
def _parser() -> tuple[Lark, _Comments]:
    comments = _Comments()
    lark = Lark(
        grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_NameEverywhere(),
        lexer_callbacks={"COMMENT": comments},
    )
    return lark, comments


# The comment collector belongs to the shared parser; one parse at a time uses it.
_lock = threading.RLock()


# ---- tokens -> leaves ----------------------------------------------------------------------


def _tspan(tok: Token) -> Span:
    # Lexed tokens always carry their place; lark types it optional for hand-made tokens.
    return Span(cast(int, tok.line), cast(int, tok.column), tok.end_line, tok.end_column)


def _mspan(meta) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


_INT = re.compile(r"[+-]?[0-9]+")


def _number(tok: Token) -> ast.Number:
    text = str(tok)
    # int() refuses more than 4300 digits; such a number is out of every range anyway.
    if _INT.fullmatch(text) and len(text) < 4000:
        value: int | float = int(text)
    else:
        value = float(text)
    return ast.Number(text, value, _tspan(tok))


def _str(tok: Token) -> ast.Str:
    return ast.Str(str(tok)[1:-1], _tspan(tok))


def _name(tok: Token) -> ast.Name:
    return ast.Name(str(tok), _tspan(tok))


def _word(tok: Token) -> Any:
    """A keyword's text, typed for the AST field's ``Literal``: the grammar admits no other."""
    return str(tok)


def _opt(tok: Token | None, convert):
    return None if tok is None else convert(tok)


def _window(meta, c, inclusive: bool) -> ast.Window:
    var, lo, hi, by = c
    return ast.Window(
        _word(var), _number(lo), _number(hi), inclusive, _opt(by, _number), span=_mspan(meta)
    )


# ---- tree -> AST ---------------------------------------------------------------------------


class _Build:
    """One method per grammar rule (or alias): ``(meta, children) -> node``, children already
    built. Walked by ``_walk``, a plain recursive dispatch: lark's ``Transformer`` with
    ``v_args(meta=True)`` costs several times more per node, and a study can have thousands."""

    def start(self, meta, items):
        return tuple(items)

    # settings
    def study(self, meta, c):
        return ast.Title(_str(c[0]), span=_mspan(meta))

    def model(self, meta, c):
        path = _str(c[1]) if len(c) > 1 else None
        config = _str(c[2]) if len(c) > 2 else None
        return ast.ModelStmt(_name(c[0]), path, config, span=_mspan(meta))

    def sampler(self, meta, c):
        return ast.SamplerStmt(_name(c[0]), tuple(c[1:]), span=_mspan(meta))

    def sampler_option(self, meta, c):
        return ast.SamplerOption(_word(c[0]), _number(c[1]), span=_mspan(meta))

    def seed(self, meta, c):
        return ast.SeedStmt(_number(c[0]), span=_mspan(meta))

    def samples(self, meta, c):
        return ast.SamplesStmt(_number(c[0]), span=_mspan(meta))

    def noise(self, meta, c):
        return ast.NoiseStmt(_name(c[0]), span=_mspan(meta))

    def prompts(self, meta, c):
        return ast.PromptsStmt(tuple(_str(t) for t in c), span=_mspan(meta))

    def metrics(self, meta, c):
        return ast.MetricsStmt(tuple(_name(t) for t in c), span=_mspan(meta))

    def device(self, meta, c):
        return ast.DeviceStmt(_name(c[0]), span=_mspan(meta))

    def ray(self, meta, c):
        where = _str(c[0]) if c[0].type == "STRING" else _name(c[0])
        return ast.RayStmt(where, span=_mspan(meta))

    def bands(self, meta, c):
        return ast.BandsStmt(tuple(c), span=_mspan(meta))

    def band_option(self, meta, c):
        return ast.BandOption(_word(c[0]), _number(c[1]), span=_mspan(meta))

    # interventions
    def drop(self, meta, c):
        return ast.Intervention("drop", c[0], c[2], side=c[1], span=_mspan(meta))

    def zero(self, meta, c):
        return ast.Intervention("zero", c[0], c[2], side=c[1], span=_mspan(meta))

    def scale(self, meta, c):
        return ast.Intervention(
            "scale", c[0], c[3], factor=_number(c[1]), side=c[2], span=_mspan(meta)
        )

    def cache(self, meta, c):
        targets, when, extrapolated, side, window = c
        return ast.Intervention(
            "cache",
            targets,
            window,
            side=side,
            extrapolated=bool(extrapolated),
            span=_mspan(meta),
            **when,
        )

    def extrapolated(self, meta, c):
        return True

    def cache_every(self, meta, c):
        return {"every": _number(c[0]), "grow": _opt(c[1], _number)}

    def cache_at(self, meta, c):
        return {"at": tuple(_number(n) for n in c[1:]), "at_var": str(c[0])}

    def side(self, meta, c):
        return _name(c[0])

    def targets(self, meta, c):
        return tuple(c)

    def selector(self, meta, c):
        return ast.Selector(_name(c[0]), None, span=_mspan(meta))

    def selector_all(self, meta, c):
        return ast.Selector(_name(c[0]), (ast.IndexAll(span=_mspan(meta)),), span=_mspan(meta))

    def selector_index(self, meta, c):
        return ast.Selector(_name(c[0]), tuple(c[1:]), span=_mspan(meta))

    def index_at(self, meta, c):
        return ast.IndexAt(_number(c[0]), span=_mspan(meta))

    def index_range(self, meta, c):
        return ast.IndexRange(_number(c[0]), _number(c[1]), False, span=_mspan(meta))

    def index_range_incl(self, meta, c):
        return ast.IndexRange(_number(c[0]), _number(c[1]), True, span=_mspan(meta))

    def window(self, meta, c):
        return _window(meta, c, inclusive=False)

    def window_incl(self, meta, c):
        return _window(meta, c, inclusive=True)

    # blocks and the rest
    def variant(self, meta, c):
        return ast.VariantBlock(_name(c[0]), tuple(c[1:]), span=_mspan(meta))

    def sweep(self, meta, c):
        return ast.SweepStmt(c[0], span=_mspan(meta))

    def search(self, meta, c):
        name, objective, *rest = c
        validation = rest.pop()
        window = rest.pop()
        targets = rest.pop()
        return ast.SearchStmt(
            _opt(name, _name),
            _name(objective),
            tuple(x for x in rest if isinstance(x, ast.Constraint)),
            tuple(x for x in rest if isinstance(x, ast.SearchOp)),
            targets,
            window,
            validation,
            span=_mspan(meta),
        )

    def validation(self, meta, c):
        return ast.Validation(_number(c[0]), _opt(c[1], _number), span=_mspan(meta))

    def constraint(self, meta, c):
        metric, cmp, value, percent = c
        return ast.Constraint(
            _name(metric), _word(cmp), _number(value), percent is not None, span=_mspan(meta)
        )

    def search_drop(self, meta, c):
        return ast.SearchOp("drop", side=c[0], span=_mspan(meta))

    def search_zero(self, meta, c):
        return ast.SearchOp("zero", side=c[0], span=_mspan(meta))

    def search_cache(self, meta, c):
        return ast.SearchOp(
            "cache",
            every=_opt(c[0], _number),
            extrapolated=bool(c[1]),
            side=c[2],
            span=_mspan(meta),
        )

    def search_scale(self, meta, c):
        return ast.SearchOp("scale", factor=_opt(c[0], _number), span=_mspan(meta))

    def emit(self, meta, c):
        return ast.EmitStmt(_str(c[0]), _name(c[1]), span=_mspan(meta))


_RULES = {name: getattr(_Build(), name) for name in vars(_Build) if not name.startswith("_")}


def _walk(tree: Tree):
    children = [_walk(c) if isinstance(c, Tree) else c for c in tree.children]
    return _RULES[tree.data](tree.meta, children)


# ---- entry points --------------------------------------------------------------------------


def _parse_once(text: str) -> tuple[tuple[ast.Statement, ...], list[Token]]:
    lark, comments = _parser()
    with _lock:
        comments.tokens = []
        tree = lark.parse(text)
        found = comments.tokens
    return _walk(tree), found


def parse(text: str, path: str = "<study>") -> ast.Study:
    """Parse a study. Raises ``AblangErrors`` holding every syntax error found, in order."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    # Every statement ends at a newline; give the last line one.
    source = text if text.endswith("\n") else text + "\n"
    errors: list[AblangError] = []
    lines = source.split("\n")
    while True:
        try:
            statements, comments = _parse_once("\n".join(lines))
        except UnexpectedInput as e:
            err = syntax_error(e, "\n".join(lines), _parser()[0])
            err.path = path
            # the recovery's own stand-in line failing again is the same mistake: say it once
            if not (errors and _same_place(errors[-1], err)):
                errors.append(err)
            fixed = recovery_line(e, err, lines)
            if fixed is None or len(errors) >= MAX_SYNTAX_ERRORS:
                break
            line_no, replacement = fixed
            if err.code == "syntax/not-in-block":
                # a block nested in a block: blank it and its closing brace, not the outer one's
                close = _matching_close(lines, line_no)
                replacement = ""
                if close is not None:
                    lines[close - 1] = ""
            lines[line_no - 1] = replacement
            continue
        if errors:
            break
        kept = tuple(ast.Comment(str(t).rstrip(), _tspan(t)) for t in comments)
        end = Span(1, 1, len(lines), 1)
        return ast.Study(statements, kept, path=path, span=end)
    raise AblangErrors(errors)


def _same_place(a: AblangError, b: AblangError) -> bool:
    return (
        a.code == b.code
        and a.span is not None
        and b.span is not None
        and a.span.line == b.span.line
    )


def _matching_close(lines: list[str], line_no: int) -> int | None:
    """The line of the ``}`` closing a block whose ``{`` is on ``line_no`` (None: unclosed)."""
    depth = 0
    for k in range(line_no - 1, len(lines)):
        code = lines[k].split("#", 1)[0]
        depth += code.count("{") - code.count("}")
        if depth <= 0:
            return k + 1 if k + 1 != line_no else None
    return None


def decode(data: bytes, path: str = "<study>") -> str:
    """Bytes of a study file -> text. A file that is not UTF-8 text is an error at the bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AblangErrors(
            [
                _byte_error(
                    data,
                    e.start,
                    path,
                    f"the file is not UTF-8 text (byte 0x{data[e.start]:02x})",
                    "save the study as UTF-8; is it a study file at all?",
                )
            ]
        ) from None
    nul = text.find("\0")
    if nul >= 0:
        raise AblangErrors(
            [
                _byte_error(
                    data,
                    len(text[:nul].encode()),
                    path,
                    "the file contains a NUL byte: it looks like a binary file, not a study",
                    None,
                )
            ]
        )
    return text


def _byte_error(data: bytes, pos: int, path: str, message: str, hint: str | None) -> AblangError:
    line_start = data.rfind(b"\n", 0, pos) + 1
    line = data.count(b"\n", 0, pos) + 1
    col = len(data[line_start:pos].decode("utf-8", errors="replace")) + 1
    return AblangError(
        message, Span(line, col, line, col + 1), hint=hint, code="encoding", path=path
    )


def parse_bytes(data: bytes, path: str = "<study>") -> ast.Study:
    return parse(decode(data, path), path)


def parse_file(path: str | Path) -> ast.Study:
    """Read and parse a study file (raises ``AblangErrors``, also for non-UTF-8 files)."""
    return parse_bytes(Path(path).read_bytes(), str(path))
