"""`labtrack import mlflow SOURCE`: stores written by the real MLflow (in its own virtualenv) — an mlruns
directory, a SQLite file, a PostgreSQL database and a real `mlflow server` — imported exactly, and
imported again without duplicating anything.

Each kind of store is written once per module (``mlflow_store``); a test imports it into a fresh labtrack
store of its own. The one test that changes the MLflow side (``test_a_third_import_adds_only_what_is_new_at_
the_source``) only touches the experiment ``interop-growing``, which the other tests do not check exactly.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow_helpers import REPO, Mlflow, mlflow_env, start_mlflow_server  # noqa: F401 - mlflow_env: a fixture

import labtrack as lt
from labtrack.verbs.mlflow_import import import_mlflow

T0 = 1_700_000_000_000  # ms since the epoch, as MLflow keeps times
KINDS = ["mlruns", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "server"]


def _series(n: int, *, start: int = 0, specials: bool = True) -> list[list[Any]]:
    """n points [step, timestamp ms, value]; with ``specials`` NaN, +inf and -inf among them."""
    points = []
    for i in range(n):
        value: float = math.sin(i / 37) * 10 ** (i % 7 - 3)
        if specials and i % 250 == 7:
            value = [math.nan, math.inf, -math.inf][(i // 250) % 3]
        points.append([start + i, T0 + 1000 * i + i % 3, value])
    return points


ARTIFACTS = {"model.txt": "weights v1\n", "plots/a.txt": "plot a\n", "plots/sub/b.txt": "plot b, nested\n"}
SPEC: dict[str, list[dict[str, Any]]] = {
    "interop-a": [
        {"name": "parent", "status": "FINISHED", "start": T0, "end": T0 + 3_600_000,
         "params": {"lr": "0.01", "layers": "[64, 32]", "optimizer": "adam"},
         "tags": {"team": "cv", "mlflow.user": "ada", "mlflow.source.name": "train.py",
                  "mlflow.source.git.commit": "0123456789abcdef0123456789abcdef01234567"},
         "metrics": {"loss": _series(1200), "acc": _series(1000, specials=False), "lr_now": _series(3, start=10)},
         "artifacts": True},
        {"name": "child", "parent": "parent", "status": "FINISHED", "start": T0 + 1000, "end": T0 + 2000,
         "params": {"fold": "1"}, "tags": {"mlflow.user": "ada"}, "metrics": {"loss": _series(20)}},
        {"name": "broken", "status": "FAILED", "start": T0 + 5000, "end": T0 + 6500, "params": {"lr": "10"},
         "tags": {"mlflow.user": "bob"}, "metrics": {"loss": [[0, T0 + 5001, 3.5], [1, T0 + 5002, math.nan]]}},
        {"name": "discarded", "status": "FINISHED", "start": T0 + 7000, "end": T0 + 7100, "deleted": True,
         "params": {"lr": "1"}, "tags": {}, "metrics": {"loss": _series(4)}},
    ],
    "interop-b": [
        {"name": "stopped", "status": "KILLED", "start": T0 + 9000, "end": T0 + 9500, "params": {"seed": "3"},
         "tags": {"mlflow.source.name": "other.py"}, "metrics": {"score": _series(1001)}},
    ],
    "interop-growing": [
        {"name": "live", "status": "RUNNING", "start": T0 + 10_000, "end": None, "params": {"lr": "0.1"},
         "tags": {}, "metrics": {"loss": _series(10, specials=False)}},
    ],
}

WRITE = """
import json, os, sys
from pathlib import Path
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

spec = json.loads(Path(sys.argv[-1]).read_text())
client = MlflowClient(tracking_uri=os.environ["TRACKING_URI"])
ids = {}
for experiment, runs in spec["experiments"].items():
    exp_id = client.create_experiment(experiment)
    for run in runs:
        tags = dict(run["tags"])
        if "parent" in run:
            tags["mlflow.parentRunId"] = ids[run["parent"]]
        made = client.create_run(exp_id, start_time=run["start"], tags=tags, run_name=run["name"])
        run_id = ids[run["name"]] = made.info.run_id
        for key, value in run["params"].items():
            client.log_param(run_id, key, value)
        for key, points in run["metrics"].items():
            metrics = [Metric(key, v, t, s) for s, t, v in points]
            for i in range(0, len(metrics), 1000):
                client.log_batch(run_id, metrics=metrics[i:i + 1000])
        if run.get("artifacts"):
            root = Path("files") / run_id
            for path, text in spec["artifacts"].items():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text(text)
            client.log_artifact(run_id, str(root / "model.txt"))
            client.log_artifacts(run_id, str(root / "plots"), "plots")
        if run["status"] != "RUNNING":
            client.set_terminated(run_id, run["status"], end_time=run["end"])
        if run.get("deleted"):
            client.delete_run(run_id)
