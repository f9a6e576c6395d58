"""Every tunable number: ``params.yaml`` → one typed dataclass per concern.

Each field carries its help text; ``__post_init__`` rejects nonsense with a ``UserError`` so a
wrong setting stops a command before it touches any state.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workspace.errors import UserError


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise UserError(f"params.yaml: {message}")


@dataclass(frozen=True)
class EncoderSettings:
    name: str = _f("all-MiniLM-L6-v2", "encoder: 'all-MiniLM-L6-v2' (packaged) or 'tiny' (tests)")
    max_length: int = _f(64, "tokens kept per text")
    adapted_layers: int = _f(0, "top transformer layers that carry LoRA adapters; the rest are frozen and cached "
                                "(0: every layer frozen, only the token adapter is learned: cheap on a CPU)")
    token_rank: int = _f(16, "rank of the token adapter on the encoder's top token states, before pooling (0 = none)")
    gpu_adapted_layers: int = _f(2, "adapted layers when meta-training finds a GPU (0 = same as adapted_layers); "
                                    "the base records which, and every tenant adapts the same")
    lora_rank: int = _f(8, "rank of the low-rank adapters in the adapted layers")
    threads: int = _f(0, "torch CPU threads (0 = torch's default)")

    def __post_init__(self) -> None:
        _need(self.name in ("all-MiniLM-L6-v2", "tiny"), f"encoder.name {self.name!r} is not known")
        _need(8 <= self.max_length <= 512, "encoder.max_length must be within 8..512")
        _need(0 <= self.adapted_layers <= 6, "encoder.adapted_layers must be within 0..6")
        _need(0 <= self.gpu_adapted_layers <= 6, "encoder.gpu_adapted_layers must be within 0..6")
        _need(1 <= self.lora_rank <= 64, "encoder.lora_rank must be within 1..64")
        _need(0 <= self.token_rank <= 128, "encoder.token_rank must be within 0..128")
        _need(self.adapted_layers or self.token_rank, "encoder: adapted_layers and token_rank are both 0: "
                                                      "nothing would be adapted")
        _need(self.threads >= 0, "encoder.threads must be >= 0")


@dataclass(frozen=True)
class ValidationSettings:
    min_labels: int = _f(2, "fewest distinct labels a tenant may have")
    max_labels: int = _f(50, "most distinct labels a tenant may have")
    min_examples_per_label: int = _f(4, "fewest examples of each label")
    max_text_chars: int = _f(5000, "longest text accepted")
    max_duplicate_fraction: float = _f(0.2, "largest share of exact duplicate texts")
    max_cross_tenant_fraction: float = _f(0.5, "largest share of a tenant's texts also found in one other "
                                               "tenant's data (more suggests a mixed-up export)")

    def __post_init__(self) -> None:
        _need(self.min_labels >= 2, "validation.min_labels must be >= 2")
        _need(self.max_labels >= self.min_labels, "validation.max_labels must be >= min_labels")
        _need(self.min_examples_per_label >= 2, "validation.min_examples_per_label must be >= 2")
        _need(self.max_text_chars > 0, "validation.max_text_chars must be > 0")
        _need(0 <= self.max_duplicate_fraction <= 1, "validation.max_duplicate_fraction must be within 0..1")
        _need(0 <= self.max_cross_tenant_fraction <= 1, "validation.max_cross_tenant_fraction must be within 0..1")


# how the base may be trained (lightning_modules.training); maml is second-order, a reference only
ALGORITHMS = ("pooled", "fomaml", "reptile", "pooled-fomaml", "maml")


@dataclass(frozen=True)
class MetaTrainSettings:
    algorithm: str = _f("pooled", "how the base is trained on the workspace's tenants: pooled (every tenant's "
                                  "categories at once, no inner loop) | fomaml | reptile (first-order "
                                  "meta-learning) | pooled-fomaml (Meta-Baseline: pooled, then FOMAML from its "
                                  "weights) | maml (second-order, reference only). The default is pooled: in "
                                  "`make bench` (2026-12-07) no meta-learned training beat it by the required "
                                  "point on new tenants of a trained domain (FOMAML +0.3 ± 0.4 on protocols "
                                  "1 + 2; +1.0 ± 0.7 on recurring categories alone)")
    meta_steps: int = _f(3000, "outer-loop updates (at most; early stopping and max_minutes may end sooner)")
    max_minutes: float = _f(10.0, "the whole meta-train command stops within this many minutes (0 = no "
                                  "limit), feature caching and registration included; the best validated "
                                  "weights so far become the base")
    meta_batch: int = _f(4, "tasks per outer update")
    inner_steps: int = _f(8, "inner-loop steps on the support set")
    optimizer: str = _f("adam", "inner-loop update: adam (Adam's direction, scaled per tensor) | sgd")
    objective: str = _f("ce", "inner-loop objective: ce (cross-entropy of a head on the adapted embeddings) | "
                              "contrastive (SetFit's pairs of support texts and label names, on the adapters "
                              "alone); meta-training and adaptation use the same")
    inner_lr: float = _f(0.003, "initial inner-loop learning rate of the adapters (meta-learned per tensor)")
    head_lr: float = _f(0.01, "initial inner-loop learning rate of the head (meta-learned)")
    name_weight: float = _f(1.0, "initial weight of a label name as an example of its class (meta-learned); "
                                 "0 = do not use label names")
    meta_lr: float = _f(0.001, "outer-loop Adam learning rate (on the Reptile pseudo-gradient too)")
    ways_min: int = _f(3, "fewest classes in a sampled task")
    ways_max: int = _f(8, "most classes in a sampled task")
    shots: int = _f(5, "support examples per class")
    query: int = _f(5, "query examples per class")
    val_every: int = _f(100, "validate on held-out tenants every N meta-steps")
    val_tasks: int = _f(24, "tasks per validation (the same tasks every time)")
    patience: int = _f(6, "validations without improvement before early stopping")
    seed: int = _f(0, "random seed")
    tenants: str = _f("", "comma-separated meta-training tenants; empty = every tenant with valid data")
    val_tenants: str = _f("", "comma-separated held-out tenants for early stopping; empty = a seeded fifth")
    evidence_tenants: str = _f("", "comma-separated tenants held out of training to judge the new base (its "
                                   "evidence); empty = a seeded evidence_share of the tenants")
    evidence_share: float = _f(0.2, "share of the tenants held out as evidence when evidence_tenants is empty "
                                    "(with 4 tenants or more; 0 = no evidence)")
    evidence_episodes: int = _f(3, "few-shot splits per evidence tenant (shots per label to adapt on, the "
                                   "rest scored): more splits, a narrower interval, a longer command")
    devices: str = _f("1", "Lightning devices: a count, 'auto', or a list such as '0,1'")
    strategy: str = _f("auto", "Lightning strategy: auto | ddp (one process per device; gloo on CPU)")
    precision: str = _f("auto", "Lightning precision: auto (bf16-mixed on a GPU, 32-true on CPU) | 32-true | "
                                "bf16-mixed")
    pooled_lr: float = _f(0.001, "pooled training: Adam learning rate of the adapters and the per-tenant heads")
    pooled_batch: int = _f(64, "pooled training: texts per step, drawn from every training tenant")
    pooled_steps: int = _f(2000, "pooled training: steps at most (early stopping and max_minutes may end sooner)")
    pooled_val_every: int = _f(25, "pooled training: validate on the held-out tenants every N steps")
    pooled_adapt_steps: int = _f(0, "inner steps a tenant's adaptation takes from a pooled base (0: a logistic "
                                    "head with label names on the base's embeddings)")
    pooled_share: float = _f(0.5, "pooled-fomaml: share of the time budget for the pooled phase")

    def tenant_list(self) -> list[str]:
        return [t.strip() for t in self.tenants.split(",") if t.strip()]

    def val_tenant_list(self) -> list[str]:
        return [t.strip() for t in self.val_tenants.split(",") if t.strip()]

    def evidence_tenant_list(self) -> list[str]:
        return [t.strip() for t in self.evidence_tenants.split(",") if t.strip()]

    def __post_init__(self) -> None:
        _need(self.algorithm in ALGORITHMS,
              f"meta_train.algorithm {self.algorithm!r}: use {', '.join(ALGORITHMS[:-1])} (or maml)")
        _need(self.pooled_lr > 0 and self.pooled_batch >= 1 and self.pooled_steps >= 0,
              "meta_train.pooled_lr must be > 0, pooled_batch >= 1, pooled_steps >= 0")
        _need(self.pooled_val_every >= 1 and self.pooled_adapt_steps >= 0,
              "meta_train.pooled_val_every must be >= 1, pooled_adapt_steps >= 0")
        _need(0 < self.pooled_share < 1, "meta_train.pooled_share must be within 0..1 (exclusive)")
        _need(0 <= self.evidence_share <= 0.5, "meta_train.evidence_share must be within 0..0.5")
        _need(1 <= self.evidence_episodes <= 50, "meta_train.evidence_episodes must be within 1..50")
        _need(self.meta_steps >= 0 and self.meta_batch >= 1, "meta_train.meta_steps >= 0, meta_batch >= 1")
        _need(self.inner_steps >= 1, "meta_train.inner_steps must be >= 1")
        _need(self.inner_lr > 0 and self.meta_lr > 0, "meta_train.inner_lr and meta_lr must be > 0")
        _need(2 <= self.ways_min <= self.ways_max, "meta_train: need 2 <= ways_min <= ways_max")
        _need(self.shots >= 1 and self.query >= 1, "meta_train.shots and query must be >= 1")
        _need(self.val_every >= 1 and self.val_tasks >= 1 and self.patience >= 1,
              "meta_train.val_every, val_tasks, patience must be >= 1")
        _need(self.max_minutes >= 0, "meta_train.max_minutes must be >= 0")
        _need(self.optimizer in ("adam", "sgd"), f"meta_train.optimizer {self.optimizer!r}: use adam or sgd")
        _need(self.objective in ("ce", "contrastive"), f"meta_train.objective {self.objective!r}: use ce or contrastive")
        _need(self.objective == "ce" or self.algorithm != "maml",
              "meta_train.objective contrastive is first-order only: use algorithm fomaml or reptile")
        _need(self.head_lr > 0 and self.name_weight >= 0, "meta_train.head_lr must be > 0, name_weight >= 0")
        _need(self.strategy in ("auto", "ddp"), f"meta_train.strategy {self.strategy!r}: use auto or ddp")
        _need(self.precision in ("auto", "32-true", "bf16-mixed"),
              f"meta_train.precision {self.precision!r}: use auto, 32-true or bf16-mixed")
        _need(self.devices == "auto" or all(p.strip().isdigit() for p in self.devices.split(",")),
              f"meta_train.devices {self.devices!r}: a count, 'auto' or a list such as '0,1'")

    def lightning_devices(self):
        """``devices`` as Lightning takes it: 'auto', an int count, or a list of indices."""
        if self.devices == "auto":
            return "auto"
        parts = [int(p) for p in self.devices.split(",") if p.strip()]
        return parts[0] if len(parts) == 1 and "," not in self.devices else parts


# what a candidate may carry (lightning_modules.adaptation.METHODS)
ADAPT_METHODS = ("base", "no-meta", "logreg-names-frozen", "logreg-frozen", "prototypes-frozen")
# settings that no longer exist, and what to do instead (so an older params.yaml gets one clear line)
RETIRED = {"adapt.holdout_fraction": "accuracy is now cross-validated over all examples (adapt.cv_folds): "
                                     "delete adapt.holdout_fraction from params.yaml"}


@dataclass(frozen=True)
class AdaptSettings:
    inner_steps: int = _f(10, "inner-loop steps on the tenant's support set (the meta-learned rates apply)")
    head: str = _f("logreg", "the delta's head: logreg (logistic regression on the adapted embeddings, "
                             "label names included) | inner (the inner loop's prototype head)")
    label_names: bool = _f(True, "use each label's name as one more (weighted) example of it")
    cv_folds: int = _f(5, "folds of the cross-validation over all of a tenant's examples that measures each "
                          "method (fewer when a label has fewer examples); the chosen one is then fitted on all")
    default_method: str = _f("base", "the method a candidate carries unless another one measures better by "
                                     "choice_margin: base (the base's own adaptation) | no-meta | "
                                     "logreg-names-frozen | logreg-frozen | prototypes-frozen")
    choice_margin: float = _f(0.02, "accuracy another method must gain over default_method on the same "
                                    "cross-validated examples (and more than its noise, one-sided 95%) to be chosen")
    max_loss: float = _f(50.0, "a loss above this (or non-finite) stops adaptation: not registered")
    seed: int = _f(0, "seed of the cross-validation folds")

    def __post_init__(self) -> None:
        _need(self.inner_steps >= 1, "adapt.inner_steps must be >= 1")
        _need(self.head in ("logreg", "inner"), f"adapt.head {self.head!r}: use logreg or inner")
        _need(2 <= self.cv_folds <= 20, "adapt.cv_folds must be within 2..20")
        _need(self.default_method in ADAPT_METHODS,
              f"adapt.default_method {self.default_method!r}: use one of {', '.join(ADAPT_METHODS)}")
        _need(0 <= self.choice_margin <= 1, "adapt.choice_margin must be within 0..1")
        _need(self.max_loss > 0, "adapt.max_loss must be > 0")


@dataclass(frozen=True)
class GateSettings:
    champion_tolerance: float = _f(0.02, "a candidate fails the champion gate when, on the same held-out texts, even the top of the 95% interval of its accuracy minus the champion's is below -this (worse by more than the split can explain); a version registered without that comparison is compared by accuracy on its own split, this much below the champion's")
    baseline_tolerance: float = _f(0.0, "a candidate fails the baseline gate when the best method without a trained "
                                        "base (the same adaptation from no base, or a frozen-encoder head) beats it on "
                                        "the same cross-validated examples by more than this and beyond their noise "
                                        "(one-sided 95%)")
    four_eyes: bool = _f(True, "the reviewer must differ from the requester")
    rollback_alone: str = _f("*", "who may roll back a tenant alone: '*' (any person) or comma-separated "
                                  "identities; anyone else only requests it and a second person completes it")

    def __post_init__(self) -> None:
        _need(0 <= self.champion_tolerance <= 1 and 0 <= self.baseline_tolerance <= 1,
              "gates tolerances must be within 0..1")


@dataclass(frozen=True)
class StoreSettings:
    tracking_uri: str = _f("", "MLflow tracking URI: a server (http://mlflow:5000), a database MLflow opens itself "
                               "(postgresql://user@host:5432/mlflow; the password from PGPASSWORD or ~/.pgpass, "
                               "never from here); empty = sqlite in .tailor/mlflow.db")
    artifact_location: str = _f("", "MLflow artifact root; empty = .tailor/mlartifacts, or the tracking "
                                    "server's artifact proxy (mlflow-artifacts:) when tracking_uri is a server")
    dvc_remote: str = _f("", "DVC remote: s3://bucket/path, gs://..., azure://..., or a folder; empty = "
                             ".tailor/dvc-remote. Credentials come from the environment, never from here")
    dvc_endpoint_url: str = _f("", "endpoint of an S3-compatible server (MinIO, Ceph, ...) for an s3:// "
                                   "dvc_remote; empty = AWS")
    prefect_api_url: str = _f("", "Prefect API URL; empty = Prefect's embedded server")
    prefect_database_url: str = _f("", "the embedded Prefect server's database (and `tailor serve`'s): "
                                       "postgresql+asyncpg://user@host:5432/prefect; the password from the "
                                       "environment (PGPASSWORD), never from here; empty = sqlite in .tailor/prefect")
    prefect_idle_seconds: float = _f(20.0, "the embedded Prefect server stops this long after its last "
                                      "command ends cleanly (within seconds of a killed one); commands meanwhile reuse it")
    signing_key: str = _f("", "Ed25519 key that signs every audit record; keep it where writers of the tracking "
                              "store cannot read it (a secret mount for a team); empty = .tailor/audit-signing.key, "
                              "created 0600 on first use. Its public half is pinned in audit-signing.pub: commit it")
    lock: str = _f("auto", "transition locks: 'file' (.tailor/locks), 'registry' (a row in MLflow's database), "
                           "'auto' = registry with a tracking server or a shared database (PostgreSQL), file "
                           "with the embedded sqlite store")

    def __post_init__(self) -> None:
        _need(0 <= self.prefect_idle_seconds <= 86400, "stores.prefect_idle_seconds must be within 0..86400")
        _need(self.lock in ("auto", "file", "registry"), f"stores.lock {self.lock!r}: use auto, file or registry")
        _need(not self.prefect_database_url
              or self.prefect_database_url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite:///")),
              "stores.prefect_database_url: give postgresql+asyncpg://user@host:port/database (Prefect's server "
              "needs its async driver) or sqlite+aiosqlite:///path")
        _need(not self.prefect_database_url or not self.prefect_api_url,
              "stores.prefect_database_url is the embedded server's database; with stores.prefect_api_url the "
              "server there chooses its own: set one of them")
        for name in ("tracking_uri", "prefect_database_url"):
            _need(not _has_password(getattr(self, name)),
                  f"stores.{name} holds a password: remove it and give it in the environment (PGPASSWORD) "
                  "or ~/.pgpass, so params.yaml (committed to git) carries none")
        _need(not self.dvc_endpoint_url or self.dvc_remote.startswith("s3://"),
              "stores.dvc_endpoint_url applies to an s3:// dvc_remote only")
        _need(not self.dvc_endpoint_url or self.dvc_endpoint_url.startswith(("http://", "https://")),
              "stores.dvc_endpoint_url must start with http:// or https://")


def _has_password(uri: str) -> bool:
    """Whether a database URI carries a password (``scheme://user:secret@host``)."""
    head = uri.split("://", 1)[1].split("/", 1)[0] if "://" in uri else ""
    return "@" in head and ":" in head.rsplit("@", 1)[0]


@dataclass(frozen=True)
class ScheduleSettings:
    adapt_cron: str = _f("0 2 * * *", "when `tailor serve` re-adapts every tenant")
    timezone: str = _f("UTC", "timezone of the cron schedules")
    chunk_size: int = _f(25, "tenants per Prefect task when adapting many")
    task_runner: str = _f("thread", "where adaptation chunks run: thread (this process) | dask")
    workers: int = _f(1, "chunks at once: threads (thread), or processes of the local Dask cluster "
                         "(dask without dask_address)")
    dask_address: str = _f("", "a running Dask scheduler, e.g. tcp://10.0.0.5:8786; empty = start a local "
                               "cluster of `workers` processes for each run")
    ingest_batch: int = _f(100, "tenant files per batch in `tailor ingest --dir`: one DVC add, push and git "
                                "commit per batch")

    def __post_init__(self) -> None:
        _need(self.chunk_size >= 1, "schedule.chunk_size must be >= 1")
        _need(self.task_runner in ("thread", "dask"),
              f"schedule.task_runner {self.task_runner!r}: use thread or dask")
        _need(self.workers >= 1, "schedule.workers must be >= 1")
        _need(1 <= self.ingest_batch <= 5000, "schedule.ingest_batch must be within 1..5000")
        _need(not self.dask_address or "://" in self.dask_address,
              f"schedule.dask_address {self.dask_address!r}: give a scheduler address such as tcp://host:8786")
        _need(not self.dask_address or self.task_runner == "dask",
              "schedule.dask_address needs schedule.task_runner: dask")


@dataclass(frozen=True)
class LimitSettings:
    max_file_mb: float = _f(20.0, "largest tenant file read, checked while reading, before anything is copied")
    max_rows: int = _f(100000, "most rows in a tenant file, counted while parsing")
    max_adapt_rows: int = _f(2000, "most rows of one tenant that adaptation and meta-training use; a larger "
                             "tenant is sampled, stratified by label and seeded, and its candidate says so")
    quarantine_kb: int = _f(1024, "most bytes of a refused file kept in quarantine (its prefix); the report "
                            "records the whole file's size and sha256")

    def __post_init__(self) -> None:
        _need(0 < self.max_file_mb <= 4096, "limits.max_file_mb must be within 0..4096")
        _need(self.max_rows >= 1, "limits.max_rows must be >= 1")
        _need(self.max_adapt_rows >= 20, "limits.max_adapt_rows must be >= 20")
        _need(0 <= self.quarantine_kb <= 1 << 20, "limits.quarantine_kb must be within 0..1048576")

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)


