"""Runs as columns: the frames ended runs keep (labtrack.core.frame) and ``RunList.to_pandas`` built from them.

The oracle is the runs' own records: every DataFrame here is compared, cell by cell and dtype by dtype,
with one built the plain way from ``get_run`` (``expected_frame``), on SQLite and PostgreSQL. Values are
chosen to break a careless encoding: commas and quotes in names and tags, NaN/±inf/-0.0/subnormal
metrics, ints beyond 64 bits, nested params, runs with different keys and in different experiments.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from array import array
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

import labtrack as lt
from labtrack.cli import main
from labtrack.core.frame import RunTable, encode_frame
from labtrack.core.jsontext import json_text
from labtrack.store import resolve_location
from labtrack.store.base import NewRun
from labtrack.verbs import tracking

pd = pytest.importorskip("pandas")

AWKWARD_PARAMS: dict[str, Any] = {
    "lr": 0.1, "epochs": 3, "one": 1.0, "big": 2**70, "flag": True, "nothing": None,
    "text": 'a, "b" \\ ü\n', "nested": {"layers": [64, 32], "act": "relu"},
}
AWKWARD_METRICS = {
    "nan": math.nan, "inf": math.inf, "minus_inf": -math.inf, "minus_zero": -0.0, "subnormal": 5e-324,
    "largest": 1.7976931348623157e308, "third": 1 / 3,
}


def seconds(values: list[float]) -> Any:
    return pd.to_datetime(pd.Series(values, dtype="float64"), unit="s").array


def expected_frame(ids: list[str]) -> Any:
    """The DataFrame of ``ids`` built from each run's record: what to_pandas must equal."""
    records = [lt.get_run(run_id).record for run_id in ids]
    columns: dict[str, Any] = {
        "id": [r.id for r in records],
        "experiment": [r.experiment for r in records],
        "name": [r.name for r in records],
        "status": [r.status.value for r in records],
        "start_time": seconds([r.start_time for r in records]),
        "end_time": seconds([math.nan if r.end_time is None else r.end_time for r in records]),
    }
    for prefix, values_of in (
        ("params", lambda r: r.params),
        ("metrics", lambda r: {k: m.last for k, m in r.metrics.items()}),
        ("tags", lambda r: r.tags),
    ):
        keys = sorted({k for r in records for k in values_of(r)})
        for key in keys:
            missing = math.nan if prefix == "metrics" else None
            columns[f"{prefix}.{key}"] = [values_of(r).get(key, missing) for r in records]
    return pd.DataFrame(columns)


def assert_same_frame(actual: Any, ids: list[str]) -> None:
    assert list(actual["id"]) == ids
    pd.testing.assert_frame_equal(actual, expected_frame(ids))
    # assert_frame_equal takes -0.0 for 0.0 and one NaN for another: check the bits of every metric too.
    for column in (c for c in actual.columns if c.startswith("metrics.")):
        got = array("d", actual[column].to_numpy()).tobytes()
        want = array("d", expected_frame(ids)[column].to_numpy()).tobytes()
        assert got == want, column


def framed_ids(store_url: str, ids: list[str]) -> set[str]:
    """The runs among ``ids`` that the store serves from their frames (not from their rows)."""
    return set(tracking.client(store_url).store.run_table(ids).ids)


@pytest.fixture
def runs(store_url: str) -> dict[str, str]:
    """Ended runs of many shapes in two experiments; returns their ids by handle."""
    lt.set_store(store_url)
    ids: dict[str, str] = {}
    with lt.start_run("frames", AWKWARD_PARAMS, {"team": 'cv, "x"', "empty": ""}, name='awkward, "name"') as run:
        for key, value in AWKWARD_METRICS.items():
            run.log_metric(key, value)
        for step in range(3):
            run.log_metric("acc", 0.5 + step / 10, step=step)
    ids["awkward"] = run.id
    for i in range(5):  # runs with the same keys: one group
        with lt.start_run("frames", {"lr": 10.0**-i, "seed": i}, {"team": "nlp"}, name=f"same-{i}") as run:
            run.log_metric("acc", i / 10)
            run.log_metric("loss", 1 - i / 10)
        ids[f"same-{i}"] = run.id
    with lt.start_run("frames", {"lr": 0.5}, name=None) as run:  # other keys, no name
        run.log_metric("f1", 0.25)
    ids["other-keys"] = run.id
    with lt.start_run("frames") as run:  # nothing logged
        pass
    ids["empty"] = run.id
    with pytest.raises(ZeroDivisionError), lt.start_run("frames", {"lr": 1.0}, name="fails") as run:
        run.log_metric("acc", 0.0)
        1 / 0  # noqa: B018
    ids["failed"] = run.id
    with lt.start_run("elsewhere", {"lr": 0.1, "epochs": 3}, {"team": "cv"}, name="second experiment") as run:
        run.log_metric("acc", 0.75)
    ids["elsewhere"] = run.id
    lt.flush()  # every run is in the store: the tests read it directly too
    return ids