print(json.dumps(ids))
"""

GROW = f"t = {T0 + 20_000}\n" + """
import json, os, sys
from pathlib import Path
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

client = MlflowClient(tracking_uri=os.environ["TRACKING_URI"])
live = sys.argv[-1]
client.log_batch(live, metrics=[Metric("loss", 0.125, t, 10)])
client.set_tag(live, "stage", "done")
Path("late.txt").write_text("late artifact")
client.log_artifact(live, "late.txt", "late")
client.set_terminated(live, "FINISHED", end_time=t)
exp_id = client.get_experiment_by_name("interop-growing").experiment_id
new = client.create_run(exp_id, start_time=t, run_name="second")
client.log_batch(new.info.run_id, metrics=[Metric("loss", 1.5, t, 0), Metric("loss", 1.25, t, 1)])
client.set_terminated(new.info.run_id, "FINISHED", end_time=t + 5)
print(new.info.run_id)
"""


@dataclass
class MlflowStore:
    kind: str
    source: str  # what `labtrack import mlflow` is given
    writer_uri: str  # what the MLflow scripts write to
    ids: dict[str, str]  # run name -> MLflow run id
    mlflow: Mlflow
    home: Path
    env: dict[str, str]
    grown: bool = False  # GROW has run: interop-growing has a finished "live" and a run "second"

    @property
    def sql_backed(self) -> bool:
        """MLflow's database stores keep ±inf as ±max float (its own limitation); its file store keeps inf."""
        return self.kind != "mlruns"

    def write(self, script: str, *args: str) -> str:
        arg_text = ", ".join(repr(a) for a in args)
        return self.mlflow.run(f"import sys; sys.argv += [{arg_text}]\n{script}", cwd=self.home,
                               env={**self.env, "TRACKING_URI": self.writer_uri})


@pytest.fixture(scope="module", params=KINDS)
def mlflow_store(request: pytest.FixtureRequest, mlflow_env: Mlflow,  # noqa: F811 - the imported fixture
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowStore]:
    kind = request.param
    home = tmp_path_factory.mktemp(f"mlflow-{kind}")
    env: dict[str, str] = {}
    (home / "spec.json").write_text(json.dumps({"experiments": SPEC, "artifacts": ARTIFACTS}))
    server = None
    if kind == "mlruns":
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"
        writer = source = f"file://{home / 'mlruns'}"
        source = str(home / "mlruns")
    elif kind == "sqlite":
        writer = source = f"sqlite:///{home / 'mlflow.db'}"
    elif kind == "postgres":
        writer, source = _mlflow_postgres(request, mlflow_env, env)
    else:
        # `mlflow server` imports numpy too (mlflow.gateway), which the server extras lack: the extras have it.
        with_numpy = Mlflow(mlflow_env.python, mlflow_env.version,
                            mlflow_env.server_path and f"{mlflow_env.server_path}{os.pathsep}{_extras(mlflow_env)}")
        server = start_mlflow_server(with_numpy, f"sqlite:///{home / 'server.db'}", home / "artifacts",
                                     home / "server.log")
        writer = source = next(server).url
    store = MlflowStore(kind, source, writer, {}, mlflow_env, home, env)
    store.ids = json.loads(store.write(WRITE, str(home / "spec.json")).strip().splitlines()[-1])
    yield store
    if server is not None:
        server.close()


def _extras(mlflow: Mlflow) -> str:
    """The MLflow virtualenv's extras directory (psycopg2, numpy, pandas: ``bench.mlflow_env.EXTRAS``)."""
    sys.path.insert(0, str(REPO))
    try:
        from bench.mlflow_env import MlflowEnv, ensure_extras
    finally:
        sys.path.remove(str(REPO))
    extras = ensure_extras(MlflowEnv(mlflow.python, mlflow.version))
    if extras is None:
        pytest.fail("MLflow's extras (psycopg2, pandas) could not be installed (bench.mlflow_env.ensure_extras)")
    return extras


