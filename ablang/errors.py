"""Errors for people: a place in the study, plain words, and a fix where one is known.

Every error ablang shows about a study is an ``AblangError`` with a ``Span``. Rendering follows
the compilers people already read::

    study.abl:4:6: error: no component skp[3]
        drop skp[3] for t in 600..1000
             ^^^^^^
    hint: did you mean skip[3]?
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A place in a source file; lines and columns start at 1, ``end_col`` is exclusive."""

    line: int
    col: int
    end_line: int | None = None
    end_col: int | None = None


@dataclass(frozen=True)
class Note:
    """A second place an error refers to, such as the first of two duplicate settings."""

    message: str
    span: Span | None


class AblangError(Exception):
    """A positioned error in a study (or a command line). ``code`` is a stable kind for tests."""

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        *,
        hint: str | None = None,
        code: str = "error",
        path: str | None = None,
        notes: tuple[Note, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.code = code
        self.path = path
        self.notes = tuple(notes)  # other places that explain this one: "first set here"

    def __str__(self) -> str:
        where = self.path or "<study>"
        if self.span is not None:
            where += f":{self.span.line}:{self.span.col}"
        return f"{where}: error: {self.message}"


class AblangErrors(AblangError):
    """Every error found in one file (a study with errors runs nothing).

    An ``AblangError`` itself, so one ``except AblangError`` catches both: its message, span,
    hint and code are the first error's; ``errors`` holds them all."""

    def __init__(self, errors: list[AblangError]) -> None:
        first = errors[0] if errors else AblangError("no errors")
        super().__init__(
            first.message,
            first.span,
            hint=first.hint,
            code=first.code,
            path=first.path,
            notes=first.notes,
        )
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def as_list(exc: AblangError | AblangErrors) -> list[AblangError]:
    """The errors inside ``exc``, whichever of the two it is."""
    return list(exc.errors) if isinstance(exc, AblangErrors) else [exc]


def did_you_mean(word: str, options, *, fmt: str = "{}") -> str | None:
    """``did you mean skip?`` when one of ``options`` is close to ``word``; ``fmt`` dresses the
    suggestion (``"{}[3]"`` gives ``did you mean skip[3]?``)."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean {fmt.format(close[0])}?" if close else None


# ---- rendering -----------------------------------------------------------------------------
#
#     study.abl:4:6: error: no component skp[3]
#         drop skp[3] for t in 600..1000
#              ^^^^^^
#     hint: did you mean skip[3]?

_INDENT = "    "


def _lines(source_text: str | None) -> list[str]:
    # Split on "\n" only, as the parser counts lines (str.splitlines also splits on \x0c etc.).
    return [line.rstrip("\r") for line in (source_text or "").split("\n")]


def _source_line(lines: list[str], line: int) -> str | None:
    if not 1 <= line <= len(lines):
        return None
    # Control characters would move the terminal's cursor; one replacement keeps the columns.
    return "".join(c if c == "\t" or c.isprintable() else "\ufffd" for c in lines[line - 1])


def _caret(text: str, span: Span) -> str:
    """Spaces up to ``span.col`` (tabs copied so the caret lines up), then ``^`` under the span."""
    start = max(span.col - 1, 0)
    if span.end_line not in (None, span.line) or span.end_col is None:
        end = max(len(text), start + 1)  # a span over several lines: mark the rest of the first
    else:
        end = max(span.end_col - 1, start + 1)
    lead = "".join(c if c == "\t" else " " for c in text[:start])
    return lead + " " * (start - len(lead)) + "^" * (end - start)


def _location(path: str, span: Span | None) -> str:
    return path if span is None else f"{path}:{span.line}:{span.col}"


def _plain_block(
    kind: str, message: str, span: Span | None, path: str, lines: list[str]
) -> list[str]:
    out = [f"{_location(path, span)}: {kind}: {message}"]
    text = _source_line(lines, span.line) if span is not None else None
    if text is not None and span is not None:
        out += [_INDENT + text.rstrip(), _INDENT + _caret(text, span)]
    return out


def render_error(err: AblangError, source_text: str | None = None, path: str | None = None) -> str:
    """``study.abl:LINE:COL: error: MESSAGE``, the source line, a caret, then notes and a hint."""
    where = path or err.path or "<study>"
    lines = _lines(source_text)
    out = _plain_block("error", err.message, err.span, where, lines)
    for note in err.notes:
        out += _plain_block("note", note.message, note.span, where, lines)
    if err.hint:
        out.append(f"hint: {err.hint}")
    return "\n".join(out)


def render_errors(
    errors: list[AblangError], source_text: str | None = None, path: str | None = None
) -> str:
    return "\n".join(render_error(e, source_text, path) for e in errors)


def render_error_rich(err: AblangError, source_text: str | None = None, path: str | None = None):
    """The same report as ``render_error`` as a ``rich`` renderable, the study line highlighted
    with ablang's Pygments lexer."""
    from rich.console import Group
    from rich.syntax import Syntax
    from rich.text import Text

    from ablang.lexer import AblangLexer

    where = path or err.path or "<study>"
    lines = _lines(source_text)
    lexer = AblangLexer()
    parts = []

    def block(kind: str, style: str, message: str, span: Span | None) -> None:
        head = Text()
        head.append(_location(where, span), style="bold")
        head.append(": ")
        head.append(f"{kind}:", style=f"bold {style}")
        head.append(f" {message}", style="bold")
        parts.append(head)
        text = _source_line(lines, span.line) if span is not None else None
        if text is not None and span is not None:
            code = Syntax(text, lexer, theme="ansi_dark", background_color="default")
            highlighted = code.highlight(text.rstrip())
            highlighted.rstrip()  # in place: the newline Syntax adds
            parts.append(Text(_INDENT).append_text(highlighted))
            parts.append(Text(_INDENT + _caret(text, span), style=f"bold {style}"))

    block("error", "red", err.message, err.span)
    for note in err.notes:
        block("note", "cyan", note.message, note.span)
    if err.hint:
        parts.append(Text.assemble(("hint:", "bold green"), f" {err.hint}"))
    return Group(*parts)
