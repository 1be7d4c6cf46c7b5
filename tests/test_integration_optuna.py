"""labtrack.integrations.optuna with real Optuna studies: trials as child runs of the study's run, their
states as statuses, and a study run again skipping every configuration labtrack already finished."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
from framework_helpers import need

optuna = need("optuna")

import labtrack as lt  # noqa: E402
from labtrack import RunStatus  # noqa: E402
from labtrack.integrations.base import IntegrationWarning  # noqa: E402
from labtrack.integrations.optuna import optimize, track_objective  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

GRID = {"x": [1.0, 2.0, 3.0], "kind": ["a", "b"]}


def space(trial: Any) -> dict[str, Any]:
    return {"x": trial.suggest_float("x", 0.0, 4.0), "kind": trial.suggest_categorical("kind", ["a", "b"])}


class Objective:
    """(x - 2)^2, +1 for kind "b"; counts its calls and reports two intermediate values."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, trial: Any) -> float:
        self.calls += 1
        params = space(trial)
        value = (params["x"] - 2.0) ** 2 + (params["kind"] == "b")
        trial.report(value + 1.0, 0)
        trial.report(value + 0.5, 1)
        return value


def grid_study(name: str, **options: Any) -> Any:
    return optuna.create_study(study_name=name, sampler=optuna.samplers.GridSampler(GRID, seed=0), **options)


def runs(experiment: str = "optuna") -> list[lt.Run]:
    lt.flush()
    return list(lt.search_runs(experiment))


def study_run(found: list[lt.Run], name: str) -> lt.Run:
    (run,) = [r for r in found if "labtrack.parent" not in r.tags and r.name == name]
    return run


def children_of(found: list[lt.Run], parent: lt.Run) -> list[lt.Run]:
    return [r for r in found if r.tags.get("labtrack.parent") == parent.id]


def test_each_trial_is_a_child_run_of_the_studys_run_with_params_value_and_reports() -> None:
    study = optuna.create_study(study_name="tpe", sampler=optuna.samplers.TPESampler(seed=0))
    optimize(study, Objective(), space=space, n_trials=4)
    found = runs()
    parent = study_run(found, "tpe")
    assert parent.status is RunStatus.FINISHED
    assert parent.params["optuna.sampler"] == "TPESampler"
    assert parent.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.params["best_x"] == pytest.approx(study.best_params["x"])
    children = children_of(found, parent)
    assert len(children) == len(found) - 1 == 4
    for trial in study.trials:
        (child,) = [c for c in children if c.id == trial.user_attrs["labtrack.run_id"]]
        assert child.status is RunStatus.FINISHED
        assert child.tags["optuna.state"] == "COMPLETE"
        assert child.tags["optuna.trial"] == str(trial.number)
        assert child.params == {"x": trial.params["x"], "kind": trial.params["kind"]}
        assert child.metrics["objective"] == pytest.approx(trial.value)
        history = child.history("intermediate")
        assert list(history.steps) == [0, 1]
        assert list(history.values) == pytest.approx([trial.intermediate_values[0], trial.intermediate_values[1]])
    assert lt.active_run() is None


def test_a_study_run_again_calls_no_objective_for_configurations_already_finished() -> None:
    first = Objective()
    done = optimize(grid_study("first"), first, space=space, n_trials=6)
    assert first.calls == 6
    again = Objective()
    repeat = optimize(grid_study("again"), again, space=space, n_trials=6)
    assert again.calls == 0
    run_of = {(t.params["x"], t.params["kind"]): t.user_attrs["labtrack.run_id"] for t in done.trials}
    for trial in repeat.trials:
        assert trial.state is optuna.trial.TrialState.COMPLETE
        assert trial.user_attrs["labtrack.skipped_as"] == run_of[(trial.params["x"], trial.params["kind"])]
        assert trial.value == pytest.approx((trial.params["x"] - 2.0) ** 2 + (trial.params["kind"] == "b"))
    assert repeat.best_value == done.best_value
    found = runs()
    assert children_of(found, study_run(found, "again")) == []


def test_only_new_configurations_train_when_the_grid_grows() -> None:
    optimize(grid_study("small"), Objective(), space=space, n_trials=6)
    bigger = Objective()
    grid = {"x": [1.0, 2.0, 3.0, 4.0], "kind": ["a", "b"]}
    optimize(optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0)), bigger, space=space, n_trials=8)
    assert bigger.calls == 2


def x_only(trial: Any) -> dict[str, Any]:
    return {"x": trial.suggest_float("x", 0.0, 4.0)}