def _mlflow_postgres(request: pytest.FixtureRequest, mlflow: Mlflow, env: dict[str, str]) -> tuple[str, str]:
    """A fresh database on the test PostgreSQL server, written by MLflow through psycopg2 (from the MLflow
    virtualenv's extras) and imported from ``postgresql://`` as a user gives it (read with psycopg 3)."""
    from sqlalchemy import create_engine, text

    env["PYTHONPATH"] = _extras(mlflow)
    server = request.getfixturevalue("postgres_server")
    name = f"mlflow_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    address = server.split("://", 1)[1].rsplit("/", 1)[0] + f"/{name}"
    # SQLAlchemy 2.1 reads a bare postgresql:// with psycopg 3, which MLflow's virtualenv lacks: name psycopg2.
    return f"postgresql+psycopg2://{address}", f"postgresql://{address}"


@pytest.fixture
def target(tmp_path: Path) -> lt.Client:
    return lt.Client(str(tmp_path / "imported"))


def _expected_values(store: MlflowStore, points: list[list[Any]]) -> list[float]:
    values = [float(v) for _, _, v in points]
    if store.sql_backed:
        values = [math.copysign(sys.float_info.max, v) if math.isinf(v) else v for v in values]
    return values


def _same_floats(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


def _all_runs(client: lt.Client) -> dict[str, lt.Run]:
    return {run.name: run for run in client.search_runs(lifecycle="all")}


def test_every_run_param_metric_point_tag_and_artifact_arrives_exactly(mlflow_store: MlflowStore,
                                                                      target: lt.Client) -> None:
    summary = import_mlflow(target, mlflow_store.source)
    assert summary.problems == []
    grown = {"second"} if mlflow_store.grown else set()
    assert summary.runs_new == 5 + len(grown)  # the deleted run is left out by default
    runs = _all_runs(target)
    assert set(runs) == {"parent", "child", "broken", "stopped", "live"} | grown
    for experiment, specs in SPEC.items():
        for spec in specs:
            if spec.get("deleted") or (experiment == "interop-growing" and mlflow_store.grown):
                continue
            run = runs[spec["name"]]
            mlflow_id = mlflow_store.ids[spec["name"]]
            assert run.id == mlflow_id, "an MLflow run keeps its id"
            assert run.experiment == experiment
            assert run.status == spec["status"]
            assert run.start_time == spec["start"] / 1000
            assert run.end_time == (spec["end"] / 1000 if spec["end"] is not None else None)
            assert run.params == spec["params"]
            for key, value in spec["tags"].items():
                assert run.tags[key] == value
            assert run.tags["mlflow.run_id"] == mlflow_id
            assert run.tags["mlflow.runName"] == spec["name"]
            assert run.tags["labtrack.imported_from"] == mlflow_store.source
            if "parent" in spec:
                assert run.tags["labtrack.parent"] == mlflow_store.ids[spec["parent"]]
            assert set(run.metrics) == set(spec["metrics"])
            for key, points in spec["metrics"].items():
                history = run.history(key)
                assert list(history.steps) == [s for s, _, _ in points]
                assert list(history.timestamps) == [t / 1000 for _, t, _ in points]
                assert _same_floats(list(history.values), _expected_values(mlflow_store, points)), key
    imported = [s for specs in SPEC.values() for s in specs if not s.get("deleted")]
    assert summary.points == sum(len(p) for s in imported for p in s["metrics"].values()) + 3 * len(grown)
    parent = runs["parent"]
    assert {a.path for a in parent.artifacts} == set(ARTIFACTS)
    for path, text in ARTIFACTS.items():
        with parent.open_artifact(path) as f:
            assert f.read().decode() == text
    assert runs["child"].artifacts == []


def test_importing_again_adds_nothing(mlflow_store: MlflowStore, target: lt.Client) -> None:
    first = import_mlflow(target, mlflow_store.source, experiments=["interop-a", "interop-b"])
    before = {name: (run.params, run.tags, {k: len(run.history(k)) for k in run.metrics}, run.artifacts)
              for name, run in _all_runs(target).items()}
    again = import_mlflow(target, mlflow_store.source, experiments=["interop-a", "interop-b"])
    assert (first.runs_new, first.runs_unchanged) == (4, 0)
    assert (again.runs_new, again.runs_updated, again.runs_unchanged, again.points, again.artifacts) == (0, 0, 4, 0, 0)
    after = {name: (run.params, run.tags, {k: len(run.history(k)) for k in run.metrics}, run.artifacts)
             for name, run in _all_runs(target).items()}
    assert after == before


def test_a_third_import_adds_only_what_is_new_at_the_source(mlflow_store: MlflowStore, target: lt.Client) -> None:
    import_mlflow(target, mlflow_store.source)
    import_mlflow(target, mlflow_store.source)
    live_id = mlflow_store.ids["live"]
    points_before = len(target.get_run(live_id).history("loss"))
    second_id = mlflow_store.write(GROW, live_id).strip().splitlines()[-1]
    mlflow_store.grown = True
    third = import_mlflow(target, mlflow_store.source)
    assert (third.runs_new, third.runs_updated, third.runs_unchanged) == (1, 1, 4)
    assert third.points == 1 + 2 and third.artifacts == 1
    live = target.get_run(live_id)
    assert live.status == "FINISHED" and live.end_time == (T0 + 20_000) / 1000
    assert len(live.history("loss")) == points_before + 1
    assert live.history("loss").points()[-1] == (10, (T0 + 20_000) / 1000, 0.125)
    assert live.tags["stage"] == "done"
    with live.open_artifact("late/late.txt") as f:
        assert f.read() == b"late artifact"
    second = target.get_run(second_id)
    assert second.experiment == "interop-growing" and second.history("loss").values == [1.5, 1.25]
    fourth = import_mlflow(target, mlflow_store.source)
    assert (fourth.runs_new, fourth.runs_updated, fourth.points, fourth.artifacts) == (0, 0, 0, 0)


@pytest.fixture(scope="module")
def sqlite_store(mlflow_env: Mlflow, tmp_path_factory: pytest.TempPathFactory) -> MlflowStore:  # noqa: F811
    home = tmp_path_factory.mktemp("mlflow-small")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    spec_a = {"interop-a": [dict(SPEC["interop-a"][0], metrics={"loss": _series(5)}), *SPEC["interop-a"][1:]]}
    (home / "spec.json").write_text(json.dumps({"experiments": spec_a, "artifacts": ARTIFACTS}))
    store = MlflowStore("sqlite", uri, uri, {}, mlflow_env, home, {})
    store.ids = json.loads(store.write(WRITE, str(home / "spec.json")).strip().splitlines()[-1])
    return store


def test_deleted_mlflow_runs_are_left_out_unless_asked_and_then_arrive_deleted(sqlite_store: MlflowStore,
                                                                              target: lt.Client) -> None:
    assert import_mlflow(target, sqlite_store.source).runs == 3
    assert "discarded" not in _all_runs(target)
    with_deleted = import_mlflow(target, sqlite_store.source, include_deleted=True)
    assert (with_deleted.runs_new, with_deleted.runs_unchanged) == (1, 3)
    assert [r.name for r in target.search_runs("interop-a", lifecycle="deleted")] == ["discarded"]
    assert "discarded" not in {r.name for r in target.search_runs("interop-a")}


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "LABTRACK_"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "labtrack", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=180)


