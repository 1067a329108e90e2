"""AblangErrors (every error of one file) is an AblangError."""

from ablang.errors import AblangError, AblangErrors, Span, as_list


def test_ablang_errors_is_an_ablang_error():
    a = AblangError("first", Span(2, 3), code="x", hint="h")
    b = AblangError("second", Span(4, 1), code="y")
    both = AblangErrors([a, b])
    assert isinstance(both, AblangError)
    assert (both.message, both.span, both.code, both.hint) == ("first", Span(2, 3), "x", "h")
    assert as_list(both) == [a, b] and as_list(a) == [a]
    assert str(both) == f"{a}\n{b}"
