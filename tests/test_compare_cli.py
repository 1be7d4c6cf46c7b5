"""`labtrack runs --filter/--columns/--group-by`, `labtrack compare` and `labtrack diff`, in process through
click's CliRunner on a real store."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import labtrack as lt
from labtrack.cli import main

LRS = (0.1, 0.01, 0.001)
SEEDS = (1, 2, 3)


def acc_of(lr: float, seed: int) -> float:
    return round(0.8 + 0.05 * LRS.index(lr) + 0.013 * seed * (1 + LRS.index(lr)), 6)


@pytest.fixture
def store(tmp_path: Path) -> str:
    return str(tmp_path / "store")


@pytest.fixture
def seeded(store: str) -> dict[tuple[float, int], str]:
    """mnist runs: three learning rates, each repeated over three seeds; team cv for seed 1 only."""
    ids = {}
    for lr in LRS:
        for seed in SEEDS:
            tags = {"team": "cv" if seed == 1 else "nlp"}
            with lt.start_run("mnist", params={"lr": lr, "seed": seed, "epochs": 3}, tags=tags, store=store) as run:
                run.log_metric("acc", acc_of(lr, seed))
                run.log_metric("loss", 1.0 - acc_of(lr, seed))
            ids[(lr, seed)] = run.id
    with lt.start_run("other", params={"lr": 0.1}, store=store) as run:
        run.log_metric("acc", 0.99)
    return ids


def invoke(store: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--store", store, *args], catch_exceptions=False)


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"bare {constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


# -- runs --filter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("params.lr = 0.01", lambda lr, seed: lr == 0.01),
        ("metrics.acc > 0.9 and tags.team = 'nlp'", lambda lr, seed: acc_of(lr, seed) > 0.9 and seed != 1),
        ("params.seed IN (1, 3) and not params.lr = 0.1", lambda lr, seed: seed in (1, 3) and lr != 0.1),
        ("metrics.loss.min < 0.1 OR params.lr >= 0.1", lambda lr, seed: 1 - acc_of(lr, seed) < 0.1 or lr >= 0.1),
        ("tags.team IS NULL", lambda lr, seed: False),
    ],
)
def test_runs_filter_lists_exactly_the_matching_runs(
    store: str, seeded: dict[tuple[float, int], str], filter_text: str, expected: Any
) -> None:
    result = invoke(store, "runs", "mnist", "--filter", filter_text, "--json")
    assert result.exit_code == 0, result.output
    assert {r["id"] for r in strict_json(result.output)} == {i for (lr, s), i in seeded.items() if expected(lr, s)}


def test_runs_filter_table_shows_the_matching_runs_only(store: str, seeded: dict[tuple[float, int], str]) -> None:
    result = invoke(store, "runs", "mnist", "--filter", "params.lr = 0.001 and params.seed = 2")
    assert result.exit_code == 0
    shown = {i[:8] for i in seeded.values() if i[:8] in result.output}
    assert shown == {seeded[(0.001, 2)][:8]}


def test_runs_filter_syntax_error_exits_1_with_a_caret_under_the_column(store: str, seeded: Any) -> None:
    text = "metrics.acc > and params.lr = 1"
    result = invoke(store, "runs", "mnist", "--filter", text)
    assert result.exit_code == 1
    output = result.output
    assert "invalid filter at column 15" in output
    lines = output.splitlines()
    source = lines.index("  " + text)
    assert lines[source + 1] == "  " + " " * 14 + "^"

    as_json = invoke(store, "runs", "mnist", "--filter", text, "--json")
    assert as_json.exit_code == 1
    body = json.loads(as_json.stderr)
    assert body["error"]["field"] == "filter" and "column 15" in body["error"]["message"]
    assert body["error"]["code"] == "InvalidInput" and body["error"]["status"] == 400


def test_syntax_error_caret_lines_up_under_a_long_filter(store: str, seeded: Any) -> None:
    # The README's own example is over 80 characters: the echoed filter must stay one line, or the caret
    # no longer points at the column it names.
    text = "metrics.acc > 0.9 and (params.lr = 0.01 or params.lr = 0.1) and tags.team = 'cv' and params.seed >"
    result = invoke(store, "runs", "mnist", "--filter", text)
    assert result.exit_code == 1
    assert f"column {len(text) + 1}" in result.output
    lines = result.output.splitlines()
    assert "  " + text in lines
    source = lines.index("  " + text)
    assert lines[source + 1] == "  " + " " * len(text) + "^"


def test_runs_filter_on_an_unknown_environment_fact_is_a_clean_error(store: str, seeded: Any) -> None:
    result = invoke(store, "runs", "--filter", "env.gpu.nmae LIKE '%A100%'")
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "gpu.nmae" in result.output


# -- runs --columns / --group-by -------------------------------------------------------------------


def test_runs_columns_json_has_the_asked_fields_per_run(store: str, seeded: dict[tuple[float, int], str]) -> None:
    result = invoke(store, "runs", "mnist", "--columns", "params.lr,metrics.acc,metrics.loss.min,tags.team", "--json")
    assert result.exit_code == 0, result.output
    data = strict_json(result.output)
    assert data["columns"] == ["params.lr", "metrics.acc", "metrics.loss.min", "tags.team"]
    rows = {r["id"]: r["values"] for r in data["rows"]}
    assert set(rows) == set(seeded.values())
    for (lr, seed), run_id in seeded.items():
        assert rows[run_id] == {
            "params.lr": lr, "metrics.acc": acc_of(lr, seed),
            "metrics.loss.min": pytest.approx(1.0 - acc_of(lr, seed)), "tags.team": "cv" if seed == 1 else "nlp",
        }


def test_runs_columns_table_shows_the_columns(store: str, seeded: dict[tuple[float, int], str]) -> None:
    result = invoke(store, "runs", "mnist", "--columns", "params.lr,metrics.acc", "--filter", "params.seed = 1")
    assert result.exit_code == 0
    assert "┃ run      ┃    lr ┃   acc ┃" in result.output  # params and metrics by key: the colour says which
    for lr in LRS:
        assert f"{acc_of(lr, 1):.5g}" in result.output


def test_runs_columns_rejects_an_unknown_field(store: str, seeded: Any) -> None:
    result = invoke(store, "runs", "mnist", "--columns", "params.lr,bogus.x")
    assert result.exit_code == 1
    assert "bogus.x" in result.output


def test_group_by_aggregates_repeated_runs_into_mean_std_and_n(store: str, seeded: dict[tuple[float, int], str]) -> None:
    result = invoke(store, "runs", "mnist", "--group-by", "params.lr", "--json")
    assert result.exit_code == 0, result.output
    grouping = strict_json(result.output)
    assert (grouping["by"], grouping["metrics"]) == (["params.lr"], ["metrics.acc", "metrics.loss"])
    groups = grouping["groups"]
    assert [g["key"] for g in groups] == [[lr] for lr in sorted(LRS)]
    for g in groups:
        lr = g["key"][0]
        accs = [acc_of(lr, s) for s in SEEDS]
        assert g["runs"] == 3
        stats = g["metrics"]["metrics.acc"]
        assert stats["n"] == 3
        assert stats["mean"] == pytest.approx(statistics.mean(accs))
        assert stats["std"] == pytest.approx(statistics.stdev(accs))
        assert (stats["min"], stats["max"]) == (min(accs), max(accs))


def test_group_by_table_shows_mean_plus_minus_std(store: str, seeded: dict[tuple[float, int], str]) -> None:
    result = invoke(store, "runs", "mnist", "--group-by", "params.lr")
    assert result.exit_code == 0
    for lr in LRS:
        accs = [acc_of(lr, s) for s in SEEDS]
        assert f"{statistics.mean(accs):.4g} ± {statistics.stdev(accs):.2g}" in result.output


def test_group_by_two_fields_and_a_filter(store: str, seeded: dict[tuple[float, int], str]) -> None:
    result = invoke(store, "runs", "mnist", "--group-by", "params.lr,tags.team", "--filter", "params.lr != 0.001",
                    "--json")
    groups = strict_json(result.output)["groups"]
    assert sorted((g["key"][0], g["key"][1], g["runs"]) for g in groups) == [
        (0.01, "cv", 1), (0.01, "nlp", 2), (0.1, "cv", 1), (0.1, "nlp", 2),
    ]
    single = next(g for g in groups if g["key"] == [0.1, "cv"])
    assert single["metrics"]["metrics.acc"] == {"n": 1, "mean": acc_of(0.1, 1), "std": 0.0, "min": acc_of(0.1, 1),
                                                "max": acc_of(0.1, 1)}


def test_group_by_summarises_the_metrics_named_by_columns(store: str, seeded: dict[tuple[float, int], str]) -> None:
    result = invoke(store, "runs", "mnist", "--group-by", "params.lr", "--columns", "acc,metrics.loss.min", "--json")
    assert result.exit_code == 0, result.output
    for g in strict_json(result.output)["groups"]:
        assert list(g["metrics"]) == ["metrics.acc", "metrics.loss.min"]
        losses = [1.0 - acc_of(g["key"][0], s) for s in SEEDS]
        assert g["metrics"]["metrics.loss.min"]["mean"] == pytest.approx(statistics.mean(losses))


def test_group_by_refuses_to_average_a_param(store: str, seeded: Any) -> None:
    result = invoke(store, "runs", "mnist", "--group-by", "params.lr", "--columns", "params.seed")
    assert result.exit_code == 1
    assert "params.seed cannot be averaged" in result.output and "--group-by" in result.output


def test_group_by_aggregates_every_matching_run_not_only_the_listing_limit(store: str) -> None:
    for seed in range(60):
        with lt.start_run("seeds", params={"lr": 0.1, "seed": seed}, store=store) as run:
            run.log_metric("acc", seed / 100)
    everything = strict_json(invoke(store, "runs", "seeds", "--group-by", "params.lr", "--json").output)["groups"]
    assert [(g["runs"], g["metrics"]["metrics.acc"]["n"]) for g in everything] == [(60, 60)]
    assert everything[0]["metrics"]["metrics.acc"]["mean"] == pytest.approx(sum(range(60)) / 6000)
    newest = strict_json(invoke(store, "runs", "seeds", "--group-by", "params.lr", "--limit", "10", "--json").output)
    assert [g["runs"] for g in newest["groups"]] == [10]


def test_a_listing_cut_at_its_limit_says_how_to_see_more(store: str) -> None:
    for seed in range(7):
        with lt.start_run("seeds", params={"seed": seed}, store=store):
            pass
    cut = invoke(store, "runs", "seeds", "--limit", "5")
    assert cut.exit_code == 0 and "the first 5 shown" in cut.output and "--offset" in cut.output
    whole = invoke(store, "runs", "seeds", "--limit", "7")
    assert whole.exit_code == 0 and "shown" not in whole.output and whole.output.count("FINISHED") == 7


def narrow(store: str, *args: str, columns: int = 70) -> Result:
    return CliRunner().invoke(main, ["--store", store, *args], catch_exceptions=False, env={"COLUMNS": str(columns)})


def test_group_by_table_keeps_each_mean_and_std_whole_and_names_what_did_not_fit(
    store: str, seeded: dict[tuple[float, int], str]
) -> None:
    # One more run with more metrics makes the table wider than the terminal.
    with lt.start_run("mnist", params={"lr": 0.1, "seed": 9, "epochs": 3}, store=store) as run:
        run.log_metrics({"acc": 0.5, "precision": 0.123456, "recall": 0.654321, "f1_score": 0.5, "kappa": 0.25})
    result = narrow(store, "runs", "mnist", "--group-by", "params.lr")
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    for lr in (0.01, 0.001):
        accs = [acc_of(lr, s) for s in SEEDS]
        assert f"│ {statistics.mean(accs):.4g} ± {statistics.stdev(accs):.2g} │" in result.output
    counts = [line.split("│")[2].strip() for line in result.output.splitlines() if line.startswith("│")]
    assert sorted(counts) == ["3", "3", "4"]  # the runs column, whole, on every row
    header, _, note = result.output.partition("not shown for width: ")
    hidden = note.split(";")[0].replace("\n", " ").split(", ")
    assert hidden and all(name not in header for name in hidden)
    assert {"acc", "f1_score", "kappa", "loss", "precision", "recall"} - set(hidden) <= set(header.split())


def test_group_by_folds_a_long_grouped_value_rather_than_cut_the_numbers(store: str) -> None:
    arch = "resnet50-with-a-very-long-architecture-description"
    for seed in range(3):
        with lt.start_run("long", params={"arch": arch, "seed": seed}, store=store) as run:
            run.log_metrics({"acc": 0.9 + seed / 100, "loss": 0.1})
    result = narrow(store, "runs", "long", "--group-by", "params.arch")
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert "0.91 ± 0.01" in result.output and "0.1 ± 0" in result.output
    rows = [line.split("│") for line in result.output.splitlines() if line.startswith("│")]
    assert "".join(row[1].strip() for row in rows) == arch  # folded over several lines, every character kept
    assert [row[2].strip() for row in rows if row[2].strip()] == ["3"]


def test_group_by_columns_follow_the_metric_names_not_the_first_group(store: str) -> None:
    with lt.start_run("order", params={"lr": 0.1}, store=store) as run:
        run.log_metrics({"b_metric": 1.0})
    with lt.start_run("order", params={"lr": 0.2}, store=store) as run:
        run.log_metrics({"a_metric": 2.0, "b_metric": 3.0})
    default = invoke(store, "runs", "order", "--group-by", "params.lr").output
    assert default.index("a_metric") < default.index("b_metric")
    chosen = invoke(store, "runs", "order", "--group-by", "params.lr", "--columns", "b_metric,a_metric").output
    assert chosen.index("b_metric") < chosen.index("a_metric")


def test_group_by_refuses_a_metric_no_run_logged(store: str, seeded: Any) -> None:
    result = invoke(store, "runs", "mnist", "--group-by", "params.lr", "--columns", "acc,acc_typo")
    assert result.exit_code == 1
    assert "no run here logged metrics.acc_typo" in result.output and "acc, loss" in result.output


def test_group_by_over_the_newest_runs_only_says_so(store: str, seeded: Any) -> None:
    result = invoke(store, "runs", "mnist", "--group-by", "params.lr", "--limit", "4")
    assert result.exit_code == 0
    assert "over the newest 4 matching runs only" in result.output
    assert "newest" not in invoke(store, "runs", "mnist", "--group-by", "params.lr").output


def test_a_narrow_terminal_hides_optional_columns_and_keeps_the_run_id_whole(store: str, seeded: Any) -> None:
    with lt.start_run("mnist", params={"lr": 0.5, "optimizer": "adamw-with-decoupled-weight-decay"}, store=store):
        pass
    result = narrow(store, "runs", "mnist", columns=60)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == len(seeded) + 1 and all(len(row.split("│")[1].strip()) == 8 for row in rows)
    assert "not shown for width" in result.output and "optimizer" in result.output


# -- compare ---------------------------------------------------------------------------------------


@pytest.fixture
def trio(store: str) -> list[str]:
    ids = []
    for lr, acc in ((0.1, 0.91), (0.01, 0.95), (0.001, 0.93)):
        with lt.start_run("cmp", params={"lr": lr, "epochs": 3, "opt": "adam"}, store=store) as run:
            run.log_metric("acc", acc)
            run.log_metric("steps", 100.0)
        ids.append(run.id)
    return ids


def test_compare_shows_rows_that_differ_and_hides_identical_ones(store: str, trio: list[str]) -> None:
    result = invoke(store, "compare", *(i[:8] for i in trio))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "params.lr" in out and "metrics.acc" in out
    assert "params.epochs" not in out and "params.opt" not in out and "metrics.steps" not in out
    assert "3 rows identical in every run hidden" in out
    for run_id in trio:
        assert run_id[:8] in out
    row = next(line for line in out.splitlines() if "metrics.acc" in line)
    assert re.findall(r"0\.9\d", row) == ["0.91", "0.95", "0.93"]  # one column per run, in the order asked


def test_compare_all_shows_identical_rows_too(store: str, trio: list[str]) -> None:
    out = invoke(store, "compare", "--all", *trio).output
    for name in ("params.lr", "params.epochs", "params.opt", "metrics.acc", "metrics.steps"):
        assert name in out
    assert "hidden" not in out


def test_compare_json_lists_each_run(store: str, trio: list[str]) -> None:
    data = strict_json(invoke(store, "compare", "--json", *trio).output)
    assert [r["id"] for r in data] == trio


def test_compare_an_unknown_run_exits_1(store: str, trio: list[str]) -> None:
    result = invoke(store, "compare", trio[0], "ffffffffffff")
    assert result.exit_code == 1
    assert "ffffffffffff" in result.output


# -- diff ------------------------------------------------------------------------------------------


@pytest.fixture
def pair(store: str, tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "model.pt").write_bytes(b"weights" * 50)
    ids = []
    for lr, acc, config in ((0.1, 0.9, "a"), (0.01, 0.95, "b")):
        (tmp_path / "config.json").write_text(config)
        with lt.start_run("d", params={"lr": lr, "epochs": 3}, store=store) as run:
            run.log_metric("acc", acc)
            run.log_metric("loss", 0.25)
            run.log_metric("unstable", float("nan"))
            run.log_artifact(str(tmp_path / "model.pt"))
            run.log_artifact(str(tmp_path / "config.json"))
        ids.append(run.id)
    return ids[0], ids[1]


def test_diff_lists_metrics_then_params_first_and_identical_sections_in_one_line(
    store: str, pair: tuple[str, str]
) -> None:
    result = invoke(store, "diff", pair[0][:8], pair[1][:8])
    assert result.exit_code == 0, result.output
    out = result.output
    lines = out.splitlines()
    assert lines[0].startswith(f"diff {pair[0][:8]} → {pair[1][:8]}")
    assert "+5.56%" in out and "+0.05" in out  # acc 0.9 → 0.95
    assert "lr 0.1 → 0.01" in out
    headers = [line for line in lines if line in ("params", "code", "artifacts", "gpu", "packages")]
    assert headers[0] == "params"
    assert "config.json" in out and "content differs" in out
    identical = " ".join(out[out.index("identical:"):].split())  # one statement, however the terminal wraps it
    for name in ("code", "gpu", "frameworks", "packages", "python", "cpu", "os"):
        assert re.search(rf"\b{name}\b", identical.split("not recorded")[0]), name
    assert "epochs" not in out  # an unchanged param is not listed


def test_diff_says_which_artifacts_are_identical(store: str, pair: tuple[str, str]) -> None:
    # The promise: artifacts compared by content, "model.pt identical".
    out = invoke(store, "diff", *pair).output
    assert any("model.pt" in line and "identical" in line for line in out.splitlines()), out
    data = strict_json(invoke(store, "diff", *pair, "--json").output)
    assert "model.pt" in json.dumps(data)


def test_diff_json_is_strict_json_with_ranked_sections(store: str, pair: tuple[str, str]) -> None:
    result = invoke(store, "diff", pair[0], pair[1], "--json")
    assert result.exit_code == 0, result.output
    data = strict_json(result.output)
    assert (data["a"], data["b"]) == pair
    assert data["identical"] is False
    names = [s["name"] for s in data["sections"]]
    assert names[0] == "params" and names.index("code") < names.index("gpu") < names.index("packages")
    by_name = {s["name"]: s for s in data["sections"]}
    assert by_name["params"]["changes"] == [
        {"key": "lr", "a": 0.1, "b": 0.01, "kind": "changed", "level": None, "note": ""},
    ]
    assert by_name["gpu"]["identical"] is True and by_name["gpu"]["changes"] == []
    assert [c["key"] for c in by_name["artifacts"]["changes"]] == ["config.json"]
    metrics = {m["key"]: m for m in data["metrics"]}
    assert metrics["acc"]["delta"] == pytest.approx(0.05) and metrics["acc"]["pct"] == pytest.approx(5.5555556)
    assert metrics["loss"]["same"] is True
    assert metrics["unstable"]["a"] == "NaN" and metrics["unstable"]["same"] is True


def test_diff_of_a_missing_run_exits_1(store: str, pair: tuple[str, str]) -> None:
    result = invoke(store, "diff", pair[0], "0000000000")
    assert result.exit_code == 1
    assert "0000000000" in result.output
