"""Meta-train the base: sample tasks from meta-training tenants, early-stop on held-out tenants."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
import torch

from lightning_modules import pooled
from lightning_modules.delta import save_base
from lightning_modules.encoder import Encoder, frozen_layer_count
from lightning_modules.episodes import EpisodeSampler, TaskStream, collate_tasks, pools_from_labels
from lightning_modules.features import BudgetSpent, FeatureTable, lower_features
from lightning_modules.model import init_meta_params, is_adapter, layout, top_model
from lightning_modules.module import MetaLearner, PooledLearner, meta_from_checkpoint
from lightning_modules.tasks import TaskData, evaluate_task
from workspace.errors import UserError
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


def feature_table(encoder: Encoder, data: TenantData, frozen: int, cache_dir: Path | None, names: bool = False,
                  deadline: float | None = None):
    """One feature table for several tenants, each tenant's label -> row indices in it, and (with
    ``names``) a table of every tenant's label names, each pool knowing its names' rows. Past
    ``deadline`` (``time.monotonic()``) it raises ``BudgetSpent``."""
    tables, pools, name_texts, offset = [], [], [], 0
    total = sum(len(texts) for texts, _ in data.values())
    for tenant, (texts, labels) in sorted(data.items()):
        try:
            tables.append(lower_features(encoder, texts, frozen, cache_dir, deadline))
        except BudgetSpent as spent:   # counted over every tenant: the ones before this one are cached
            raise BudgetSpent(offset + spent.done, total) from None
        rows = None
        if names:
            own = sorted(set(labels))
            rows = {label: len(name_texts) + i for i, label in enumerate(own)}
            name_texts += own
        pools.append(pools_from_labels(tenant, labels, offset, rows))
        offset += len(texts)
    try:
        name_table = lower_features(encoder, name_texts, frozen, cache_dir, deadline) if name_texts else None
    except BudgetSpent as spent:
        raise BudgetSpent(total + spent.done, total + len(name_texts)) from None
    return FeatureTable.concat(tables), pools, name_table


class _Progress(pl.Callback):
    """One line per validation for logs and the demo (a progress bar is Lightning's RichProgressBar)."""

    def __init__(self, say: Callable[[str], None], total: int, start_acc: float, label: str = "meta-step"):
        self.say, self.total, self.best = say, total, start_acc
        self.start_acc, self.label = start_acc, label

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        acc = float(trainer.callback_metrics["val_acc"])
        self.best = max(self.best, acc)
        self.say(f"{self.label} {trainer.global_step:>4}/{self.total}  held-out acc {acc:.3f}  "
                 f"(best {self.best:.3f}; {self.start_acc:.3f} at its start)")


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def _precision(cfg) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def _trainer(cfg, total: int, every: int, say, start_acc: float, ckpt_dir: Path, devices, strategy, logger,
             progress: bool, seconds: float | None, label: str = "meta-step") -> pl.Trainer:
    stop = pl.callbacks.EarlyStopping("val_acc", mode="max", patience=cfg.patience, check_on_train_epoch_end=False)
    # the best validated weights are kept by Lightning's checkpointing (and `last.ckpt` resumes a run)
    best = pl.callbacks.ModelCheckpoint(dirpath=str(ckpt_dir), filename="best-{step}", monitor="val_acc", mode="max",
                                        save_top_k=1, save_last=True, auto_insert_metric_name=False)
    callbacks = [stop, best, _Progress(say, total, start_acc, label)]
    if seconds is not None:
        callbacks.append(_Budget(duration={"seconds": seconds}, interval="step"))
    if progress:
        callbacks.append(pl.callbacks.RichProgressBar(leave=True))
    return pl.Trainer(max_steps=total, val_check_interval=every, check_val_every_n_epoch=None,
                      limit_val_batches=1, num_sanity_val_steps=0, accelerator="auto", devices=devices,
                      strategy=strategy, precision=_precision(cfg), logger=logger if logger is not None else False,
                      log_every_n_steps=1, enable_checkpointing=True, enable_progress_bar=progress,
                      enable_model_summary=False, inference_mode=False, callbacks=callbacks)


class _Budget(pl.callbacks.Timer):
    """Lightning's timer for this command's budget alone. Its own would restore the time an
    interrupted run had spent from the checkpoint it resumes, and count it again: a third rerun of
    a 24-second budget trained for 1 s and ran no step."""

    def load_state_dict(self, state_dict: dict) -> None:
        pass


def adapted_layers(settings: Settings) -> int:
    """Layers the base adapts: more when meta-training finds a GPU (the base records which)."""
    enc = settings.encoder
    return enc.gpu_adapted_layers if torch.cuda.is_available() and enc.gpu_adapted_layers else enc.adapted_layers


def uses_names(settings: Settings) -> bool:
    return settings.adapt.label_names and settings.meta_train.name_weight > 0


def _validation_tasks(encoder: Encoder, settings: Settings, val: TenantData, frozen: int, cache_dir,
                      deadline: float | None = None):
    """The held-out tenants' features, label names and the fixed validation tasks drawn from them."""
    cfg = settings.meta_train
    feats, pools, names = feature_table(encoder, val, frozen, cache_dir, uses_names(settings), deadline)
    tasks = EpisodeSampler(pools, (cfg.ways_min, cfg.ways_max), cfg.shots, cfg.query, cfg.seed + 1).fixed(cfg.val_tasks)
    return feats, names, tasks


def _score(top, meta: dict, feats: FeatureTable, names, tasks, settings: Settings, steps: int | None = None) -> float:
    cfg = settings.meta_train
    steps = cfg.inner_steps if steps is None else steps
    return sum(evaluate_task(top, meta, TaskData.from_task(feats, t, names), steps,
                             optimizer=cfg.optimizer, head=settings.adapt.head, objective=cfg.objective)
               for t in tasks) / len(tasks)


def validation_score(encoder: Encoder, settings: Settings, val: TenantData, meta: dict, cache_dir=None,
                     steps: int | None = None) -> float:
    """Mean held-out accuracy of ``meta`` on the validation tasks ``meta_train`` draws from ``val``
    (the same tasks, so a base can be re-scored independently of the run that chose it), adapted
    with ``steps`` inner steps (default ``meta_train.inner_steps``; a pooled base's are in its info)."""
    layers, rank, token_rank = layout(meta)
    top = top_model(encoder, layers, rank, token_rank)
    feats, names, tasks = _validation_tasks(encoder, settings, val, frozen_layer_count(encoder, layers), cache_dir)
    return _score(top, meta, feats, names, tasks, settings, steps)


def check_enough_examples(settings: Settings, train: TenantData, val: TenantData) -> None:
    """Refuse, before any work, data the episode sampler cannot draw a task from: a task needs one
    tenant with 2+ labels of ``meta_train.shots + meta_train.query`` examples each, among the
    held-out tenants (validation) and, when meta-steps will run, among the meta-training ones.

    Raises:
        UserError: naming the tenants, their labels short of examples, the counts and the settings.
    """
    cfg = settings.meta_train
    need = cfg.shots + cfg.query
    roles = [("held-out", val, "meta_train.val_tenants")]
    if cfg.meta_steps > 0:
        roles.append(("meta-training", train, "meta_train.tenants"))
    for role, data, setting in roles:
        pools = [pools_from_labels(tenant, labels) for tenant, (_, labels) in sorted(data.items())]
        if any(len(pool.usable_labels(need)) >= 2 for pool in pools):
            continue
        short = []
        for pool in pools[:5]:
            few = sorted((len(rows), label) for label, rows in pool.by_label.items() if len(rows) < need)
            shown = ", ".join(f"{label[:40]!r} {count}" for count, label in few[:4])
            short.append(f"{pool.tenant} ({shown}{', ...' if len(few) > 4 else ''})")
        more = f" and {len(pools) - 5} more" if len(pools) > 5 else ""
        raise UserError(f"meta-training draws tasks of 2+ labels with {need} examples each (meta_train.shots "
                        f"{cfg.shots} + meta_train.query {cfg.query}), but no {role} tenant has 2 such labels: "
                        f"{'; '.join(short) or 'none given'}{more}: add examples, lower meta_train.shots or "
                        f"meta_train.query in params.yaml, or choose other tenants ({setting})")


def meta_train(encoder: Encoder, settings: Settings, train: TenantData, val: TenantData, out_dir: Path,
               cache_dir: Path | None = None, say: Callable[[str], None] = print,
               devices: int | str | list | None = None, strategy: str | None = None, logger=None,
               checkpoint_dir: Path | None = None, progress: bool = False,
               deadline: float | None = None) -> MetaTrainResult:
    """Meta-train with ``settings.meta_train.algorithm``; the weights with the best held-out accuracy
    (possibly the untrained start, step 0) become the base, written to ``out_dir``.

    ``checkpoint_dir`` keeps Lightning's checkpoints: a run interrupted there resumes from its
    ``last.ckpt`` when called again with the same inputs (the caller names the folder after them).
    ``logger``: a Lightning logger (the flows pass MLflow's) for the curves. ``devices``/``strategy``
    default to ``meta_train.devices``/``strategy``; ``strategy="ddp"`` runs one process per device by
    re-running the calling command, so every rank runs this function; each samples its own tasks
    (seed + rank), DDP averages the meta-gradients, validation is averaged across ranks, and only
    rank 0 speaks and writes the base (``result.rank`` says which one returned).

    ``meta_train.max_minutes`` bounds all of it, feature caching and validation included; a caller
    that has more to do within the same budget (registration) passes its own ``deadline``
    (``time.monotonic()``). ``metrics["stop_reason"]`` and the last line said tell why it stopped
    (time budget, early stopping, meta_steps) and which step became the base.
    """
    cfg, enc = settings.meta_train, settings.encoder
    devices = cfg.lightning_devices() if devices is None else devices
    strategy = cfg.strategy if strategy is None else strategy
    if any(word in str(strategy) for word in ("spawn", "fork", "notebook")):
        # those run fit() in child processes: the best weights and the ranks' seeds would not come
        # back to, or differ from, the process that writes the base
        raise ValueError(f"strategy {strategy!r} is not supported: use 'ddp'")
    check_enough_examples(settings, train, val)   # before seconds of feature caching, not after
    _quiet_lightning()
    layers = adapted_layers(settings)
    own_ckpt = checkpoint_dir is None
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="tailor-meta-ckpt-"))
    torch.manual_seed(cfg.seed)
    frozen = frozen_layer_count(encoder, layers)
    top = top_model(encoder, layers, enc.lora_rank, enc.token_rank)
    start = time.perf_counter()
    if deadline is None and cfg.max_minutes:
        deadline = time.monotonic() + cfg.max_minutes * 60
    use_names = uses_names(settings)
    meta0 = init_meta_params(top, cfg.inner_lr, cfg.seed, cfg.head_lr, cfg.name_weight if use_names else 0.0)
    reason = None
    try:
        train_feats, train_pools, train_names = feature_table(encoder, train, frozen, cache_dir, use_names, deadline)
        val_feats, val_names, val_tasks = _validation_tasks(encoder, settings, val, frozen, cache_dir, deadline)
    except BudgetSpent as exc:   # what was encoded stays cached
        reason = (f"the time budget (meta_train.max_minutes {cfg.max_minutes:g}) ran out while caching frozen "
                  f"features ({exc})")
    else:
        say(f"cached frozen features of {len(train_feats) + len(val_feats)} texts in "
            f"{time.perf_counter() - start:.1f}s")
        if deadline is not None and time.monotonic() >= deadline:
            # not even the start's held-out score (seconds on a loaded machine) fits
            reason = _spent_before_the_first_step(cfg)
    if reason:   # nothing to train on: the start weights are the base
        return _finish(say, settings, encoder, layers, train, val, out_dir, meta0, None, None, 0, start, reason,
                       [], rank=0, ckpt_dir=ckpt_dir if own_ckpt else None)
    env = _Env(settings, top, train_feats, train_pools, train_names, val_feats, val_names, val_tasks, devices,
               strategy, logger, progress)
    if cfg.algorithm == "pooled-fomaml":   # Meta-Baseline: pooled first, then FOMAML from its weights
        share = deadline if deadline is None else time.monotonic() + (deadline - time.monotonic()) * cfg.pooled_share
        first = _phase("pooled", meta0, env, say, share, ckpt_dir / "pooled")
        second = _phase("fomaml", first.meta, env, say, deadline, ckpt_dir / "fomaml", "the pooled weights")
        best = second if second.acc > first.acc + 1e-6 else first
        say(f"Meta-Baseline: pooled kept step {first.step} (held-out acc {first.acc:.3f}), FOMAML from it kept step "
            f"{second.step} ({second.acc:.3f}): the base is the {'FOMAML' if best is second else 'pooled'} weights")
        phases = [first, second]
    else:
        best = _phase(cfg.algorithm, meta0, env, say, deadline, ckpt_dir)
        phases = [best]
    history = [dict(h, phase=p.algorithm) for p in phases for h in p.history]
    return _finish(say if best.rank == 0 else (lambda m: None), settings, encoder, layers, train, val, out_dir,
                   best.meta, best.acc if best.trained else None, phases[0].start_acc, best.step, start, best.reason,
                   history, best.rank, sum(p.steps_run for p in phases), ckpt_dir if own_ckpt else None,
                   adapt_steps=best.adapt_steps, kept=best.algorithm, mix=phases[0].mix)


