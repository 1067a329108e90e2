"""Lark's parse errors -> ``AblangError``s in the words of a study author.

Tried in this order, first answer wins (``syntax_error``):

1. Rules on the unexpected text itself, whatever the context: an unknown statement keyword
   (did you mean ...?), a setting inside a variant block, a stray ``}``, two statements on one
   line, an unterminated string, ``(`` or ``=`` where they have no place.
2. A misspelt keyword: a word close to one the parser would accept (``stesp`` -> ``steps``).
3. ``MISTAKES``: a table of typical mistakes, each with a few malformed lines. Lark's
   ``match_examples`` finds the one whose parser state matches the error (lark's
   ``examples/advanced/error_reporting_lalr.py``). A mistake's examples are wrapped in every
   context the line can appear in (first or later statement, inside a variant block, in a sweep),
   since the parser state depends on the context; each is parsed once and cached.
4. A plain "unexpected X; expected Y".

No message names a grammar rule or a terminal: terminals are described in words (``a number``,
``the end of the line``) or shown as the literal text to type (`` `for` ``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from copy import copy
from dataclasses import dataclass
from typing import cast

from lark import Lark, Token, Tree, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from ablang.errors import AblangError, Span, did_you_mean

STATEMENTS = (
    "study", "model", "sampler", "seed", "samples", "prompts", "metrics", "device", "bands", "ray",
    "drop", "zero", "scale", "cache", "variant", "sweep", "search", "emit",
)  # fmt: skip
OPS = ("drop", "zero", "scale", "cache")


@dataclass(frozen=True)
class Found:
    """What went wrong, as the message builders see it."""

    token: str  # the unexpected text ("" at the end of the file)
    kind: str  # "_NL", "$END", "NUMBER", "STRING", "NAME", a keyword's terminal, or "CHAR"
    expected: frozenset[str]  # terminal names the parser would have accepted
    line_text: str  # the source line of the error
    col: int  # 1-based column of the unexpected text


Message = tuple[str, str | None]  # (message, hint)


# ---- the table of typical mistakes -----------------------------------------------------------

_STATEMENT_CONTEXTS = ("{s}", "seed 0\n{s}")
_INTERVENTION_CONTEXTS = _STATEMENT_CONTEXTS + tuple(
    prefix + body
    for prefix in ("", "seed 0\n")
    for body in ("sweep {s}", "variant v {{\n{s}", "variant v {{\ndrop mid\n{s}")
)
_WINDOW_CONTEXTS = tuple(
    c.replace("{s}", op + " {s}")
    for c in _INTERVENTION_CONTEXTS
    for op in ("drop mid", "scale mid by 2")
) + tuple(p + "search speedup where ssim >= 0.9 over drop of mid {s}" for p in ("", "seed 0\n"))

_CONTEXTS = {
    "statement": _STATEMENT_CONTEXTS,
    "intervention": _INTERVENTION_CONTEXTS,
    "window": _WINDOW_CONTEXTS,
}

# label -> (where the line can stand, malformed examples). The examples are real mistakes.
MISTAKES: dict[str, tuple[str, tuple[str, ...]]] = {
    "missing-for": (
        "intervention",
        (
            "drop skip[3] t in 600..1000",
            "drop skip[3] step in 0..10",
            "drop skip[3] 600..1000",
            "drop mid t in 600..1000",
            "drop mid step in 0..10",
            "scale mid by 2 t in 0..10",
            "cache mid every 2 t in 0..10",
        ),
    ),
    "missing-in": ("window", ("for t 600..1000", "for t 600")),
    "dash-range": ("window", ("for t in 600-1000", "for t in 600 -1000")),
    "missing-dots": (
        "window",
        ("for t in 600 1000", "for t in 600 to 1000", "for t in 600", "for t in 600.. "),
    ),
    "window-notation": (
        "window",
        ("for t in [600, 1000)", "for t in range(600, 1000)"),
    ),
    "missing-quotes": (
        "statement",
        (
            "study Skip phases",
            "study 3",
            "model glide models/base.pt",
            "model glide 3",
            'model adm "a.pt" config b.json',
            "prompts 3, 7",
            "prompts cat",
            'prompts "3", 7',
            'prompts "3", cat',
            "emit sampler build/fast.py from v",
        ),
    ),
    "missing-by": ("intervention", ("scale skip[3] 0.5", "scale skip[3] x 0.5", "scale mid 0.5")),
    "missing-every": ("intervention", ("cache dec[8] 2", "cache dec[8] each 2", "cache mid 2")),
    "missing-steps": ("statement", ("sampler ddpm 100", "sampler ddim 50 eta 0")),
    "band-options": ("statement", ("bands 4", "bands", "bands 4 floor 0.001", "bands cut")),
    "index-brackets": ("intervention", ("drop skip 3", "drop skip 3..5")),
    "block-same-line": ("statement", ("variant v { drop mid }", "variant v { drop mid")),
    "unclosed-block": ("statement", ("variant v {\ndrop mid\n", "variant v {\n")),
}


def _excerpt(line_text: str, col: int) -> str:
    """The rest of the line from the error on, without a trailing comment."""
    return line_text[col - 1 :].split("#", 1)[0].strip()


def _word_at(line_text: str, col: int) -> str:
    m = re.match(r"[^\s,]+", line_text[col - 1 :])
    return m.group(0) if m else ""


def _missing_for(f: Found) -> Message:
    rest = _excerpt(f.line_text, f.col)
    if f.kind == "NUMBER":
        rest = f"t in {rest}"
    return "a window starts with `for`", f"write `for {rest}`"


def _missing_in(f: Found) -> Message:
    return "expected `in` after `for t` (or `for step`)", "write `for t in 600..1000`"


def _dash_range(f: Found) -> Message:
    m = re.search(r"(\d+)\s*-\s*(\d+)", f.line_text)
    example = f"{m.group(1)}..{m.group(2)}" if m else "600..1000"
    return (
        "a range is written with `..`, not a dash",
        f"write `{example}` (half-open: the end is left out)",
    )


def _missing_dots(f: Found) -> Message:
    return (
        "expected `..` between the two ends of the window",
        "write `for t in 600..1000` (half-open) or `for t in 600..=999` (both ends included)",
    )


def _window_notation(f: Found) -> Message:
    return (
        "a window is written `A..B`",
        "write `for t in 600..1000`; `[600, 1000)` is how reports print that window",
    )


def _missing_quotes(f: Found) -> Message:
    word = _word_at(f.line_text, f.col) or "..."
    return "expected a quoted string", f'strings are written in double quotes: "{word}"'


def _missing_by(f: Found) -> Message:
    return "`scale` needs `by` before its factor", "write `scale skip[3] by 0.5`"


def _missing_every(f: Found) -> Message:
    return "`cache` needs `every` before its period", "write `cache dec[8] every 2`"


def _missing_steps(f: Found) -> Message:
    return (
        "sampler options are named",
        "write `sampler ddpm steps 100 guidance 3.0` (ddim also takes `eta`)",
    )


def _band_options(f: Found) -> Message:
    return (
        "`bands` takes named options",
        "write `bands cut 4` (cycles per image); `floor F` and `split S` may follow",
    )


def _index_brackets(f: Found) -> Message:
    return (
        "component indices go in square brackets",
        "write `skip[3]`, `skip[2..5]`, `skip[1, 4]` or `skip[*]`",
    )


def _block_same_line(f: Found) -> Message:
    return (
        "a variant block puts one intervention per line",
        "end the line after `{`, write each intervention on its own line, and close with `}` on a line of its own",
    )


def _unclosed_block(f: Found) -> Message:
    return (
        "this variant block is never closed",
        "add `}` on a line of its own after its last intervention",
    )


_BUILDERS: dict[str, Callable[[Found], Message]] = {
    "missing-for": _missing_for,
    "missing-in": _missing_in,
    "dash-range": _dash_range,
    "missing-dots": _missing_dots,
    "window-notation": _window_notation,
    "missing-quotes": _missing_quotes,
    "missing-by": _missing_by,
    "missing-every": _missing_every,
    "missing-steps": _missing_steps,
    "band-options": _band_options,
    "index-brackets": _index_brackets,
    "block-same-line": _block_same_line,
    "unclosed-block": _unclosed_block,
}


@functools.lru_cache(maxsize=1)
def _examples(lark: Lark) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every example in every context, each parsed once: match_examples then only compares."""
    table = []
    for label, (where, snippets) in MISTAKES.items():
        table.append(
            (label, tuple(c.format(s=s) + "\n" for s in snippets for c in _CONTEXTS[where]))
        )
    return tuple(table)