@dataclass(frozen=True)
class PredictSettings:
    batch_size: int = _f(64, "texts encoded at once by `tailor predict`; peak memory grows with it")

    def __post_init__(self) -> None:
        _need(1 <= self.batch_size <= 4096, "predict.batch_size must be within 1..4096")


@dataclass(frozen=True)
class ServingSettings:
    cache_tenants: int = _f(2000, "`tailor serve-api`: most tenants' champions kept loaded (LRU); a delta is a "
                                  "few KiB to a few MiB, the encoder is shared")
    poll_seconds: float = _f(1.0, "how often `tailor serve-api` reads the registry for approvals, rollbacks "
                                  "and drift; a change reaches serving within about this long")
    verify_seconds: float = _f(300.0, "how often the files of every loaded champion are checked again against "
                                      "the registry's digests (0 = only when loaded)")
    batch_window_ms: float = _f(4.0, "requests arriving within this window are grouped: the frozen encoder runs "
                                     "once for the group")
    max_batch_texts: int = _f(256, "most texts in one group")
    max_request_texts: int = _f(256, "most texts in one request (more: HTTP 413)")
    max_request_bytes: int = _f(4 * 1024 * 1024, "largest request body in bytes, refused before it is read "
                                                 "further or parsed (more: HTTP 413)")
    shutdown_seconds: float = _f(20.0, "on SIGTERM, how long requests in flight may take to finish")

    def __post_init__(self) -> None:
        _need(self.cache_tenants >= 1, "serving.cache_tenants must be >= 1")
        _need(0.05 <= self.poll_seconds <= 3600, "serving.poll_seconds must be within 0.05..3600")
        _need(self.verify_seconds >= 0, "serving.verify_seconds must be >= 0")
        _need(0 <= self.batch_window_ms <= 1000, "serving.batch_window_ms must be within 0..1000")
        _need(self.max_request_bytes >= 1024, "serving.max_request_bytes must be >= 1024")
        _need(self.max_batch_texts >= 1 and self.max_request_texts >= 1,
              "serving.max_batch_texts and max_request_texts must be >= 1")
        _need(self.shutdown_seconds >= 0, "serving.shutdown_seconds must be >= 0")


