"""The Pygments lexer: registered, lossless, never an error token, the right token kinds."""

from __future__ import annotations

import pytest
from abl_fixtures import FIXTURES
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String

from ablang.lexer import AblangLexer

SOURCES = sorted(FIXTURES.glob("*/*.abl")) + sorted(
    (FIXTURES.parent.parent / "studies").glob("*.abl")
)


def test_registered_through_the_entry_point():
    assert isinstance(get_lexer_by_name("ablang"), AblangLexer)
    assert isinstance(get_lexer_for_filename("study.abl"), AblangLexer)
    assert "abl" in AblangLexer.aliases


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_lossless_and_no_errors(path):
    text = path.read_text("utf-8")
    tokens = list(AblangLexer(stripnl=False).get_tokens(text))
    assert "".join(v for _, v in tokens) == (text if text.endswith("\n") else text + "\n")
    assert not [v for t, v in tokens if t in Error]


def kinds(text):
    return [(t, v) for t, v in AblangLexer().get_tokens(text) if v.strip()]


def test_token_kinds():
    assert kinds("model tiny  # the built-in one") == [
        (Keyword.Declaration, "model"),
        (Name.Constant, "tiny"),
        (Comment.Single, "# the built-in one"),
    ]
    assert kinds("drop skip[-1] for t in 600..=999") == [
        (Keyword, "drop"),
        (Name.Builtin, "skip"),
        (Punctuation, "["),
        (Number, "-1"),
        (Punctuation, "]"),
        (Keyword.Reserved, "for"),
        (Keyword.Reserved, "t"),
        (Keyword.Reserved, "in"),
        (Number, "600"),
        (Operator, "..="),
        (Number, "999"),
    ]
    assert (String.Double, '"build/fast.py"') in kinds('emit sampler "build/fast.py" from late')
    assert (Number, "+10%") in kinds("search speedup where fid <= +10% over drop of mid")
    assert (Operator, "<=") in kinds("search speedup where fid <= +10% over drop of mid")
    assert (Keyword.Reserved, "validate") in kinds(
        "search speedup where fid <= +10% over drop of mid validate 4 samples seed 9"
    )


def test_keywords_only_as_whole_words():
    assert kinds("variant dropped_skip {") == [
        (Keyword.Declaration, "variant"),
        (Name, "dropped_skip"),
        (Punctuation, "{"),
    ]


def test_sides_and_cache_schedules():
    assert kinds("cache dec[5] every 2 growing by 1 at t 900 extrapolated on uncond") == [
        (Keyword, "cache"),
        (Name.Builtin, "dec"),
        (Punctuation, "["),
        (Number, "5"),
        (Punctuation, "]"),
        (Keyword.Reserved, "every"),
        (Number, "2"),
        (Keyword.Reserved, "growing"),
        (Keyword.Reserved, "by"),
        (Number, "1"),
        (Keyword.Reserved, "at"),
        (Keyword.Reserved, "t"),
        (Number, "900"),
        (Keyword.Reserved, "extrapolated"),
        (Keyword.Reserved, "on"),
        (Name.Constant, "uncond"),
    ]
