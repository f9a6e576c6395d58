"""Locks across processes for transitions and audit appends.

Locally (sqlite MLflow, one machine or a shared workspace folder) a ``filelock`` in
``.tailor/locks/``. With a tracking server, machines share no folder, so the lock lives in the
registry's own database: creating the registered model ``tailor-lock-<key>`` succeeds for exactly
one process (the name is unique in the database), and deleting it releases the lock. A holder
killed without releasing leaves a row that others take over once it is older than
``STALE_AFTER`` seconds (a transition takes about a second).
"""
from __future__ import annotations

import os
import random
import socket
import sys
import time
import uuid

from filelock import FileLock

from registry.storage import store
from workspace.errors import UserError
from workspace.locking import PATIENCE, Announced

PREFIX = "tailor-lock-"
STALE_AFTER = 120.0


class RegistryLock:
    """A lock row in the MLflow backend (see the module docstring)."""

    def __init__(self, key: str, timeout: float = 120.0, stale_after: float = STALE_AFTER):
        self.name, self.timeout, self.stale_after = PREFIX + key, timeout, stale_after
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"

    def __enter__(self) -> "RegistryLock":
        from mlflow.exceptions import MlflowException

        c = store.client()
        start = time.monotonic()
        deadline, said = start + self.timeout, False
        while True:
            try:
                c.create_registered_model(self.name, tags={"owner": self.token, "since": f"{time.time():.3f}"},
                                          description="Tailor transition lock (deleted when released)")
                return self
            except MlflowException as exc:
                # RESOURCE_DOES_NOT_EXIST: MLflow's database store, on the unique-name conflict, reads
                # the existing model to word its error, and the holder released it in between (seen on
                # PostgreSQL, whose writers do not queue as sqlite's do): taken and freed, so try again
                if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"):
                    raise
            held = self._holder()
            if held is not None and time.time() - float(held.get("since", 0) or 0) > self.stale_after:
                self._delete_if(held.get("owner"))  # its holder died: take it over
                continue
            if not said and time.monotonic() - start > PATIENCE:  # say whom this command waits for
                print(f"waiting for the {self.name.removeprefix(PREFIX)!r} transition lock: "
                      f"{(held or {}).get('owner', 'another process')} holds it", file=sys.stderr, flush=True)
                said = True
            if time.monotonic() > deadline:
                raise UserError(f"{self.name.removeprefix(PREFIX)} is busy: another transition holds its lock "
                                f"({(held or {}).get('owner', '?')}); try again in a moment")
            time.sleep(0.05 + random.random() * 0.1)

    def __exit__(self, *exc) -> None:
        self._delete_if(self.token)

    def _holder(self) -> dict | None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(store.client().get_registered_model(self.name).tags)
        except MlflowException:
            return None

    def _delete_if(self, owner: str | None) -> None:
        from mlflow.exceptions import MlflowException

        held = self._holder()
        if held is not None and held.get("owner") == owner:
            try:
                store.client().delete_registered_model(self.name)
            except MlflowException:
                pass  # released or taken over meanwhile


def lock(ws, key: str, timeout: float = 120.0):
    """The lock for ``key`` ("audit", a tenant id, or "_base") of the configured kind."""
    if store.lock_kind() == "registry":
        return RegistryLock(key, timeout)
    folder = ws.state_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return Announced(FileLock(str(folder / f"{key}.lock"), timeout=timeout), f"{key!r} transition")
