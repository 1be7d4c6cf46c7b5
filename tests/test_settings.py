"""Settings: argument > environment variable > labtrack.toml > pyproject [tool.labtrack] > default,
validated with errors that name the setting and where the bad value came from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import labtrack as lt
from labtrack.settings import SETTINGS, load_settings

README = Path(__file__).resolve().parent.parent / "README.md"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_apply_without_any_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABTRACK_SPOOL_DIR")  # set for every test by conftest
    monkeypatch.delenv("LABTRACK_SYSTEM_METRICS")  # switched off for every test by conftest
    settings = load_settings(cwd=tmp_path)
    for setting in SETTINGS:
        assert settings.sources[setting.name] == "default"
    assert settings.store == ".labtrack"
    assert settings.flush_interval == 1.0
    assert settings.heartbeat_timeout == 60.0


def test_precedence_argument_then_env_then_labtrack_toml_then_pyproject_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "pyproject.toml", "[tool.labtrack]\nflush_interval = 5\nheartbeat_timeout = 50\n"
                                       "heartbeat_interval = 4\n")
    assert load_settings(cwd=tmp_path).heartbeat_interval == 4.0  # pyproject beats the default
    write(tmp_path / "labtrack.toml", "flush_interval = 3\nheartbeat_timeout = 30\n")
    monkeypatch.setenv("LABTRACK_FLUSH_INTERVAL", "2")
    settings = load_settings({"flush_interval": 1.5}, cwd=tmp_path)
    assert settings.flush_interval == 1.5  # the argument wins
    assert settings.sources["flush_interval"] == "argument"
    settings = load_settings(cwd=tmp_path)
    assert settings.flush_interval == 2.0  # then the environment
    assert settings.sources["flush_interval"] == "environment variable LABTRACK_FLUSH_INTERVAL"
    assert settings.heartbeat_timeout == 30.0  # then labtrack.toml, over pyproject.toml
    assert str(tmp_path / "labtrack.toml") in settings.sources["heartbeat_timeout"]
    assert settings.flush_points == 50_000  # set nowhere: the default


def test_pyproject_without_a_labtrack_section_is_skipped(tmp_path: Path) -> None:
    project = tmp_path / "project"
    write(project / "pyproject.toml", "[project]\nname = 'x'\n")
    assert load_settings(cwd=project).sources["heartbeat_timeout"] == "default"
    write(tmp_path / "labtrack.toml", "heartbeat_timeout = 7\n")  # further up: found past the pyproject
    assert load_settings(cwd=project).heartbeat_timeout == 7.0


def test_the_nearest_config_file_in_a_parent_directory_is_used(tmp_path: Path) -> None:
    write(tmp_path / "labtrack.toml", "heartbeat_timeout = 9\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert load_settings(cwd=deep).heartbeat_timeout == 9.0


def test_a_relative_store_in_a_config_file_is_relative_to_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    write(project / "labtrack.toml", 'store = "runs/.labtrack"\n')
    sub = project / "src" / "train"
    sub.mkdir(parents=True)
    assert Path(load_settings(cwd=sub).store) == project / "runs" / ".labtrack"
    monkeypatch.chdir(sub)
    with lt.start_run("configured") as run:
        run.log_metric("m", 1.0)
    assert (project / "runs" / ".labtrack" / "labtrack.db").exists()
    assert not (sub / "runs").exists() and not (sub / ".labtrack").exists()


def test_a_relative_store_in_pyproject_is_relative_to_it(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.labtrack]\nstore = "data/store"\n')
    (tmp_path / "pkg").mkdir()
    assert Path(load_settings(cwd=tmp_path / "pkg").store) == tmp_path / "data" / "store"


def test_a_relative_store_in_the_environment_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABTRACK_STORE", "here")
    assert load_settings(cwd=tmp_path).store == "here"


@pytest.mark.parametrize(
    ("env", "value", "name"),
    [
        ("LABTRACK_FLUSH_INTERVAL", "soon", "flush_interval"),
        ("LABTRACK_FLUSH_INTERVAL", "0", "flush_interval"),
        ("LABTRACK_FLUSH_POINTS", "-3", "flush_points"),
        ("LABTRACK_FLUSH_POINTS", "1.5", "flush_points"),
        ("LABTRACK_HEARTBEAT_TIMEOUT", "-1", "heartbeat_timeout"),
        ("LABTRACK_HEARTBEAT_INTERVAL", "nan?", "heartbeat_interval"),
        ("LABTRACK_RECORD_HOSTNAME", "maybe", "record_hostname"),
        ("LABTRACK_CAPTURE", "hardware,bogus", "capture"),
        ("LABTRACK_SQLITE_BUSY_TIMEOUT", "x", "sqlite_busy_timeout"),
        ("LABTRACK_GIT_DIFF_MAX_BYTES", "big", "git_diff_max_bytes"),
    ],
    ids=lambda v: v if isinstance(v, str) and not v.startswith("LABTRACK") else None,
)
def test_an_invalid_environment_value_names_the_setting_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str, name: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(lt.InvalidInput) as caught:
        load_settings(cwd=tmp_path)
    message = str(caught.value)
    assert name in message and env in message and repr(value) in message


def test_an_invalid_file_value_names_the_setting_and_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "labtrack.toml", 'heartbeat_timeout = "never"\n')
    with pytest.raises(lt.InvalidInput) as caught:
        load_settings(cwd=tmp_path)
    assert "heartbeat_timeout" in str(caught.value) and str(config) in str(caught.value)


def test_an_invalid_argument_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(lt.InvalidInput, match="flush_points"):
        load_settings({"flush_points": 0}, cwd=tmp_path)


def test_an_unknown_key_in_a_config_file_is_an_error(tmp_path: Path) -> None:
    config = write(tmp_path / "labtrack.toml", "stroe = 'typo'\n")
    with pytest.raises(lt.InvalidInput) as caught:
        load_settings(cwd=tmp_path)
    assert "stroe" in str(caught.value) and str(config) in str(caught.value)


def test_an_unknown_key_in_pyproject_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.labtrack]\nflush_intervall = 2\n")
    with pytest.raises(lt.InvalidInput, match="flush_intervall"):
        load_settings(cwd=tmp_path)


def test_a_config_file_that_is_not_toml_is_an_error_naming_it(tmp_path: Path) -> None:
    config = write(tmp_path / "labtrack.toml", "store = [unclosed\n")
    with pytest.raises(lt.InvalidInput) as caught:
        load_settings(cwd=tmp_path)
    assert str(config) in str(caught.value)


def test_an_invalid_setting_stops_labtrack_at_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_HEARTBEAT_TIMEOUT", "soon")
    with pytest.raises(lt.InvalidInput, match="LABTRACK_HEARTBEAT_TIMEOUT"):
        lt.start_run("x")


def test_valid_values_are_parsed_to_their_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABTRACK_RECORD_HOSTNAME", "off")
    monkeypatch.setenv("LABTRACK_CAPTURE", "hardware, git")
    monkeypatch.setenv("LABTRACK_ENV_VARS", "CUDA_HOME,MY_FLAG")
    monkeypatch.setenv("LABTRACK_FLUSH_POINTS", "123")
    settings = load_settings(cwd=tmp_path)
    assert settings.record_hostname is False
    assert tuple(settings.capture) == ("hardware", "git")
    assert tuple(settings.env_vars) == ("CUDA_HOME", "MY_FLAG")
    assert settings.flush_points == 123


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [s.env for s in SETTINGS if not re.search(rf"\b{re.escape(s.env)}\b", text)]
    assert missing == [], f"settings not documented in README.md: {missing}"
    missing_names = [s.name for s in SETTINGS if f"`{s.name}`" not in text]
    assert missing_names == [], f"setting names not documented in README.md: {missing_names}"


def test_every_setting_has_an_environment_variable_and_help() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for setting in SETTINGS:
        assert setting.env == "LABTRACK_" + setting.name.upper()
        assert setting.help.strip()