def test_the_command_imports_with_a_summary_and_a_dry_run_writes_nothing(sqlite_store: MlflowStore,
                                                                         tmp_path: Path) -> None:
    store = str(tmp_path / "cli-store")
    dry = _cli("import", "mlflow", sqlite_store.source, "--store", store, "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) | {"problems": []} == {
        "source": sqlite_store.source, "experiments": 2, "runs": 3, "runs_new": 3, "runs_updated": 0,
        "runs_unchanged": 0, "points": 5 + 20 + 2, "artifacts": 3, "dry_run": True, "problems": []}
    assert len(lt.Client(store).search_runs()) == 0
    done = _cli("import", "mlflow", sqlite_store.source, "--store", store, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 run(s): 3 new, 0 updated, 0 unchanged; imported 27 metric point(s) and 3 artifact file(s)" in \
        " ".join(done.stdout.split())
    again = _cli("--store", store, "import", "mlflow", sqlite_store.source, "--experiment", "interop-a", "--json",
                 cwd=tmp_path)
    assert json.loads(again.stdout)["runs_unchanged"] == 3
    typo = _cli("import", "mlflow", sqlite_store.source, "--store", store, "--experiment", "interop-aa", cwd=tmp_path)
    assert typo.returncode == 1 and "no experiment named 'interop-aa'" in typo.stderr and "'interop-a'" in typo.stderr


@pytest.mark.parametrize(("source", "message"), [
    ("no/such/mlruns", "is not a directory, a database URL or a server URL"),
    ("sqlite:///no/such/mlflow.db", "no such SQLite file"),
    ("ftp://example.com/mlruns", "give an mlruns directory, a database URL"),
], ids=["missing-directory", "missing-sqlite-file", "unknown-scheme"])
def test_a_source_that_is_no_mlflow_store_is_refused_naming_it(source: str, message: str, target: lt.Client) -> None:
    with pytest.raises(lt.InvalidInput, match=message) as caught:
        import_mlflow(target, source)
    assert caught.value.field == "source"
    assert not Path("no").exists(), "nothing is created where the source should be"


def test_without_mlflow_installed_the_command_names_the_extra(tmp_path: Path) -> None:
    # MLflow is installed here: hiding it from this one process (sys.modules[...] = None makes its import fail)
    # is how a machine without the extra looks to the import.
    code = ("import sys; sys.modules['mlflow'] = None; sys.modules['mlflow.tracking'] = None\n"
            "from labtrack.cli import main; sys.argv = ['labtrack', 'import', 'mlflow', '.']; main()")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "pip install 'labtrack[mlflow]'" in done.stderr


def test_import_labtrack_and_its_command_line_do_not_load_mlflow() -> None:
    code = "import sys, labtrack, labtrack.cli; print('mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_a_param_changed_at_the_source_is_reported_and_kept_as_imported(sqlite_store: MlflowStore,
                                                                        target: lt.Client, tmp_path: Path) -> None:
    import shutil
    import sqlite3

    import_mlflow(target, sqlite_store.source)
    edited = tmp_path / "edited.db"  # MLflow never changes a param: only a hand-edited store has one that did
    shutil.copy(sqlite_store.source.removeprefix("sqlite:///"), edited)
    with sqlite3.connect(edited) as db:
        db.execute("UPDATE params SET value = '0.5' WHERE key = 'lr' AND run_uuid = ?", (sqlite_store.ids["parent"],))
    again = import_mlflow(target, f"sqlite:///{edited}")
    parent = sqlite_store.ids["parent"][:8]
    assert again.problems == [f"run {parent}: param 'lr' is '0.01' here but '0.5' at the source: kept '0.01'"]
    assert target.get_run(sqlite_store.ids["parent"]).params["lr"] == "0.01"
    assert again.points == 0 and again.runs_new == 0


