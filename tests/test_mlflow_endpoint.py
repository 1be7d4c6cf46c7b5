"""The MLflow-compatible endpoint (issue 16 §4): an unchanged MLflow script, run by the real MLflow client in its
own virtualenv, records into a real labtrack server process (SQLite and PostgreSQL stores); labtrack's own API
finds what it wrote, and MLflow's reading calls (search_runs, get_metric_history, download_artifacts) read it
back. Then auth, MLflow's filter language in labtrack's terms, and a table of hostile or broken requests.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow_helpers import Mlflow, mlflow_env  # noqa: F401 - the fixture
from server_helpers import ServerProcess, serve_in_thread, start_server_process

import labtrack
from labtrack.core.filters import And, Compare, Field, InList, IsNull, Like, Not, Or
from labtrack.core.model import Search
from labtrack.core.query import OrderTerm
from labtrack.core.tokens import Role
from labtrack.server.mlflow_wire import MlflowError, experiment_matches, parse_order_by, parse_search_filter
from labtrack.store import open_store

TRAIN = """
import json, os, pathlib
import mlflow

mlflow.set_experiment("mnist-mlflow")
with mlflow.start_run(run_name="parent") as parent:
    mlflow.log_params({"lr": "0.01", "epochs": 3})
    mlflow.set_tag("team", "cv")
    for step in range(5):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metric("weird", float("nan"), step=0)
    mlflow.log_metric("weird", float("inf"), step=1)
    mlflow.log_metric("weird", float("-inf"), step=2)
    pathlib.Path("model.txt").write_text("weights")
    mlflow.log_artifact("model.txt")
    os.makedirs("plots/sub", exist_ok=True)
    pathlib.Path("plots/a.txt").write_text("A")
    pathlib.Path("plots/sub/b.txt").write_text("B")
    mlflow.log_artifacts("plots", artifact_path="plots")
    mlflow.log_dict({"layers": [64, 10]}, "config/config.json")
    with mlflow.start_run(run_name="child", nested=True) as child:
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=1)
        mlflow.log_params({"depth": "4"})
try:
    with mlflow.start_run(run_name="broken") as broken:
        mlflow.log_metric("loss", 3.0)
        raise RuntimeError("boom")
except RuntimeError:
    pass
print(json.dumps({"parent": parent.info.run_id, "child": child.info.run_id, "broken": broken.info.run_id}))
"""

READ = """
import json, pathlib, sys
import mlflow
from mlflow import MlflowClient

ids = json.loads(sys.argv[1]) if len(sys.argv) > 1 else None
client = MlflowClient()
def names(runs):
    return sorted(r.info.run_name for r in runs)
exp = client.get_experiment_by_name("mnist-mlflow")
parent = [r for r in mlflow.search_runs(experiment_ids=[exp.experiment_id], output_format="list")
          if r.info.run_name == "parent"][0]
history = client.get_metric_history(parent.info.run_id, "loss")
weird = client.get_metric_history(parent.info.run_id, "weird")
local = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="plots", dst_path="downloaded")
print(json.dumps({
    "experiment": [exp.name, exp.lifecycle_stage],
    "all": names(mlflow.search_runs(experiment_names=["mnist-mlflow"], output_format="list")),
    "filtered": names(mlflow.search_runs(experiment_names=["mnist-mlflow"],
                                         filter_string="metrics.loss < 0.5 and params.lr = '0.01'",
                                         output_format="list")),
    "failed": names(mlflow.search_runs(search_all_experiments=True, filter_string="attributes.status = 'FAILED'",
                                       output_format="list")),
    "by_name": names(mlflow.search_runs(experiment_names=["mnist-mlflow"], filter_string="run_name = 'child'",
                                        output_format="list")),
    "by_tag": names(mlflow.search_runs(experiment_names=["mnist-mlflow"], filter_string="tags.team = 'cv'",
                                       output_format="list")),
    "ordered": [r.info.run_name for r in mlflow.search_runs(experiment_names=["mnist-mlflow"],
                                                            order_by=["metrics.loss DESC"], output_format="list")
                if "loss" in r.data.metrics],
    "paged": [len(p) for p in [client.search_runs([exp.experiment_id], max_results=2),
                               client.search_runs([exp.experiment_id], max_results=2,
                                                  page_token=client.search_runs([exp.experiment_id],
                                                                                max_results=2).token)]],
    "parent": {"params": parent.data.params, "metrics": parent.data.metrics, "status": parent.info.status,
               "team": parent.data.tags.get("team"), "user": parent.info.user_id},
    "history": [[m.step, m.value] for m in history],
    "weird": [str(m.value) for m in weird],
    "downloaded": sorted(str(p.relative_to(local)) + ":" + p.read_text() for p in pathlib.Path(local).rglob("*.txt")),
    "config": mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/config/config.json"),
    "listed": [[f.path, f.is_dir] for f in client.list_artifacts(parent.info.run_id)],
}))
"""


@dataclass
class Endpoint:
    url: str
    store_url: str
    artifacts: str
    tokens: dict[Role, str]
    server: ServerProcess

    def env(self, role: Role | None = Role.WRITER) -> dict[str, str]:
        env = {"MLFLOW_TRACKING_URI": self.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        if role is not None:
            env["MLFLOW_TRACKING_TOKEN"] = self.tokens[role]
        return env

    def client(self) -> labtrack.Client:
        return labtrack.Client(open_store(self.store_url, artifacts=self.artifacts))


@pytest.fixture
def endpoint(store_url: str, tmp_path: Path, python_env: dict[str, str]) -> Iterator[Endpoint]:
    """`labtrack server` as a process over a new store, with a token of each role."""
    artifacts = str(tmp_path / "artifacts")
    store = open_store(store_url, artifacts=artifacts)
    tokens = {role: store.create_token(f"mlflow-{role}", role)[0] for role in (Role.READER, Role.WRITER, Role.ADMIN)}
    store.close()
    server = start_server_process(store_url, python_env, tmp_path / "server.log", extra=("--artifacts", artifacts))
    try:
        yield Endpoint(server.url, store_url, artifacts, tokens, server)
    finally:
        server.stop()


def _last_json(out: str) -> Any:
    """The script's JSON line (MLflow prints "View run ..." lines of its own)."""
    return json.loads(out.strip().splitlines()[-1])