@functools.cache
def _example_error(lark: Lark, text: str) -> UnexpectedInput | None:
    try:
        lark.parse(text)
    except UnexpectedInput as e:
        _expected(e)  # computed once, now, and cached on the exception
        return e
    return None


def _match(e: UnexpectedInput, lark: Lark) -> str | None:
    """The label of the mistake ``e`` is an instance of, by lark's ``match_examples``: same parser
    state, and among those the example with the same unexpected token first.

    lark's own ``use_accepts`` check crashes in lark 1.3 (a debug message formats its
    ``ParserState`` with ``%d``), so examples whose exact accepted set differs from the error's
    are left out beforehand; that is the same check.
    """
    accepts = _expected(e)
    table = [
        (
            label,
            [
                x
                for x in examples
                if (u := _example_error(lark, x)) is not None and _expected(u) == accepts
            ],
        )
        for label, examples in _examples(lark)
    ]
    # lark only wants the exception the parse function raises, never its result.
    parse_fn = cast(Callable[[str], Tree], functools.partial(_raise_example, lark))
    return e.match_examples(parse_fn, table, use_accepts=False)


def _raise_example(lark: Lark, text: str) -> None:
    err = _example_error(lark, text)
    if err is not None:
        raise err.with_traceback(None)  # the cached exception, without piling up tracebacks


