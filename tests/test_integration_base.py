"""What every framework integration shares (``labtrack.integrations.base``): whatever a framework hands over
as params or metrics, the integration records what it can and training goes on. A real run on a real store."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import labtrack as lt
from labtrack.integrations.base import IntegrationWarning, attach, flatten, number


class UnprintableConfig:
    """A framework object whose repr raises (a half-built module, a lazy proxy whose target is gone)."""

    def __repr__(self) -> str:
        raise RuntimeError("repr of a half-built object")


@pytest.mark.parametrize(
    ("params", "kept"),
    [
        ({"lr": 0.1, "model": UnprintableConfig()}, {"lr": 0.1}),
        (lambda: flatten({"optim": {"lr": 0.1, "hook": UnprintableConfig()}}), {"optim.lr": 0.1}),
        ({"lr": 0.1, "seed": 10**400}, {"lr": 0.1}),
    ],
    ids=["unprintable-object", "unprintable-nested", "huge-integer"],
)
def test_a_param_the_tracker_cannot_take_warns_and_training_goes_on(params: Any, kept: dict[str, Any]) -> None:
    with lt.start_run("base") as run, warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)  # warned once per process: maybe by an earlier test
        attach(run=run).log_params(params() if callable(params) else params)
    assert {k: v for k, v in lt.get_run(run.id).params.items() if k in kept} == kept


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10**400, None), (-(10**400), None), (float("inf"), float("inf")), (True, 1.0), ("text", None)],
    ids=["huge-int", "huge-negative-int", "inf", "bool", "text"],
)
def test_number_takes_what_a_float_can_hold_and_nothing_else_raises(value: Any, expected: float | None) -> None:
    assert number(value) == expected


def test_a_metric_too_large_for_a_float_is_left_out_and_the_others_are_logged() -> None:
    with lt.start_run("base") as run, warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        attach(run=run).log_metrics({"tokens_seen": 10**400, "loss": 0.5}, step=1)
    metrics = lt.get_run(run.id).metrics
    assert metrics["loss"] == 0.5 and "tokens_seen" not in metrics


def test_an_integer_param_beyond_a_floats_range_is_stored_exactly_and_the_writer_goes_on() -> None:
    # It used to fail in the store's writer on every retry, holding back everything logged after it.
    with lt.start_run("base") as run:
        run.log_param("seed", 10**400)
        run.log_metric("after", 1.0)
    again = lt.get_run(run.id)
    assert again.params["seed"] == 10**400 and again.metrics["after"] == 1.0


def test_flatten_marks_a_mapping_that_contains_itself_and_keeps_very_deep_ones_as_text() -> None:
    cyclic: dict[str, Any] = {"lr": 0.1, "model": {"depth": 3}}
    cyclic["model"]["parent"] = cyclic
    assert flatten(cyclic) == {"lr": 0.1, "model.depth": 3, "model.parent": "<cycle>"}
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(2000):  # deeper than Python's recursion limit
        deep = {"d": deep}
    (only,) = flatten(deep).values()
    assert isinstance(only, str)