def test_an_unchanged_mlflow_script_records_into_labtrack_and_reads_it_back(
        mlflow_env: Mlflow, endpoint: Endpoint, tmp_path: Path) -> None:  # noqa: F811
    work = tmp_path / "mlflow-script"
    work.mkdir()
    ids = _last_json(mlflow_env.run(TRAIN, cwd=work, env=endpoint.env()))

    client = endpoint.client()
    parent, child, broken = (client.get_run(ids[k]) for k in ("parent", "child", "broken"))
    assert [r.experiment for r in (parent, child, broken)] == ["mnist-mlflow"] * 3
    assert [str(r.status) for r in (parent, child, broken)] == ["FINISHED", "FINISHED", "FAILED"]
    assert parent.name == "parent" and parent.params == {"lr": "0.01", "epochs": "3"}
    assert parent.tags["team"] == "cv" and parent.tags["mlflow.runName"] == "parent" and parent.tags["mlflow.user"]
    assert child.tags["mlflow.parentRunId"] == parent.id and child.params == {"depth": "4"}
    assert child.metrics == {"acc": 0.9, "f1": 0.8}
    loss = parent.history("loss")
    assert list(loss.steps) == [0, 1, 2, 3, 4] and list(loss.values) == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert abs(loss.timestamps[0] - parent.start_time) < 60  # milliseconds became seconds
    weird = parent.history("weird").values
    assert math.isnan(weird[0]) and weird[1] == math.inf and weird[2] == -math.inf
    assert parent.end_time is not None and parent.end_time >= parent.start_time
    assert sorted(a.path for a in parent.artifacts) == ["config/config.json", "model.txt", "plots/a.txt",
                                                        "plots/sub/b.txt"]
    with parent.open_artifact("plots/sub/b.txt") as handle:
        assert handle.read() == b"B"
    assert json.loads(parent.open_artifact("config/config.json").read()) == {"layers": [64, 10]}

    read = _last_json(mlflow_env.run(READ, cwd=work, env=endpoint.env(Role.READER)))
    assert read["experiment"] == ["mnist-mlflow", "active"]
    assert read["all"] == ["broken", "child", "parent"]
    assert read["filtered"] == ["parent"]
    assert read["failed"] == ["broken"]
    assert read["by_name"] == ["child"] and read["by_tag"] == ["parent"]
    assert read["ordered"] == ["broken", "parent"]  # last loss 3.0, then 0.2
    assert read["paged"] == [2, 1]
    assert read["parent"]["params"] == {"lr": "0.01", "epochs": "3"} and read["parent"]["status"] == "FINISHED"
    assert read["parent"]["metrics"]["loss"] == 0.2 and read["parent"]["team"] == "cv" and read["parent"]["user"]
    assert read["history"] == [[0, 1.0], [1, 0.5], [2, 1 / 3], [3, 0.25], [4, 0.2]]
    assert read["weird"] == ["nan", "inf", "-inf"]
    assert read["downloaded"] == ["a.txt:A", "sub/b.txt:B"]
    assert read["config"] == {"layers": [64, 10]}
    assert read["listed"] == [["config", True], ["model.txt", False], ["plots", True]]
    served = httpx.get(endpoint.url + "/metrics", headers={"Authorization": f"Bearer {endpoint.tokens[Role.READER]}"})
    unserved = [line for line in served.text.splitlines() if 'route="/api/2.0/mlflow/{rest:path}"' in line]
    assert served.status_code == 200 and not unserved  # the scripts used only routes that are served


