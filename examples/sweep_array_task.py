"""One task of a Slurm job array that sweeps a grid (docs/sweeps.md has the sbatch script).

Every array task runs this same script with the same grid on one shared store (LABTRACK_STORE: PostgreSQL or
a labtrack server). labtrack's claims share the configurations out between the tasks, each runs exactly once;
a requeued or restarted task skips what is finished and takes over what a killed task was running.

    LABTRACK_STORE=postgresql+psycopg://team@db/labtrack sbatch --array=0-7 --requeue sweep.sbatch
"""

from __future__ import annotations

import json
import math
import os
import time

import labtrack as lt

LEARNING_RATES = [0.3, 0.1, 0.03]
DEPTHS = [2, 4, 6, 8]

# For the test of this recipe (tests/test_sweep_executor.py): a file per execution, and a configuration to
# stall on so that the task can be killed in the middle of it. Unset, the script is the plain recipe.
MARKS = os.environ.get("LABTRACK_EXAMPLE_MARKS")
STALL_ON = os.environ.get("LABTRACK_EXAMPLE_STALL_ON")


@lt.track("array")
def train(lr: float, depth: int) -> float:
    """A stand-in for real training: a score that depends on the configuration, and a loss curve."""
    n = LEARNING_RATES.index(lr) * len(DEPTHS) + DEPTHS.index(depth)
    if MARKS:
        open(os.path.join(MARKS, f"{n}-{os.getpid()}"), "x").close()
        if STALL_ON == str(n):
            open(os.path.join(MARKS, "..", "stalled"), "w").close()
            time.sleep(600)
    for step in range(20):
        lt.log_metric("loss", math.exp(-lr * step) / depth, step=step)
    return 1 - math.exp(-lr * depth)


if __name__ == "__main__":
    result = lt.sweep(train, grid={"lr": LEARNING_RATES, "depth": DEPTHS}, progress=False)
    print(json.dumps({"ran": len(result.ran), "skipped": len(result.skipped), "failed": len(result.failed),
                      "task": os.environ.get("SLURM_ARRAY_TASK_ID")}))