@dataclass
class _Env:
    """What every phase of one meta-train run shares: the model, data and Lightning's settings."""

    settings: Settings
    top: object
    train_feats: FeatureTable
    train_pools: list
    train_names: FeatureTable | None
    val_feats: FeatureTable
    val_names: FeatureTable | None
    val_tasks: list
    devices: object
    strategy: object
    logger: object
    progress: bool


@dataclass
class _Phase:
    algorithm: str
    meta: dict
    acc: float
    start_acc: float
    step: int
    steps_run: int
    reason: str
    history: list
    rank: int
    adapt_steps: int
    trained: bool   # a validated meta-step ran (else ``acc`` is the start's own score)
    mix: float = 1.0   # pooled: the share of the trained adapters kept (weight-space mix with the start)


def adapt_steps_of(settings: Settings, algorithm: str) -> int:
    """Inner steps a tenant's adaptation takes from a base trained with ``algorithm``: a pooled base
    is used as it is (a logistic head on its embeddings: ``meta_train.pooled_adapt_steps``); a
    meta-learned one runs the inner loop it was meta-learned for."""
    return settings.meta_train.pooled_adapt_steps if algorithm == "pooled" else settings.adapt.inner_steps


def _phase(algorithm: str, meta0: dict, env: _Env, say, deadline: float | None, ckpt_dir: Path,
           start_label: str = "no training") -> _Phase:
    """One Lightning fit from ``meta0``: the best validated weights (or ``meta0``) and why it stopped."""
    settings = env.settings
    cfg = settings.meta_train
    pooled_run = algorithm == "pooled"
    steps = cfg.pooled_adapt_steps if pooled_run else cfg.inner_steps
    scoring = time.monotonic()
    start_acc = _score(env.top, meta0, env.val_feats, env.val_names, env.val_tasks, settings, steps)
    validation_s = time.monotonic() - scoring   # a validation started just before the deadline ends after it
    rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))  # DDP sets these before fit
    if pooled_run:
        names_at = len(env.train_feats) if env.train_names is not None else None
        feats = env.train_feats if names_at is None else FeatureTable.concat([env.train_feats, env.train_names])
        rows = pooled.PooledRows.from_pools(env.train_pools, names_at)
        module = PooledLearner(env.top, meta0, feats, env.val_feats, rows, steps, cfg.pooled_lr, cfg.optimizer,
                               settings.adapt.head, env.val_names)
        loader = lambda seed: torch.utils.data.DataLoader(pooled.RowStream(len(rows), cfg.pooled_batch, seed),  # noqa: E731
                                                          batch_size=None)
        total, every = cfg.pooled_steps, cfg.pooled_val_every
    else:
        module = MetaLearner(env.top, meta0, env.train_feats, env.val_feats, algorithm, cfg.inner_steps, cfg.meta_lr,
                             settings.adapt.max_loss, cfg.optimizer, settings.adapt.head, env.train_names,
                             env.val_names, cfg.objective)

        def loader(seed):
            sampler = EpisodeSampler(env.train_pools, (cfg.ways_min, cfg.ways_max), cfg.shots, cfg.query, seed)
            return torch.utils.data.DataLoader(TaskStream(sampler), batch_size=cfg.meta_batch, collate_fn=collate_tasks)
        total, every = cfg.meta_steps, cfg.val_every
    label = "pooled step" if pooled_run else "meta-step"
    trainer = None
    left = None if deadline is None else deadline - time.monotonic() - validation_s
    if total > 0 and (left is None or left > 1):
        trainer = _trainer(cfg, total, every, say if rank == 0 else (lambda m: None), start_acc, ckpt_dir, env.devices,
                           env.strategy, env.logger, env.progress, left, label)
        rank = trainer.global_rank
    if rank:
        say = lambda message: None  # noqa: E731
    say(f"{label} {0:>4}/{total}  held-out acc {start_acc:.3f}  ({start_label})")
    module.history.append({"step": 0, "val_acc": start_acc})
    best_acc, best_step, best_meta = start_acc, 0, {k: v.clone() for k, v in meta0.items()}
    if trainer is not None:
        last = ckpt_dir / "last.ckpt"
        resume = str(last) if last.is_file() else None
        if resume:
            say(f"resuming from {last}")
        val_loader = torch.utils.data.DataLoader(env.val_tasks, batch_size=len(env.val_tasks), collate_fn=collate_tasks)
        trainer.fit(module, loader(cfg.seed + rank + _resumed_step(last)), val_loader, ckpt_path=resume)
        ckpt = trainer.checkpoint_callback
        # Lightning logs the validation mean as float32: the start's own score read back can exceed
        # the float64 start by rounding alone, so a step must beat the start by more than that
        if ckpt.best_model_score is not None and float(ckpt.best_model_score) > start_acc + 1e-6:
            best_acc, best_meta = float(ckpt.best_model_score), meta_from_checkpoint(ckpt.best_model_path, meta0)
            best_step = int(torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)["global_step"])
    reason = _stop_reason(trainer, cfg, total, deadline)
    mix = 1.0
    if pooled_run and best_step > 0:
        best_meta, best_acc, mix = _weight_space_mix(env, meta0, best_meta, best_acc, steps, say)
    phase = _Phase(algorithm, best_meta, best_acc, start_acc, best_step, module.global_step, reason, module.history,
                   rank, steps, trainer is not None)
    phase.mix = mix
    return phase