AUTH = """
import json, mlflow
from mlflow.exceptions import MlflowException
out = {}
try:
    mlflow.set_experiment("guarded")
    with mlflow.start_run():
        mlflow.log_metric("x", 1.0)
    out["wrote"] = True
except MlflowException as exc:
    out["error"] = [exc.error_code, str(exc)]
try:
    out["read"] = len(mlflow.search_runs(search_all_experiments=True, output_format="list"))
except MlflowException as exc:
    out["read_error"] = exc.error_code
print(json.dumps(out))
"""


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("role", "error", "can_read"), [
    (None, "UNAUTHENTICATED", False),
    (Role.READER, "PERMISSION_DENIED", True),
    (Role.WRITER, None, True),
], ids=["no-token", "reader", "writer"])
def test_the_mlflow_client_needs_a_labtrack_token_and_a_writer_role_to_write(
        mlflow_env: Mlflow, endpoint: Endpoint, tmp_path: Path, role: Role | None, error: str | None,  # noqa: F811
        can_read: bool) -> None:
    out = _last_json(mlflow_env.run(AUTH, cwd=tmp_path, env=endpoint.env(role)))
    if error is None:
        assert out.get("wrote") is True, out
    else:
        assert out["error"][0] == error, out
        assert "token" in out["error"][1]  # the message says what is missing
    assert ("read" in out) is can_read, out
    if role is None:
        assert out["read_error"] == "UNAUTHENTICATED"


LIFECYCLE = """
import json
import mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

client = MlflowClient()
out = {}
with mlflow.start_run() as default_run:  # no experiment set: MLflow's experiment 0
    mlflow.set_tag("gone", "soon")
    mlflow.log_metric("m", 1.0)
out["default"] = [default_run.info.experiment_id, client.get_experiment("0").name]
client.delete_tag(default_run.info.run_id, "gone")
client.update_run(default_run.info.run_id, name="renamed")
kept = client.get_run(default_run.info.run_id)
out["renamed"] = [kept.info.run_name, "gone" in kept.data.tags, kept.info.status]
try:
    mlflow.start_run(run_id=default_run.info.run_id)  # resuming an ended run
except MlflowException as exc:
    out["reopened"] = [exc.error_code, "does not reopen" in str(exc)]
exp = client.create_experiment("lifecycle")
try:
    client.create_experiment("lifecycle")
except MlflowException as exc:
    out["duplicate"] = exc.error_code
run = client.create_run(exp, run_name="doomed")
client.set_terminated(run.info.run_id, "KILLED")
out["killed"] = client.get_run(run.info.run_id).info.status
client.delete_run(run.info.run_id)
out["deleted_run"] = [client.get_run(run.info.run_id).info.lifecycle_stage,
                      len(client.search_runs([exp])), len(client.search_runs([exp], run_view_type=ViewType.ALL))]
client.restore_run(run.info.run_id)
out["restored_run"] = client.get_run(run.info.run_id).info.lifecycle_stage
client.delete_experiment(exp)
out["deleted_experiment"] = [client.get_experiment(exp).lifecycle_stage,
                             [e.name for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)]]
client.restore_experiment(exp)
out["experiments"] = sorted(e.name for e in client.search_experiments(filter_string="name LIKE 'life%'"))
try:
    client.get_run("0" * 32)
except MlflowException as exc:
    out["missing"] = exc.error_code
print(json.dumps(out))
"""


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_mlflow_manages_experiments_and_runs_through_labtrack(
        mlflow_env: Mlflow, endpoint: Endpoint, tmp_path: Path) -> None:  # noqa: F811
    out = _last_json(mlflow_env.run(LIFECYCLE, cwd=tmp_path, env=endpoint.env(Role.ADMIN)))
    assert out["default"] == ["0", "Default"]
    assert out["renamed"] == ["renamed", False, "FINISHED"]
    assert out["duplicate"] == "RESOURCE_ALREADY_EXISTS"
    assert out["reopened"] == ["INVALID_PARAMETER_VALUE", True]
    assert out["killed"] == "KILLED"
    assert out["deleted_run"] == ["deleted", 0, 1]
    assert out["restored_run"] == "active"
    assert out["deleted_experiment"] == ["deleted", ["lifecycle"]]
    assert out["experiments"] == ["lifecycle"]
    assert out["missing"] == "RESOURCE_DOES_NOT_EXIST"
    client = endpoint.client()
    assert [e.name for e, _ in client.list_experiments()] == ["Default", "lifecycle"]
    (renamed,) = client.search_runs("Default")
    assert renamed.tags["mlflow.runName"] == "renamed" and "gone" not in renamed.tags

