"""Tokens limited to some experiments (issue 14, item 6), over real HTTP: another team's runs do not exist
for them — every route answers as for a missing run — searches are limited in SQL, and nothing that acts
on the whole store is allowed."""

from __future__ import annotations

import hashlib
import inspect
import time
from pathlib import Path

import httpx
import pytest
from server_helpers import serve_in_thread, use_server

import labtrack as lt
from labtrack.core.tokens import Role
from labtrack.server.scope import ScopedStore
from labtrack.store.base import Store
from labtrack.store.remote import RemoteStore


@pytest.fixture
def teams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A server with a run of team A (with an artifact) and a run of team B, and a writer token of team B."""
    with serve_in_thread(str(tmp_path / "store")) as served:
        use_server(served, monkeypatch)
        with lt.start_run("team-a", params={"lr": 0.1}) as secret_run:
            secret_run.log_metric("acc", 0.99)
            secret_run.log_text("team A's model", "model.txt")
        with lt.start_run("team-b", params={"lr": 0.2}) as own_run:
            own_run.log_metric("acc", 0.5)
        lt.flush()
        limited, _ = served.store.create_token("team-b-ci", Role.WRITER, experiments=["team-b"])
        yield served, limited, secret_run.id, own_run.id


def test_another_teams_run_is_answered_exactly_as_a_missing_one(teams) -> None:  # type: ignore[no-untyped-def]
    served, limited, secret, own = teams
    headers = {"Authorization": f"Bearer {limited}"}
    missing = "f" * 32
    for path in ("/api/v1/runs/{}", "/api/v1/runs/{}/metrics/acc", "/api/v1/runs/{}/artifacts",
                 "/api/v1/runs/{}/context", "/api/v1/runs/{}/marks/spool", "/api/v1/runs/resolve/{}"):
        hidden = httpx.get(served.url + path.format(secret), headers=headers)
        absent = httpx.get(served.url + path.format(missing), headers=headers)
        assert hidden.status_code == absent.status_code == 404, path
        assert hidden.json()["error"]["message"].replace(secret, missing) == absent.json()["error"]["message"], path
    secret_name = lt.get_run(secret).name
    for probe, absent_probe in ((secret[:5], "fffff"), (secret_name, "no-such-run-name")):  # prefixes and names
        hidden = httpx.get(f"{served.url}/api/v1/runs/resolve/{probe}", headers=headers)
        absent = httpx.get(f"{served.url}/api/v1/runs/resolve/{absent_probe}", headers=headers)
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json()["error"]["message"].replace(probe, absent_probe) == absent.json()["error"]["message"]
    assert httpx.get(f"{served.url}/api/v1/runs/resolve/{own[:6]}", headers=headers).json() == own
    for path, body in (("/api/v1/runs/{}/heartbeat", 1.0), ("/api/v1/runs/{}/crashed", {"observed_heartbeat": None})):
        assert httpx.post(served.url + path.format(secret), headers=headers, json=body).status_code == 404
    assert httpx.delete(served.url + f"/api/v1/runs/{secret}/tags/x", headers=headers).status_code == 404
    assert httpx.post(served.url + "/api/v1/runs/get", headers=headers, json=[secret, own]).json()[0]["id"] == own
    assert httpx.post(served.url + "/api/v1/runs/delete", headers=headers, json=[secret]).json() == []
    assert lt.get_run(secret).record.deleted_time is None  # (seen with the unlimited token)


def test_a_limited_token_searches_and_lists_its_own_experiments_only(teams, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    served, limited, secret, own = teams
    store = RemoteStore(served.url, token=limited)
    try:
        assert [e.name for e, _ in store.list_experiments()] == ["team-b"]
        from labtrack.core.filters import parse_filter
        from labtrack.core.model import Search

        assert store.search_ids(Search()) == [own]
        assert store.search_ids(Search(experiments=["team-a", "team-b"])) == [own]
        assert store.search_ids(Search(filter=parse_filter("metrics.acc > 0.9"))) == []
        assert store.run_table([secret, own]).ids == [own]
        assert store.run_table([], Search(experiments=["team-a"])).ids == []
    finally:
        store.close()
    from labtrack.verbs import tracking

    tracking.reset()  # the module-level API's client opens again, with the limited token
    monkeypatch.setenv("LABTRACK_TOKEN", limited)
    lt.set_store(served.url)
    assert [r.id for r in lt.search_runs()] == [own]


def test_a_limited_token_writes_only_into_its_experiments(teams, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    served, limited, secret, _own = teams
    store = RemoteStore(served.url, token=limited)
    try:
        with pytest.raises(lt.StoreError, match="team-b only") as refused:
            store.get_or_create_experiment("team-a")
        assert refused.value.status_code == 403
        from labtrack.core.model import NewRun, RunWrite

        with pytest.raises(lt.StoreError, match="team-b only"):
            store.write([RunWrite("a" * 32, create=NewRun(id="a" * 32, experiment="team-a", start_time=time.time()))])
        with pytest.raises(lt.RunNotFound):  # a run of another team, written to by id
            store.write([RunWrite(secret, tags={"owned": "yes"})])
        with pytest.raises(lt.RunNotFound):  # or "created" again with the id of another team's run
            store.write([RunWrite(secret, create=NewRun(id=secret, experiment="team-b", start_time=time.time()))],
                        retry=True)
        store.write([RunWrite("b" * 32, create=NewRun(id="b" * 32, experiment="team-b", start_time=time.time()))])
        assert store.get_run("b" * 32).experiment == "team-b"
        with pytest.raises(lt.StoreError, match="needs an admin token"):
            store.list_tokens()
    finally:
        store.close()
    team_admin, _ = served.store.create_token("team-b-lead", Role.ADMIN, experiments=["team-b"])
    lead = RemoteStore(served.url, token=team_admin)
    try:  # an admin of one team still cannot act on the whole store
        for action in (lead.list_tokens, lambda: lead.collect_garbage(0.0, stale_before=0.0), lead.check_data):
            with pytest.raises(lt.StoreError, match="not limited"):
                action()
    finally:
        lead.close()
    assert "owned" not in lt.get_run(secret).tags


def test_another_teams_artifact_content_does_not_exist_for_a_limited_token(teams) -> None:  # type: ignore[no-untyped-def]
    served, limited, _secret, _own = teams
    sha = hashlib.sha256(b"team A's model").hexdigest()
    headers = {"Authorization": f"Bearer {limited}"}
    assert httpx.get(f"{served.url}/api/v1/blobs/{sha}", headers=headers).status_code == 404
    assert httpx.get(f"{served.url}/api/v1/blobs/{sha}/exists", headers=headers).json() is False
    admin = {"Authorization": f"Bearer {served.token}"}
    assert httpx.get(f"{served.url}/api/v1/blobs/{sha}", headers=admin).content == b"team A's model"


def test_every_store_method_is_written_out_for_limited_tokens() -> None:
    """A method added to Store must be held to the token's experiments before limited tokens can reach it:
    every public Store method is ScopedStore's own, or a base helper that only calls scoped ones."""
    through_scoped = {"search_runs", "create_run", "log_params", "set_tags", "set_note", "set_result",
                      "merge_context", "add_artifacts", "log_metrics", "end_run", "put_artifact_file",
                      "put_artifact_bytes", "maintain", "close", "display_url", "open_artifact",
                      "artifact_listed"}
    public = {name for name, _ in inspect.getmembers(Store) if not name.startswith("_")}
    own = {name for name in vars(ScopedStore) if not name.startswith("_")}
    assert public - own - through_scoped == set()