MIXES = (0.25, 0.5, 0.75)   # weight-space ensembles of the pooled weights with their start, tried after training


def _weight_space_mix(env: _Env, start: dict, trained: dict, trained_acc: float, steps: int, say):
    """WiSE-FT (Wortsman et al. 2022, Robust fine-tuning of zero-shot models): interpolate the
    adapters between their start (the frozen encoder exactly) and the pooled weights, and keep the
    mix that validates best (the pooled weights themselves included). Pooled training specialises
    the embedding to the training tenants' categories; a mix keeps what the frozen encoder knows
    of categories it has not seen, measured on the held-out tenants rather than assumed."""
    best = (trained_acc, 1.0, trained)
    for alpha in MIXES:
        mixed = {k: (1 - alpha) * start[k] + alpha * trained[k] if is_adapter(k) else trained[k] for k in trained}
        acc = _score(env.top, mixed, env.val_feats, env.val_names, env.val_tasks, env.settings, steps)
        if acc > best[0] + 1e-6:
            best = (acc, alpha, mixed)
    say(f"weight-space mix with the start: kept {best[1]:g} of the pooled weights (held-out acc {best[0]:.3f}; "
        f"{trained_acc:.3f} unmixed)")
    return best[2], best[0], best[1]


def _stop_reason(trainer, cfg, total: int, deadline: float | None) -> str:
    """Why meta-training stopped, in words: the time budget, early stopping, or meta_steps."""
    if trainer is None:
        if total == 0:
            return "meta_train.meta_steps is 0"
        return _spent_before_the_first_step(cfg)
    stop = next(c for c in trainer.callbacks if isinstance(c, pl.callbacks.EarlyStopping))
    if trainer.global_step >= total:
        return f"it reached its step limit ({total})"
    if stop.wait_count >= stop.patience:
        return f"early stopping: {stop.patience} validations without improvement on the held-out tenants"
    timer = next((c for c in trainer.callbacks if isinstance(c, pl.callbacks.Timer)), None)
    left = timer.time_remaining("train") if timer is not None else None
    # Lightning's timer stops short of the deadline by one validation's time: it counts as spent
    if (left is not None and left <= 0) or (deadline is not None and time.monotonic() >= deadline - 1):
        return f"the time budget (meta_train.max_minutes {cfg.max_minutes:g}) was spent"
    return "interrupted"


