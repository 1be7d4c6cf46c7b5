"""PyTorch Lightning's LabtrackLogger with real Lightning training a tiny model on the CPU: what a user finds
in the store afterwards (params, metric series at the global step, checkpoints, status), and the rules of
every integration (attach or own, tolerant hyperparameters, rank zero only)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import pytest
from framework_helpers import need

torch = need("torch")
pl = need("lightning.pytorch")

import labtrack as lt  # noqa: E402
from labtrack.integrations.base import IntegrationWarning  # noqa: E402
from labtrack.integrations.lightning import LabtrackLogger  # noqa: E402

STEPS_PER_EPOCH = 4  # 64 samples, batches of 16


class Tiny(pl.LightningModule):  # type: ignore[misc]
    """Linear regression on synthetic data; ``fail_at`` raises in that training step."""

    def __init__(self, lr: float = 0.1, layers: dict[str, Any] | None = None, fail_at: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["fail_at"])
        self.fail_at = fail_at
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, index: int) -> Any:
        if self.fail_at is not None and self.global_step == self.fail_at:
            raise RuntimeError("the loss exploded")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, index: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader() -> Any:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def fit(logger: LabtrackLogger, model: Any = None, *, epochs: int = 2, callbacks: list[Any] | None = None,
        root: Path | None = None) -> Any:
    trainer = pl.Trainer(max_epochs=epochs, logger=logger, accelerator="cpu", log_every_n_steps=1,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                         enable_checkpointing=callbacks is not None, default_root_dir=root or Path.cwd())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        trainer.fit(model or Tiny(), loader(), loader())
    return trainer


def only_run(experiment: str) -> lt.Run:
    runs = lt.search_runs(experiment)
    assert len(runs) == 1, [r.id for r in runs]
    return lt.get_run(runs[0].id)


def integration_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, IntegrationWarning)]


@pytest.mark.parametrize(("prefix", "key"), [("", "train_loss"), ("fit", "fit-train_loss")], ids=["plain", "prefix"])
def test_a_run_it_starts_has_the_hyperparameters_metrics_at_the_global_step_and_finishes(prefix: str,
                                                                                        key: str) -> None:
    trainer = fit(LabtrackLogger("lit", tags={"team": "cv"}, prefix=prefix), Tiny(lr=0.05, layers={"hidden": 8}))

    run = only_run("lit")
    assert run.status == "FINISHED"
    assert lt.active_run() is None
    assert run.params == {"lr": 0.05, "layers.hidden": 8}
    assert run.tags["team"] == "cv"
    history = run.history(key)
    assert list(history.steps) == list(range(2 * STEPS_PER_EPOCH)) == list(range(trainer.global_step))
    assert len(run.history(f"{prefix}-val_loss" if prefix else "val_loss").steps) == 2


def test_name_and_version_are_the_experiment_and_the_run_id() -> None:
    logger = LabtrackLogger("named")
    version = logger.version
    assert isinstance(logger.experiment, lt.Run)
    assert version == logger.experiment.id
    assert logger.name == "named"
    fit(logger)
    run = only_run("named")
    assert (run.id, run.status) == (version, "FINISHED")


def test_attaching_to_the_active_run_leaves_it_running() -> None:
    with lt.start_run("mine") as run:
        fit(LabtrackLogger("ignored"), Tiny(lr=0.1))
        assert lt.active_run() is run
        assert lt.get_run(run.id).status == "RUNNING"
        assert lt.get_run(run.id).params["lr"] == 0.1
        assert len(lt.get_run(run.id).history("train_loss").steps) == 2 * STEPS_PER_EPOCH
    assert lt.get_run(run.id).status == "FINISHED"
    assert lt.search_runs("ignored") == []


def test_training_that_raises_ends_its_run_failed_with_what_was_logged() -> None:
    with pytest.raises(RuntimeError, match="exploded"):
        fit(LabtrackLogger("boom"), Tiny(fail_at=3))
    run = only_run("boom")
    assert run.status == "FAILED"
    assert list(run.history("train_loss").steps) == [0, 1, 2]


@pytest.mark.parametrize(("log_model", "stored_when"), [
    (False, "never"),
    (True, "at the end"),
    ("all", "as saved"),
], ids=["off", "best-and-last", "all"])
def test_checkpoints_are_stored_only_when_asked(log_model: Any, stored_when: str, tmp_path: Path) -> None:
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_last=True,
                                              filename="best-{epoch}")  # lr 0.1 improves val_loss every epoch
    fit(LabtrackLogger("ckpt", log_model=log_model), callbacks=[checkpoint], root=tmp_path)
    run = only_run("ckpt")
    stored = {a.path for a in run.artifacts if not a.path.startswith("labtrack/")}  # not labtrack's console log
    assert run.status == "FINISHED"
    if stored_when == "never":
        assert stored == set()
        return
    best = f"checkpoints/{Path(checkpoint.best_model_path).name}"
    assert best == "checkpoints/best-epoch=1.ckpt"
    # every checkpoint as it was saved, or only those that stand at the end
    first = {"checkpoints/best-epoch=0.ckpt"} if stored_when == "as saved" else set()
    assert stored == {"checkpoints/last.ckpt", best} | first
    assert run.tags["checkpoint.best"] == best
    with run.open_artifact(best) as stored_file:
        assert stored_file.read() == Path(checkpoint.best_model_path).read_bytes()


def test_a_relogged_hyperparameter_is_silent_and_a_changed_one_warns_once_and_training_finishes() -> None:
    with lt.start_run("relog") as run:
        run.log_params({"lr": 0.1})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(LabtrackLogger(), Tiny(lr=0.1))
        assert integration_warnings(caught) == []

        logger = LabtrackLogger()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = fit(logger, Tiny(lr=0.5))
            logger.log_hyperparams({"lr": 0.7})
        found = integration_warnings(caught)
        assert len(found) == 1 and "'lr'" in found[0], found
        assert trainer.state.finished
        assert lt.get_run(run.id).params["lr"] == 0.1


CYCLIC: dict[str, Any] = {"lr": 0.1, "model": {"depth": 3}}
CYCLIC["model"]["parent"] = CYCLIC  # a config whose child points back at it: flattening must not recurse forever


@pytest.mark.parametrize(("hyperparameters", "params"), [
    ({"lr": 0.1, "opt": {"name": "sgd", "momentum": 0.9}}, {"lr": 0.1, "opt.name": "sgd", "opt.momentum": 0.9}),
    (argparse.Namespace(lr=0.1, depth=3), {"lr": 0.1, "depth": 3}),
    ({"activation": torch.nn.ReLU, "sizes": (8, 4), "scale": torch.tensor(2.0)},
     {"activation": "ReLU", "sizes": [8, 4], "scale": 2.0}),
], ids=["nested-dict", "namespace", "objects"])
def test_hyperparameters_become_flat_params(hyperparameters: Any, params: dict[str, Any]) -> None:
    logger = LabtrackLogger("hp")
    logger.log_hyperparams(hyperparameters)
    logger.finalize("success")
    assert only_run("hp").params == params


def test_a_config_that_contains_itself_is_logged_with_the_cycle_marked() -> None:
    logger = LabtrackLogger("hp")
    logger.log_hyperparams(CYCLIC)  # used to raise RecursionError into the Trainer
    logger.finalize("success")
    params = only_run("hp").params
    assert params["lr"] == 0.1 and params["model.depth"] == 3
    assert "<cycle>" in params.values() and len(params) <= 5


def test_a_process_of_another_rank_logs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with lt.start_run("ranked") as run:
        monkeypatch.setenv("RANK", "1")
        fit(LabtrackLogger("other"), Tiny(lr=0.1))
        monkeypatch.delenv("RANK")
        seen = lt.get_run(run.id)
        assert seen.params == {} and [k for k in seen.metrics if not k.startswith("system/")] == []  # labtrack's own
    assert lt.search_runs("other") == []


@pytest.mark.parametrize("run_started", ["by rank zero", "before the processes fork"])
def test_in_distributed_training_only_rank_zero_logs_each_step_once(run_started: str) -> None:
    """Two real processes (Lightning's ddp_fork over gloo on the CPU), each training half of every batch."""
    logger = LabtrackLogger("ddp")
    early = logger.version if run_started == "before the processes fork" else None
    trainer = pl.Trainer(max_epochs=1, logger=logger, accelerator="cpu", devices=2, strategy="ddp_fork",
                         log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|sync_dist).*")
        trainer.fit(Tiny(lr=0.1), loader(), loader())
    lt.flush()
    run = only_run("ddp")
    assert list(run.history("train_loss").steps) == [0, 1]  # 4 batches split over 2 ranks, logged once each
    assert run.params["lr"] == 0.1
    if early:
        assert run.id == early
        assert run.status == "RUNNING"  # the process that started it ends it (at exit, or by ending it)
        lt.end_run()
    else:
        assert run.status == "FINISHED"  # rank zero started it and its finalize ended it


def test_a_pickled_logger_logs_into_the_same_run_and_leaves_it_to_its_starter() -> None:
    """What ddp_spawn does to the logger: the copy in a spawned process gets the run by id, not the handle."""
    import pickle

    logger = LabtrackLogger("spawned")
    logger.log_hyperparams({"lr": 0.1})
    copy = pickle.loads(pickle.dumps(logger))
    copy.log_metrics({"loss": 0.5}, step=3)
    copy.finalize("success")
    run = only_run("spawned")
    assert (run.id, run.status, run.params) == (logger.version, "RUNNING", {"lr": 0.1})
    assert list(run.history("loss").steps) == [3]
    logger.finalize("success")
    assert only_run("spawned").status == "FINISHED"
