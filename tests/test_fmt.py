"""fmt: the canonical layout, comments kept, idempotent, meaning unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from abl_fixtures import FIXTURES, cases, tiny_table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablang.cli import main
from ablang.errors import AblangErrors
from ablang.fmt import format_text
from ablang.parse import parse
from ablang.resolve import resolve

STUDIES = Path(__file__).parent.parent / "studies"
ALL_STUDIES = (
    cases("plan")
    + cases("check")
    + sorted((FIXTURES / "fmt").glob("*.abl"))
    + sorted(STUDIES.glob("*.abl"))
)


@pytest.mark.parametrize("abl", sorted((FIXTURES / "fmt").glob("*.abl")), ids=lambda p: p.stem)
def test_fmt_fixture(abl):
    text = abl.read_bytes().decode("utf-8")
    assert format_text(text) == abl.with_suffix(".out").read_text("utf-8")


def test_language_example_is_already_canonical():
    text = (STUDIES / "skip_phases.abl").read_text("utf-8")
    assert format_text(text) == text


def parses(path: Path) -> bool:
    try:
        parse(path.read_text("utf-8"))
    except AblangErrors:
        return False
    return True


@pytest.mark.parametrize("abl", [p for p in ALL_STUDIES if parses(p)], ids=lambda p: p.stem)
def test_idempotent_and_same_tree(abl):
    text = abl.read_text("utf-8")
    once = format_text(text)
    assert format_text(once) == once
    assert parse(once) == parse(text)


@pytest.mark.parametrize("abl", cases("plan"), ids=lambda p: p.stem)
def test_formatted_study_resolves_to_the_same_plan(abl):
    text = abl.read_text("utf-8")
    assert resolve(parse(format_text(text)), tiny_table()) == resolve(parse(text), tiny_table())


def test_blank_lines_collapse_and_blocks_lose_their_edges():
    text = "model tiny\n\n\n\nvariant v {\n\n    zero mid\n\n}\n\n\n"
    assert format_text(text) == "model tiny\n\nvariant v {\n    zero mid\n}\n"


def test_trailing_comments_of_a_run_share_a_column():
    text = "model tiny # a\nseed 0 # b\nsamples 16 # c\n\nseed 1 # d\n"
    assert format_text(text) == "model tiny  # a\nseed 0      # b\nsamples 16  # c\n\nseed 1  # d\n"


def test_syntax_error_is_raised_not_formatted():
    with pytest.raises(AblangErrors):
        format_text("model tiny\ndrop skip 3\n")


# ---- property: generated studies ---------------------------------------------------------------

# A study is generated as lines of tokens; any run of blanks may go between two tokens, and at
# least one between two words (`by 0.5`, not `by0.5`).
NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in {"t", "step", "by", "for", "in", "every", "validate"}
)
INTS = st.integers(min_value=-20, max_value=2000).map(str)
NUMS = st.one_of(
    INTS, st.floats(min_value=-10, max_value=10, allow_nan=False).map(lambda f: f"{f:.3f}")
)
STRINGS = st.from_regex(r'[^"\n\r\x00-\x1f]{0,12}', fullmatch=True).map(lambda s: f'"{s}"')
COMMENT = st.from_regex(r"#[^\n\r\x00-\x1f]{0,20}", fullmatch=True)
BLANKS = st.sampled_from(["", " ", "  ", "\t", " \t "])


def joined(*parts):
    return st.tuples(*parts).map(
        lambda xs: [t for x in xs for t in (x if isinstance(x, list) else [x])]
    )


def sep_list(item, n=3):
    return st.lists(item, min_size=1, max_size=n).map(
        lambda xs: [t for i, x in enumerate(xs) for t in ([","] if i else []) + x]
    )


index = st.one_of(
    INTS.map(lambda i: [i]),
    st.tuples(INTS, st.sampled_from(["..", "..="]), INTS).map(list),
)
selector = st.one_of(
    st.just(["mid"]),
    st.tuples(
        st.sampled_from(["enc", "dec", "skip", "level", "skp"]),
        st.one_of(st.just([["*"]]), st.lists(index, min_size=1, max_size=3)),
    ).map(
        lambda kv: (
            [kv[0], "["]
            + [t for i, x in enumerate(kv[1]) for t in ([","] if i else []) + x]
            + ["]"]
        )
    ),
)
targets = sep_list(selector)
window = st.one_of(
    st.just([]),
    joined(
        st.just("for"),
        st.sampled_from(["t", "step"]),
        st.just("in"),
        INTS,
        st.sampled_from(["..", "..="]),
        INTS,
        st.one_of(st.just([]), joined(st.just("by"), INTS)),
    ),
)
intervention = st.one_of(
    joined(st.sampled_from(["drop", "zero"]), targets, window),
    joined(st.just("scale"), targets, st.just("by"), NUMS, window),
    joined(st.just("cache"), targets, st.just("every"), INTS, window),
)
sampler_opt = st.one_of(
    joined(st.just("steps"), INTS), joined(st.just("eta"), NUMS), joined(st.just("guidance"), NUMS)
)
constraint = joined(
    NAMES, st.sampled_from([">=", "<=", ">", "<"]), NUMS, st.sampled_from([[], ["%"]])
)
search_op = st.one_of(
    st.just(["drop"]),
    st.just(["zero"]),
    st.just(["cache"]),
    joined(st.just("cache"), st.just("every"), INTS),
    joined(st.just("scale"), st.just("by"), NUMS),
)
simple_statement = st.one_of(
    joined(st.just("study"), STRINGS),
    joined(
        st.just("model"),
        NAMES,
        st.one_of(
            st.just([]), joined(STRINGS, st.one_of(st.just([]), joined(st.just("config"), STRINGS)))
        ),
    ),
    joined(
        st.just("sampler"),
        NAMES,
        st.lists(sampler_opt, max_size=3).map(lambda xs: [t for x in xs for t in x]),
    ),
    joined(st.sampled_from(["seed", "samples"]), INTS),
    joined(st.just("noise"), st.just("per"), NAMES),
    joined(st.just("prompts"), sep_list(STRINGS.map(lambda s: [s]))),
    joined(st.just("metrics"), sep_list(NAMES.map(lambda s: [s]))),
    joined(st.just("device"), NAMES),
    intervention,
    joined(st.just("sweep"), intervention),
    joined(
        st.just("search"),
        st.one_of(st.just([]), NAMES.map(lambda s: [s])),
        NAMES,
        st.just("where"),
        st.lists(constraint, min_size=1, max_size=3).map(
            lambda cs: [t for i, c in enumerate(cs) for t in (["and"] if i else []) + c]
        ),
        st.just("over"),
        sep_list(search_op),
        st.just("of"),
        targets,
        window,
        st.one_of(
            st.just([]),
            joined(
                st.just("validate"),
                INTS,
                st.just("samples"),
                st.one_of(st.just([]), joined(st.just("seed"), INTS)),
            ),
        ),
    ),
    joined(st.just("emit"), st.just("sampler"), STRINGS, st.just("from"), NAMES),
)


def is_word(tok: str) -> bool:
    return tok[0].isalnum() or tok[0] in '_+-"' or tok[-1].isalnum()


@st.composite
def line_of(draw, tokens):
    out = draw(BLANKS)
    for i, tok in enumerate(tokens):
        gap = draw(BLANKS) if i else ""
        if i and not gap and is_word(tokens[i - 1]) and is_word(tok):
            gap = " "
        out += gap + tok
    if draw(st.booleans()):
        out += draw(BLANKS) + " " + draw(COMMENT)
    return out


@st.composite
def studies(draw):
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["statement", "statement", "comment", "blank", "variant"]))
        if kind == "statement":
            lines.append(draw(line_of(draw(simple_statement))))
        elif kind == "comment":
            lines.append(draw(BLANKS) + draw(COMMENT))
        elif kind == "blank":
            lines.append(draw(BLANKS))
        else:
            lines.append(draw(line_of(["variant", draw(NAMES), "{"])))
            for _ in range(draw(st.integers(0, 3))):
                lines.append(draw(st.one_of(line_of(draw(intervention)), COMMENT, BLANKS)))
            lines.append(draw(line_of(["}"])))
    return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(studies())
def test_property_fmt_keeps_the_tree_and_is_idempotent(text):
    study = parse(text)
    out = format_text(text)
    assert parse(out) == study
    assert format_text(out) == out


# ---- the command -----------------------------------------------------------------------------


def test_fmt_command(tmp_path, capsys):
    messy = tmp_path / "messy.abl"
    messy.write_text("model   tiny\ndrop skip[3]   for t in 0 .. 10\n")
    clean = tmp_path / "clean.abl"
    clean.write_text("model tiny\n")
    assert main(["fmt", "--check", str(messy), str(clean)]) == 1
    assert capsys.readouterr().out == f"would reformat {messy}\n"
    assert messy.read_text() == "model   tiny\ndrop skip[3]   for t in 0 .. 10\n"
    assert main(["fmt", str(messy), str(clean)]) == 0
    assert messy.read_text() == "model tiny\ndrop skip[3] for t in 0..10\n"
    assert main(["fmt", "--check", str(messy)]) == 0


def test_fmt_command_leaves_broken_files_alone(tmp_path, capsys):
    broken = tmp_path / "broken.abl"
    broken.write_text("model   tiny\ndrop skip 3\n")
    assert main(["fmt", str(broken)]) == 2
    assert broken.read_text() == "model   tiny\ndrop skip 3\n"
    assert (
        f"{broken}:2:11: error: component indices go in square brackets" in capsys.readouterr().err
    )
    assert main(["fmt", str(tmp_path / "missing.abl")]) == 2
