"""Train a logistic regression with numpy SGD over a small grid, tracking each run.

Run it from any directory: the runs land in ./.labtrack (or LABTRACK_STORE). Then try
`labtrack runs numpy-sgd --sort "metrics.val_acc desc"`.
"""

from __future__ import annotations

import numpy as np

import labtrack as lt


def make_data(n: int = 2000, d: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    y = (x @ w + rng.normal(scale=0.5, size=n) > 0).astype(np.float64)
    return x, y


def train(lr: float, batch_size: int, epochs: int = 5) -> float:
    x, y = make_data()
    x_train, y_train, x_val, y_val = x[:1500], y[:1500], x[1500:], y[1500:]
    rng = np.random.default_rng(1)
    w = np.zeros(x.shape[1])
    with lt.start_run("numpy-sgd", params={"lr": lr, "batch_size": batch_size, "epochs": epochs}) as run:
        step = 0
        for epoch in range(epochs):
            order = rng.permutation(len(x_train))
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                p = 1 / (1 + np.exp(-(x_train[idx] @ w)))
                w -= lr * x_train[idx].T @ (p - y_train[idx]) / len(idx)
                loss = -np.mean(y_train[idx] * np.log(p + 1e-12) + (1 - y_train[idx]) * np.log(1 - p + 1e-12))
                run.log_metric("train_loss", loss, step=step)  # a numpy scalar is fine
                step += 1
            val_acc = np.mean(((x_val @ w) > 0) == (y_val > 0.5))
            run.log_metric("val_acc", val_acc, step=epoch)
        np.save("weights.npy", w)
        run.log_artifact("weights.npy", artifact_path="model")
        return float(val_acc)


if __name__ == "__main__":
    for lr in (0.01, 0.1):
        for batch_size in (32, 128):
            print(f"lr={lr} batch_size={batch_size} val_acc={train(lr, batch_size):.3f}")
    best = lt.search_runs("numpy-sgd", order_by=["metrics.val_acc desc"], max_results=1)[0]
    print("best run:", best.id[:8], best.params, f"val_acc={best.metrics['val_acc']:.3f}")