def test_to_pandas_equals_the_runs_records_for_every_kind_of_search(store_url: str, runs: dict[str, str]) -> None:
    every = list(runs.values())
    assert framed_ids(store_url, every) == set(every)  # all ended: all served from their frames
    searches = [
        {"experiment": "frames"},
        {"experiment": None},
        {"experiment": ["frames", "elsewhere"]},
        {"experiment": "frames", "filter": "params.lr < 0.2"},
        {"experiment": "frames", "order_by": ["metrics.acc desc"], "max_results": 3},
        {"experiment": "frames", "order_by": ["attributes.start_time"], "max_results": 4, "offset": 2},
        {"experiment": "frames", "filter": "metrics.acc >= 0.2", "order_by": ["metrics.acc"]},
        {"experiment": "frames", "filter": "tags.team = 'nothing'"},
    ]
    for search in searches:
        found = lt.search_runs(**search)
        assert_same_frame(found.to_pandas(), [r.id for r in found])


def test_special_values_survive_exactly(store_url: str, runs: dict[str, str]) -> None:
    frame = lt.search_runs("frames", filter="attributes.name = 'awkward, \"name\"'").to_pandas()
    row = frame.iloc[0]
    assert row["name"] == 'awkward, "name"'
    assert row["tags.team"] == 'cv, "x"' and row["tags.empty"] == ""
    for key, value in AWKWARD_PARAMS.items():
        got = row[f"params.{key}"]
        assert got == value or (value is None and got is None), key
    assert type(row["params.big"]) is int and frame["params.one"].dtype == "float64"  # 1.0 stays a float
    assert math.isnan(row["metrics.nan"]) and row["metrics.inf"] == math.inf and row["metrics.minus_inf"] == -math.inf
    assert row["metrics.minus_zero"] == 0.0  # its sign is the summary's: SQLite stores a REAL -0.0 as 0
    assert row["metrics.subnormal"] == 5e-324 and row["metrics.largest"] == 1.7976931348623157e308
    assert row["metrics.third"] == 1 / 3 and row["metrics.acc"] == 0.5 + 2 / 10  # the last step's value


def test_writes_after_a_run_ended_rewrite_its_frame(store_url: str, runs: dict[str, str]) -> None:
    run_id = runs["same-2"]
    run = lt.search_runs("frames", filter="attributes.name = 'same-2'")[0]  # a found run: logs like any other
    run.set_tag("reviewed", "yes")
    run.log_param("late", "added after the end")
    run.log_metric("acc", 0.99, step=10)
    run.flush()
    store = tracking.client(store_url).store
    store.delete_tag(run_id, "team")
    assert framed_ids(store_url, [run_id]) == {run_id}
    table = store.run_table([run_id])
    assert table.tags() == {"reviewed": ["yes"]}
    assert table.params()["late"] == ["added after the end"]
    assert list(table.metrics()["acc"]) == [0.99]
    found = lt.search_runs("frames")
    assert_same_frame(found.to_pandas(), [r.id for r in found])


def test_running_and_crashed_runs_come_from_their_rows(
    store_url: str, runs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABTRACK_HEARTBEAT_TIMEOUT", "30")  # read on first use
    store = tracking.client(store_url).store
    gone = uuid.uuid4().hex  # started an hour ago on another machine, which then died
    store.create_run(NewRun(id=gone, experiment="frames", start_time=time.time() - 3600, host="elsewhere", pid=4242,
                            params={"lr": 0.1}))
    store.heartbeat(gone, store.now() - 3600)  # its last sign of life
    store.log_params(gone, {"late": 1})
    live = lt.start_run("frames", {"lr": 0.2}, name="live")
    try:
        live.log_metric("acc", 0.3)  # still buffered: to_pandas writes it first
        found = lt.search_runs("frames")
        assert gone not in framed_ids(store_url, [gone]) and live.id not in framed_ids(store_url, [live.id])
        frame = found.to_pandas()
        assert_same_frame(frame, [r.id for r in found])
        by_id = frame.set_index("id")
        assert by_id.loc[live.id, "status"] == "RUNNING" and by_id.loc[live.id, "metrics.acc"] == 0.3
        assert by_id.loc[gone, "status"] == "CRASHED"
        assert framed_ids(store_url, [gone]) == {gone}  # marked CRASHED: it has ended, and has its frame
    finally:
        live.end()
    lt.flush()
    assert framed_ids(store_url, [live.id]) == {live.id}


def test_a_list_changed_after_the_search_gives_its_own_rows(store_url: str, runs: dict[str, str]) -> None:
    found = lt.search_runs("frames", order_by=["attributes.name"])
    chosen = lt.RunList([found[3], found[0], found[3]])  # reordered, repeated
    assert_same_frame(chosen.to_pandas(), [found[3].id, found[0].id, found[3].id])
    found.reverse()
    assert_same_frame(found.to_pandas(), [r.id for r in found])
    mixed = lt.RunList(list(lt.search_runs("elsewhere")) + list(found[:2]))
    assert_same_frame(mixed.to_pandas(), [r.id for r in mixed])
    assert lt.RunList().to_pandas().empty


def test_runs_that_start_after_the_search_are_not_in_its_frame(store_url: str, runs: dict[str, str]) -> None:
    found = lt.search_runs("frames")
    with lt.start_run("frames", {"lr": 0.1, "seed": 99}, {"team": "nlp"}) as later:
        later.log_metric("acc", 1.0)
    frame = found.to_pandas()
    assert later.id not in set(frame["id"])
    assert_same_frame(frame, [r.id for r in found])


def _downgrade_to_0001(store_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    import labtrack.store.sql as sql

    engine = create_engine(resolve_location(store_url)[0])
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(Path(sql.__file__).parent / "migrations"))
            config.attributes["connection"] = conn
            command.downgrade(config, "0001")
    finally:
        engine.dispose()


def test_upgrading_a_store_from_before_frames_fills_them(store_url: str, runs: dict[str, str]) -> None:
    every = list(runs.values())
    tracking.close_clients()
    _downgrade_to_0001(store_url)
    with pytest.raises(lt.SchemaOutdated):
        lt.search_runs("frames")

    result = CliRunner().invoke(main, ["db", "upgrade", "--store", store_url])
    assert result.exit_code == 0, result.output
    assert f"wrote the column summaries (frames) of {len(every)} ended runs" in result.stdout
    assert framed_ids(store_url, every) == set(every)
    found = lt.search_runs(None)
    assert_same_frame(found.to_pandas(), [r.id for r in found])

    again = CliRunner().invoke(main, ["db", "upgrade", "--store", store_url])
    assert again.exit_code == 0 and "frames" not in again.stdout  # nothing left to fill


def test_ended_runs_without_frames_are_read_from_their_rows(store_url: str, runs: dict[str, str]) -> None:
    engine = create_engine(resolve_location(store_url)[0])
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE runs SET frame_keys = NULL, frame_values = NULL, frame_numbers = NULL "
                              "WHERE name LIKE 'same-%'"))
    finally:
        engine.dispose()
    found = lt.search_runs("frames")
    assert len(framed_ids(store_url, [r.id for r in found])) == len(found) - 5
    assert_same_frame(found.to_pandas(), [r.id for r in found])


