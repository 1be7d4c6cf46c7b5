"""The demo: logistic regression trained from scratch on a synthetic data set, tracked run by run.

Pure Python on purpose, so `labtrack demo` works right after `pip install labtrack`: no numpy needed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from itertools import product

from labtrack.verbs.tracking import Run, start_run

__all__ = ["DEMO_EXPERIMENT", "make_dataset", "run_demo", "train_logreg"]

DEMO_EXPERIMENT = "demo-logreg"


def make_dataset(n: int = 400, features: int = 4, seed: int = 0) -> tuple[list[list[float]], list[int]]:
    """Two Gaussian blobs whose labels a linear model can mostly, not perfectly, separate."""
    rng = random.Random(seed)
    true_w = [rng.uniform(-2, 2) for _ in range(features)]
    xs, ys = [], []
    for _ in range(n):
        x = [rng.gauss(0, 1) for _ in range(features)]
        margin = sum(w * v for w, v in zip(true_w, x)) + rng.gauss(0, 0.8)
        xs.append(x)
        ys.append(1 if margin > 0 else 0)
    return xs, ys


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def train_logreg(run: Run, lr: float, epochs: int, l2: float, seed: int = 0) -> dict[str, float]:
    """Full-batch gradient descent; logs train loss/accuracy per epoch and validation metrics at the end."""
    xs, ys = make_dataset(seed=seed)
    split = int(len(xs) * 0.75)
    train, valid = list(zip(xs[:split], ys[:split])), list(zip(xs[split:], ys[split:]))
    weights = [0.0] * len(xs[0])
    bias = 0.0

    def evaluate(rows: list[tuple[list[float], int]]) -> tuple[float, float]:
        loss = correct = 0.0
        for x, y in rows:
            p = min(max(_sigmoid(sum(w * v for w, v in zip(weights, x)) + bias), 1e-12), 1 - 1e-12)
            loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
            correct += (p >= 0.5) == bool(y)
        return loss / len(rows), correct / len(rows)

    for epoch in range(epochs):
        grad_w = [0.0] * len(weights)
        grad_b = 0.0
        for x, y in train:
            error = _sigmoid(sum(w * v for w, v in zip(weights, x)) + bias) - y
            for i, v in enumerate(x):
                grad_w[i] += error * v
            grad_b += error
        weights = [w - lr * (g / len(train) + l2 * w) for w, g in zip(weights, grad_w)]
        bias -= lr * grad_b / len(train)
        loss, acc = evaluate(train)
        run.log_metrics({"train_loss": loss, "train_acc": acc}, step=epoch)
    val_loss, val_acc = evaluate(valid)
    run.log_metrics({"val_loss": val_loss, "val_acc": val_acc}, step=epochs)
    run.log_dict({"weights": weights, "bias": bias}, "model/weights.json")
    return {"val_loss": val_loss, "val_acc": val_acc}


def run_demo(
    store: str | None = None, on_run: Callable[[Run, dict[str, float]], None] | None = None
) -> list[str]:
    """Train six configurations (learning rate x epochs) and track each as a run; returns their ids."""
    ids = []
    for lr, epochs in product([0.05, 0.3, 1.0], [10, 30]):
        with start_run(
            DEMO_EXPERIMENT, params={"lr": lr, "epochs": epochs, "l2": 0.001, "seed": 0},
            tags={"model": "logistic-regression", "source": "labtrack demo"}, store=store,
        ) as run:
            result = train_logreg(run, lr=lr, epochs=epochs, l2=0.001)
        ids.append(run.id)
        if on_run is not None:
            on_run(run, result)
    return ids
