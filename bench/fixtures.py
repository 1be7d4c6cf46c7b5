"""Fixtures both sides of the benchmark use. Standard library only: the MLflow side imports this file
from its own virtualenv (the script's folder is on its sys.path)."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CHILD_TIMEOUT", "median_ms", "release", "small_git_repo", "synthetic_run", "wait_for_go"]

CHILD_TIMEOUT = 240.0

_GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "-c", "commit.gpgsign=false"]


def small_git_repo(directory: str, script: str) -> str:
    """A small repository: ``train.py`` (``script``) and a few files, committed, then a tracked file edited."""
    repo = os.path.join(directory, "repo")
    os.makedirs(os.path.join(repo, "src"))
    files = {
        "train.py": script,
        "src/model.py": "".join(f"def layer_{i}(x):\n    return x * {i} + 1\n\n" for i in range(40)),
        "src/data.py": "".join(f"PATH_{i} = 'data/part-{i:03d}.csv'\n" for i in range(40)),
        "README.md": "# a small project\n" * 20,
        ".gitignore": "data/\n*.pyc\n",
    }
    for name, text in files.items():
        Path(repo, name).write_text(text)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run([*_GIT, *command], cwd=repo, check=True, capture_output=True, timeout=60)
    with open(os.path.join(repo, "src", "model.py"), "a") as f:  # uncommitted: the capture stores a git diff
        f.write("\ndef head(x):\n    return layer_3(x) - 1\n")
    return repo


def store_dir(directory: str, name: str = "store") -> str:
    """The directory of a store named ``name`` in the workload's ``directory``, created."""
    path = os.path.join(directory, name)
    os.makedirs(path, exist_ok=True)
    return path


def synthetic_run(i: int) -> tuple[dict[str, Any], dict[str, str], dict[str, float]]:
    """Params, tags and final metrics of run ``i`` (deterministic): the filter of ``search`` selects ~3%."""
    rng = random.Random(i)
    params = {
        "lr": rng.choice((0.1, 0.03, 0.01, 0.003)), "epochs": rng.randint(1, 10),
        "batch_size": rng.choice((32, 64, 128, 256)), "optimizer": rng.choice(("sgd", "adam", "adamw")),
        "dropout": rng.choice((0.0, 0.1, 0.2, 0.3, 0.5)), "weight_decay": rng.choice((0.0, 1e-4, 1e-3)),
        "layers": rng.randint(2, 8), "hidden": rng.choice((128, 256, 512, 1024)), "augment": rng.random() < 0.5,
        "seed": i,
    }
    tags = {"team": rng.choice(("cv", "nlp", "speech")), "user": f"user{rng.randrange(20)}",
            "dataset": rng.choice(("imagenet", "cifar10", "coco", "wiki"))}
    acc = 0.6 + 0.4 * rng.random() ** 0.8  # acc > 0.9 for ~30% of runs
    metrics = {"acc": acc, "loss": (1 - acc) * 2, "f1": acc - 0.02, "val_acc": acc - 0.03, "val_loss": (1 - acc) * 2.2}
    return params, tags, metrics


def median_ms(fn: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def wait_for_go(barrier: str) -> None:
    """Say "ready", then wait until every sibling is ready and the parent says "go"."""
    Path(barrier, f"ready-{os.getpid()}").touch()
    go = Path(barrier, "go")
    deadline = time.time() + CHILD_TIMEOUT
    while not go.exists() and time.time() < deadline:
        time.sleep(0.002)


def release(barrier: str, children: list[subprocess.Popen[str]], timeout: float = 120.0) -> None:
    """Say "go" once every child is ready (or has exited, or ``timeout`` passed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready = len(list(Path(barrier).glob("ready-*")))
        if ready + sum(c.poll() is not None for c in children) >= len(children):
            break
        time.sleep(0.01)
    Path(barrier, "go").touch()


def workload_main(workloads: dict[str, Callable[..., Any]], description: str | None,
                  argv: list[str] | None = None) -> None:
    """The command line of a workloads module, run in a child process: ``NAME --dir DIR --args JSON``; prints
    the workload's result as one line of JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=sorted(workloads))
    parser.add_argument("--dir", required=True, help="a fresh directory for this workload's stores")
    parser.add_argument("--args", default="{}", help="JSON object of size arguments")
    options = parser.parse_args(argv)
    # No labtrack.toml / pyproject.toml of the caller is picked up; MLflow's ./mlruns lands in the directory.
    os.chdir(options.dir)
    result = workloads[options.workload](options.dir, **json.loads(options.args))
    print(json.dumps(result), flush=True)


def time_log_metric(start_run: Callable[[str], Any], experiment: str, n: int) -> tuple[Any, float, float]:
    """Log ``n`` points with ``run.log_metric`` in a run of ``experiment`` (after a warm-up run that opens the
    store); returns (the run, seconds in the loop, seconds of run.end() + run.flush() after it)."""
    with start_run(experiment) as warm:  # opens the store (schema, connection) outside the timings
        warm.log_metric("warm", 0.0, step=0)
    run = start_run(experiment)
    log = run.log_metric
    values = [float(i % 997) / 997.0 for i in range(n)]
    t0 = time.perf_counter()
    for i in range(n):
        log("loss", values[i], step=i)
    t1 = time.perf_counter()
    run.end()  # crash-safe in the spool ...
    run.flush()  # ... and in the store
    return run, t1 - t0, time.perf_counter() - t1