# -- the encoding itself (labtrack.core.frame) ------------------------------------------------------


def test_a_group_of_frames_decodes_into_columns() -> None:
    frames = [
        encode_frame({"lr": "0.1", "opt": '"sgd"'}, {"team": "a,b"}, {"acc": math.nan, "loss": -0.0}, 10.0, None),
        encode_frame({"lr": "1e-05", "opt": '"adam"'}, {"team": ""}, {"acc": math.inf, "loss": 5e-324}, 11.5, 12.5),
    ]
    assert frames[0].keys == frames[1].keys and json.loads(frames[0].keys) == [["lr", "opt"], ["team"], ["acc", "loss"]]
    table = RunTable()
    table.add_group("exp", frames[0].keys, ["a", "b"], ["first", None], ["FINISHED", "FAILED"],
                    "[" + ",".join(f.values for f in frames) + "]", b"".join(f.numbers for f in frames))
    table.add_group("other", '[[],[],[]]', ["c"], ["third"], ["KILLED"], "[[]]",
                    encode_frame({}, {}, {}, 13.0, 14.0).numbers)
    assert table.ids == ["a", "b", "c"] and table.experiment == ["exp", "exp", "other"]
    assert table.params() == {"lr": [0.1, 1e-05, None], "opt": ["sgd", "adam", None]}
    assert table.tags() == {"team": ["a,b", "", None]}
    metrics = table.metrics()
    assert math.isnan(metrics["acc"][0]) and metrics["acc"][1] == math.inf and math.isnan(metrics["acc"][2])
    assert array("d", metrics["loss"][:2]).tobytes() == array("d", [-0.0, 5e-324]).tobytes()
    assert list(table.start_time) == [10.0, 11.5, 13.0]
    assert math.isnan(table.end_time[0]) and list(table.end_time[1:]) == [12.5, 14.0]

    both = RunTable()
    both.add_table(table)
    both.add_table(table)
    assert both.params()["opt"] == ["sgd", "adam", None] * 2 and len(both.metrics()["acc"]) == 6


@pytest.mark.parametrize("value", [
    0.1, 1.0, -0.0, 1e-310, 1.7976931348623157e308, math.nan, math.inf, -math.inf, 0, -7, 2**70, True, False, None,
    "", "plain", 'quote " backslash \\ newline \n tab \t', "ü ✓ 日本", "\u2028 \x00 \x1f", [1, "a", None], {"b": [1.5]},
])
def test_json_text_is_what_json_dumps_writes(value: Any) -> None:
    assert json_text(value) == json.dumps(value, ensure_ascii=False)


def test_a_group_whose_parts_disagree_is_refused() -> None:
    frame = encode_frame({"lr": "0.1"}, {}, {"acc": 1.0}, 1.0, 2.0)
    with pytest.raises(ValueError, match="frame group of 2 runs"):
        RunTable().add_group("exp", frame.keys, ["a", "b"], ["a", "b"], ["FINISHED"] * 2, f"[{frame.values}]",
                             frame.numbers * 2)
