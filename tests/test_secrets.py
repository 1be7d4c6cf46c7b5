"""Secrets never reach the store: not from the environment, the command line, a git remote URL or an
uncommitted diff — checked on every byte the store holds after a real tracked script ran.

The test also checks that the capture did record the harmless values next to the secrets, so it cannot
pass by recording nothing.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from env_helpers import git, git_env, make_repo  # noqa: F401  (git_env is a fixture)

import labtrack as lt

GITHUB_TOKEN = "ghp_" + "Zq8Lm3Nx7Rt2Vb5Kc9Wd4Hf6Jg1Ps0Ya2Ue"  # 36 characters after ghp_
HF_TOKEN = "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi"
OPENAI_KEY = "sk-" + "proj-" + "T3stK3yAbCdEfGhIjKlMnOpQrStUvWxYz012345"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLESECRET"
AWS_KEY_ID = "AKIA" + "Z7Q2M4X9W1B6N3V5"  # AKIA + 16 uppercase letters/digits
SLACK_TOKEN = "xoxb-" + "123456789012-abcdefghijkl"

ENV_SECRETS = {
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    "GITHUB_TOKEN": GITHUB_TOKEN,
    "MY_API_KEY": "SECRETVALUE6",
    "HF_TOKEN": HF_TOKEN,
    "OPENAI_API_KEY": OPENAI_KEY,
    "DB_PASSWORD": "SECRETVALUE9",
    # not secret-named, but carrying secrets in their values:
    "HUB_URL": "https://hubuser:SECRETVALUE7@hub.example.com/models",
    "TRAIN_FLAGS": "--epochs=3 --api-key=SECRETVALUE8",
}
HARMLESS_ENV = {"OMP_NUM_THREADS": "3", "CUDA_VISIBLE_DEVICES": "0"}
ARGV = ["--lr", "0.1", "--api-key", "SECRETVALUE1", "--password=SECRETVALUE2", "token=SECRETVALUE3"]
REMOTE = "https://user:SECRETVALUE4@example.com/repo.git"

DIFF_SECRETS = {
    "aws_key_id": AWS_KEY_ID,
    "password": "SECRETVALUE5",
    "slack": SLACK_TOKEN,
    "github": GITHUB_TOKEN,
}
EDITED_CONFIG = textwrap.dedent(f"""\
    learning_rate = 0.05
    aws_key_id = "{AWS_KEY_ID}"
    db_password = "SECRETVALUE5"
    SLACK = "{SLACK_TOKEN}"
    headers = {{"Authorization": "token {GITHUB_TOKEN}"}}
""")

SCRIPT = """\
import labtrack as lt

with lt.start_run("secrets", params={"lr": 0.1}) as run:
    run.log_metric("loss", 0.5, step=0)
    run.log_metric("loss", 0.25, step=1)