@dataclass(frozen=True)
class DataSettings:
    train_base_default: bool = _f(True, "whether a tenant's data may train the shared base when no choice is recorded "
                                        "for it (`tailor tenant set TENANT --train-base yes|no`); false: only tenants "
                                        "recorded as yes")
    keep_versions: int = _f(0, "`tailor data prune`: data versions kept per tenant, newest first (0 = no count "
                               "limit); the current version and any a champion, a pending candidate or a base was "
                               "trained on are always kept")
    keep_days: int = _f(0, "`tailor data prune`: data versions younger than this many days are kept too (0 = no "
                           "age limit); with both 0 nothing is pruned")

    def __post_init__(self) -> None:
        _need(self.keep_versions >= 0, "data.keep_versions must be >= 0")
        _need(self.keep_days >= 0, "data.keep_days must be >= 0")


@dataclass(frozen=True)
class Settings:
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    meta_train: MetaTrainSettings = field(default_factory=MetaTrainSettings)
    adapt: AdaptSettings = field(default_factory=AdaptSettings)
    gates: GateSettings = field(default_factory=GateSettings)
    stores: StoreSettings = field(default_factory=StoreSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    predict: PredictSettings = field(default_factory=PredictSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    data: DataSettings = field(default_factory=DataSettings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, section: str, **changes: Any) -> "Settings":
        """A copy with some fields of one section changed (validated again)."""
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


SHOWN = 80  # most characters of a value an error message repeats


def _shown(value: Any) -> str:
    """``value``'s repr, cut to ``SHOWN`` characters: a message never repeats a whole value."""
    text = repr(value) if not isinstance(value, (dict, list)) else f"a {type(value).__name__}"
    return text if len(text) <= SHOWN else text[:SHOWN - 1] + "…"


def _names(keys) -> str:
    keys = list(keys)
    shown = ", ".join(k if len(k) <= SHOWN else k[:SHOWN - 1] + "…" for k in keys[:5])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _text_keys(raw: dict, where: str) -> None:
    odd = [k for k in raw if not isinstance(k, str)]
    if odd:
        _need(False, f"{where}: {_shown(odd[0])} is not a name (write names as text)")


def _section(cls: type, raw: Any, name: str) -> Any:
    if raw is None:
        return cls()
    _need(isinstance(raw, dict), f"section {name!r} must be a mapping, got {_shown(raw)}")
    _text_keys(raw, f"section {name!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    retired = [RETIRED[f"{name}.{key}"] for key in unknown if f"{name}.{key}" in RETIRED]
    _need(not retired, retired[0] if retired else "")
    _need(not unknown, f"unknown setting(s) in {name!r}: {_names(unknown)}")
    values = {}
    for key, value in raw.items():
        want = type(known[key].default)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        _need(isinstance(value, want) and not (want is int and isinstance(value, bool)),
              f"{name}.{key} must be {want.__name__}, got {_shown(value)}")
        values[key] = value
    try:
        return cls(**values)
    except UserError as exc:  # a check that quoted a long value: quoted cut short
        message = str(exc)
        for value in values.values():
            if len(repr(value)) > SHOWN:
                message = message.replace(repr(value), _shown(value))
        raise UserError(message) from None


def settings_from_dict(raw: dict | None) -> Settings:
    raw = raw or {}
    _need(isinstance(raw, dict), f"the file must be a mapping of sections, got {_shown(raw)}")
    _text_keys(raw, "a section name")
    sections = {f.name: f.default_factory for f in dataclasses.fields(Settings)}  # type: ignore[misc]
    unknown = sorted(set(raw) - set(sections))
    _need(not unknown, f"unknown section(s): {_names(unknown)}")
    return Settings(**{name: _section(type(factory()), raw.get(name), name)
                       for name, factory in sections.items()})


# params.yaml is two levels of names over scalars; what it may hold at most, checked while parsing
MAX_BYTES = 1 << 20     # the default file is ~10 KB
MAX_DEPTH = 8           # nested collections
MAX_NODES = 100_000     # values once every alias is expanded (a "billion laughs" expands to 10**9)


class _Limited(yaml.SafeLoader):
    """PyYAML's safe loader with depth and alias-expansion bounds checked while it composes the
    document, before any value is built (``yaml.safe_load`` has neither)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            _need(self._depth <= MAX_DEPTH, f"nested more than {MAX_DEPTH} levels deep: settings are "
                                             "section: {name: value}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _need(_expanded(node, {}) <= MAX_NODES, f"its aliases expand to more than {MAX_NODES:,} values: "
                                                "write the values out")
        return node


def _expanded(node, sizes: dict) -> int:
    """How many values ``node`` stands for once aliases are expanded (shared nodes counted each
    time they are used, each computed once)."""
    if id(node) not in sizes:
        sizes[id(node)] = 0  # a recursive alias counts as nothing more
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        total = 1
        for child in children:
            total += _expanded(child, sizes)
            if total > MAX_NODES:
                break
        sizes[id(node)] = total
    return sizes[id(node)]


def _read_limited(path: Path) -> bytes:
    """The file's bytes: a regular file (not a FIFO that would block, not /dev/zero), at most
    ``MAX_BYTES``."""
    import fcntl
    import os
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UserError(f"{path} is a folder, not a settings file: remove it and run `tailor init` "
                            "to write the default params.yaml")
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{path} is not a regular file (a pipe or device): restore params.yaml")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise UserError(f"params.yaml is over {MAX_BYTES >> 20} MB: a settings file is a few KB; restore it")
    return data


_LOADED: dict = {}  # (path, sha256 of its bytes) -> Settings: the file as last read in this process


def load_settings(path: Path) -> Settings:
    """Read ``params.yaml`` with limits (size, depth, alias expansion) and every value checked as
    data; a missing file means all defaults. The same bytes at the same path are not parsed and
    validated again in this process: a command and the flow and tasks it runs open the workspace
    once (settings are immutable). Keyed by content, not by mtime, whose granularity lets two quick
    writes of the same size look alike."""
    if not Path(path).exists():
        return Settings()
    try:
        data = _read_limited(Path(path))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    key = (str(Path(path).resolve()), hashlib.sha256(data).hexdigest())
    if key in _LOADED:
        return _LOADED[key]
    try:
        raw = yaml.load(data.decode("utf-8"), Loader=_Limited)  # noqa: S506 - a SafeLoader with limits
    except (yaml.YAMLError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"params.yaml is not valid YAML: {first[:SHOWN * 2]}") from None
    settings = settings_from_dict(raw)
    _LOADED.clear()
    _LOADED[key] = settings
    return settings


def default_params_yaml(settings: Settings | None = None) -> str:
    """``params.yaml`` text with every setting and its help as a comment."""
    settings = settings or Settings()
    lines = ["# Tailor settings. Every tunable number lives here; `tailor` validates them on start.", ""]
    for section in dataclasses.fields(Settings):
        lines.append(f"{section.name}:")
        obj = getattr(settings, section.name)
        for f in dataclasses.fields(obj):
            value = json.dumps(getattr(obj, f.name))
            lines.append(f"  {f.name}: {value}  # {f.metadata['help']}")
        lines.append("")
    return "\n".join(lines)
