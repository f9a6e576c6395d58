"""Meta-train the base: sample tasks from meta-training tenants, early-stop on held-out tenants."""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch

from lightning_modules.delta import save_base
from lightning_modules.encoder import Encoder, frozen_layer_count
from lightning_modules.episodes import EpisodeSampler, TaskStream, collate_tasks, pools_from_labels
from lightning_modules.features import FeatureTable, lower_features
from lightning_modules.model import init_meta_params, top_model
from lightning_modules.module import MetaLearner
from lightning_modules.tasks import TaskData, evaluate_task
from workspace.settings import Settings

TenantData = dict[str, tuple[list[str], list[str]]]  # tenant -> (texts, labels)


@dataclass
class MetaTrainResult:
    base_dir: Path
    meta: dict
    metrics: dict
    history: list[dict]
    params: dict
    rank: int = 0  # under DDP every process returns; only rank 0 wrote the base


def feature_table(encoder: Encoder, data: TenantData, frozen: int, cache_dir: Path | None):
    """One feature table for several tenants, and each tenant's label -> row indices in it."""
    tables, pools, offset = [], [], 0
    for tenant, (texts, labels) in sorted(data.items()):
        tables.append(lower_features(encoder, texts, frozen, cache_dir))
        pools.append(pools_from_labels(tenant, labels, offset))
        offset += len(texts)
    return FeatureTable.concat(tables), pools


class _Progress(pl.Callback):
    def __init__(self, say: Callable[[str], None], total: int):
        self.say, self.total = say, total

    def on_validation_end(self, trainer, module) -> None:  # after the module has updated its best
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        best = module.best
        self.say(f"meta-step {trainer.global_step:>4}/{self.total}  held-out acc "
                 f"{float(trainer.callback_metrics['val_acc']):.3f}  (best {best[0]:.3f} at step {best[1]})")


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _trainer(cfg, say: Callable[[str], None], devices: int | str, strategy: str) -> pl.Trainer:
    stop = pl.callbacks.EarlyStopping("val_acc", mode="max", patience=cfg.patience, check_on_train_epoch_end=False)
    return pl.Trainer(max_steps=cfg.meta_steps, val_check_interval=cfg.val_every,
                      check_val_every_n_epoch=None, limit_val_batches=1, num_sanity_val_steps=0,
                      accelerator="auto", devices=devices, strategy=strategy, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, callbacks=[stop, _Progress(say, cfg.meta_steps)])


def meta_train(encoder: Encoder, settings: Settings, train: TenantData, val: TenantData, out_dir: Path,
               cache_dir: Path | None = None, say: Callable[[str], None] = print,
               devices: int | str = 1, strategy: str = "auto") -> MetaTrainResult:
    """Meta-train with ``settings.meta_train.algorithm``; the weights with the best held-out accuracy
    (possibly the untrained start, step 0) become the base, written to ``out_dir``.

    ``devices``/``strategy`` go to Lightning: ``strategy="ddp", devices=N`` runs N processes (gloo on
    CPU, NCCL on GPUs) by re-running the calling command, so every rank runs this function; each
    samples its own tasks (seed + rank), DDP averages the meta-gradients, validation is averaged
    across ranks, and only rank 0 speaks and writes the base (``result.rank`` says which one returned).
    """
    if any(word in str(strategy) for word in ("spawn", "fork", "notebook")):
        # those run fit() in child processes: the best weights kept by the module and the ranks'
        # seeds would not come back to, or differ from, the process that writes the base
        raise ValueError(f"strategy {strategy!r} is not supported: use 'ddp'")
    _quiet_lightning()
    cfg, enc = settings.meta_train, settings.encoder
    trainer = _trainer(cfg, say, devices, strategy) if cfg.meta_steps > 0 else None
    rank = trainer.global_rank if trainer is not None else 0
    if rank:
        say = lambda message: None  # noqa: E731
    torch.manual_seed(cfg.seed)
    frozen = frozen_layer_count(encoder, enc.adapted_layers)
    top = top_model(encoder, enc.adapted_layers, enc.lora_rank)
    start = time.perf_counter()
    train_feats, train_pools = feature_table(encoder, train, frozen, cache_dir)
    val_feats, val_pools = feature_table(encoder, val, frozen, cache_dir)
    say(f"cached frozen features of {len(train_feats) + len(val_feats)} texts in {time.perf_counter() - start:.1f}s")
    ways = (cfg.ways_min, cfg.ways_max)
    train_sampler = EpisodeSampler(train_pools, ways, cfg.shots, cfg.query, cfg.seed + rank)
    val_tasks = EpisodeSampler(val_pools, ways, cfg.shots, cfg.query, cfg.seed + 1).fixed(cfg.val_tasks)

    meta0 = init_meta_params(top, cfg.inner_lr, cfg.seed)
    start_acc = sum(evaluate_task(top, meta0, TaskData.from_task(val_feats, t), cfg.inner_steps)
                    for t in val_tasks) / len(val_tasks)
    say(f"meta-step    0/{cfg.meta_steps}  held-out acc {start_acc:.3f}  (no meta-learning)")
    module = MetaLearner(top, meta0, train_feats, val_feats, cfg.algorithm, cfg.inner_steps, cfg.meta_lr,
                         settings.adapt.max_loss)
    module.best = (start_acc, 0, {k: v.clone() for k, v in meta0.items()})
    module.history.append({"step": 0, "val_acc": start_acc})
    if trainer is not None:
        loader = torch.utils.data.DataLoader(TaskStream(train_sampler), batch_size=cfg.meta_batch,
                                             collate_fn=collate_tasks)
        val_loader = torch.utils.data.DataLoader(val_tasks, batch_size=len(val_tasks), collate_fn=collate_tasks)
        trainer.fit(module, loader, val_loader)
    best_acc, best_step, best_meta = module.best
    seconds = time.perf_counter() - start
    metrics = {"val_accuracy": best_acc, "val_accuracy_start": start_acc, "best_step": best_step,
               "steps_run": module.global_step, "train_seconds": seconds}
    say(f"base = weights at meta-step {best_step} (held-out acc {best_acc:.3f} vs {start_acc:.3f} "
        f"without meta-learning), {seconds:.0f}s")
    info = {"encoder": {"name": encoder.name, "digest": encoder.digest}, "encoder_settings": settings.to_dict()["encoder"],
            "meta_train": settings.to_dict()["meta_train"], "metrics": metrics,
            "train_tenants": sorted(train), "val_tenants": sorted(val)}
    base_dir = save_base(out_dir, best_meta, info) if rank == 0 else Path(out_dir)
    return MetaTrainResult(base_dir, best_meta, metrics, module.history, settings.to_dict()["meta_train"], rank)
