"""The resolver's diagnostics collector: every error of a study, collected, then raised at once."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from ablang.errors import AblangError, AblangErrors, Note, Span


class Diagnostics:
    """Collects ``AblangError``s; ``raise_errors`` raises them sorted by position."""

    def __init__(self) -> None:
        self.errors: list[AblangError] = []

    def error(
        self,
        message: str,
        span: Span | None,
        code: str,
        hint: str | None = None,
        notes: Sequence[Note] = (),
    ) -> None:
        self.errors.append(AblangError(message, span, hint=hint, code=code, notes=tuple(notes)))

    def once(self, note: str) -> Once:
        """A register of things that may occur once; see ``Once``."""
        return Once(self, note)

    def raise_errors(self, path: str) -> None:
        """Raise ``AblangErrors`` with every error, sorted by position, if there is any."""
        if not self.errors:
            return
        for e in self.errors:
            e.path = e.path or path
        raise AblangErrors(
            sorted(self.errors, key=lambda e: (e.span.line, e.span.col) if e.span else (0, 0))
        )


class Once:
    """Keys that may occur once (a setting, a metric, a variant name, an emit path): a second
    occurrence is an error whose note, ``note`` (``"first set here"``), points at the first."""

    def __init__(self, diagnostics: Diagnostics, note: str) -> None:
        self.diagnostics = diagnostics
        self.note = note
        self.first: dict[Hashable, Span | None] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self.first

    def add(
        self,
        key: Hashable,
        span: Span | None,
        message: str,
        code: str,
        hint: str | None = None,
    ) -> bool:
        """Record ``key`` at ``span``; True the first time, else report ``message`` and False."""
        if key in self.first:
            first = self.first[key]
            notes = [Note(self.note, first)] if first is not None else []
            self.diagnostics.error(message, span, code, hint=hint, notes=notes)
            return False
        self.first[key] = span
        return True
