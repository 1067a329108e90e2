"""fmt: a study in its one canonical layout.

Only the layout changes, never the meaning (a formatted study parses to the same tree and so
resolves to the same plan):

- every statement as ``code()`` writes it: single spaces, ``600..1000`` without spaces,
  ``skip[1, 4]``, ``a, b`` lists; 4 spaces of indent inside a ``variant`` block;
- statement order kept; comments kept where they were, on their own line or after a statement;
- at most one blank line in a row, none at the start or end of the file or of a block;
- trailing comments on consecutive lines start in one column, two spaces after the longest
  line of the run (as in LANGUAGE.md's example).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from ablang import ast
from ablang.parse import parse

INDENT = "    "


@dataclass
class _Line:
    """One output line and the source lines it stands for."""

    depth: int
    code: str  # "" for a line that is only a comment
    line: int  # source line
    role: str = "stmt"  # "stmt", "open" (a block header), "close" (its brace), "comment"
    comment: str | None = None


def format_text(text: str, path: str = "<study>") -> str:
    """The canonical text of a study. Raises ``AblangErrors`` when it does not parse."""
    return format_study(parse(text, path))


def format_study(study: ast.Study) -> str:
    lines = _code_lines(study)
    _place_comments(lines, study.comments)
    return _render(lines)


def _code_lines(study: ast.Study) -> list[_Line]:
    out = []
    for stmt in study.statements:
        if isinstance(stmt, ast.VariantBlock):
            out.append(_Line(0, stmt.code(), stmt.span.line, "open"))
            out += [_Line(1, iv.code(), iv.span.line) for iv in stmt.body]
            assert stmt.span.end_line is not None  # the parser gives every block its end
            out.append(_Line(0, "}", stmt.span.end_line, "close"))
        else:
            out.append(_Line(0, stmt.code(), stmt.span.line))
    return out


def _place_comments(lines: list[_Line], comments: tuple[ast.Comment, ...]) -> None:
    """A comment on a statement's line trails it; any other gets a line of its own, indented
    like the block it stands in."""
    by_line = {ln.line: ln for ln in lines}
    blocks = _block_ranges(lines)
    for c in comments:
        owner = by_line.get(c.span.line)
        if owner is not None:
            owner.comment = c.text
            continue
        depth = int(any(open_ < c.span.line < close for open_, close in blocks))
        lines.append(_Line(depth, "", c.span.line, "comment", c.text))
    lines.sort(key=lambda ln: ln.line)


def _block_ranges(lines: list[_Line]) -> list[tuple[int, int]]:
    opens = [ln.line for ln in lines if ln.role == "open"]
    closes = [ln.line for ln in lines if ln.role == "close"]
    return list(zip(opens, closes))


def _render(lines: list[_Line]) -> str:
    # Blank lines: one where the source had any, except just inside a block's braces.
    rows: list[_Line | None] = []
    for prev, ln in zip([None, *lines], lines):
        if (
            prev is not None
            and ln.line - prev.line > 1
            and prev.role != "open"
            and ln.role != "close"
        ):
            rows.append(None)
        rows.append(ln)
    out: list[str] = []
    # A run of consecutive statements with trailing comments aligns them in one column.
    for trailing, group in groupby(
        rows, key=lambda r: r is not None and bool(r.code) and r.comment is not None
    ):
        run = list(group)
        if trailing:
            stmts = [r for r in run if r is not None]  # all of them: the key says so
            texts = [INDENT * r.depth + r.code for r in stmts]
            column = max(map(len, texts)) + 2
            out += [t.ljust(column) + (r.comment or "") for t, r in zip(texts, stmts)]
        else:
            out += [
                "" if r is None else INDENT * r.depth + (r.code or r.comment or "") for r in run
            ]
    return "\n".join(out) + "\n" if out else ""
