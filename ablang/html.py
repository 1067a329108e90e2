"""Compact HTML tables for notebooks (``_repr_html_`` of studies, component tables and results).

Plain tables with escaped cells and no styles of their own, so they take the notebook's theme.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

MAX_ROWS = 40  # longer tables show their first rows and say how many more there are


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    title: str | None = None,
    caption: str | None = None,
    right: Sequence[int] = (),
    more: str = "",
) -> str:
    """``<table>`` of ``rows`` under ``header``; columns in ``right`` are right-aligned (numbers).
    Beyond ``MAX_ROWS`` the rest is counted in a last row, followed by ``more`` (where to find
    them)."""
    right_set = set(right)

    def cell(tag: str, j: int, value: object) -> str:
        style = ' style="text-align: right"' if j in right_set else ' style="text-align: left"'
        text = escape(str(value)).replace("\n", "<br>")
        return f"<{tag}{style}>{text}</{tag}>"

    out = []
    if title:
        out.append(f"<p><b>{escape(title)}</b></p>")
    out.append("<table>")
    out.append(
        "<thead><tr>" + "".join(cell("th", j, h) for j, h in enumerate(header)) + "</tr></thead>"
    )
    out.append("<tbody>")
    for row in rows[:MAX_ROWS]:
        out.append("<tr>" + "".join(cell("td", j, v) for j, v in enumerate(row)) + "</tr>")
    if len(rows) > MAX_ROWS:
        rest = f"... {len(rows) - MAX_ROWS} more rows" + (f" ({more})" if more else "")
        out.append(f'<tr><td colspan="{len(header)}"><i>{escape(rest)}</i></td></tr>')
    out.append("</tbody></table>")
    if caption:
        out.append(f"<p><small>{escape(caption)}</small></p>")
    return "\n".join(out)
