"""Hugging Face Transformers with LabtrackCallback and report_to="labtrack": a real Trainer trains a tiny BERT
built from a config (no download) on the CPU; what a user finds in the store afterwards, and the rules of
every integration (attach or own, tolerant params, failures, rank zero only)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from framework_helpers import need

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = need("torch")
transformers = need("transformers")
need("accelerate")  # the Trainer needs it

import labtrack as lt  # noqa: E402
from labtrack.integrations.base import IntegrationWarning  # noqa: E402
from labtrack.integrations.transformers import LabtrackCallback  # noqa: E402

SAMPLES, BATCH = 32, 8  # 4 optimizer steps per epoch


class Tokens(torch.utils.data.Dataset):  # type: ignore[misc]
    """Random token sequences whose label is whether token 1 appears: learnable, and no tokenizer needed."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(2, 64, (SAMPLES, 12), generator=generator)
        self.ids[::2, 3] = 1
        self.labels = (self.ids == 1).any(dim=1).long()

    def __len__(self) -> int:
        return SAMPLES

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input_ids": self.ids[index], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[index]}


def tiny_model() -> Any:
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2)
    return transformers.BertForSequenceClassification(config)


class Explode(transformers.TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 2:
            raise RuntimeError("the loss exploded")


def trainer(tmp_path: Path, callbacks: list[Any] | None = None, *, report_to: str = "none", epochs: int = 1,
            lr: float = 5e-3, run_name: str | None = None) -> Any:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), num_train_epochs=epochs, per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH, learning_rate=lr, logging_steps=1, eval_strategy="epoch",
        save_strategy="no", report_to=report_to, use_cpu=True, disable_tqdm=True, run_name=run_name,
        dataloader_num_workers=0, seed=0)
    return transformers.Trainer(model=tiny_model(), args=args, train_dataset=Tokens(), eval_dataset=Tokens(),
                                callbacks=callbacks)


def only_run(experiment: str) -> lt.Run:
    runs = lt.search_runs(experiment)
    assert len(runs) == 1, [r.id for r in runs]
    return lt.get_run(runs[0].id)


def stored(run: lt.Run) -> set[str]:
    """The run's artifacts apart from labtrack's own (the console log)."""
    return {a.path for a in run.artifacts if not a.path.startswith("labtrack/")}


def integration_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, IntegrationWarning)]


def test_a_run_it_starts_has_the_arguments_model_config_and_logs_at_the_global_step(tmp_path: Path) -> None:
    hf = trainer(tmp_path, [LabtrackCallback("hf", tags={"team": "nlp"})], epochs=2, run_name="tiny-bert")
    hf.train()

    run = only_run("hf")
    assert (run.status, run.name, run.tags["team"]) == ("FINISHED", "tiny-bert", "nlp")
    assert lt.active_run() is None
    assert run.params["learning_rate"] == 5e-3
    assert run.params["per_device_train_batch_size"] == BATCH
    assert run.params["model.hidden_size"] == 16 and run.params["model.num_hidden_layers"] == 1
    steps = 2 * SAMPLES // BATCH
    assert list(run.history("loss").steps) == list(range(1, steps + 1)) == list(range(1, hf.state.global_step + 1))
    assert list(run.history("eval_loss").steps) == [steps // 2, steps]
    assert "train_runtime" in run.metrics and "learning_rate" in run.metrics
    assert stored(run) == set()


def test_report_to_labtrack_resolves_to_the_callback(tmp_path: Path) -> None:
    hf = trainer(tmp_path, report_to="labtrack")
    assert any(isinstance(c, LabtrackCallback) for c in hf.callback_handler.callbacks)
    with lt.start_run("chosen") as run:
        hf.train()
        assert lt.get_run(run.id).status == "RUNNING"  # the active run is left running
    got = lt.get_run(run.id)
    assert got.status == "FINISHED"
    assert got.params["report_to"] == ["labtrack"]
    assert len(got.history("loss").steps) == SAMPLES // BATCH
    assert [r.experiment for r in lt.search_runs()] == ["chosen"]


def test_the_final_model_is_stored_when_asked_and_loads_back(tmp_path: Path) -> None:
    trainer(tmp_path, [LabtrackCallback("model", log_model=True)]).train()
    run = only_run("model")
    assert {"model/config.json", "model/model.safetensors"} <= stored(run)
    run.download_artifacts(tmp_path / "back", path="model")
    loaded = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "back" / "model")
    assert loaded.config.hidden_size == 16


def test_evaluate_after_training_logs_into_the_active_run_only(tmp_path: Path) -> None:
    hf = trainer(tmp_path, [LabtrackCallback("eval")])
    hf.train()
    hf.evaluate()  # the callback's run ended with train(): nothing to log into
    assert list(only_run("eval").history("eval_loss").steps) == [SAMPLES // BATCH]
    with lt.start_run("evaluations") as run:
        hf.evaluate()
    assert list(lt.get_run(run.id).history("eval_loss").steps) == [SAMPLES // BATCH]


def test_a_train_that_raises_leaves_its_run_to_the_next_train_which_ends_it_failed(tmp_path: Path) -> None:
    callback = LabtrackCallback("boom")
    with pytest.raises(RuntimeError, match="exploded"):
        trainer(tmp_path, [callback, Explode()]).train()
    failed = only_run("boom")
    assert failed.status == "RUNNING"  # ended FAILED at exit if nothing else happens (test below)
    assert list(failed.history("loss").steps) == [1]  # step 2 raised before its log

    trainer(tmp_path, [LabtrackCallback("boom")]).train()  # another callback, as report_to makes one per Trainer
    runs = {r.id: lt.get_run(r.id).status for r in lt.search_runs("boom")}
    assert runs[failed.id] == "FAILED"
    assert sorted(runs.values()) == ["FAILED", "FINISHED"]


def test_a_program_that_dies_of_the_exception_ends_the_run_failed(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_integration_transformers as t
from pathlib import Path
t.trainer(Path({str(tmp_path)!r}), [t.LabtrackCallback("died"), t.Explode()]).train()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LABTRACK_STORE": str(Path.cwd() / ".labtrack")})
    assert done.returncode == 1 and "exploded" in done.stderr, done.stderr[-2000:]
    run = only_run("died")
    assert run.status == "FAILED"
    assert run.error is not None and "exploded" in run.error["message"]


def test_a_relogged_argument_is_silent_and_a_changed_one_warns_once_and_training_finishes(tmp_path: Path) -> None:
    with lt.start_run("relog") as run:
        run.log_params({"learning_rate": 5e-3})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer(tmp_path, [LabtrackCallback()]).train()
        assert integration_warnings(caught) == []

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hf = trainer(tmp_path, [LabtrackCallback()], lr=1e-2)
            hf.train()
        found = integration_warnings(caught)
        assert len(found) == 1 and "'learning_rate'" in found[0], found
        assert hf.state.global_step == SAMPLES // BATCH
        assert lt.get_run(run.id).params["learning_rate"] == 5e-3


def test_a_process_of_another_rank_logs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with lt.start_run("ranked") as run:
        monkeypatch.setenv("RANK", "1")
        trainer(tmp_path, [LabtrackCallback("other")]).train()
        monkeypatch.delenv("RANK")
        seen = lt.get_run(run.id)
        assert seen.params == {} and [k for k in seen.metrics if not k.startswith("system/")] == []  # labtrack's own
    assert lt.search_runs("other") == []
