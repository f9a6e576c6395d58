"""The LightningModule: a thin shell that owns the optimiser, devices and logging.

All maths lives in ``tasks.meta_learn_task`` (and below it ``algorithms``); this class routes
training and validation batches of tasks there, in the style of learn2learn's episodic modules.
"""
from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch

from lightning_modules.episodes import Task
from lightning_modules.features import FeatureTable
from lightning_modules.model import TopModel
from lightning_modules.tasks import TaskData, evaluate_task, meta_learn_task


def _key(name: str) -> str:  # ParameterDict keys may not contain dots
    return name.replace(".", "__")


class MetaLearner(pl.LightningModule):
    def __init__(self, top: TopModel, meta: dict, train: FeatureTable, val: FeatureTable,
                 algorithm: str, inner_steps: int, meta_lr: float, max_loss: float = 50.0):
        super().__init__()
        self.top, self.train_feats, self.val_feats = top, train, val
        self.algorithm, self.inner_steps, self.meta_lr, self.max_loss = algorithm, inner_steps, meta_lr, max_loss
        self.meta = torch.nn.ParameterDict({_key(k): torch.nn.Parameter(v.clone()) for k, v in meta.items()})
        self.names = {_key(k): k for k in meta}
        self.automatic_optimization = False
        self.history: list[dict] = []
        self.best: tuple[float, int, dict] | None = None

    def meta_params(self) -> dict[str, torch.Tensor]:
        return {self.names[k]: v for k, v in self.meta.items()}

    def on_fit_start(self) -> None:
        self.top.to(self.device)
        self.train_feats, self.val_feats = self.train_feats.to(self.device), self.val_feats.to(self.device)

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def training_step(self, batch: list[Task], batch_idx: int) -> None:
        opt = self.optimizers()
        opt.zero_grad()
        losses = []
        for task in batch:
            with self._autocast():
                surrogate, query_loss = meta_learn_task(self.top, self.meta_params(), TaskData.from_task(
                    self.train_feats, task), self.algorithm, self.inner_steps, self.max_loss)
            self.manual_backward(surrogate / len(batch))
            losses.append(query_loss)
        opt.step()
        loss = sum(losses) / len(losses)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        self.history.append({"step": self.global_step, "train_loss": loss})

    def validation_step(self, batch: list[Task], batch_idx: int) -> None:
        with torch.enable_grad(), self._autocast():
            accs = [evaluate_task(self.top, self.meta_params(), TaskData.from_task(self.val_feats, t),
                                  self.inner_steps) for t in batch]
        # averaged over DDP ranks, so early stopping and the best weights agree on every rank
        self.log("val_acc", sum(accs) / len(accs), prog_bar=True, batch_size=len(batch), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        acc = float(self.trainer.callback_metrics.get("val_acc", float("nan")))
        self.history.append({"step": self.global_step, "val_acc": acc})
        if self.best is None or acc > self.best[0]:  # keep the early-stopping winner's weights
            self.best = (acc, self.global_step, copy.deepcopy({k: v.detach().cpu() for k, v in self.meta_params().items()}))

    def configure_optimizers(self):
        return torch.optim.Adam(self.meta.parameters(), lr=self.meta_lr)