# ---- describing terminals ----------------------------------------------------------------------

_WORDS = {
    "NUMBER": "a number",
    "STRING": 'a quoted string ("...")',
    "NAME": "a name",
    "CMP": "a comparison (>=, <=, >, <)",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}


def _terminal_words(lark: Lark, name: str) -> str:
    if name in _WORDS:
        return _WORDS[name]
    try:
        pattern = lark.get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"`{pattern.value}`" if isinstance(pattern, PatternStr) else name.lower()


def _literals(lark: Lark, expected: frozenset[str]) -> dict[str, str]:
    """Literal text -> terminal name, for the expected terminals that are fixed strings."""
    out = {}
    for name in expected:
        if name in _WORDS:
            continue
        try:
            pattern = lark.get_terminal(name).pattern
        except KeyError:
            continue
        if isinstance(pattern, PatternStr):
            out[pattern.value] = name
    return out


def _keywords(lark: Lark, expected: frozenset[str]) -> dict[str, str]:
    """Keyword text -> terminal name, for the expected terminals that are literal words."""
    return {text: name for text, name in _literals(lark, expected).items() if text.isalpha()}


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _expected_words(lark: Lark, expected: frozenset[str]) -> str:
    kw = _keywords(lark, expected)
    words = []
    if set(STATEMENTS) <= set(kw):
        words.append("a statement (" + ", ".join(STATEMENTS) + ")")
        expected = expected - {kw[s] for s in STATEMENTS}
    elif set(OPS) <= set(kw):
        words.append("an intervention (drop, zero, scale or cache)")
        expected = expected - {kw[s] for s in OPS}
    # Fixed order, so that the same mistake always reads the same.
    rest = sorted(
        (_terminal_words(lark, n) for n in expected if n not in ("_NL", "$END")), key=str.lower
    )
    words += rest
    if "_NL" in expected:
        words.append(_WORDS["_NL"])
    elif "$END" in expected:
        words.append(_WORDS["$END"])
    return _join(words) if words else "something else"


def _describe(f: Found) -> str:
    if f.kind == "_NL":
        return "end of the line"
    if f.kind == "$END":
        return "end of the file"
    if f.kind == "NUMBER":
        return f"number {f.token}"
    if f.kind == "STRING":
        return f"string {f.token}"
    if f.kind == "CHAR":
        return f"character {f.token!r}"
    return f"`{f.token}`"


# ---- rules for what the table does not cover ------------------------------------------------


