"""Champions for a long-running multi-tenant server (``tailor serve-api``).

The same checks as ``tailor predict`` (``registry.artifacts.serving``): the ``@champion`` must be backed by
the audit log (no drift), its files must match the digests recorded at registration, and the
delta's manifest must name the tenant and base. What this adds is what a server needs to notice
a change without a restart: a cheap *fingerprint* of every tenant's champion (its version and the
tags the checks read), read in one pass over the registry, so a poll can tell which loaded
tenants to check again.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from registry.artifacts import serving
from registry.storage import store
from registry.storage.names import CHAMPION
from workspace.errors import UserError
from workspace.tenants import tenant_model_name

PREFIX = tenant_model_name("xx")[:-2]  # "tailor-tenant-"
CHECKED_TAGS = ("status", "tenant", "delta_sha256", "base_digest", "labels_sha256", "data_version")


class NoChampion(UserError):
    """The tenant has no ``@champion`` (unknown, or never approved)."""


@dataclass(frozen=True)
class Champion:
    """One tenant's loaded champion: what answers, and which version it is."""

    tenant: str
    version: str
    data_version: str
    fingerprint: str
    predictor: object  # lightning_modules.inference.TenantPredictor

    @property
    def labels(self) -> list[str]:
        return self.predictor.labels


def _fingerprint(version, tags: dict) -> str:
    text = "|".join([str(version), *(f"{k}={tags.get(k, '')}" for k in CHECKED_TAGS)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def fingerprints() -> dict[str, str]:
    """tenant -> fingerprint of its ``@champion`` (tenants without one are absent), in one pass."""
    champions = {}
    for rm in store.registered_models(f"{PREFIX}%"):
        version = rm.aliases.get(CHAMPION)
        if version is not None:
            champions[rm.name] = str(version)
    out = {}
    for mv in store.versions(f"{PREFIX}%", like=True):
        if champions.get(mv.name) == str(mv.version):
            out[mv.name[len(PREFIX):]] = _fingerprint(mv.version, mv.tags)
    return out


def load(tenant: str) -> Champion:
    """The tenant's champion, loaded after every check ``tailor predict`` runs; ``UserError`` with
    one line when it may not be served."""
    from lightning_modules.inference import load_predictor

    if store.alias_version(tenant_model_name(tenant), CHAMPION) is None:
        raise NoChampion(f"tenant {tenant} has no approved champion")
    mv = serving.champion_version(tenant)
    folder = serving.fetch_version(mv)
    predictor = load_predictor(folder / "base", folder / "delta", tenant)
    if predictor.manifest.get("tenant") != tenant:  # load_predictor checked it; never serve another's
        raise UserError(f"refusing to serve {tenant}: its delta names tenant {predictor.manifest.get('tenant')!r}")
    return Champion(tenant, str(mv.version), str(mv.tags.get("data_version", "")),
                    _fingerprint(mv.version, mv.tags), predictor)


def in_transition(tenant: str) -> bool:
    """An approval, rollback or registration of the tenant is under way (its audit intent is open):
    a poll waits for its commit rather than loading a half-applied state."""
    from registry.trail import audit

    return bool(audit.open_intents(tenant))


def recheck(tenant: str) -> str | None:
    """Why the tenant's current champion may no longer be served (drift, files that no longer
    match the registry), or None: the checks of ``load`` without loading tensors."""
    try:
        serving.fetch_version(serving.champion_version(tenant))
    except UserError as exc:
        return str(exc)
    return None


def warm(encoder_settings) -> object:
    """Load the serving encoder once, before the first request."""
    from lightning_modules.encoder import load_serving_encoder

    return load_serving_encoder(encoder_settings)


def predict_many(requests: list[tuple[Champion, list[str]]], batch_size: int = 64):
    """Probabilities for each ``(champion, texts)``: one frozen pass for the group, then each top."""
    from lightning_modules.multi_tenant import predict_many as run

    return run([(c.predictor, texts) for c, texts in requests], batch_size)
