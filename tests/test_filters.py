"""The filter language parser (labtrack.core.filters): a grammar table of valid expressions and their
AST, and a table of invalid ones with the column a user is pointed at. Pure: no store involved."""

from __future__ import annotations

import pytest

from labtrack import InvalidInput
from labtrack.core.filters import And, Compare, Field, InList, IsNull, Like, Not, Or, parse_field, parse_filter


def P(key: str) -> Field:
    return Field("params", key)


def M(key: str, aggregate: str = "last") -> Field:
    return Field("metrics", key, aggregate)


def T(key: str) -> Field:
    return Field("tags", key)


def A(name: str) -> Field:
    return Field("attributes", name)


def E(name: str) -> Field:
    return Field("env", name)


a1, b2, c3 = Compare(P("a"), "=", 1), Compare(P("b"), "=", 2), Compare(P("c"), "=", 3)

VALID = [
    # fields and aggregates
    ("metrics.acc > 0.9", Compare(M("acc"), ">", 0.9)),
    ("metrics.acc.last > 0.9", Compare(M("acc"), ">", 0.9)),
    ("metrics.loss.min < 0.2", Compare(M("loss", "min"), "<", 0.2)),
    ("metrics.loss.max <= 1", Compare(M("loss", "max"), "<=", 1)),
    ("metrics.loss.count >= 3", Compare(M("loss", "count"), ">=", 3)),
    ("metrics.`val.min` > 1", Compare(M("val.min"), ">", 1)),
    ("metrics.`val.min`.max > 1", Compare(M("val.min", "max"), ">", 1)),
    ("metrics.val.loss.min < 1", Compare(M("val.loss", "min"), "<", 1)),
    ("params.`batch.size` = 32", Compare(P("batch.size"), "=", 32)),
    ("params.batch.size = 32", Compare(P("batch.size"), "=", 32)),
    ("tags.`my tag` = 'x'", Compare(T("my tag"), "=", "x")),
    ("params.in = 1", Compare(P("in"), "=", 1)),
    ("params.lr-decay = 1", Compare(P("lr-decay"), "=", 1)),
    ("Metrics.Acc > 1", Compare(M("Acc"), ">", 1)),
    ("attributes.status = 'FINISHED'", Compare(A("status"), "=", "FINISHED")),
    ("status = 'FINISHED'", Compare(A("status"), "=", "FINISHED")),
    ("start_time > '2026-11-01'", Compare(A("start_time"), ">", "2026-11-01")),
    ("attributes.env_fingerprint IS NULL", IsNull(A("env_fingerprint"))),
    ("env.gpu.name LIKE '%A100%'", Like(E("gpu.name"), "%A100%")),
    ("env.packages.torch >= '2.1'", Compare(E("packages.torch"), ">=", "2.1")),
    ("env.python >= '3.10'", Compare(E("python"), ">=", "3.10")),
    ("env.fingerprint = 'abc'", Compare(E("fingerprint"), "=", "abc")),
    ("env.frameworks.torch.cuda = '12.1'", Compare(E("frameworks.torch.cuda"), "=", "12.1")),
    # operators
    ("params.lr = 0.01", Compare(P("lr"), "=", 0.01)),
    ("params.lr == 0.01", Compare(P("lr"), "=", 0.01)),
    ("params.lr != 0.01", Compare(P("lr"), "!=", 0.01)),
    ("params.lr <> 0.01", Compare(P("lr"), "!=", 0.01)),
    ("params.lr < 1", Compare(P("lr"), "<", 1)),
    ("params.lr > 1", Compare(P("lr"), ">", 1)),
    ("metrics.acc>0.9", Compare(M("acc"), ">", 0.9)),
    ("params.opt IN ('adam', 'sgd')", InList(P("opt"), ("adam", "sgd"))),
    ("params.x IN (1)", InList(P("x"), (1,))),
    ("params.lr not in (0.1, 1e-2, -3)", InList(P("lr"), (0.1, 0.01, -3), negated=True)),
    ("params.opt IN ('a',\"b\",true)", InList(P("opt"), ("a", "b", True))),
    ("tags.t LIKE 'a_%'", Like(T("t"), "a_%")),
    ("tags.t NOT LIKE 'a%'", Like(T("t"), "a%", negated=True)),
    ("env.gpu.name ILIKE '%a100%'", Like(E("gpu.name"), "%a100%", case_insensitive=True)),
    ("env.gpu.name not ilike '%a100%'", Like(E("gpu.name"), "%a100%", case_insensitive=True, negated=True)),
    ("tags.note IS NULL", IsNull(T("note"))),
    ("tags.note is not null", IsNull(T("note"), negated=True)),
    # numbers
    ("params.x = -1", Compare(P("x"), "=", -1)),
    ("params.x=-1", Compare(P("x"), "=", -1)),
    ("params.x = +5", Compare(P("x"), "=", 5)),
    ("params.x = .5", Compare(P("x"), "=", 0.5)),
    ("params.x = 2E3", Compare(P("x"), "=", 2000.0)),
    ("params.x = 1e-5", Compare(P("x"), "=", 1e-5)),
    ("params.x > -2.5e+3", Compare(P("x"), ">", -2500.0)),
    ("params.x = 10.", Compare(P("x"), "=", 10.0)),
    # booleans and strings
    ("params.flag = true", Compare(P("flag"), "=", True)),
    ("params.flag = FALSE", Compare(P("flag"), "=", False)),
    ("tags.team = 'cv'", Compare(T("team"), "=", "cv")),
    ('tags.team = "cv"', Compare(T("team"), "=", "cv")),
    ("tags.q = ''", Compare(T("q"), "=", "")),
    ("tags.q = 'it''s'", Compare(T("q"), "=", "it's")),
    ("tags.q = 'it\\'s'", Compare(T("q"), "=", "it's")),
    ('tags.q = "say ""hi"""', Compare(T("q"), "=", 'say "hi"')),
    ('tags.q = "it\'s"', Compare(T("q"), "=", "it's")),
    ("tags.p = 'C:\\\\temp'", Compare(T("p"), "=", "C:\\temp")),
    ("tags.q = '''; DROP TABLE runs;--'", Compare(T("q"), "=", "'; DROP TABLE runs;--")),
    ("tags.q = 'a and b or not c'", Compare(T("q"), "=", "a and b or not c")),
    ("tags.q = '‘cv’ ünïcødé'", Compare(T("q"), "=", "‘cv’ ünïcødé")),
    ("tags.q = '1'", Compare(T("q"), "=", "1")),
    # boolean structure and precedence: not > and > or
    ("params.a = 1 and params.b = 2 and params.c = 3", And((a1, b2, c3))),
    ("params.a = 1 and params.b = 2 or params.c = 3", Or((And((a1, b2)), c3))),
    ("params.a = 1 or params.b = 2 and params.c = 3", Or((a1, And((b2, c3))))),
    ("params.a = 1 and (params.b = 2 or params.c = 3)", And((a1, Or((b2, c3))))),
    ("(params.a = 1 or params.b = 2) and params.c = 3", And((Or((a1, b2)), c3))),
    ("not params.a = 1 and params.b = 2", And((Not(a1), b2))),
    ("NOT (params.a = 1 OR params.b = 2)", Not(Or((a1, b2)))),
    ("not not params.a = 1", Not(Not(a1))),
    ("((params.a = 1))", a1),
    ("params.a = 1 or params.b = 2 or params.c = 3", Or((a1, b2, c3))),
    (
        "metrics.acc > 0.9 and (params.lr = 0.01 or params.lr = 0.1) and tags.team = 'cv'",
        And((Compare(M("acc"), ">", 0.9),
             Or((Compare(P("lr"), "=", 0.01), Compare(P("lr"), "=", 0.1))),
             Compare(T("team"), "=", "cv"))),
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[t for t, _ in VALID])
def test_valid_expression_parses_to_the_expected_tree(text: str, expected: object) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "params.a = 1 AND params.b IS NOT NULL OR NOT params.c IN (3) AND params.d LIKE 'x' AND params.e ILIKE 'y'",
        "params.a = 1 AnD params.b iS nOt NuLl Or NoT params.c In (3) aNd params.d lIkE 'x' AND params.e IlIkE 'y'",
        "params.a = 1 and params.b is not null or not params.c in (3) and params.d like 'x' and params.e ilike 'y'",
    ],
)
def test_keywords_are_case_insensitive(text: str) -> None:
    assert parse_filter(text) == Or((
        And((a1, IsNull(P("b"), negated=True))),
        And((Not(InList(P("c"), (3,))), Like(P("d"), "x"), Like(P("e"), "y", case_insensitive=True))),
    ))