_WINDOW_START = re.compile(r"\bfor\s+(t|step)\s+in\b")


def _did_you_mean(word: str, options) -> str | None:
    return did_you_mean(word, options, fmt="`{}`")


def _by_rules(f: Found, lark: Lark) -> tuple[str, Message] | None:
    """Mistakes told apart by the unexpected text itself, whatever the context."""
    kw = _keywords(lark, f.expected)
    is_word = f.kind not in ("_NL", "$END", "NUMBER", "STRING", "CHAR", "RBRACE", "LBRACE")
    if f.kind == "RBRACE" and "RBRACE" not in f.expected:
        return "stray-brace", (
            "`}` without an open variant block",
            "remove it, or open the block with `variant NAME {`",
        )
    if f.kind == "CHAR" and f.token == '"':
        return "unterminated-string", (
            "this string is never closed",
            'add the closing `"` on the same line',
        )
    if f.kind == "CHAR" and f.token in "=!" and "CMP" in f.expected:
        return "bad-comparison", ("expected a comparison", "compare with >=, <=, > or <")
    if f.kind == "CHAR" and f.token == "-" and ".." in _literals(lark, f.expected):
        return "dash-range", _dash_range(f)
    if f.kind == "CHAR" and f.token == "(" and f.line_text[: f.col - 1].rstrip().endswith(" in"):
        return "window-notation", _window_notation(f)
    if f.token == "on" and (window := _WINDOW_START.search(f.line_text[: f.col - 1])):
        side = " ".join(f.line_text[f.col - 1 :].split()[:2])
        head, tail = f.line_text[: window.start()].strip(), f.line_text[window.start() : f.col - 1]
        return "side-after-window", (
            "the side of guidance goes before the window",
            f"write `{head} {side} {tail.strip()}`",
        )
    if f.kind == "CHAR" and f.token in "()":
        return "bad-character", (
            f"unexpected {_describe(f)}",
            "component indices and lists use square brackets: `skip[1, 4]`",
        )
    if set(STATEMENTS) <= set(kw) and is_word:
        hint = _did_you_mean(f.token, STATEMENTS) or "a statement starts with one of: " + ", ".join(
            STATEMENTS
        )
        return "unknown-statement", (f"unknown statement `{f.token}`", hint)
    if set(OPS) <= set(kw) and "RBRACE" in f.expected and is_word:
        if f.token in STATEMENTS:
            return "not-in-block", (
                f"`{f.token}` cannot stand inside a variant block",
                "a variant block holds drop, zero, scale and cache lines; move this line out of the block",
            )
        hint = (
            _did_you_mean(f.token, OPS) or "a variant block holds drop, zero, scale and cache lines"
        )
        return "unknown-statement", (f"unknown intervention `{f.token}`", hint)
    if f.expected == {"_NL"} and f.line_text[: f.col - 1].rstrip().endswith("{"):
        return "block-same-line", _block_same_line(f)
    if f.expected <= {"_NL", "$END", "COMMA"} and f.token in STATEMENTS:
        return "two-statements", ("one statement per line", f"start `{f.token}` on a new line")
    return None


# ---- entry points ----------------------------------------------------------------------------


def _expected(e: UnexpectedInput) -> frozenset[str]:
    """Exactly the terminals the parser would accept where it stopped.

    The LALR table's row for the state over-approximates (states with the same core are merged,
    so the row after ``drop skip`` also lists ``by``), and lark computes the exact set only for
    errors the parser raised, not for those the contextual lexer raised. So: feed each terminal
    of the row to a copy of the parser state, as lark's ``InteractiveParser.accepts`` does.
    """
    state = getattr(e, "state", None)
    if state is None:
        return frozenset(getattr(e, "expected", None) or getattr(e, "allowed", None) or ())
    cached = getattr(e, "_ablang_accepts", None)
    if cached is not None:
        return cached
    quiet = copy(state.parse_conf)
    quiet.callbacks = {}  # no tree building while probing
    accepts = set()
    for name in state.parse_conf.parse_table.states[state.position]:
        if not name.isupper():
            continue
        probe = state.copy(deepcopy_values=False)
        probe.parse_conf = quiet
        try:
            probe.feed_token(Token(name, ""), is_end=name == "$END")
        except UnexpectedToken:
            continue
        accepts.add(name)
    found = frozenset(accepts)
    e._ablang_accepts = found  # type: ignore[attr-defined]  # a memo on lark's exception
    return found