@pytest.mark.parametrize(("source", "shown"), [
    ("postgresql://alice:hunter2@db.example/mlflow", "postgresql://alice:***@db.example/mlflow"),
    ("postgresql://alice:hunter%402@db.example/mlflow", "postgresql://alice:***@db.example/mlflow"),
    ("postgresql://alice@db.example/mlflow?sslmode=require&password=hunter2",
     "postgresql://alice@db.example/mlflow?sslmode=require&password=***"),
    ("postgresql://alice@db.example/mlflow?sslpassword=hunter2", "postgresql://alice@db.example/mlflow?sslpassword=***"),
    ("https://ghp_hunter2hunter2hunter2hunter2hunter2@mlflow.example", "https://***@mlflow.example"),
    ("https://alice:hunter2@mlflow.example/", "https://alice:***@mlflow.example/"),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("/data/mlruns", "/data/mlruns"),
], ids=["password", "encoded-password", "password-in-query", "sslpassword", "token-as-user", "basic-auth", "sqlite",
        "directory"])
def test_a_source_is_shown_and_recorded_without_its_secrets(source: str, shown: str) -> None:
    from labtrack.verbs.mlflow_import import display_source

    assert display_source(source) == shown


@pytest.mark.parametrize("credentials", ["alice:hunter2@", "ghp_hunter2hunter2hunter2hunter2hunter2@"],
                         ids=["basic-auth", "token-as-user"])