def test_values_keep_their_case_and_field_keys_keep_theirs() -> None:
    assert parse_filter("PARAMS.Opt = 'AdamW'") == Compare(P("Opt"), "=", "AdamW")
    assert parse_filter("params.flag = True") == Compare(P("flag"), "=", True)


def test_a_quoted_aggregate_name_is_a_key_not_an_aggregate() -> None:
    assert parse_filter("metrics.val.`min` > 1") == Compare(M("val.min"), ">", 1)


def test_integers_stay_integers_and_decimals_become_floats() -> None:
    int_value = parse_filter("params.x = 3").value  # type: ignore[union-attr]
    float_value = parse_filter("params.x = 3.0").value  # type: ignore[union-attr]
    assert type(int_value) is int and type(float_value) is float


INVALID = [
    # (expression, 1-based column of the error, words the message must contain)
    ("", 1, "empty filter"),
    ("   ", 1, "empty filter"),
    ("metrics.acc > and params.lr = 1", 15, "expected a value"),
    ("metrics.acc >", 14, "expected a value"),
    ("metrics.acc 0.9", 13, "expected an operator"),
    ("metrics.acc", 12, "expected an operator"),
    ("metrics.acc = 1 params.lr = 2", 17, "expected 'and', 'or' or the end"),
    ("(metrics.acc > 1", 17, "expected ')'"),
    ("metrics.acc > 1)", 16, "expected 'and', 'or' or the end"),
    ("foo.bar = 1", 1, "unknown field"),
    ("params.a = 1 and foo.b = 2", 18, "unknown field"),
    ("params = 1", 1, "params needs a key"),
    ("attributes.nope = 1", 1, "unknown attribute"),
    ("params. = 1", 9, "expected a name after '.'"),
    ("tags.team = 'cv", 13, "unterminated string"),
    ("tags.x = 'a\\'", 10, "unterminated string"),
    ("params.`x = 1", 8, "unterminated backtick"),
    ("params.`` = 1", 8, "empty backtick"),
    ("tags.team = ‘cv’", 13, "unexpected character"),
    ("tags.team = 'cv'; DROP TABLE runs;--", 17, "unexpected character ';'"),
    ("tags.team = 'x' OR 1=1", 20, "expected a field"),
    ("tags.team = '' OR '1'='1'", 19, "expected a field"),
    ("params.x = 1 && params.y = 2", 14, "unexpected character '&'"),
    ("params.x IN 1", 13, "'(' after IN"),
    ("params.x IN (1, 2", 18, "')' closing the IN list"),
    ("params.x IN ()", 14, "expected a value"),
    ("params.x IN (1,)", 16, "expected a value"),
    ("params.x LIKE 5", 15, "LIKE needs a 'quoted pattern'"),
    ("params.x IS 5", 13, "expected NULL after IS"),
    ("params.x IS NOT 5", 17, "expected NULL after IS"),
    ("params.x = NULL", 12, "IS NULL"),
    ("params.x NOT = 1", 14, "expected IN, LIKE or ILIKE after NOT"),
    ("and params.x = 1", 1, "expected a field"),
    ("params.x = 1 and", 17, "expected a field"),
    ("params.x = 1 or or params.y = 2", 17, "expected a field"),
    ("params.x = 'a' 'b'", 16, "expected 'and', 'or' or the end"),
    ("params.x = sgd", 12, "expected a value"),
    ("metrics.acc > 0.9.1", 15, "unexpected character"),
    ("not", 4, "expected a field"),
    ("()", 2, "expected a field"),
    ("params.x = 1 and (params.y = 2 or params.z = 3", 47, "expected ')'"),
    ("tags.t = 'x' and tags.u = \x00", 27, "unexpected character"),
]