# -- MLflow's filter and order_by, in labtrack's terms --------------------------------------------


@pytest.mark.parametrize(("mlflow", "labtrack_ast"), [
    ("metrics.acc > 0.9", Compare(Field("metrics", "acc"), ">", 0.9)),
    ("params.lr = '0.01'", Compare(Field("params", "lr"), "=", "0.01")),
    ("tags.t = 'v'", Compare(Field("tags", "t"), "=", "v")),
    ("metrics.x > 0.5 and params.lr = '0.01' AND tags.t = 'v'",
     And((Compare(Field("metrics", "x"), ">", 0.5), Compare(Field("params", "lr"), "=", "0.01"),
          Compare(Field("tags", "t"), "=", "v")))),
    ("attributes.status = 'FAILED'", Compare(Field("attributes", "status"), "=", "FAILED")),
    ("status != 'RUNNING'", Compare(Field("attributes", "status"), "!=", "RUNNING")),
    ("attributes.status = 'SCHEDULED'", Compare(Field("attributes", "status"), "=", "RUNNING")),
    ("run_name = 'child'", Compare(Field("tags", "mlflow.runName"), "=", "child")),
    ("attributes.run_name LIKE 'ch%'", Like(Field("tags", "mlflow.runName"), "ch%")),
    ("attribute.run_id IN ('ab', 'cd')", InList(Field("attributes", "id"), ("ab", "cd"))),
    ("attributes.start_time > 1700000000000", Compare(Field("attributes", "start_time"), ">", 1_700_000_000.0)),
    ("tags.`mlflow.source.type` = 'LOCAL'", Compare(Field("tags", "mlflow.source.type"), "=", "LOCAL")),
    ('tags."model class" = "cnn"', Compare(Field("tags", "model class"), "=", "cnn")),
    ("tags.mlflow.source.type = 'LOCAL'", Compare(Field("tags", "mlflow.source.type"), "=", "LOCAL")),
    ("metric.loss <= -1e-3", Compare(Field("metrics", "loss"), "<=", -1e-3)),
    ("param.opt NOT IN ('sgd')", InList(Field("params", "opt"), ("sgd",), negated=True)),
    ("tags.note ILIKE '%it''s%'", Like(Field("tags", "note"), "%it's%", case_insensitive=True)),
    ("tags.note IS NULL", IsNull(Field("tags", "note"))),
    ("tags.note IS NOT NULL", IsNull(Field("tags", "note"), negated=True)),
    ("user_id = 'ada'", Compare(Field("tags", "mlflow.user"), "=", "ada")),
    ("params.a = '1' or (params.b = '2' and not metrics.c = 3)",
     Or((Compare(Field("params", "a"), "=", "1"),
         And((Compare(Field("params", "b"), "=", "2"), Not(Compare(Field("metrics", "c"), "=", 3))))))),
])
def test_an_mlflow_filter_becomes_the_labtrack_filter_that_means_the_same(mlflow: str, labtrack_ast: Any) -> None:
    assert parse_search_filter(mlflow) == labtrack_ast


@pytest.mark.parametrize(("mlflow", "says"), [
    ("metrics.acc >", "expected a value"),
    ("params.lr = 0.01", "quote the value"),
    ("datasets.name = 'x'", "unsupported entity"),
    ("attributes.artifact_uri = 'x'", "unsupported attribute"),
    ("metrics.acc > 1 extra", "unexpected"),
    ("metrics.acc ~ 1", "unexpected character"),
    ("attributes.start_time > 'yesterday'", "milliseconds"),
    ("tags.t = 'unterminated", "unexpected character"),
])
def test_a_filter_mlflow_would_refuse_is_refused_with_the_reason(mlflow: str, says: str) -> None:
    with pytest.raises(MlflowError) as caught:
        parse_search_filter(mlflow)
    assert caught.value.code == "INVALID_PARAMETER_VALUE" and says in caught.value.message


_A60 = "a" * 60


