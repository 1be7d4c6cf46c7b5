"""Train a tiny Keras 3 model with labtrack's Keras callback (torch backend unless you chose another).

Needs: pip install torch 'labtrack[keras]'. Runs in a few seconds on a CPU, no downloads. The run lands in
./.labtrack (or LABTRACK_STORE) with epochs, steps, the optimizer's settings (optimizer.*) and the model's
size as params, loss/mae/val_loss/val_mae per epoch, batch/loss every 2 batches, and the model as
model/model.keras. Then try `labtrack show <run id>`.
"""
# needs: torch keras

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras reads it once, at its first import

import keras  # after KERAS_BACKEND is set
import numpy as np

import labtrack as lt
from labtrack.integrations.keras import LabtrackCallback


def main() -> None:
    lt.seed_everything(0)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1)) + 0.1 * rng.normal(size=(512, 1))).astype("float32")

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=["mae"])
    callback = LabtrackCallback("keras-tiny", log_every_n_batches=2, log_model=True, tags={"example": "keras"})
    model.fit(x, y, batch_size=32, epochs=5, validation_split=0.2, verbose=0, callbacks=[callback])

    run = lt.get_run(lt.search_runs("keras-tiny", max_results=1)[0].id)  # the newest
    print(f"run {run.id[:8]} {run.status} on Keras' {keras.backend.backend()} backend")
    print("params:", {k: v for k, v in run.params.items() if not k.startswith("optimizer.") or "rate" in k})
    print(f"val_loss by epoch: {[round(v, 4) for v in run.history('val_loss').values]}")
    print("artifacts:", sorted(a.path for a in run.artifacts))
    assert run.status == "FINISHED" and "model/model.keras" in {a.path for a in run.artifacts}


if __name__ == "__main__":
    main()
