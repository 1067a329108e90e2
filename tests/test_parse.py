"""parse: every statement, selector form and time form; spans; syntax errors in plain words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ablang import ast
from ablang.errors import AblangErrors, Span
from ablang.parse import decode, grammar_text, parse, parse_bytes, parse_file
from ablang.syntax_errors import MISTAKES, STATEMENTS


def one(text: str):
    (stmt,) = parse(text).statements
    return stmt


def num(text: str) -> ast.Number:
    return ast.Number(text, int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text))


# ---- statements ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ('study "Skip phases"', ast.Title(ast.Str("Skip phases"))),
        ("model tiny", ast.ModelStmt(ast.Name("tiny"))),
        (
            'model glide "models/base.pt"',
            ast.ModelStmt(ast.Name("glide"), ast.Str("models/base.pt")),
        ),
        (
            'model adm "a.pt" config "a.json"',
            ast.ModelStmt(ast.Name("adm"), ast.Str("a.pt"), ast.Str("a.json")),
        ),
        ('model diffusers "unet/"', ast.ModelStmt(ast.Name("diffusers"), ast.Str("unet/"))),
        (
            "sampler ddpm steps 100 guidance 3.0",
            ast.SamplerStmt(
                ast.Name("ddpm"),
                (ast.SamplerOption("steps", num("100")), ast.SamplerOption("guidance", num("3.0"))),
            ),
        ),
        (
            "sampler ddim steps 50 eta 0.0 guidance 2",
            ast.SamplerStmt(
                ast.Name("ddim"),
                (
                    ast.SamplerOption("steps", num("50")),
                    ast.SamplerOption("eta", num("0.0")),
                    ast.SamplerOption("guidance", num("2")),
                ),
            ),
        ),
        ("seed 0", ast.SeedStmt(num("0"))),
        ("samples 16", ast.SamplesStmt(num("16"))),
        ('prompts "3", "7"', ast.PromptsStmt((ast.Str("3"), ast.Str("7")))),
        (
            "metrics mse, ssim, fid",
            ast.MetricsStmt((ast.Name("mse"), ast.Name("ssim"), ast.Name("fid"))),
        ),
        ("device cuda", ast.DeviceStmt(ast.Name("cuda"))),
        (
            'emit sampler "build/fast.py" from late',
            ast.EmitStmt(ast.Str("build/fast.py"), ast.Name("late")),
        ),
    ],
)
def test_settings_and_emit(text, expected):
    assert one(text) == expected


def skip(*indices) -> ast.Selector:
    return ast.Selector(ast.Name("skip"), tuple(indices))


@pytest.mark.parametrize(
    "text, op, factor, every",
    [
        ("drop skip[3]", "drop", None, None),
        ("zero skip[3]", "zero", None, None),
        ("scale skip[3] by 0.5", "scale", num("0.5"), None),
        ("scale skip[3] by -1", "scale", num("-1"), None),
        ("cache skip[3] every 2", "cache", None, num("2")),
    ],
)
def test_interventions(text, op, factor, every):
    iv = one(text)
    assert iv == ast.Intervention(op, (skip(ast.IndexAt(num("3"))),), None, factor, every)


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("skip[3]", skip(ast.IndexAt(num("3")))),
        ("skip[-1]", skip(ast.IndexAt(num("-1")))),
        ("skip[2..5]", skip(ast.IndexRange(num("2"), num("5")))),
        ("skip[2..=5]", skip(ast.IndexRange(num("2"), num("5"), True))),
        ("skip[1, 4, 7]", skip(*(ast.IndexAt(num(i)) for i in "147"))),
        ("skip[1, 4..6]", skip(ast.IndexAt(num("1")), ast.IndexRange(num("4"), num("6")))),
        ("skip[*]", skip(ast.IndexAll())),
        ("skip [ 3 ]", skip(ast.IndexAt(num("3")))),
        ("mid", ast.Selector(ast.Name("mid"))),
        ("level[2]", ast.Selector(ast.Name("level"), (ast.IndexAt(num("2")),))),
    ],
)
def test_selector_forms(selector, expected):
    assert one(f"drop {selector}").targets == (expected,)


def test_selector_list():
    assert one("drop enc[0], skip[*], mid").targets == (
        ast.Selector(ast.Name("enc"), (ast.IndexAt(num("0")),)),
        skip(ast.IndexAll()),
        ast.Selector(ast.Name("mid")),
    )


@pytest.mark.parametrize(
    "window, expected",
    [
        ("for t in 600..1000", ast.Window("t", num("600"), num("1000"))),
        ("for t in 600..=999", ast.Window("t", num("600"), num("999"), True)),
        ("for step in 0..10", ast.Window("step", num("0"), num("10"))),
        ("for step in 0..=9", ast.Window("step", num("0"), num("9"), True)),
        ("for t in 0..1000 by 100", ast.Window("t", num("0"), num("1000"), False, num("100"))),
        ("for  t  in  600 .. 1000", ast.Window("t", num("600"), num("1000"))),
        ("", None),
    ],
)
def test_time_forms(window, expected):
    assert one(f"drop mid {window}").window == expected


def test_variant_block():
    block = one(
        "variant late {\n    drop skip[0..3] for t in 0..200\n\n    cache dec[8] every 2\n}"
    )
    assert block.name == ast.Name("late")
    assert [iv.op for iv in block.body] == ["drop", "cache"]
    assert block.span == Span(1, 1, 5, 2)


def test_sweep():
    sweep = one("sweep scale skip[*] by 0.5 for t in 0..1000 by 100")
    assert sweep.intervention.op == "scale"
    assert sweep.intervention.window.by == num("100")


def test_search():
    s = one(
        "search speedup where ssim >= 0.90 and fid <= +10% over drop, cache every 3 of enc[*], mid "
        "for t in 0..1000 by 100"
    )
    assert s.name is None and s.objective == ast.Name("speedup")
    assert s.constraints == (
        ast.Constraint(ast.Name("ssim"), ">=", num("0.90")),
        ast.Constraint(ast.Name("fid"), "<=", num("+10"), percent=True),
    )
    assert s.ops == (ast.SearchOp("drop"), ast.SearchOp("cache", every=num("3")))
    assert [t.code() for t in s.targets] == ["enc[*]", "mid"]
    named = one("search fast speedup where ssim > 0.9 over zero of mid")
    assert named.name == ast.Name("fast") and named.window is None


def test_keywords_are_whole_words():
    # NAME is tried in every lexer state: a variant may be called `drop`, and `dropx` is no `drop`.
    assert one("variant drop {\n    zero mid\n}").name.value == "drop"
    with pytest.raises(AblangErrors) as e:
        parse("dropx skip[3]")
    assert e.value.errors[0].code == "syntax/unknown-statement"


# ---- spans and comments ----------------------------------------------------------------------


def test_spans():
    iv = parse("model tiny\n\ndrop skip[3] for t in 600..1000\n").statements[1]
    assert iv.span == Span(3, 1, 3, 32)
    assert iv.targets[0].span == Span(3, 6, 3, 13)
    assert iv.targets[0].indices[0].span == Span(3, 11, 3, 12)
    assert iv.window.span == Span(3, 14, 3, 32)
    assert iv.window.hi.span == Span(3, 28, 3, 32)


def test_comments_are_kept_with_their_place():
    study = parse("# head\nmodel tiny  # trailing   \n  # indented\n")
    assert study.comments == (
        ast.Comment("# head"),
        ast.Comment("# trailing"),
        ast.Comment("# indented"),
    )
    assert [c.span.line for c in study.comments] == [1, 2, 3]
    assert study.comments[1].span.col == 13


def test_line_endings_bom_and_no_final_newline():
    a = parse("model tiny\nseed 1\n")
    assert parse("\ufeffmodel tiny\r\nseed 1") == a
    assert parse("") == ast.Study(())
    assert parse("# only a comment").statements == ()


def test_equality_ignores_spans():
    assert parse("model tiny\ndrop   skip[3]") == parse("\n\nmodel  tiny\n\n\ndrop skip[3]\n")


def test_parse_file_and_bytes(tmp_path):
    f = tmp_path / "s.abl"
    f.write_bytes(b"model tiny\ndrop skip[3]\n")
    assert parse_file(f) == parse_bytes(f.read_bytes()) == parse("model tiny\ndrop skip[3]")
    assert parse_file(f).path == str(f)


# ---- syntax errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, code, line, col",
    [
        ("model tiny\ndrop skip[3] t in 600..1000", "syntax/missing-for", 2, 14),
        ("variant v {\n    scale mid by 2 t in 0..10\n}", "syntax/missing-for", 2, 20),
        ("drop mid for t in 600-1000", "syntax/dash-range", 1, 22),
        ("sweep drop mid for t in 600 1000 by 100", "syntax/missing-dots", 1, 29),
        ("drop mid for t in [600, 1000)", "syntax/window-notation", 1, 19),
        ("drop mid for t 0..10", "syntax/missing-in", 1, 16),
        ("model tiny\nvariant v {\n    drop mid\n", "syntax/unclosed-block", 2, 1),
        ("model glide models/base.pt", "syntax/missing-quotes", 1, 13),
        ("prompts 3, 7", "syntax/missing-quotes", 1, 9),
        ('study "Skip phases', "syntax/unterminated-string", 1, 7),
        ("model tiny\ndorp skip[3]", "syntax/unknown-statement", 2, 1),
        ("variant v {\n    dorp mid\n}", "syntax/unknown-statement", 2, 5),
        ("variant v {\n    seed 3\n}", "syntax/not-in-block", 2, 5),
        ("seed 0 samples 4", "syntax/two-statements", 1, 8),
        ("drop mid\n}", "syntax/stray-brace", 2, 1),
        ("variant v { drop mid }", "syntax/block-same-line", 1, 13),
        ("scale mid 0.5", "syntax/missing-by", 1, 11),
        ("cache dec[8] 2", "syntax/missing-every", 1, 14),
        ("sampler ddpm 100", "syntax/missing-steps", 1, 14),
        ("drop skip 3", "syntax/index-brackets", 1, 11),
        ("drop skip(3)", "syntax/bad-character", 1, 10),
        ("search speedup where ssim = 0.9 over drop of mid", "syntax/bad-comparison", 1, 27),
        ("seed", "syntax/unexpected", 1, 5),
        ("drop skip[3] for tt in 0..10", "syntax/unexpected", 1, 18),
    ],
)
def test_syntax_errors(text, code, line, col):
    with pytest.raises(AblangErrors) as e:
        parse(text, "s.abl")
    err = e.value.errors[0]
    assert (err.code, err.span.line, err.span.col) == (code, line, col)
    assert err.path == "s.abl"


def test_did_you_mean_for_keywords():
    with pytest.raises(AblangErrors) as e:
        parse("drop skip[3] for tt in 0..10")
    assert e.value.errors[0].hint == "did you mean `t`?"
    with pytest.raises(AblangErrors) as e:
        parse("sampler ddpm stesp 100")
    assert e.value.errors[0].hint == "did you mean `steps`?"


def test_every_broken_line_is_reported():
    text = "sampler ddpm 100\ndrop skip 3\nvariant v {\n    scale mid 0.5\n}\nmetrics mse ssim\n"
    with pytest.raises(AblangErrors) as e:
        parse(text)
    assert [(x.span.line, x.code) for x in e.value.errors] == [
        (1, "syntax/missing-steps"),
        (2, "syntax/index-brackets"),
        (4, "syntax/missing-by"),
        (6, "syntax/unexpected"),
    ]


def test_messages_never_name_grammar_internals():
    texts = [
        c.format(s=s)
        for _, (where, snippets) in MISTAKES.items()
        for s in snippets
        for c in ("{s}",)
    ]
    texts += [
        "drop",
        "variant",
        "emit",
        "search",
        "search speedup",
        "drop mid for",
        "{",
        "[",
        "model tiny tiny",
    ]
    for text in texts:
        with pytest.raises(AblangErrors) as e:
            parse(text)
        for err in e.value.errors:
            words = f"{err.message} {err.hint or ''}"
            assert not re.search(
                r"\b(_NL|\$END|NAME|NUMBER|STRING|LSQB|RSQB|__ANON\w*|[a-z]+_[a-z_]+)\b", words
            ), words
            assert "Traceback" not in words and "Token(" not in words


# ---- bytes that are not a study ---------------------------------------------------------------


def test_not_utf8_points_at_the_byte():
    with pytest.raises(AblangErrors) as e:
        parse_bytes(b"model tiny\ndrop sk\xffip[3]\n", "s.abl")
    (err,) = e.value.errors
    assert (err.code, err.span) == ("encoding", Span(2, 8, 2, 9))
    assert "0xff" in err.message


def test_binary_file():
    with pytest.raises(AblangErrors) as e:
        decode(b"model tiny\nab\0c", "s.abl")
    assert (e.value.errors[0].code, e.value.errors[0].span.line, e.value.errors[0].span.col) == (
        "encoding",
        2,
        3,
    )


def test_control_characters_are_syntax_errors():
    with pytest.raises(AblangErrors) as e:
        parse("model tiny\n\x07")
    assert e.value.errors[0].span == Span(2, 1, 2, 2)


# ---- the grammar file ----------------------------------------------------------------------------


def test_every_grammar_alternative_has_an_example_that_parses():
    """Every rule alternative carries `// example`; the statement examples must parse."""
    lines = grammar_text().splitlines()
    rules = [
        ln
        for ln in lines
        if re.match(r"\s*(\|\s|[a-z_]+:)", ln) and not ln.lstrip().startswith("//")
    ]
    # The search rule is too long for a trailing comment: its examples follow on their own lines.
    missing = [ln for ln in rules if "//" not in ln and not ln.startswith("search:")]
    assert not missing, missing
    parsed = 0
    for ln in lines:
        m = re.search(r"//\s*(.*)$", ln)
        example = m.group(1) if m else ""
        if example.split(" ")[0] in STATEMENTS:
            if example.startswith("variant"):
                example += "\n    drop mid\n}"
            parse(example)
            parsed += 1
    assert parsed >= 30


def test_every_typical_mistake_is_recognised_in_every_context():
    from ablang.syntax_errors import _CONTEXTS

    for label, (where, snippets) in MISTAKES.items():
        for context in _CONTEXTS[where]:
            for snippet in snippets:
                text = context.format(s=snippet)
                with pytest.raises(AblangErrors) as e:
                    parse(text)
                assert e.value.errors[0].code == f"syntax/{label}", text


@pytest.mark.parametrize(
    "text, code",
    [
        ("drop mid for t in 600 - 1000", "syntax/dash-range"),
        ("drop mid for t in (0, 10)", "syntax/window-notation"),
    ],
)
def test_character_level_mistakes(text, code):
    with pytest.raises(AblangErrors) as e:
        parse(text)
    assert e.value.errors[0].code == code


def test_examples_in_the_language_reference_parse():
    doc = (Path(__file__).parent.parent / "docs" / "language.md").read_text("utf-8")
    blocks = re.findall(r"```ablang\n(.*?)```", doc, re.DOTALL)
    assert len(blocks) >= 2
    for block in blocks:
        parse(block)


# ---- sides of guidance and cache schedules -------------------------------------------------------


@pytest.mark.parametrize(
    "text, fields",
    [
        ("drop skip[3] on uncond", {"side": ast.Name("uncond")}),
        (
            "drop skip[3] on cond for t in 0..300",
            {"side": ast.Name("cond"), "window": ast.Window("t", num("0"), num("300"))},
        ),
        ("scale skip[3] by 0.5 on uncond", {"factor": num("0.5"), "side": ast.Name("uncond")}),
        ("cache skip[3] every 3 on uncond", {"every": num("3"), "side": ast.Name("uncond")}),
        ("cache skip[3] every 1 growing by 2", {"every": num("1"), "grow": num("2")}),
        ("cache skip[3] at step 0, 4, 6", {"at": (num("0"), num("4"), num("6"))}),
        (
            "cache skip[3] every 6 extrapolated on uncond",
            {"every": num("6"), "extrapolated": True, "side": ast.Name("uncond")},
        ),
        (
            "cache skip[3] at step 0, 4 extrapolated",
            {"at": (num("0"), num("4")), "extrapolated": True},
        ),
        (
            "cache skip[3] at t 900, 500 on cond for t in 0..1000",
            {
                "at": (num("900"), num("500")),
                "at_var": "t",
                "side": ast.Name("cond"),
                "window": ast.Window("t", num("0"), num("1000")),
            },
        ),
    ],
)
def test_sides_and_cache_schedules(text, fields):
    iv = one(text)
    op = text.split()[0]
    assert iv == ast.Intervention(op, (skip(ast.IndexAt(num("3"))),), **fields)
    assert iv.code() == text
    assert parse(f"sweep {text}").statements[0].intervention == iv


def test_side_after_the_window_says_where_it_goes():
    with pytest.raises(AblangErrors) as e:
        parse("drop skip[3] for t in 0..300 on uncond\n")
    err = e.value.errors[0]
    assert err.code == "syntax/side-after-window" and err.span.col == 30
    assert err.hint == "write `drop skip[3] on uncond for t in 0..300`"


def test_search_ops_on_one_side():
    (stmt,) = parse(
        "search speedup where ssim >= 0.9 over drop on uncond, cache every 3 on cond of mid"
    ).statements
    assert [o.code() for o in stmt.ops] == ["drop on uncond", "cache every 3 on cond"]
    assert stmt.ops[0].side == ast.Name("uncond")