@pytest.mark.timeout(60)  # the regex this replaced took 19 s for 8 '%a' on this name, and ever longer per '%a'
@pytest.mark.parametrize(("name", "pattern", "matches"), [
    ("mnist-cnn", "mnist%", True),
    ("mnist-cnn", "%cnn", True),
    ("mnist-cnn", "%ist-c%", True),
    ("mnist-cnn", "mn_st-cnn", True),
    ("mnist-cnn", "mnist", False),
    ("mnist-cnn", "%rnn", False),
    ("mnist-cnn", "MNIST%", False),
    ("mnist-cnn", "%%%%", True),
    ("a.b", "a_b", True),
    ("a(b)", "a(%)", True),
    ("aXbXc", "a%b%c", True),
    ("ab", "a%b%c", False),
    ("abcabc", "%abc", True),
    ("aba", "%a_a", True),
    ("ab", "%a_a", False),
    (_A60, "%a" * 40 + "b", False),
    (_A60, "%a" * 40, True),
    (_A60, "_" * 59, False),
])
def test_an_experiment_name_like_pattern_matches_as_sql_like_in_linear_time(name: str, pattern: str,
                                                                            matches: bool) -> None:
    from labtrack.core.model import Experiment

    experiment = Experiment(1, name, 0.0)
    assert experiment_matches(f"name LIKE '{pattern}'")(experiment) is matches
    if pattern == pattern.lower():
        assert experiment_matches(f"name ILIKE '{pattern.upper()}'")(experiment) is matches


@pytest.mark.parametrize(("mlflow", "terms"), [
    (["metrics.acc DESC"], [OrderTerm("metrics", "acc", True)]),
    (["attributes.start_time"], [OrderTerm("attributes", "start_time", False)]),
    (["start_time asc", "params.`lr` DESC"], [OrderTerm("attributes", "start_time"), OrderTerm("params", "lr", True)]),
    (["run_name"], [OrderTerm("tags", "mlflow.runName")]),
    (["params.`my lr`   desc  "], [OrderTerm("params", "my lr", True)]),
    (["params.`lr asc`"], [OrderTerm("params", "lr asc")]),
])
def test_an_mlflow_order_by_becomes_labtrack_order_terms(mlflow: list[str], terms: list[OrderTerm]) -> None:
    assert parse_order_by(mlflow) == terms


@pytest.mark.timeout(60)  # the regex this replaced took 6.5 s for 2000 spaces, 52 s for 4000: a reader's 10 KB froze the server
@pytest.mark.parametrize("term", ["a" + " " * 8000 + "b", "metrics.acc" + " " * 8000 + "x", "metrics." + "a" * 5000])
def test_a_hostile_order_by_term_is_refused_at_once(term: str) -> None:
    with pytest.raises((MlflowError, labtrack.InvalidInput)):
        parse_order_by([term])


# -- hostile and broken requests, over real HTTP ----------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    with serve_in_thread(str(tmp_path / "store"), role=Role.WRITER) as s:
        yield s