def test_an_import_that_fails_does_not_print_the_sources_secret(credentials: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow_helpers import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # nothing listens there: fail at once
    source = f"http://{credentials}127.0.0.1:{free_port()}"
    with pytest.raises(lt.StoreError) as caught:
        import_mlflow(lt.Client(str(tmp_path / "store")), source)
    assert "hunter2" not in str(caught.value) and "127.0.0.1" in str(caught.value)
    with pytest.raises(lt.InvalidInput) as refused:
        import_mlflow(lt.Client(str(tmp_path / "store")), f"ftp://{credentials}example.com/mlruns")
    assert "hunter2" not in str(refused.value)


def test_importing_from_a_server_url_with_a_token_records_and_prints_it_hidden(
        mlflow_env: Mlflow, tmp_path: Path) -> None:  # noqa: F811 - the imported fixture
    server = start_mlflow_server(mlflow_env, f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts",
                                 tmp_path / "server.log")
    url = next(server).url
    try:
        mlflow_env.run("""
            import mlflow
            mlflow.set_experiment("secretive")
            with mlflow.start_run(run_name="one"):
                mlflow.log_metric("loss", 0.5)
        """, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": url})
        # A token as the URL's user (the server asks for none: MLflow's client sends it anyway)
        with_token = url.replace("http://", "http://ghp_hunter2hunter2hunter2hunter2hunter2@")
        store = str(tmp_path / "imported")
        done = _cli("import", "mlflow", with_token, "--store", store, "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["runs_new"] == 1
        assert "hunter2" not in done.stdout + done.stderr
        (run,) = lt.Client(store).search_runs("secretive")
        assert run.tags["labtrack.imported_from"] == url.replace("http://", "http://***@")
        assert not [k for k, v in run.tags.items() if "hunter2" in v]
    finally:
        server.close()


def test_a_symlink_in_a_handed_over_mlruns_directory_does_not_import_what_it_points_to(
        mlflow_env: Mlflow, tmp_path: Path) -> None:  # noqa: F811 - the imported fixture
    # Someone hands over an mlruns directory (a tarball keeps symlinks): importing it into a shared store must not
    # copy the importer's own files (a key, a home directory) that its links point to (MLflow before 3.x copied
    # them; 3.18 refuses the download, and the run lost every artifact), nor walk a loop. MLflow writes no links.
    outside = tmp_path / "home"
    (outside / ".ssh").mkdir(parents=True)
    (outside / ".ssh" / "id_rsa").write_text("PRIVATE KEY")
    out = mlflow_env.run("""
        import mlflow, pathlib
        mlflow.set_experiment("handed-over")
        with mlflow.start_run() as run:
            pathlib.Path("ok.txt").write_text("fine")
            mlflow.log_artifact("ok.txt")
        print(run.info.run_id, run.info.artifact_uri)
    """, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"})
    run_id, artifact_uri = out.split()[-2:]
    artifacts = Path(artifact_uri.removeprefix("file://"))
    (artifacts / "key.txt").symlink_to(outside / ".ssh" / "id_rsa")
    (artifacts / "home").symlink_to(outside, target_is_directory=True)
    (artifacts / "loop").symlink_to(artifacts, target_is_directory=True)
    target = lt.Client(str(tmp_path / "imported"))
    summary = import_mlflow(target, str(tmp_path / "mlruns"))
    assert summary.runs_new == 1
    assert [a.path for a in target.get_run(run_id).artifacts] == ["ok.txt"]
    assert sorted(p.split("'")[1] for p in summary.problems) == ["home", "key.txt", "loop"], summary.problems
    assert all("symbolic link" in p for p in summary.problems)
    again = import_mlflow(target, str(tmp_path / "mlruns"))
    assert again.runs_unchanged == 1 and [a.path for a in target.get_run(run_id).artifacts] == ["ok.txt"]


def test_an_mlflow_run_whose_id_is_taken_in_another_experiment_is_left_alone(mlflow_env: Mlflow,  # noqa: F811
                                                                           tmp_path: Path) -> None:
    # Run ids are no secret: a handed-over store whose run reuses the id of a run imported before, from another
    # experiment, must not write its tags, points and files into that run (another team's experiment, maybe).
    import shutil

    out = mlflow_env.run("""
        import mlflow
        mlflow.set_experiment("victim")
        with mlflow.start_run() as run:
            mlflow.set_tag("owner", "victim")
            mlflow.log_metric("loss", 1.0, step=0)
        print(run.info.run_id, run.info.experiment_id)
    """, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": (tmp_path / "mlruns").as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"})
    run_id, exp_id = out.split()[-2:]
    target = lt.Client(str(tmp_path / "imported"))
    assert import_mlflow(target, str(tmp_path / "mlruns")).runs_new == 1
    forged = tmp_path / "forged"
    shutil.copytree(tmp_path / "mlruns", forged)
    meta = forged / exp_id / "meta.yaml"
    meta.write_text(meta.read_text().replace("name: victim", "name: attacker"))
    (forged / exp_id / run_id / "tags" / "owner").write_text("attacker")
    (forged / exp_id / run_id / "metrics" / "loss").write_text("1700000000000 666.0 1\n", encoding="utf-8")
    summary = import_mlflow(target, str(forged))
    run = target.get_run(run_id)
    assert (run.experiment, run.tags["owner"], run.tags["labtrack.imported_from"]) == (
        "victim", "victim", str(tmp_path / "mlruns"))
    assert list(run.history("loss").values) == [1.0]
    assert summary.runs_new == summary.runs_updated == 0
    assert len(summary.problems) == 1 and "'victim'" in summary.problems[0] and "'attacker'" in summary.problems[0]
    assert target.search_runs("attacker") == []
    # The same store with the experiment renamed there (as MLflow allows): still the run, updated in place.
    meta = tmp_path / "mlruns" / exp_id / "meta.yaml"
    meta.write_text(meta.read_text().replace("name: victim", "name: victim-renamed"))
    (tmp_path / "mlruns" / exp_id / run_id / "tags" / "stage").write_text("two")
    renamed = import_mlflow(target, str(tmp_path / "mlruns"))
    assert (renamed.runs_updated, renamed.problems) == (1, [])
    assert (target.get_run(run_id).experiment, target.get_run(run_id).tags["stage"]) == ("victim", "two")


def test_an_mlflow_run_name_labtrack_would_refuse_costs_the_name_not_the_import(mlflow_env: Mlflow,  # noqa: F811
                                                                              tmp_path: Path) -> None:
    # MLflow keeps a run name as a tag (up to 8000 characters, any text); labtrack's names are at most 250 printable
    # characters. Such a run arrives without labtrack's name (its mlflow.runName tag whole), and so do the others.
    source = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = mlflow_env.run("""
        import json, mlflow
        mlflow.set_experiment("names")
        ids = {}
        for label, name in (("long", "n" * 300), ("newline", "two\\nlines"), ("fine", "fine")):
            with mlflow.start_run(run_name=name) as run:
                mlflow.log_metric("loss", 1.0)
            ids[label] = run.info.run_id
        mlflow.set_experiment("two\\nlines")
        with mlflow.start_run(run_name="lost"):
            pass
        print(json.dumps(ids))
    """, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": source})
    ids = json.loads(out.strip().splitlines()[-1])
    target = lt.Client(str(tmp_path / "imported"))
    summary = import_mlflow(target, source)
    assert summary.runs_new == 3 and summary.experiments == 3  # (with MLflow's Default, empty)
    assert [p for p in summary.problems if p.startswith("experiment 'two\\nlines' left out")], summary.problems
    assert target.get_run(ids["fine"]).name == "fine"
    for label, name in (("long", "n" * 300), ("newline", "two\nlines")):
        run = target.get_run(ids[label])
        assert run.tags["mlflow.runName"] == name and run.name != name and "\n" not in run.name
        assert [p for p in summary.problems if p.startswith(f"run {ids[label][:8]}: name")], summary.problems
    assert import_mlflow(target, source).runs_unchanged == 3


def test_a_param_value_of_mlflows_6000_characters_arrives_exactly(mlflow_env: Mlflow,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    # MLflow counts a param value's characters; labtrack's own limit counts them as JSON (a newline is two there).
    source = f"sqlite:///{tmp_path / 'mlflow.db'}"
    values = {"config": "a\n" * 3000, "quoted": 'say "hi" ' * 666, "plain": "v" * 6000}
    out = mlflow_env.run(f"""
        import mlflow
        with mlflow.start_run() as run:
            mlflow.log_params({values!r})
        print(run.info.run_id)
    """, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": source})
    target = lt.Client(str(tmp_path / "imported"))
    summary = import_mlflow(target, source)
    assert summary.problems == []
    assert target.get_run(out.split()[-1]).params == values
