"""Every user string the CLI prints is inert: rich markup is shown as typed, and control characters (ESC,
OSC, C1 controls) and bidi/invisible format characters (U+202E ...) are shown as visible escapes — in
tables, details, diffs and in ``--json`` (as JSON escapes). A name or tag written to a shared store must
not restyle, relink or rewrite the reader's terminal."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

import labtrack as lt
from labtrack.cli.main import main

MARKUP = "[link=https://evil.example]click me[/link] [bold red]ALERT[/bold red]"
ESCAPES = "\x1b[31mred\x1b[0m \x1b]8;;https://evil.example\x07link\x1b]8;;\x07 \x9b2J \r\x08\x07"
BIDI = "safe\u202etxt.exe \u2066iso\u2069 zero\u200bwidth \ufeffbom"
RAW = ("\x1b", "\x07", "\x08", "\r", "\x9b", "\u202e", "\u2066", "\u2069", "\u200b", "\ufeff")


def _poisoned() -> tuple[str, str]:
    with lt.start_run("inject", name=MARKUP[:60], params={"p": ESCAPES, "q": BIDI},
                      tags={"t": MARKUP, "u": ESCAPES, "v": BIDI}, note=BIDI) as a:
        a.log_metric("m", 1.0)
    with lt.start_run("inject", params={"p": "plain", "q": MARKUP}, tags={"t": BIDI}) as b:
        b.log_metric("m", 2.0)
    return a.id, b.id


def _out(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, terminal_width=400)
    assert result.exit_code == 0, result.output
    return result.output


def _inert(text: str) -> None:
    assert not [c for c in RAW if c in text], [c for c in RAW if c in text]


def test_tables_details_and_diffs_show_markup_as_typed_and_no_raw_control_or_bidi_character() -> None:
    a, b = _poisoned()
    for args in (["runs", "inject"], ["show", a], ["diff", a, b], ["runs", "inject", "--columns", "params.p,params.q,tags.t,metrics.m"]):
        text = _out(*args)
        _inert(text)
    shown = _out("show", a)
    assert "[bold red]ALERT[/bold red]" in shown and "[link=https://evil.example]" in shown  # as typed
    assert "\\x1b" in shown and "\\u202e" in shown  # visible


def test_json_output_escapes_them_and_stays_valid_json() -> None:
    a, b = _poisoned()
    for args in (["runs", "inject", "--json"], ["show", a, "--json"], ["diff", a, b, "--json"]):
        text = _out(*args)
        _inert(text)
        data: Any = json.loads(text)
        assert data
    record = json.loads(_out("show", a, "--json"))
    assert record["params"] == {"p": ESCAPES, "q": BIDI}  # the values themselves come back exactly
    assert record["tags"]["t"] == MARKUP and record["tags"]["v"] == BIDI and record["note"] == BIDI


def test_show_prints_at_most_100_rows_of_a_section_and_says_how_many_are_hidden() -> None:
    with lt.start_run("wide", params={f"p{i:05d}": i for i in range(10_000)},
                      tags={f"t{i:04d}": "v" for i in range(150)}) as run:
        run.log_metrics({f"m{i:04d}": float(i) for i in range(120)})
    text = _out("show", run.id)
    assert "p00099" in text and "p00100" not in text
    assert "9,900 more params" in text and "50 more tags" in text and "20 more metrics" in text
    assert "--json" in text  # where to see them all
    assert len(json.loads(_out("show", run.id, "--json"))["params"]) == 10_000
