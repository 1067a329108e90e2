"""A Pygments lexer for ablang studies: highlighting in error messages (rich), docs and editors.

Registered as the ``pygments.lexers`` entry point ``ablang``, so ``pygmentize -l ablang`` and
Sphinx/MkDocs code blocks marked ``ablang`` or ``abl`` find it. It follows the grammar's tokens
(grammar/ablang.lark) but never fails: text it does not know is plain text, not an error.
"""

from __future__ import annotations

from typing import ClassVar

from pygments.lexer import RegexLexer, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

STATEMENTS = (
    "study", "model", "sampler", "seed", "samples", "prompts", "metrics", "device", "bands", "ray",
    "variant", "sweep", "search", "emit",
)  # fmt: skip
OPS = ("drop", "zero", "scale", "cache")
CLAUSES = (
    "for", "in", "by", "every", "where", "and", "over", "of", "from", "config",
    "steps", "eta", "guidance", "t", "step", "cut", "floor", "split", "validate", "on",
    "growing", "at", "extrapolated",
)  # fmt: skip
COMPONENTS = ("enc", "dec", "skip", "level", "mid")
CONSTANTS = (
    "tiny", "glide", "adm", "diffusers", "ddpm", "ddim", "pipeline", "cpu", "cuda", "auto",
    "mse", "psnr", "ssim", "fid", "kid", "accuracy", "flops", "time", "speedup",
    "composition", "detail", "identity", "cond", "uncond", "both",
)  # fmt: skip

_WORD_END = r"(?![A-Za-z0-9_\-])"


class AblangLexer(RegexLexer):
    """Lexer for ablang ablation studies (``.abl``)."""

    name = "ablang"
    aliases: ClassVar[list[str]] = ["ablang", "abl"]
    filenames: ClassVar[list[str]] = ["*.abl"]
    mimetypes: ClassVar[list[str]] = ["text/x-ablang"]

    tokens: ClassVar[dict] = {
        "root": [
            (r"[ \t\f]+", Whitespace),
            (r"\n", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r'"[^"\n]*"', String.Double),
            (r'"[^"\n]*', String.Double),  # unterminated: still a string to the eye
            (
                words(STATEMENTS, prefix=r"(?<![A-Za-z0-9_\-])", suffix=_WORD_END),
                Keyword.Declaration,
            ),
            (words(OPS, prefix=r"(?<![A-Za-z0-9_\-])", suffix=_WORD_END), Keyword),
            (words(CLAUSES, prefix=r"(?<![A-Za-z0-9_\-])", suffix=_WORD_END), Keyword.Reserved),
            (words(COMPONENTS, prefix=r"(?<![A-Za-z0-9_\-])", suffix=_WORD_END), Name.Builtin),
            (words(CONSTANTS, prefix=r"(?<![A-Za-z0-9_\-])", suffix=_WORD_END), Name.Constant),
            (r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?%?", Number),
            (r"\.\.=?|>=|<=|[<>*]", Operator),
            (r"[\[\]{},]", Punctuation),
            (r"[A-Za-z_][A-Za-z0-9_\-]*", Name),
            (r".", Text),
        ]
    }
