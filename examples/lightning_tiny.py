"""Train a tiny PyTorch Lightning regression model with labtrack's Lightning logger.

Needs: pip install torch 'labtrack[lightning]'. Runs in a few seconds on a CPU, no downloads. The run lands in
./.labtrack (or LABTRACK_STORE) with the hyperparameters, train_loss at every global step, val_loss each
epoch, and the best and last checkpoints under checkpoints/. Then try `labtrack show <run id>`.
"""
# needs: torch lightning

from __future__ import annotations

import lightning.pytorch as pl
import torch

import labtrack as lt
from labtrack.integrations.lightning import LabtrackLogger


class Regression(pl.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()  # -> params lr and hidden
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)  # -> metric train_loss at the global step
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader(seed: int) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 4, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(256, 1, generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)


def main() -> None:
    lt.seed_everything(0)
    logger = LabtrackLogger("lightning-tiny", log_model=True, tags={"example": "lightning"})
    checkpoints = pl.callbacks.ModelCheckpoint(monitor="val_loss", save_last=True)
    trainer = pl.Trainer(max_epochs=3, logger=logger, callbacks=[checkpoints], accelerator="cpu",
                         log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False)
    run_id = logger.version  # the run id (the logger started the run; it ends it when fit ends)
    trainer.fit(Regression(), loader(0), loader(1))

    run = lt.get_run(run_id)
    print(f"run {run.id[:8]} {run.status}: params {run.params}")
    print(f"train_loss at steps {list(run.history('train_loss').steps)[:3]}... last {run.metrics['train_loss']:.4f}")
    print("artifacts:", sorted(a.path for a in run.artifacts))
    assert run.status == "FINISHED" and any(a.path.startswith("checkpoints/") for a in run.artifacts)


if __name__ == "__main__":
    main()