print(run.id)
"""

SECRETS = sorted(
    {*ENV_SECRETS.values(), *DIFF_SECRETS.values(), "SECRETVALUE1", "SECRETVALUE2", "SECRETVALUE3", "SECRETVALUE4",
     "SECRETVALUE5", "SECRETVALUE6", "SECRETVALUE7", "SECRETVALUE8", "SECRETVALUE9"} - {ENV_SECRETS["HUB_URL"],
                                                                                          ENV_SECRETS["TRAIN_FLAGS"]}
)


@pytest.fixture
def tracked_run(tmp_path: Path, python_env: dict[str, str], git_env: None) -> tuple[Path, str]:  # noqa: F811
    """A tracked script run in a repository full of secrets; returns (store directory, run id)."""
    repo = make_repo(tmp_path / "project", {"train.py": SCRIPT, "config.py": "learning_rate = 0.1\n"})
    git(repo, "remote", "add", "origin", REMOTE)
    (repo / "config.py").write_text(EDITED_CONFIG)  # uncommitted: goes into the recorded diff
    store = tmp_path / "store"
    env = {
        **python_env,
        **{k: os.environ[k] for k in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM")},
        **ENV_SECRETS,
        **HARMLESS_ENV,
        "LABTRACK_STORE": str(store),
        # the user asked for these names to be recorded too: the secret-named ones must still be redacted
        "LABTRACK_ENV_VARS": "MY_API_KEY,HF_TOKEN,GITHUB_TOKEN,DB_PASSWORD,HUB_URL,TRAIN_FLAGS",
    }
    out = subprocess.run([sys.executable, "train.py", *ARGV], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return store, out.stdout.strip()


def store_files(store: Path) -> list[Path]:
    files = [p for p in store.rglob("*") if p.is_file()]
    assert any(p.name == "labtrack.db" for p in files)
    return files


def dump_tables(db: Path) -> str:
    """Every value of every row of every table, as text."""
    lt.flush()  # what this process logged is in the store before it is read directly
    lines = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                lines.append(f"{table}: " + " | ".join(
                    v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row))
    return "\n".join(lines)


def test_no_secret_reaches_any_byte_of_the_store(tracked_run: tuple[Path, str]) -> None:
    store, _ = tracked_run
    leaks = []
    for path in store_files(store):
        data = path.read_bytes()
        leaks += [f"{path.relative_to(store)}: {s}" for s in SECRETS if s.encode() in data]
    dump = dump_tables(store / "labtrack.db")
    leaks += [f"table dump: {s}" for s in SECRETS if s in dump]
    assert leaks == []


def test_the_capture_recorded_the_harmless_values_next_to_the_secrets(tracked_run: tuple[Path, str]) -> None:
    store, run_id = tracked_run
    run = lt.get_run(run_id, store=str(store))
    assert run.status is lt.RunStatus.FINISHED
    assert run.metrics == {"loss": 0.25}
    env = run.environment
    assert env is not None
    recorded = env.snapshot["process"]["env"]
    assert recorded["OMP_NUM_THREADS"] == "3"
    assert recorded["CUDA_VISIBLE_DEVICES"] == "0"
    for name in ("MY_API_KEY", "HF_TOKEN", "GITHUB_TOKEN", "DB_PASSWORD"):
        assert recorded[name] == "[REDACTED]", name
    assert "AWS_SECRET_ACCESS_KEY" not in recorded and "OPENAI_API_KEY" not in recorded  # not allowlisted
    assert recorded["HUB_URL"].endswith("hub.example.com/models")
    assert "--epochs=3" in recorded["TRAIN_FLAGS"]

    argv = env.snapshot["process"]["argv"]
    assert argv[0].endswith("train.py")
    assert argv[1:3] == ["--lr", "0.1"]
    assert argv[3] == "--api-key" and argv[4] == "[REDACTED]"
    assert argv[5:] == ["--password=[REDACTED]", "token=[REDACTED]"]

    git_section = env.snapshot["git"]
    assert git_section["remote_url"] == "https://example.com/repo.git"
    assert git_section["dirty"] is True
    with run.open_artifact("labtrack/git.diff") as f:
        diff = f.read().decode()
    assert "+learning_rate = 0.05" in diff  # the change itself is kept ...
    assert "[REDACTED]" in diff  # ... with its secrets replaced
    assert "+db_password = " in diff and "+aws_key_id = " in diff


def test_show_and_env_output_print_no_secret(tracked_run: tuple[Path, str]) -> None:
    store, run_id = tracked_run
    from click.testing import CliRunner

    from labtrack.cli import main

    for args in (["show", run_id], ["show", run_id, "--env"], ["show", run_id, "--json"]):
        result = CliRunner().invoke(main, ["--store", str(store), *args])
        assert result.exit_code == 0, result.output
        assert [s for s in SECRETS if s in result.output] == [], args


def test_an_exception_quoting_a_secret_is_recorded_redacted() -> None:
    """A FAILED run keeps its error's type and message, but not credentials the message happens to quote."""
    import labtrack as lt

    secret = "hunter2-SECRETVALUE9"
    try:
        with lt.start_run("errors") as run:
            raise ConnectionError(f"cannot reach https://alice:{secret}@db.example.com/x")
    except ConnectionError:
        pass
    recorded = lt.get_run(run.id)
    assert recorded.status == "FAILED"
    assert recorded.error is not None and "db.example.com" in recorded.error["message"]
    assert secret not in recorded.error["message"] and secret not in recorded.error["traceback"]