def test_a_trial_whose_objective_suggests_more_than_space_is_never_given_another_configurations_value() -> None:
    # space names x; the objective also suggests kind. A finished run with the same x but another kind is not
    # this configuration: its value must not be returned for it (it was, and kind "b" was never trained).
    optimize(grid_study("first", direction="minimize"), Objective(), space=x_only, n_trials=6)
    again = Objective()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)  # "not skipped: the objective suggests kind", once
        repeat = optimize(grid_study("again", direction="minimize"), again, space=x_only, n_trials=6)
    for trial in repeat.trials:
        assert "kind" in trial.params, "a trial given a recorded value without its whole configuration"
        assert trial.value == pytest.approx((trial.params["x"] - 2.0) ** 2 + (trial.params["kind"] == "b"))
    assert again.calls == 6


def test_skip_finished_false_trains_every_trial() -> None:
    optimize(grid_study("first"), Objective(), space=space, n_trials=6)
    again = Objective()
    optimize(grid_study("again"), again, space=space, n_trials=6, skip_finished=False)
    assert again.calls == 6


def test_without_space_nothing_is_skipped_and_the_suggested_params_are_recorded() -> None:
    optimize(grid_study("first"), Objective(), n_trials=6)
    again = Objective()
    optimize(grid_study("again"), again, n_trials=6)
    assert again.calls == 6
    found = runs()
    assert {c.params["kind"] for c in children_of(found, study_run(found, "again"))} == {"a", "b"}


def test_a_pruned_trial_is_killed_and_tagged_pruned_with_its_reports() -> None:
    def pruned(trial: Any) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        trial.report(0.9, 0)
        raise optuna.TrialPruned()

    study = optimize(optuna.create_study(study_name="pruning"), pruned, n_trials=1)
    assert study.trials[0].state is optuna.trial.TrialState.PRUNED
    (child,) = children_of(runs(), study_run(runs(), "pruning"))
    assert child.status is RunStatus.KILLED
    assert child.tags["optuna.state"] == "PRUNED"
    assert list(child.history("intermediate").values) == [0.9]


@pytest.mark.parametrize("outcome", ["raise", "nan", "none"])
def test_a_failed_trial_is_a_failed_run_and_the_study_goes_on(outcome: str) -> None:
    def failing(trial: Any) -> Any:
        trial.suggest_float("x", 0.0, 1.0)
        if outcome == "raise":
            raise ValueError("diverged")
        return math.nan if outcome == "nan" else None

    study = optimize(optuna.create_study(study_name="failing"), failing, n_trials=2, catch=(ValueError,))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    found = runs()
    parent = study_run(found, "failing")
    assert parent.status is RunStatus.FINISHED
    children = children_of(found, parent)
    assert [c.status for c in children] == [RunStatus.FAILED] * 2
    assert {c.tags["optuna.state"] for c in children} == {"FAIL"}


def test_an_error_that_stops_the_study_fails_the_study_run_and_leaves_no_active_run() -> None:
    def broken(trial: Any) -> float:
        raise KeyError("missing column")

    with pytest.raises(KeyError):
        optimize(optuna.create_study(study_name="broken"), broken, n_trials=3)
    found = runs()
    parent = study_run(found, "broken")
    assert parent.status is RunStatus.FAILED
    assert [c.status for c in children_of(found, parent)] == [RunStatus.FAILED]
    assert lt.active_run() is None


def test_several_objectives_are_objective_0_and_objective_1_and_are_skipped_too() -> None:
    def two(trial: Any) -> tuple[float, float]:
        params = space(trial)
        return params["x"], -params["x"]

    optimize(grid_study("two", directions=["minimize", "maximize"]), two, space=space, n_trials=6)
    found = runs()
    child = children_of(found, study_run(found, "two"))[0]
    assert child.metrics["objective_1"] == -child.metrics["objective_0"]
    calls = []
    again = optimize(grid_study("two-again", directions=["minimize", "maximize"]),
                     lambda trial: calls.append(1) or two(trial), space=space, n_trials=6)
    assert calls == []
    assert all(t.values == [t.params["x"], -t.params["x"]] for t in again.trials)


def test_tracked_objective_nests_trials_under_the_users_run_and_leaves_it_running() -> None:
    with lt.start_run("tuning") as run:
        optuna.create_study().optimize(track_objective(Objective(), space=space), n_trials=2)
        assert lt.active_run() is run
        assert run.status is RunStatus.RUNNING
    found = runs("tuning")
    assert len(children_of(found, run)) == 2
    assert runs() == []


def test_only_rank_zero_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    objective = Objective()
    optimize(grid_study("ranked"), objective, space=space, n_trials=2)
    assert objective.calls == 2
    assert runs() == []