def _found(e: UnexpectedInput, lines: list[str]) -> Found:
    line_text = lines[e.line - 1] if 0 < e.line <= len(lines) else ""
    if isinstance(e, UnexpectedToken):
        tok: Token = e.token
        return Found(str(tok), tok.type, _expected(e), line_text, e.column)
    char = e.char if isinstance(e, UnexpectedCharacters) else ""
    return Found(char, "CHAR" if char else "$END", _expected(e), line_text, e.column)


def _span(e: UnexpectedInput, f: Found) -> Span:
    width = max(len(f.token), 1) if f.kind not in ("_NL", "$END") else 1
    return Span(e.line, e.column, e.line, e.column + width)


def _block_header(lines: list[str], before: int) -> int | None:
    """The line of the last ``variant NAME {`` at or before line ``before``."""
    for i in range(min(before, len(lines)), 0, -1):
        if re.match(r"\s*variant\b[^#]*\{", lines[i - 1]):
            return i
    return None


def syntax_error(e: UnexpectedInput, text: str, lark: Lark) -> AblangError:
    """The error a study author should read for lark's ``e`` on ``text``."""
    lines = text.split("\n")
    f = _found(e, lines)
    span = _span(e, f)
    ruled = _by_rules(f, lark)
    if ruled is not None:
        rule, (message, hint) = ruled
        return AblangError(message, span, hint=hint, code=f"syntax/{rule}")
    expected = _expected_words(lark, f.expected)
    is_word = f.kind not in ("NUMBER", "STRING", "CHAR", "$END", "_NL")
    close = _did_you_mean(f.token, _keywords(lark, f.expected)) if is_word else None
    if close:  # a misspelt keyword: `stesp` for `steps`
        return AblangError(
            f"unexpected {_describe(f)}; expected {expected}",
            span,
            hint=close,
            code="syntax/unexpected",
        )
    label = _match(e, lark) if getattr(e, "state", None) is not None and f.kind != "CHAR" else None
    # The end of the file inside a block is always an unclosed block, and nothing else is.
    if f.kind == "$END" and "RBRACE" in f.expected:
        label = "unclosed-block"
    elif label == "unclosed-block":
        label = None
    if label == "unclosed-block":  # the end of the file is no place to point at: the header is
        header = _block_header(lines, e.line)
        if header is not None:
            span = Span(header, 1, header, len(lines[header - 1].rstrip()) + 1)
    if label is not None:
        message, hint = _BUILDERS[label](f)
        return AblangError(message, span, hint=hint, code=f"syntax/{label}")
    if f.kind == "_NL":
        return AblangError(
            f"this line ends too early; expected {expected}", span, code="syntax/unexpected"
        )
    return AblangError(
        f"unexpected {_describe(f)}; expected {expected}", span, code="syntax/unexpected"
    )


def recovery_line(e: UnexpectedInput, err: AblangError, lines: list[str]) -> tuple[int, str] | None:
    """How to go on after ``err``: ``(line, replacement)`` to blank the broken line, or None
    when nothing after it can be trusted (the end of the file was reached).

    A broken block header keeps its ``{`` and a broken closing line its ``}``, so the block
    around them still parses and its lines are checked too.
    """
    if err.span is None or err.code == "syntax/unclosed-block":
        return None
    line_no = err.span.line
    if not 1 <= line_no <= len(lines) or getattr(getattr(e, "token", None), "type", "") == "$END":
        return None
    text = lines[line_no - 1].split("#", 1)[0].strip()
    opens_block = text.startswith("variant") and "{" in text and "}" not in text.split("{", 1)[1]
    if opens_block and lines[line_no - 1] != "variant _ {":
        return line_no, "variant _ {"
    if text.startswith("}") and lines[line_no - 1] != "}":
        return line_no, "}"
    if lines[line_no - 1] == "":
        return None  # blanking changed nothing: the error lies elsewhere
    return line_no, ""