def _spent_before_the_first_step(cfg) -> str:
    return f"the time budget (meta_train.max_minutes {cfg.max_minutes:g}) was spent before the first meta-step"


def _finish(say, settings: Settings, encoder: Encoder, layers: int, train: TenantData, val: TenantData, out_dir,
            best_meta: dict, best_acc: float | None, start_acc: float | None, best_step: int, start: float, reason: str,
            history: list[dict], rank: int, steps_run: int = 0, ckpt_dir: Path | None = None,
            adapt_steps: int | None = None, kept: str | None = None, mix: float = 1.0) -> MetaTrainResult:
    """Say why it stopped and which step it kept, write the base (rank 0), drop an own checkpoint.

    ``adapt_steps``: the inner steps a tenant's adaptation takes from this base (recorded in the
    base, read by ``adapt_tenant``); ``kept``: the algorithm whose weights became the base (the
    pooled or the FOMAML phase of pooled-fomaml)."""
    seconds = time.perf_counter() - start
    cfg = settings.meta_train
    kept = kept or cfg.algorithm
    adapt_steps = adapt_steps_of(settings, kept) if adapt_steps is None else adapt_steps
    improved = best_acc is not None and (best_step > 0 or kept != cfg.algorithm.split("-")[0])
    metrics = {"val_accuracy": best_acc, "val_accuracy_start": start_acc, "best_step": best_step,
               "steps_run": steps_run, "train_seconds": seconds, "stop_reason": reason,
               "steps_per_second": steps_run / seconds if seconds else 0.0, "improved": improved,
               "kept": kept, "adapt_steps": adapt_steps, "pooled_mix": mix}
    say(f"stopped after {steps_run} step(s) in {seconds:.0f}s: {reason}")
    if best_acc is None:
        say("base = the start weights (step 0): not validated, no training step ran")
    else:
        say(f"base = {kept} weights at step {best_step} (held-out acc {best_acc:.3f} vs {start_acc:.3f} "
            f"without training the base)" + ("" if improved else ": no step improved on the start weights"))
    enc_info = {**settings.to_dict()["encoder"], "adapted_layers": layers}
    info = {"encoder": {"name": encoder.name, "digest": encoder.digest}, "encoder_settings": enc_info,
            "meta_train": settings.to_dict()["meta_train"], "adapt": settings.to_dict()["adapt"], "metrics": metrics,
            "train_tenants": sorted(train), "val_tenants": sorted(val), "adapt_steps": adapt_steps,
            "algorithm": kept}
    base_dir = save_base(out_dir, best_meta, info) if rank == 0 else Path(out_dir)
    if ckpt_dir is not None and rank == 0:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return MetaTrainResult(base_dir, best_meta, metrics, history, settings.to_dict()["meta_train"], rank)


def _resumed_step(last: Path) -> int:
    """The step a resumed run starts from (0 for a new run): it shifts the task stream's seed so a
    resumed run does not replay the tasks it has already seen."""
    if not last.is_file():
        return 0
    return int(torch.load(last, map_location="cpu", weights_only=False).get("global_step", 0))
