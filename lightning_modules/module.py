"""The LightningModule: a thin shell that owns the optimiser, devices and logging.

All maths lives in ``tasks.meta_learn_task`` (and below it ``algorithms``); this class routes
training and validation batches of tasks there, in the style of learn2learn's episodic modules.
Precision (bf16 on a GPU), devices and DDP are Lightning's, set on the Trainer.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch

from lightning_modules import pooled
from lightning_modules.episodes import Task
from lightning_modules.features import FeatureTable
from lightning_modules.model import TopModel, is_adapter
from lightning_modules.tasks import TaskData, evaluate_task, meta_learn_task


def _key(name: str) -> str:  # ParameterDict keys may not contain dots
    return name.replace(".", "__")


class MetaLearner(pl.LightningModule):
    def __init__(self, top: TopModel, meta: dict, train: FeatureTable, val: FeatureTable,
                 algorithm: str, inner_steps: int, meta_lr: float, max_loss: float = 50.0,
                 optimizer: str = "sgd", head: str = "inner", names: FeatureTable | None = None,
                 val_names: FeatureTable | None = None, objective: str = "ce"):
        super().__init__()
        self.top, self.train_feats, self.val_feats = top, train, val
        self.names, self.val_names = names, val_names   # label-name texts of the train / held-out tenants
        self.algorithm, self.inner_steps, self.meta_lr, self.max_loss = algorithm, inner_steps, meta_lr, max_loss
        self.inner_optimizer, self.head, self.objective = optimizer, head, objective
        self.meta = torch.nn.ParameterDict({_key(k): torch.nn.Parameter(v.clone()) for k, v in meta.items()})
        self.names_of = {_key(k): k for k in meta}
        self.automatic_optimization = False
        self.history: list[dict] = []

    def meta_params(self) -> dict[str, torch.Tensor]:
        return {self.names_of[k]: v for k, v in self.meta.items()}

    def on_fit_start(self) -> None:
        self.top.to(self.device)
        self.train_feats, self.val_feats = self.train_feats.to(self.device), self.val_feats.to(self.device)
        if self.names is not None:
            self.names = self.names.to(self.device)
        if self.val_names is not None:
            self.val_names = self.val_names.to(self.device)

    def training_step(self, batch: list[Task], batch_idx: int) -> None:
        opt = self.optimizers()
        opt.zero_grad()
        losses = []
        for task in batch:
            surrogate, query_loss = meta_learn_task(self.top, self.meta_params(), TaskData.from_task(self.train_feats, task, self.names),
                                                    self.algorithm, self.inner_steps, self.max_loss,
                                                    optimizer=self.inner_optimizer, objective=self.objective)
            self.manual_backward(surrogate / len(batch))
            losses.append(query_loss)
        opt.step()
        loss = sum(losses) / len(losses)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        self.history.append({"step": self.global_step, "train_loss": loss})

    def validation_step(self, batch: list[Task], batch_idx: int) -> None:
        with torch.enable_grad():
            accs = [evaluate_task(self.top, self.meta_params(), TaskData.from_task(self.val_feats, t, self.val_names), self.inner_steps,
                                  optimizer=self.inner_optimizer, head=self.head, objective=self.objective)
                    for t in batch]
        # averaged over DDP ranks, so early stopping and the checkpointed best agree on every rank
        self.log("val_acc", sum(accs) / len(accs), prog_bar=True, batch_size=len(batch), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.history.append({"step": self.global_step,
                                 "val_acc": float(self.trainer.callback_metrics.get("val_acc", float("nan")))})

    # the curve survives an interruption: it travels in the checkpoint
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tailor_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("tailor_history", []))

    def configure_optimizers(self):
        return torch.optim.Adam(self.meta.parameters(), lr=self.meta_lr)


class PooledLearner(MetaLearner):
    """Pooled training (``lightning_modules.pooled``): a training batch is rows of every training
    tenant, not tasks; the adapters move with the per-tenant heads, which are thrown away. Validation
    is ``MetaLearner``'s: the product's adaptation on the held-out tenants' tasks, with
    ``inner_steps`` (0: a logistic head on the base's embeddings)."""

    def __init__(self, top: TopModel, meta: dict, train: FeatureTable, val: FeatureTable, rows: "pooled.PooledRows",
                 inner_steps: int, lr: float, optimizer: str = "adam", head: str = "logreg",
                 val_names: FeatureTable | None = None):
        super().__init__(top, meta, train, val, "pooled", inner_steps, lr, optimizer=optimizer, head=head,
                         val_names=val_names)
        self.rows = rows
        self.heads = torch.nn.Parameter(pooled.init_heads(top, meta, train, rows))
        self.log_scale = torch.nn.Parameter(pooled.start_scale())
        self.register_buffer("classes", pooled.class_mask(rows.n_classes), persistent=False)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        opt = self.optimizers()
        opt.zero_grad()
        rows = self.rows
        states, mask = self.train_feats.rows(rows.rows[batch].to(self.device))
        loss = pooled.pooled_loss(self.top, pooled.adapter_params(self.meta_params()), self.heads, self.log_scale,
                                  self.classes, states, mask, rows.tenant[batch].to(self.device),
                                  rows.label[batch].to(self.device))
        self.manual_backward(loss)
        opt.step()
        self.log("train_loss", loss.detach(), prog_bar=True, batch_size=len(batch))
        self.history.append({"step": self.global_step, "train_loss": float(loss.detach())})

    def configure_optimizers(self):
        adapters = [p for k, p in self.meta.items() if is_adapter(self.names_of[k])]
        return torch.optim.Adam([*adapters, self.heads, self.log_scale], lr=self.meta_lr)


def meta_from_checkpoint(path, like: dict) -> dict[str, torch.Tensor]:
    """The meta-parameters stored in a Lightning checkpoint of ``MetaLearner``, keyed as ``like``."""
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return {k: state[f"meta.{_key(k)}"].detach().clone() for k in like}
