"""search_runs(filter=...) end to end on SQLite and PostgreSQL: one corpus of 30 runs, a table of filters
with the runs each must find (derived from how the corpus was built), injection attempts, ordering,
pagination, to_pandas and the CRASHED status of a run whose heartbeat went stale.

The corpus is built once per backend (module scope) and only read by the tests that use it.
"""

from __future__ import annotations

import copy
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

import labtrack as lt
from labtrack.core.environment import Environment
from labtrack.verbs import tracking

# -- the corpus: what is logged ---------------------------------------------------------------------

NAN, INF = math.nan, math.inf
INJECT_Q = "'; DROP TABLE runs;--"
INJECT_NOTE = "' OR '1'='1"
BACKSLASH_PATH = "C:\\temp\\new"
UNICODE_QUOTES = "‘cv’"


@dataclass
class Env:
    python: str
    torch: tuple[str, str, int] | None = None  # version, CUDA build, cuDNN build
    gpu: tuple[str, int, str, str, str] | None = None  # model, count, driver, CUDA driver, compute capability


ENVS = {
    "base": Env("3.11.7"),
    "a100_cu118": Env("3.10.12", ("2.1.0+cu118", "11.8", 8700), ("NVIDIA A100-SXM4-80GB", 8, "535.104.05", "12.2", "8.0")),
    "a100_cu121": Env("3.11.7", ("2.1.0+cu121", "12.1", 8902), ("NVIDIA A100-SXM4-80GB", 1, "535.104.05", "12.2", "8.0")),
    "h100_cu121": Env("3.11.7", ("2.3.1+cu121", "12.1", 8902), ("NVIDIA H100 80GB HBM3", 4, "550.54.15", "12.4", "9.0")),
    "torch_rc": Env("3.12.1", ("2.2.0rc1", "12.1", 8902), ("NVIDIA A100-PCIE-40GB", 2, "550.54.15", "12.4", "8.0")),
    "py39": Env("3.9.18"),
}


@dataclass
class Spec:
    handle: str
    order: int
    experiment: str = "corpus"
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "FINISHED"
    env: str = "base"