def _post(served: Any, path: str, body: Any = None, *, content: bytes | None = None,
          headers: dict[str, str] | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {served.token}", "Content-Type": "application/json", **(headers or {})}
    return httpx.post(served.url + "/api/2.0/mlflow/" + path, headers=headers,
                      content=content if content is not None else json.dumps(body).encode())


def _run(served: Any, experiment: str = "attacks") -> tuple[str, str]:
    exp = _post(served, "experiments/create", {"name": experiment}).json()["experiment_id"]
    return exp, _post(served, "runs/create", {"experiment_id": exp}).json()["run"]["info"]["run_id"]


@pytest.mark.parametrize(("name", "path", "body", "status", "code"), [
    ("bad JSON", "runs/log-metric", b"{not json", 400, "MALFORMED_REQUEST"),
    ("not an object", "runs/log-metric", b"[1, 2]", 400, "MALFORMED_REQUEST"),
    ("unknown run", "runs/log-metric", {"run_id": "f" * 32, "key": "x", "value": 1, "timestamp": 0}, 404,
     "RESOURCE_DOES_NOT_EXIST"),
    ("run id not hex", "runs/log-metric", {"run_id": "../../etc", "key": "x", "value": 1}, 404,
     "RESOURCE_DOES_NOT_EXIST"),
    ("missing run id", "runs/log-metric", {"key": "x", "value": 1}, 400, "INVALID_PARAMETER_VALUE"),
    ("metric not a number", "runs/log-metric", {"run_id": "RUN", "key": "x", "value": "high"}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("negative step", "runs/log-metric", {"run_id": "RUN", "key": "x", "value": 1, "step": -1}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("timestamp beyond year 9999", "runs/log-metric", {"run_id": "RUN", "key": "x", "value": 1,
                                                       "timestamp": 2**62}, 400, "INVALID_PARAMETER_VALUE"),
    ("huge param value", "runs/log-parameter", {"run_id": "RUN", "key": "p", "value": "v" * 7000}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("huge key", "runs/set-tag", {"run_id": "RUN", "key": "k" * 300, "value": "v"}, 400, "INVALID_PARAMETER_VALUE"),
    ("control characters in a key", "runs/set-tag", {"run_id": "RUN", "key": "a\x00b", "value": "v"}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("batch over MLflow's limits", "runs/log-batch",
     {"run_id": "RUN", "params": [{"key": f"p{i}", "value": "1"} for i in range(101)]}, 400, "INVALID_PARAMETER_VALUE"),
    ("bad filter", "runs/search", {"experiment_ids": ["EXP"], "filter": "metrics.acc >"}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("forged page token", "runs/search", {"experiment_ids": ["EXP"], "page_token": "eyJvZmZzZXQiOiAtMX0="}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("too many results", "runs/search", {"experiment_ids": ["EXP"], "max_results": 10**9}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("unknown experiment", "runs/create", {"experiment_id": "987654"}, 404, "RESOURCE_DOES_NOT_EXIST"),
    ("experiment that exists", "experiments/create", {"name": "attacks"}, 400, "RESOURCE_ALREADY_EXISTS"),
    ("renaming an experiment", "experiments/update", {"experiment_id": "EXP", "new_name": "b"}, 501,
     "NOT_IMPLEMENTED"),
    ("the model registry", "registered-models/create", {"name": "m"}, 404, "ENDPOINT_NOT_FOUND"),
    ("logged models", "logged-models", {"experiment_id": "EXP"}, 404, "ENDPOINT_NOT_FOUND"),
    ("a form, not JSON", "runs/log-metric", b"run_id=x", 400, "INVALID_PARAMETER_VALUE"),
    ("a run name over MLflow's tag limit", "runs/create", {"experiment_id": "EXP", "run_name": "n" * 8001}, 400,
     "INVALID_PARAMETER_VALUE"),
    ("a filter nested 2000 deep", "runs/search", {"experiment_ids": ["EXP"], "filter": "(" * 2000 + "params.a = 'x'"
                                                  + ")" * 2000}, 400, "INVALID_PARAMETER_VALUE"),
    ("a filter with 2400 NOTs", "runs/search", {"experiment_ids": ["EXP"], "filter": "not " * 2400 + "params.a = 'x'"},
     400, "INVALID_PARAMETER_VALUE"),
])
def test_a_broken_or_hostile_request_gets_mlflows_error_and_changes_nothing(
        served: Any, name: str, path: str, body: Any, status: int, code: str) -> None:
    exp, run_id = _run(served)
    before = served.store.get_run(run_id)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if name == "a form, not JSON" else None
    if isinstance(body, bytes):
        answer = _post(served, path, content=body, headers=headers)
    else:
        answer = _post(served, path, json.loads(json.dumps(body).replace('"RUN"', f'"{run_id}"')
                                                .replace('"EXP"', f'"{exp}"')))
    assert (answer.status_code, answer.json()["error_code"]) == (status, code), answer.text
    assert answer.json()["message"]
    after = served.store.get_run(run_id)
    assert (after.params, after.tags, after.metrics) == (before.params, before.tags, before.metrics)
    assert [r.id for r in served.store.search_runs(Search())] == [run_id]


def test_a_param_logged_again_with_another_value_is_refused_as_mlflow_does(served: Any) -> None:
    _, run_id = _run(served)
    assert _post(served, "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"}).status_code == 200
    assert _post(served, "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"}).status_code == 200
    changed = _post(served, "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.2"})
    assert (changed.status_code, changed.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert served.store.get_run(run_id).params == {"lr": "0.1"}


@pytest.mark.parametrize("path", [
    "../../etc/passwd",
    "%2e%2e/%2e%2e/etc/passwd",
    "a/../../../etc/passwd",
    "/etc/passwd",
    "a//b",
    "a/%2e/b",
    "..%2f..%2fetc%2fpasswd",
])
def test_an_artifact_path_that_leaves_the_run_is_refused(served: Any, tmp_path: Path, path: str) -> None:
    exp, run_id = _run(served)
    url = f"{served.url}/api/2.0/mlflow-artifacts/artifacts/{exp}/{run_id}/artifacts/{path}"
    headers = {"Authorization": f"Bearer {served.token}"}
    put = httpx.put(url, content=b"pwned", headers=headers)
    assert put.status_code in (400, 404), put.text
    assert put.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "ENDPOINT_NOT_FOUND")
    assert served.store.list_artifacts(run_id) == []
    got = httpx.get(url, headers=headers)
    assert got.status_code in (400, 404) and b"root:" not in got.content
    assert not any(p.name == "passwd" for p in tmp_path.rglob("passwd"))


def test_an_artifact_path_naming_another_experiment_does_not_find_the_run(served: Any) -> None:
    exp, run_id = _run(served)
    other, _ = _run(served, "other")
    headers = {"Authorization": f"Bearer {served.token}"}
    base = f"{served.url}/api/2.0/mlflow-artifacts/artifacts"
    assert httpx.put(f"{base}/{exp}/{run_id}/artifacts/ok.txt", content=b"ok", headers=headers).status_code == 200
    for method, content in (("PUT", b"x"), ("GET", None)):
        answer = httpx.request(method, f"{base}/{other}/{run_id}/artifacts/ok.txt", content=content, headers=headers)
        assert (answer.status_code, answer.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    got = httpx.get(f"{base}/{exp}/{run_id}/artifacts/ok.txt", headers=headers)
    assert got.content == b"ok" and got.headers["content-disposition"] == "attachment"
    assert [a.path for a in served.store.list_artifacts(run_id)] == ["ok.txt"]


def test_metric_history_pages_through_every_point(served: Any) -> None:
    _, run_id = _run(served)
    metrics = [{"key": "loss", "value": float(i), "timestamp": 1_700_000_000_000 + i, "step": i} for i in range(1000)]
    assert _post(served, "runs/log-batch", {"run_id": run_id, "metrics": metrics}).status_code == 200
    headers = {"Authorization": f"Bearer {served.token}"}
    seen, token = [], None
    while True:
        query = {"run_id": run_id, "metric_key": "loss", "max_results": 300, **({"page_token": token} if token else {})}
        page = httpx.get(served.url + "/api/2.0/mlflow/metrics/get-history", params=query, headers=headers).json()
        seen += [(m["step"], m["value"], m["timestamp"]) for m in page["metrics"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == [(i, float(i), 1_700_000_000_000 + i) for i in range(1000)]


def test_a_token_limited_to_some_experiments_sees_only_their_runs_through_mlflow(served: Any) -> None:
    mine, my_run = _run(served, "mine")
    theirs, their_run = _run(served, "theirs")
    headers = {"Authorization": f"Bearer {served.token}"}
    assert httpx.put(f"{served.url}/api/2.0/mlflow-artifacts/artifacts/{theirs}/{their_run}/artifacts/secret.txt",
                     content=b"secret", headers=headers).status_code == 200
    limited, _ = served.store.create_token("team-mine", Role.WRITER, experiments=["mine"])
    headers = {"Authorization": f"Bearer {limited}"}
    as_limited = {"Authorization": f"Bearer {limited}", "Content-Type": "application/json"}
    got = httpx.get(served.url + "/api/2.0/mlflow/runs/get", params={"run_id": their_run}, headers=headers)
    assert (got.status_code, got.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert httpx.get(served.url + "/api/2.0/mlflow/runs/get", params={"run_id": my_run}, headers=headers).is_success
    found = httpx.post(served.url + "/api/2.0/mlflow/runs/search", headers=as_limited,
                       content=json.dumps({"experiment_ids": [mine, theirs]})).json()
    assert [r["info"]["run_id"] for r in found["runs"]] == [my_run]
    listed = httpx.post(served.url + "/api/2.0/mlflow/experiments/search", headers=as_limited, content=b"{}").json()
    assert [e["name"] for e in listed["experiments"]] == ["mine"]
    secret = httpx.get(f"{served.url}/api/2.0/mlflow-artifacts/artifacts/{theirs}/{their_run}/artifacts/secret.txt",
                       headers=headers)
    assert secret.status_code == 404 and b"secret" not in secret.content
    wrote = httpx.post(served.url + "/api/2.0/mlflow/runs/set-tag", headers=as_limited,
                       content=json.dumps({"run_id": their_run, "key": "x", "value": "y"}))
    assert wrote.status_code == 404 and "x" not in served.store.get_run(their_run).tags
    created = httpx.post(served.url + "/api/2.0/mlflow/runs/create", headers=as_limited,
                         content=json.dumps({"experiment_id": theirs}))
    assert created.status_code == 404


def test_a_readers_search_body_over_a_mebibyte_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    # A reader's token could otherwise post 16 MiB of JSON (hundreds of MB once decoded) to a search, many at once.
    with serve_in_thread(str(tmp_path / "store"), role=Role.READER) as reader:
        headers = {"Authorization": f"Bearer {reader.token}", "Content-Type": "application/json"}
        body = json.dumps({"experiment_ids": ["1"] * 300_000}).encode()  # 2 MiB
        for path in ("runs/search", "experiments/search"):
            answer = httpx.post(f"{reader.url}/api/2.0/mlflow/{path}", headers=headers, content=body)
            assert (answer.status_code, answer.json()["error_code"]) == (413, "INVALID_PARAMETER_VALUE"), answer.text
            assert "1 MiB" in answer.json()["message"]
        small = httpx.post(f"{reader.url}/api/2.0/mlflow/runs/search", headers=headers,
                           content=json.dumps({"experiment_ids": ["1"] * 10}).encode())
        assert small.status_code == 200


class _CountingSlots:
    """The server's real write-slot semaphore, counting the requests that held it (a spy: the slots still limit)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered: list[str] = []

    async def __aenter__(self) -> None:
        await self.inner.acquire()
        self.entered.append("slot")

    async def __aexit__(self, *exc: object) -> None:
        self.inner.release()


def test_mlflow_writes_and_searches_are_decoded_and_applied_holding_a_write_slot(served: Any) -> None:
    exp, run_id = _run(served)
    slots = _CountingSlots(served.app.state.write_slots)
    served.app.state.write_slots = slots
    metrics = [{"key": "loss", "value": 1.0, "timestamp": 1_700_000_000_000, "step": i} for i in range(10)]
    calls = [("runs/log-batch", {"run_id": run_id, "metrics": metrics}), ("runs/log-metric", {
        "run_id": run_id, "key": "acc", "value": 0.5, "timestamp": 1_700_000_000_000}),
        ("runs/search", {"experiment_ids": [exp]}), ("runs/create", {"experiment_id": exp})]
    for path, body in calls:
        assert _post(served, path, body).status_code == 200, path
    assert len(slots.entered) == len(calls)
    get = httpx.get(served.url + "/api/2.0/mlflow/runs/get", params={"run_id": run_id},
                    headers={"Authorization": f"Bearer {served.token}"})
    assert get.status_code == 200 and len(slots.entered) == len(calls), "a GET has no body: it takes no slot"


@pytest.mark.parametrize("name", ["\x1b[2J\x1b[31mok\n", "n" * 251, "two\nlines"], ids=["escapes", "251", "newline"])
@pytest.mark.parametrize("given_as", ["run_name", "tag"])
def test_a_run_name_labtracks_rule_refuses_is_kept_for_mlflow_and_labtrack_names_the_run_for_its_id(
        served: Any, name: str, given_as: str) -> None:
    from labtrack.core.names import run_name

    exp, _ = _run(served)
    body: dict[str, Any] = {"experiment_id": exp}
    if given_as == "run_name":
        body["run_name"] = name
    else:
        body["tags"] = [{"key": "mlflow.runName", "value": name}]
    created = _post(served, "runs/create", body)
    assert created.status_code == 200, created.text
    info = created.json()["run"]["info"]
    record = served.store.get_run(info["run_id"])
    assert (info["run_name"], record.tags["mlflow.runName"]) == (name, name)
    assert record.name == run_name(record.id)  # printable, at most 250 characters: what lists show
    renamed = _post(served, "runs/update", {"run_id": record.id, "run_name": name + "!"})
    assert renamed.json()["run_info"]["run_name"] == name + "!"
    assert served.store.get_run(record.id).name == run_name(record.id)


@pytest.mark.parametrize("value", ["v" * 6000, "a\n" * 3000, 'say "hi" ' * 666, "tab\t" * 1500],
                         ids=["6000", "newlines", "quotes", "tabs"])
def test_a_param_value_within_mlflows_6000_characters_is_kept_exactly(served: Any, value: str) -> None:
    # MLflow counts a param value's characters (its autologging cuts values to 6000): labtrack's own limit counts
    # them as JSON, where a newline or a quote is two. A value MLflow takes must not fail the script.
    _, run_id = _run(served)
    answer = _post(served, "runs/log-parameter", {"run_id": run_id, "key": "config", "value": value})
    assert answer.status_code == 200, answer.text
    assert served.store.get_run(run_id).params["config"] == value
    over = _post(served, "runs/log-batch", {"run_id": run_id, "params": [{"key": "more", "value": value.ljust(6001, "x")}]})
    assert (over.status_code, over.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "6000" in over.json()["message"]


def test_an_unpaged_metric_history_is_streamed_in_pieces_with_every_point(served: Any) -> None:
    # Without max_results every point comes in one answer (as MLflow's server does): built whole, 2M points held
    # the server 1 GB for one reader's GET. Streamed a piece at a time, the answer has no Content-Length.
    from labtrack.core.model import RunWrite
    from labtrack.core.series import Chunk

    _, run_id = _run(served)
    n = 60_000  # more than two pieces of MAX_HISTORY
    values = [math.nan if i == 7 else math.inf if i == 30_000 else float(i) for i in range(n)]
    chunk = Chunk.empty()
    for i, value in enumerate(values):
        chunk.steps.append(i)
        chunk.timestamps.append(1_700_000_000 + i / 1000)
        chunk.values.append(value)
    served.store.write([RunWrite(run_id, metrics={"loss": chunk}, new_keys=frozenset({"loss"}))])
    answer = httpx.get(served.url + "/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"},
                       headers={"Authorization": f"Bearer {served.token}"})
    assert answer.status_code == 200 and "content-length" not in answer.headers
    got = answer.json()
    assert "next_page_token" not in got
    assert [(m["key"], m["step"], m["timestamp"]) for m in got["metrics"]] == [
        ("loss", i, 1_700_000_000_000 + i) for i in range(n)]
    assert [m["value"] for m in got["metrics"]] == ["NaN" if i == 7 else "Infinity" if i == 30_000 else float(i)
                                                    for i in range(n)]