@pytest.mark.parametrize(("text", "column", "words"), INVALID, ids=[repr(t) for t, _, _ in INVALID])
def test_invalid_expression_is_rejected_with_a_caret_under_its_column(text: str, column: int, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filter(text)
    message = str(caught.value)
    first, *_, source_line, caret_line = message.split("\n")
    assert f"column {column}:" in first
    assert words in first
    assert caught.value.field == "filter"
    # The source is echoed and the caret sits under the offending column (both lines share their indent).
    indent = len(source_line) - len(source_line.lstrip(" ")) if text.strip() else 2
    assert source_line == " " * indent + text
    assert caret_line.strip() == "^"
    assert caret_line.index("^") - indent == column - 1


@pytest.mark.parametrize("value", [None, 42, b"metrics.acc > 1", ["metrics.acc > 1"]])
def test_a_filter_that_is_not_a_string_is_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInput, match="filter must be a string"):
        parse_filter(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.acc", M("acc")),
        ("metrics.loss.min", M("loss", "min")),
        ("params.lr", P("lr")),
        ("params.`batch.size`", P("batch.size")),
        ("tags.team", T("team")),
        ("status", A("status")),
        ("attributes.start_time", A("start_time")),
    ],
)
def test_parse_field_reads_one_column_name(text: str, expected: Field) -> None:
    assert parse_field(text) == expected


@pytest.mark.parametrize(("text", "column"), [("params.lr desc", 11), ("bogus.x", 1), ("params.", 8)])
def test_parse_field_rejects_anything_but_one_field_with_a_caret(text: str, column: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_field(text)
    assert f"column {column}:" in str(caught.value)
    assert str(caught.value).split("\n")[-1].index("^") - 2 == column - 1
