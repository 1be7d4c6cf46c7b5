"""What runs is part of the run key (issue 13, finding 1): two tracked functions, or two scripts, with the
same params are different experiments; a plain start_run never counts as done for a tracked function; the
README's snippets work pasted into one file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import labtrack as lt


def test_two_tracked_functions_with_the_same_params_each_run_and_return_their_own_result() -> None:
    @lt.track("models")
    def train_rf(lr: float) -> str:
        return "random forest"

    @lt.track("models")
    def train_mlp(lr: float) -> str:
        return "mlp"

    assert train_rf(lr=0.1) == "random forest"
    assert train_mlp(lr=0.1) == "mlp"  # was: train_rf's recorded result, and train_mlp never ran
    assert train_mlp(lr=0.1) == "mlp" and train_rf(lr=0.1) == "random forest"  # now each is skipped
    assert len(lt.search_runs("models")) == 2
    assert train_rf.key(lr=0.1) != train_mlp.key(lr=0.1)


def test_a_plain_run_with_the_same_params_does_not_count_as_done_for_a_tracked_function() -> None:
    with lt.start_run("mnist", params={"lr": 0.1}):
        pass
    calls = []

    @lt.track("mnist")
    def train(lr: float) -> float:
        calls.append(lr)
        return lr

    assert train(lr=0.1) == 0.1 and calls == [0.1]
    assert lt.exists("mnist", {"lr": 0.1})  # the plain run still counts for this script


def test_editing_a_tracked_function_makes_its_calls_new_experiments_unless_code_is_not_identity() -> None:
    def first(lr: float) -> int:
        return 1

    def second(lr: float) -> int:
        return 2

    second.__qualname__ = first.__qualname__  # one function, edited
    assert lt.track("edit")(first).key(lr=0.1) != lt.track("edit")(second).key(lr=0.1)
    loose = {"identity": ["params"]}
    assert lt.track("edit", **loose)(first).key(lr=0.1) == lt.track("edit", **loose)(second).key(lr=0.1)


SCRIPT = """
import sys
import labtrack as lt
lt.set_store(sys.argv[1])
print(lt.exists("exp", {"lr": 0.1}), lt.exists("exp", {"lr": 0.1}, script="a.py"))

@lt.track("exp")
def train(lr):
    return __file__

print(train(lr=0.1).rsplit("/", 1)[-1])
with lt.start_run("exp", params={"lr": 0.1}):
    pass
"""


def test_two_scripts_with_the_same_params_are_different_experiments(tmp_path: Path,
                                                                     python_env: dict[str, str]) -> None:
    work = tmp_path / "project"
    work.mkdir()
    for name in ("a.py", "b.py"):
        (work / name).write_text(f"# {name}\n{SCRIPT}", encoding="utf-8")  # two scripts, two contents
    store = str(tmp_path / "store")

    def run(name: str) -> list[str]:
        done = subprocess.run([sys.executable, name, store], cwd=work, env=python_env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert run("a.py") == ["False", "False", "a.py"]
    assert run("b.py") == ["False", "True", "b.py"]  # a.py's runs are a.py's; b.py's train() ran itself
    assert run("a.py") == ["True", "True", "a.py"]  # and a.py finds its own, skipping its train()


def test_the_readme_snippets_run_pasted_into_one_file(tmp_path: Path, python_env: dict[str, str]) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python[^\n]*\n(.*?)^```", readme, flags=re.S | re.M)
    script = tmp_path / "snippets.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=python_env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
