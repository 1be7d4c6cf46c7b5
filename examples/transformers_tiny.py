"""Fine-tune a tiny BERT with the Hugging Face Trainer, tracked by labtrack's Trainer callback.

Needs: pip install torch 'labtrack[transformers]'. Runs in a few seconds on a CPU and downloads nothing: the
model is built from a config and the "text" is random token ids. The run lands in ./.labtrack (or
LABTRACK_STORE) with every TrainingArguments field and the model config (model.*) as params, the Trainer's
logs as metrics at the global step, and the final model under model/. Then try `labtrack show <run id>`.
"""
# needs: torch transformers accelerate

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing to download: keep it that way

import tempfile

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import labtrack as lt
from labtrack.integrations.transformers import LabtrackCallback  # also makes report_to="labtrack" known


class Tokens(torch.utils.data.Dataset):
    """Random token sequences; the label says whether token 1 appears in them."""

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(2, 64, (n, 16), generator=generator)
        self.ids[::2, 5] = 1
        self.labels = (self.ids == 1).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "attention_mask": torch.ones(16, dtype=torch.long),
                "labels": self.labels[index]}


def main() -> None:
    lt.seed_everything(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=2)
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(output_dir=output_dir, num_train_epochs=2, per_device_train_batch_size=16,
                                 learning_rate=5e-3, logging_steps=2, eval_strategy="epoch", save_strategy="no",
                                 use_cpu=True, disable_tqdm=True, report_to="none")
        # The callback starts a run in "transformers-tiny" and ends it when training ends. Without options,
        # report_to="labtrack" does the same (into the active run, or a new run in "default").
        callback = LabtrackCallback("transformers-tiny", log_model=True, tags={"example": "transformers"})
        trainer = Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=Tokens(128, 0),
                          eval_dataset=Tokens(64, 1), callbacks=[callback])
        trainer.train()

    run = lt.search_runs("transformers-tiny", max_results=1)[0]  # the newest
    got = lt.get_run(run.id)
    print(f"run {got.id[:8]} {got.status}: {len(got.params)} params, e.g. learning_rate={got.params['learning_rate']}"
          f", model.hidden_size={got.params['model.hidden_size']}")
    print(f"loss at steps {list(got.history('loss').steps)}; eval_loss {got.metrics['eval_loss']:.4f}")
    print("artifacts:", sorted(a.path for a in got.artifacts))
    assert got.status == "FINISHED" and "model/config.json" in {a.path for a in got.artifacts}


if __name__ == "__main__":
    main()