def build_specs() -> list[Spec]:
    specs = []
    for i in range(24):
        team = ("cv", "nlp", None)[(i // 2) % 3]
        specs.append(Spec(
            handle=f"grid-{i:02d}",
            order=i,
            experiment="side" if i % 8 == 7 else "corpus",
            params={"lr": (0.1, 0.01, 0.001)[i % 3], "opt": ("adam", "sgd", "AdamW")[(i // 3) % 3],
                    "epochs": (3, 5, 10)[(i // 4) % 3], "flag": i % 2 == 0},
            metrics={"acc": [round(0.5 + 0.02 * i, 4)],
                     "loss": [1.0, round(0.1 + 0.05 * (i % 6), 4), round(0.6 + 0.01 * i, 4)]},
            tags={"team": team} if team else {},
            status="FAILED" if i in (5, 11, 17) else "KILLED" if i == 23 else "FINISHED",
            env=list(ENVS)[i % 6],
        ))
    specs += [
        Spec("nan", 24, params={"lr": 0.01}, metrics={"score": [NAN]}, tags={"team": "cv"}),
        Spec("inf", 25, metrics={"score": [INF]}),
        Spec("neginf", 26, metrics={"score": [-INF], "loss": [0.5, 0.05, 0.4, 0.3, 0.2]}),
        Spec("inject", 27, params={"note": INJECT_NOTE, "batch.size": 32},
             tags={"q": INJECT_Q, "path": BACKSLASH_PATH, "quote": UNICODE_QUOTES, "apostrophe": "it's",
                   "pct": "100%_done"}),
        Spec("unicode", 28, params={"shift": -1.5, "scale": 1e-5, "flag": True, "opt": "adam"},
             tags={"city": "Zürich", "team": "CV"}),
        Spec("bare", 29),
    ]
    return specs


SPECS = build_specs()
BY_HANDLE = {s.handle: s for s in SPECS}


def synthetic_snapshot(real: dict[str, Any], env: Env) -> dict[str, Any]:
    """A real captured snapshot, edited to describe another machine."""
    snap = {k: v for k, v in copy.deepcopy(real).items() if k not in ("process", "git")}
    snap["packages"]["python"]["version"] = env.python
    snap["packages"]["distributions"].pop("torch", None)
    snap["frameworks"].pop("torch", None)
    if env.torch is not None:
        version, cuda, cudnn = env.torch
        snap["packages"]["distributions"]["torch"] = {"version": version, "source": "index"}
        snap["frameworks"]["torch"] = {"version": version, "module": "torch", "imported": False,
                                       "cuda": cuda, "cudnn": cudnn}
    if env.gpu is None:
        snap["gpu"] = {"count": 0, "devices": [], "reason": "no NVIDIA driver", "rocm": None, "mps": False}
    else:
        model, count, driver, cuda_driver, capability = env.gpu
        snap["gpu"] = {
            "count": count,
            "devices": [{"index": i, "name": model, "uuid": f"GPU-{i}", "memory_total": 80 * 2**30,
                         "compute_capability": capability, "mig_mode": None} for i in range(count)],
            "driver_version": driver, "cuda_driver_version": cuda_driver, "rocm": None, "mps": False,
        }
    return snap


@dataclass
class Corpus:
    backend: str
    url: str
    ids: dict[str, str]  # handle -> run id
    fingerprints: dict[str, str]  # env name -> fingerprint
    start_times: dict[str, float]

    def handles(self, found: list[lt.Run]) -> set[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id[run.id] for run in found}

    def search(self, filter: str | None = None, **kwargs: Any) -> lt.RunList:
        return lt.search_runs(filter=filter, store=self.url, **kwargs)

    def find(self, filter: str, **kwargs: Any) -> set[str]:
        return self.handles(self.search(filter, **kwargs))


def _log_run(spec: Spec, url: str) -> str:
    run = lt.start_run(spec.experiment, params=spec.params, tags=spec.tags, name=spec.handle, store=url)
    for key, series in spec.metrics.items():
        for step, value in enumerate(series):
            run.log_metric(key, value, step=step)
    if spec.status == "FAILED":
        try:
            with run:
                raise RuntimeError("diverged")
        except RuntimeError:
            pass
    else:
        run.end(spec.status)
    return run.id


@pytest.fixture(autouse=True)
def _artifacts_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads of the PostgreSQL corpus open it as a team does, with an artifact directory set."""
    monkeypatch.setenv("LABTRACK_ARTIFACTS", str(tmp_path / "artifacts"))


def _build(url: str, backend: str, workdir: Path) -> Corpus:
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("LABTRACK_") and not name.startswith("LABTRACK_TEST") and name != "LABTRACK_REQUIRE_POSTGRES":
                mp.delenv(name)
        if backend == "postgres":
            mp.setenv("LABTRACK_ARTIFACTS", str(workdir / "artifacts"))
        mp.chdir(workdir)
        tracking.reset()
        ids, start_times = {}, {}
        for spec in SPECS:
            ids[spec.handle] = _log_run(spec, url)
            start_times[spec.handle] = lt.get_run(ids[spec.handle], store=url).record.start_time
        # Point every run at a snapshot of "its" machine: real captures, edited.
        store = tracking.client(url).store
        real = lt.capture_environment().to_dict()
        fingerprints = {}
        for name, env in ENVS.items():
            snapshot = synthetic_snapshot(real, env)
            fingerprints[name] = Environment(snapshot).fingerprint
            store.put_environment(fingerprints[name], snapshot)
        for spec in SPECS:
            context = store.get_context(ids[spec.handle]) or {}
            store.merge_context(ids[spec.handle], context, env_fingerprint=fingerprints[spec.env])
        tracking.reset()
    return Corpus(backend, url, ids, fingerprints, start_times)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    workdir = tmp_path_factory.mktemp(f"corpus-{request.param}")
    if request.param == "sqlite":
        yield _build(str(workdir / "store"), "sqlite", workdir)
        return
    from sqlalchemy import create_engine, text

    server = request.getfixturevalue("postgres_server")
    name = f"lt_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield _build(f"{server.rsplit('/', 1)[0]}/{name}", "postgres", workdir)
    finally:
        tracking.reset()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the query table: each filter with the runs it must find, by construction -----------------------


def metric(s: Spec, key: str, aggregate: str = "last") -> float | None:
    series = s.metrics.get(key)
    if series is None:
        return None
    finite = [v for v in series if not math.isnan(v)]
    return {"last": series[-1], "min": min(finite, default=NAN), "max": max(finite, default=NAN),
            "count": len(series)}[aggregate]


def has(value: Any, test: Callable[[Any], bool]) -> bool:
    return value is not None and bool(test(value))


def torch(s: Spec) -> str | None:
    env = ENVS[s.env]
    return env.torch[0] if env.torch else None


def gpu(s: Spec, i: int) -> Any:
    env = ENVS[s.env]
    return env.gpu[i] if env.gpu else None


def release(version: str) -> Version:
    return Version(version.split("+")[0])


def team(s: Spec) -> str | None:
    return s.tags.get("team")


Q: list[tuple[str, Callable[[Spec], bool]]] = [
    # metrics and their aggregates
    ("metrics.acc > 0.9", lambda s: has(metric(s, "acc"), lambda v: v > 0.9)),
    ("metrics.acc <= 0.6", lambda s: has(metric(s, "acc"), lambda v: v <= 0.6)),
    ("metrics.acc > 0.9 and (params.lr = 0.01 or params.lr = 0.1) and tags.team = 'cv'",
     lambda s: has(metric(s, "acc"), lambda v: v > 0.9) and s.params.get("lr") in (0.01, 0.1) and team(s) == "cv"),
    ("metrics.loss.min < 0.2", lambda s: has(metric(s, "loss", "min"), lambda v: v < 0.2)),
    ("metrics.loss.max >= 1", lambda s: has(metric(s, "loss", "max"), lambda v: v >= 1)),
    ("metrics.loss.count = 5", lambda s: metric(s, "loss", "count") == 5),
    ("metrics.loss.count > 2", lambda s: has(metric(s, "loss", "count"), lambda v: v > 2)),
    ("metrics.loss <= 0.7", lambda s: has(metric(s, "loss"), lambda v: v <= 0.7)),
    ("metrics.loss.last != 0.6", lambda s: has(metric(s, "loss"), lambda v: v != 0.6)),
    ("metrics.acc IN (0.5, 0.52, 0.96)", lambda s: metric(s, "acc") in (0.5, 0.52, 0.96)),
    ("metrics.score > 1e308", lambda s: has(metric(s, "score"), lambda v: v > 1e308)),
    ("metrics.score < -1E308", lambda s: has(metric(s, "score"), lambda v: v < -1e308)),
    ("metrics.score IS NOT NULL", lambda s: "score" in s.metrics),
    ("metrics.acc IS NULL", lambda s: "acc" not in s.metrics),
    # attributes
    ("attributes.status = 'FINISHED'", lambda s: s.status == "FINISHED"),
    ("status = 'failed'", lambda s: s.status == "FAILED"),
    ("status IN ('KILLED', 'FAILED')", lambda s: s.status in ("KILLED", "FAILED")),
    ("status != 'FINISHED'", lambda s: s.status != "FINISHED"),
    ("experiment = 'side'", lambda s: s.experiment == "side"),
    ("attributes.experiment != 'corpus' and params.opt = 'sgd'",
     lambda s: s.experiment != "corpus" and s.params.get("opt") == "sgd"),
    ("name LIKE 'grid-1_'", lambda s: s.handle.startswith("grid-1")),
    ("name IN ('nan', 'inf', 'nobody')", lambda s: s.handle in ("nan", "inf")),
    ("start_time > '{mid}'", lambda s: s.order >= 12),
    ("start_time <= '{mid}' and status = 'FINISHED'", lambda s: s.order < 12 and s.status == "FINISHED"),
    ("start_time < '2000-01-01'", lambda s: False),
    ("start_time > '2000-01-01 00:00'", lambda s: True),
    ("end_time IS NOT NULL", lambda s: True),
    ("attributes.id = '{id:grid-03}' or id = '{id:bare}'", lambda s: s.handle in ("grid-03", "bare")),
    ("run_key IS NULL", lambda s: False),
    # params: numbers, strings, booleans
    ("params.opt IN ('adam', 'sgd')", lambda s: s.params.get("opt") in ("adam", "sgd")),
    ("params.opt = 'adam'", lambda s: s.params.get("opt") == "adam"),
    ("params.opt LIKE 'Adam%'", lambda s: str(s.params.get("opt")).startswith("Adam")),
    ("params.opt ILIKE 'adam%'", lambda s: str(s.params.get("opt")).lower().startswith("adam")),
    ("params.opt LIKE '_gd'", lambda s: s.params.get("opt") == "sgd"),
    ("params.lr = 0.01", lambda s: s.params.get("lr") == 0.01),
    ("params.lr = 1e-2", lambda s: s.params.get("lr") == 0.01),
    ("params.lr IN (0.1, 0.001)", lambda s: s.params.get("lr") in (0.1, 0.001)),
    ("params.lr != 0.1", lambda s: has(s.params.get("lr"), lambda v: v != 0.1)),
    ("params.lr < 0.05 and params.epochs >= 5",
     lambda s: has(s.params.get("lr"), lambda v: v < 0.05) and has(s.params.get("epochs"), lambda v: v >= 5)),
    ("params.epochs = 10.0", lambda s: s.params.get("epochs") == 10),
    ("params.flag = true", lambda s: s.params.get("flag") is True),
    ("params.flag = FALSE", lambda s: s.params.get("flag") is False),
    ("params.shift = -1.5", lambda s: s.params.get("shift") == -1.5),
    ("params.scale < 1E-4 and params.shift < 0", lambda s: s.handle == "unicode"),
    ("params.`batch.size` = 32", lambda s: s.params.get("batch.size") == 32),
    ("params.batch.size >= 32", lambda s: s.params.get("batch.size") == 32),
    ("params.lr IS NULL", lambda s: "lr" not in s.params),
    # tags
    ("tags.team = 'cv'", lambda s: team(s) == "cv"),
    ("tags.team ILIKE 'cv'", lambda s: str(team(s)).lower() == "cv"),
    ("tags.team IS NULL", lambda s: team(s) is None),
    ("tags.team is not null", lambda s: team(s) is not None),
    ("tags.team IN ('nlp', 'CV')", lambda s: team(s) in ("nlp", "CV")),
    # boolean structure
    ("not (tags.team = 'cv')", lambda s: team(s) != "cv"),
    ("tags.team = 'cv' or tags.team = 'nlp' and params.lr = 0.1",
     lambda s: team(s) == "cv" or (team(s) == "nlp" and s.params.get("lr") == 0.1)),
    ("(tags.team = 'cv' or tags.team = 'nlp') and params.lr = 0.1",
     lambda s: team(s) in ("cv", "nlp") and s.params.get("lr") == 0.1),
    ("NOT params.opt = 'sgd' AND metrics.acc >= 0.8",
     lambda s: s.params.get("opt") != "sgd" and has(metric(s, "acc"), lambda v: v >= 0.8)),
    ("not (status = 'FINISHED' or status = 'FAILED')", lambda s: s.status == "KILLED"),
    # the environment
    ("env.gpu.name LIKE '%A100%'", lambda s: "A100" in str(gpu(s, 0))),
    ("env.gpu.name = 'NVIDIA H100 80GB HBM3'", lambda s: gpu(s, 0) == "NVIDIA H100 80GB HBM3"),
    ("env.gpu.name IS NULL", lambda s: gpu(s, 0) is None),
    ("env.gpu.count >= 4", lambda s: has(gpu(s, 1), lambda v: v >= 4)),
    ("env.gpu.count = 0", lambda s: gpu(s, 1) is None),
    ("env.gpu.driver >= '550'", lambda s: has(gpu(s, 2), lambda v: Version(v) >= Version("550"))),
    ("env.gpu.driver < '535.200'", lambda s: has(gpu(s, 2), lambda v: Version(v) < Version("535.200"))),
    ("env.gpu.compute_capability = '9.0'", lambda s: gpu(s, 4) == "9.0"),
    ("env.packages.torch >= '2.1'", lambda s: has(torch(s), lambda v: release(v) >= Version("2.1"))),
    ("env.packages.torch < '2.2'", lambda s: has(torch(s), lambda v: release(v) < Version("2.2"))),
    ("env.packages.torch = '2.1.0'", lambda s: has(torch(s), lambda v: release(v) == Version("2.1.0"))),
    ("env.packages.torch = '2.1.0+cu118'", lambda s: torch(s) == "2.1.0+cu118"),
    ("env.packages.torch != '2.1.0'", lambda s: has(torch(s), lambda v: release(v) != Version("2.1.0"))),
    ("env.packages.torch IS NULL", lambda s: torch(s) is None),
    ("env.packages.torch LIKE '%+cu121'", lambda s: str(torch(s)).endswith("+cu121")),
    ("env.packages.torch IN ('2.3.1+cu121', '2.2.0rc1')", lambda s: torch(s) in ("2.3.1+cu121", "2.2.0rc1")),
    ("env.frameworks.torch >= '2.2.0rc1'", lambda s: has(torch(s), lambda v: release(v) >= Version("2.2.0rc1"))),
    ("env.frameworks.torch.cuda >= '12'",
     lambda s: ENVS[s.env].torch is not None and Version(ENVS[s.env].torch[1]) >= Version("12")),  # type: ignore[index]
    ("env.frameworks.torch.cudnn = 8700", lambda s: s.env == "a100_cu118"),
    ("env.python >= '3.10'", lambda s: Version(ENVS[s.env].python) >= Version("3.10")),
    ("env.python < '3.10'", lambda s: Version(ENVS[s.env].python) < Version("3.10")),
    ("env.python = '3.11.7'", lambda s: ENVS[s.env].python == "3.11.7"),
    ("env.fingerprint = '{fp:h100_cu121}'", lambda s: s.env == "h100_cu121"),
    ("attributes.env_fingerprint IN ('{fp:py39}', '{fp:torch_rc}')", lambda s: s.env in ("py39", "torch_rc")),
    ("env.packages.Typing_Extensions IS NOT NULL", lambda s: True),
    ("env.packages.SQLAlchemy >= '2'", lambda s: True),
    ("env.gpu.name LIKE '%A100%' and env.packages.torch >= '2.1'",
     lambda s: "A100" in str(gpu(s, 0)) and has(torch(s), lambda v: release(v) >= Version("2.1"))),
    ("tags.team = 'cv' and not env.gpu.name LIKE '%A100%'",
     lambda s: team(s) == "cv" and "A100" not in str(gpu(s, 0))),
    ("metrics.acc > 0.7 and env.packages.torch >= '2.1' and env.gpu.count > 1 or params.shift < 0",
     lambda s: (has(metric(s, "acc"), lambda v: v > 0.7) and has(torch(s), lambda v: release(v) >= Version("2.1"))
                and has(gpu(s, 1), lambda v: v > 1)) or s.handle == "unicode"),
]


def resolve(text: str, corpus: Corpus) -> str:
    """Fill the placeholders that depend on the built corpus: ids, fingerprints, a time between runs."""
    mid = (corpus.start_times["grid-11"] + corpus.start_times["grid-12"]) / 2
    out = text.replace("{mid}", datetime.fromtimestamp(mid).isoformat(sep=" "))
    for handle, run_id in corpus.ids.items():
        out = out.replace(f"{{id:{handle}}}", run_id)
    for name, fp in corpus.fingerprints.items():
        out = out.replace(f"{{fp:{name}}}", fp)
    return out


def test_the_corpus_holds_the_runs_it_was_built_from(corpus: Corpus) -> None:
    found = corpus.search()
    assert corpus.handles(found) == set(BY_HANDLE)
    assert {r.id: r.status.value for r in found} == {corpus.ids[s.handle]: s.status for s in SPECS}
    # Each predicate table entry is meaningful: neither every run nor none (except the deliberate ones).
    assert len(Q) >= 25


@pytest.mark.parametrize(("filter_text", "expected"), Q, ids=[q for q, _ in Q])
def test_filter_finds_exactly_the_runs_built_to_match(
    corpus: Corpus, filter_text: str, expected: Callable[[Spec], bool]
) -> None:
    want = {s.handle for s in SPECS if expected(s)}
    assert corpus.find(resolve(filter_text, corpus)) == want


def test_filter_combines_with_the_experiment_argument(corpus: Corpus) -> None:
    found = corpus.handles(lt.search_runs("corpus", filter="params.opt = 'sgd'", store=corpus.url))
    assert found == {s.handle for s in SPECS if s.experiment == "corpus" and s.params.get("opt") == "sgd"}
    both = corpus.handles(lt.search_runs(["corpus", "side"], filter="params.opt = 'sgd'", store=corpus.url))
    assert both == {s.handle for s in SPECS if s.params.get("opt") == "sgd"}


@pytest.mark.parametrize(
    ("filter_text", "expected"),
    [
        ("params.opt NOT IN ('adam', 'sgd')", lambda s: s.params.get("opt") not in (None, "adam", "sgd")),
        ("params.opt NOT LIKE 'a%'", lambda s: s.params.get("opt") is not None and not s.params["opt"].startswith("a")),
        ("tags.team NOT IN ('cv')", lambda s: team(s) not in (None, "cv")),
        ("env.packages.torch NOT LIKE '%cu1%'", lambda s: torch(s) is not None and "cu1" not in torch(s)),  # type: ignore[operator]
    ],
    ids=["params NOT IN", "params NOT LIKE", "tags NOT IN", "env NOT LIKE"],
)
def test_negated_operators_skip_runs_without_the_key_like_not_equal_does(
    corpus: Corpus, filter_text: str, expected: Callable[[Spec], bool]
) -> None:
    # `x NOT IN (a, b)` means `x != a and x != b`: a run that never logged x has no value to compare,
    # exactly as `params.opt != 'adam'` does not find it. (`not (x IN (...))` is the way to include it.)
    assert corpus.find("params.opt != 'adam'") == {s.handle for s in SPECS if s.params.get("opt") not in (None, "adam")}
    assert corpus.find(filter_text) == {s.handle for s in SPECS if expected(s)}


def test_ilike_folds_the_case_of_non_ascii_letters_on_every_backend(corpus: Corpus) -> None:
    assert corpus.find("tags.city ILIKE 'zürich'") == {"unicode"}
    assert corpus.find("tags.city ILIKE 'ZÜRICH'") == {"unicode"}
    assert corpus.find("tags.city LIKE 'ZÜRICH'") == set()


def test_like_with_a_backslash_in_the_pattern_matches_it_literally_on_every_backend(corpus: Corpus) -> None:
    # In a LIKE pattern the backslash escapes % _ and itself, so a literal backslash is \\ in the pattern:
    # \\\\ in the filter text, whose strings turn \\ into \ (and keep a backslash before anything else).
    assert corpus.find("tags.path = 'C:\\\\temp\\\\new'") == {"inject"}
    assert corpus.find("tags.path LIKE 'C:\\\\\\\\temp%'") == {"inject"}
    assert corpus.find("tags.path LIKE '%\\\\\\\\new'") == {"inject"}
    assert corpus.find("tags.path LIKE 'C:\\\\temp%'") == set()  # \t escapes a plain t


# -- injection attempts ----------------------------------------------------------------------------

INJECTIONS: list[tuple[str, set[str] | None]] = [  # None: must be rejected with InvalidInput
    ("tags.q = '''; DROP TABLE runs;--'", {"inject"}),
    ('tags.q = "\'; DROP TABLE runs;--"', {"inject"}),
    ("tags.q = '\\'; DROP TABLE runs;--'", {"inject"}),
    ("tags.q LIKE '%DROP TABLE runs%'", {"inject"}),
    ("tags.team = '''; DROP TABLE runs;--'", set()),
    ("params.note = ''' OR ''1''=''1'", {"inject"}),
    ("params.note = \"' OR '1'='1\"", {"inject"}),
    ("tags.team = 'cv'' OR ''1''=''1'", set()),
    ("params.opt IN ('adam''); DROP TABLE runs;--')", set()),
    ("params.`note'; DROP TABLE runs;--` IS NULL", set(BY_HANDLE)),
    ("tags.`q` = '''; DROP TABLE runs;--' and tags.`x\"; --` IS NULL", {"inject"}),
    ("tags.path = 'C:\\\\temp\\\\new'", {"inject"}),
    ("tags.path = 'C:\\temp\\new'", {"inject"}),  # a backslash before a letter is kept: the path as typed
    ("tags.quote = '‘cv’'", {"inject"}),
    ("tags.apostrophe = 'it''s'", {"inject"}),
    ("tags.apostrophe = \"it's\"", {"inject"}),
    ("tags.pct = '100%_done'", {"inject"}),
    ("tags.team = '%'", set()),
    ("tags.team = 'cv' --", None),
    ("tags.team = '' OR '1'='1'", None),
    ("tags.team = 'x' OR 1=1", None),
    ("tags.team = 'cv'; DROP TABLE runs;--", None),
    ("tags.team = ‘cv’", None),
    ("tags.team = 'cv' /* comment */", None),
    ("tags.te\x00am = 'cv'", None),
    ("params.lr = 0.01; DELETE FROM runs", None),
    ("1 = 1", None),
]


def test_injection_attempts_match_literally_or_are_rejected_and_the_store_is_intact(corpus: Corpus) -> None:
    outcomes: dict[str, set[str] | None] = {}
    for text, _ in INJECTIONS:
        try:
            outcomes[text] = corpus.find(text)
        except lt.InvalidInput:
            outcomes[text] = None
    assert outcomes == {text: expected for text, expected in INJECTIONS}
    assert corpus.handles(corpus.search()) == set(BY_HANDLE)
    assert len(corpus.search(max_results=None)) == len(SPECS)
    assert corpus.find("tags.team = 'cv'") == {s.handle for s in SPECS if team(s) == "cv"}


def test_a_nul_character_in_a_value_matches_nothing_or_is_invalid_input(corpus: Corpus) -> None:
    for text in ("tags.team = 'cv\x00'", "tags.q LIKE '%\x00%'", "params.opt IN ('adam', 'x\x00y')"):
        try:
            found = corpus.find(text)
        except lt.InvalidInput:
            continue
        expected = {s.handle for s in SPECS if s.params.get("opt") == "adam"} if " IN " in text else set()
        assert found == expected, f"{text!r} found {sorted(found)}"
    assert len(corpus.search(max_results=None)) == len(SPECS)


@pytest.mark.parametrize(
    "text",
    [
        "params.x = 'not a date' or start_time > 'yesterday'",
        "metrics.acc LIKE '0.9%'",
        "metrics.acc = 'high'",
        "env.no_such_fact = 1",
        "start_time LIKE '2026%'",
    ],
)
def test_a_filter_that_cannot_apply_to_its_field_is_invalid_input(corpus: Corpus, text: str) -> None:
    with pytest.raises(lt.InvalidInput):
        corpus.find(text)


# -- ordering, pagination, pandas -------------------------------------------------------------------


def test_order_by_with_a_filter_sorts_the_matching_runs(corpus: Corpus) -> None:
    found = corpus.search("params.opt = 'sgd'", order_by=["metrics.acc desc"])
    sgd = sorted((s for s in SPECS if s.params.get("opt") == "sgd"), key=lambda s: -metric(s, "acc"))  # type: ignore[operator]
    assert [r.id for r in found] == [corpus.ids[s.handle] for s in sgd]

    found = corpus.search("params.lr IS NOT NULL", order_by=["params.lr", "metrics.acc desc"])
    with_lr = [s for s in SPECS if "lr" in s.params]
    expected = sorted(with_lr, key=lambda s: (s.params["lr"], metric(s, "acc") is None, -(metric(s, "acc") or 0)))
    assert [r.id for r in found] == [corpus.ids[s.handle] for s in expected]

    found = corpus.search("metrics.loss.count >= 3", order_by="metrics.loss.min")
    mins = [r.record.metrics["loss"].min for r in found]
    assert mins == sorted(mins) and len(found) == sum(1 for s in SPECS if "loss" in s.metrics)
    assert found[0].id == corpus.ids["neginf"]  # its minimum, 0.05, is the smallest


def test_runs_missing_the_sort_key_come_last_in_both_directions(corpus: Corpus) -> None:
    for direction in ("asc", "desc"):
        found = corpus.search(None, order_by=[f"metrics.acc {direction}"])
        has_acc = ["acc" in r.record.metrics for r in found]
        assert has_acc == sorted(has_acc, reverse=True), direction
        values = [r.record.metrics["acc"].last for r in found if "acc" in r.record.metrics]
        assert values == sorted(values, reverse=direction == "desc")


@pytest.mark.parametrize("order", ["metrics.acc desc", "metrics.acc asc", "metrics.loss.min", "metrics.loss.max desc"])
@pytest.mark.parametrize("filter_text", [None, "params.opt = 'sgd'"])
def test_a_first_page_sorted_by_a_metric_is_the_start_of_the_whole_result(corpus: Corpus, order: str,
                                                                          filter_text: str | None) -> None:
    """A first page sorted by a metric is read in two parts (runs with it, in its index's order; then runs
    without it): every length must be the start of the whole, across that boundary too."""
    whole = [r.id for r in corpus.search(filter_text, order_by=order)]
    key = order.split()[0].split(".")[1]
    having = sum(key in r.record.metrics for r in corpus.search(filter_text))
    assert 0 < having < len(whole) if filter_text is None else having == len(whole)  # both parts, or one
    for n in range(1, len(whole) + 2):
        assert [r.id for r in corpus.search(filter_text, order_by=order, max_results=n)] == whole[:n], n


@pytest.mark.parametrize(("filter_text", "page"), [(None, 7), ("status = 'FINISHED'", 4), ("params.lr = 0.01", 3)])
def test_pages_are_consistent_slices_of_the_whole_result(corpus: Corpus, filter_text: str | None, page: int) -> None:
    whole = [r.id for r in corpus.search(filter_text, order_by=["metrics.acc desc"])]
    assert whole and len(whole) == len(set(whole))
    pages: list[str] = []
    for offset in range(0, len(whole) + page, page):
        chunk = [r.id for r in corpus.search(filter_text, order_by=["metrics.acc desc"], max_results=page,
                                             offset=offset)]
        assert chunk == whole[offset:offset + page]
        pages += chunk
    assert pages == whole
    assert corpus.search(filter_text, max_results=0) == []
    assert corpus.search(filter_text, offset=len(whole)) == []


def test_to_pandas_has_one_row_per_matching_run_with_its_columns(corpus: Corpus) -> None:
    pd = pytest.importorskip("pandas")
    frame = corpus.search("params.opt = 'sgd'", order_by=["metrics.acc desc"]).to_pandas()
    sgd = sorted((s for s in SPECS if s.params.get("opt") == "sgd"), key=lambda s: -metric(s, "acc"))  # type: ignore[operator]
    assert list(frame["id"]) == [corpus.ids[s.handle] for s in sgd]
    assert {"id", "experiment", "name", "status", "start_time", "end_time", "params.lr", "params.opt",
            "params.epochs", "params.flag", "metrics.acc", "metrics.loss", "tags.team"} <= set(frame.columns)
    assert list(frame["metrics.acc"]) == [metric(s, "acc") for s in sgd]
    assert list(frame["status"]) == [s.status for s in sgd]
    assert list(frame["name"]) == [s.handle for s in sgd]
    assert pd.api.types.is_datetime64_any_dtype(frame["start_time"])
    assert corpus.search("params.opt = 'nothing'").to_pandas().empty


# -- the CRASHED status ----------------------------------------------------------------------------


def test_a_running_run_with_a_stale_heartbeat_matches_status_crashed(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABTRACK_HEARTBEAT_TIMEOUT", "30")  # read on first use
    monkeypatch.setenv("LABTRACK_HEARTBEAT_INTERVAL", "3600")
    from labtrack.store.base import NewRun
    from labtrack.store.schema import runs as runs_table

    with lt.start_run("life", store=store_url) as done:
        pass
    store = tracking.client(store_url).store
    other = uuid.uuid4().hex  # a run another machine started and still heartbeats
    store.create_run(NewRun(id=other, experiment="life", start_time=time.time(), host="elsewhere", pid=4242))

    def ids(text: str) -> set[str]:
        return {r.id for r in lt.search_runs("life", filter=text, store=store_url)}

    assert ids("status = 'RUNNING'") == {other}
    assert ids("status = 'CRASHED'") == set()
    # Its machine died an hour ago: the heartbeat stopped.
    with store._engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(runs_table.update().where(runs_table.c.id == other).values(heartbeat_time=time.time() - 3600))
    assert ids("status = 'CRASHED'") == {other}
    assert ids("attributes.status IN ('CRASHED', 'KILLED')") == {other}
    assert ids("status = 'RUNNING'") == set()
    assert ids("status != 'RUNNING'") == {other, done.id}
    assert lt.get_run(other, store=store_url).status is lt.RunStatus.CRASHED


@pytest.mark.parametrize("term", ["metrics.acc decs", "metrics.acc DESC NULLS LAST", "params.lr ascending",
                                  "metrics." + "a" * 300, "tags.team  desc  desc"])
def test_a_malformed_order_by_term_is_refused_not_sorted_by_a_metric_that_does_not_exist(term: str) -> None:
    with lt.start_run("order") as run:
        run.log_metric("acc", 1.0)
    with pytest.raises(lt.InvalidInput) as caught:
        lt.search_runs("order", order_by=[term])
    assert caught.value.field == "order_by" and repr(term[:20])[1:-1] in str(caught.value)


def test_a_key_with_spaces_still_orders_in_backticks() -> None:
    for value in (2.0, 1.0):
        with lt.start_run("order") as run:
            run.log_metric("val acc", value)
    found = lt.search_runs("order", order_by=["metrics.`val acc` asc"])
    assert [r.metrics["val acc"] for r in found] == [1.0, 2.0]


@pytest.mark.parametrize(("pattern", "expected"), [
    (r"'100\%'", ["100%"]), (r"'100%'", ["100%", "1000"]), (r"'a\_b'", ["a_b"]), (r"'a_b'", ["a_b", "axb"]),
    (r"'C:\\\\dir%'", ["C:\\dir\\x"]), (r"'%\%%'", ["100%"]),
])
def test_like_escapes_percent_underscore_and_backslash_with_a_backslash(pattern: str, expected: list[str],
                                                                          store_url: str) -> None:
    lt.set_store(store_url)
    for value in ("100%", "1000", "a_b", "axb", "C:\\dir\\x"):
        with lt.start_run("like", tags={"v": value}):
            pass
    for op in ("LIKE", "ILIKE"):
        found = sorted(r.tags["v"] for r in lt.search_runs("like", filter=f"tags.v {op} {pattern}"))
        assert found == sorted(expected), op
