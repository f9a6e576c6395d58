"""API keys of the prediction server: one per caller, each with the tenants it may query.

Stored in ``.tailor/api-keys.json`` as sha256 digests only (a key is 32 random bytes, so a fast
hash is enough and a lookup costs microseconds); the key itself is shown once, when it is made.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.tenants import check_tenant_id

CALLER = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
ALL = "*"


@dataclass(frozen=True)
class Caller:
    name: str
    tenants: frozenset  # tenant ids, or {"*"}: every tenant

    def may_query(self, tenant: str) -> bool:
        return ALL in self.tenants or tenant in self.tenants


def path(ws: Workspace) -> Path:
    return ws.state_dir / "api-keys.json"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load(ws: Workspace) -> dict:
    try:
        data = json.loads(path(ws).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        raise UserError(f"{path(ws)} is not valid JSON: restore it or add the keys again") from None
    return data if isinstance(data, dict) else {}


def add_key(ws: Workspace, caller: str, tenants: list[str]) -> str:
    """Make (or replace) ``caller``'s key for ``tenants`` ("*": all); returns the new key."""
    if not CALLER.match(caller or ""):
        raise UserError(f"caller {caller!r}: use 1-63 lower-case letters, digits, '-', '_' or '.'")
    tenants = sorted({t.strip() for t in tenants if t.strip()})
    if not tenants:
        raise UserError("give the tenants this caller may query: --tenants a,b (or '*' for all)")
    for tenant in tenants:
        if tenant != ALL:
            check_tenant_id(tenant)
    key = f"tk_{secrets.token_urlsafe(32)}"
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path(ws)) + ".lock", timeout=30):
        keys = {k: v for k, v in load(ws).items() if v.get("caller") != caller}
        keys[_digest(key)] = {"caller": caller, "tenants": tenants,
                              "added": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        tmp = path(ws).with_suffix(".tmp")
        tmp.write_text(json.dumps(keys, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path(ws))
    return key


def revoke(ws: Workspace, caller: str) -> bool:
    with FileLock(str(path(ws)) + ".lock", timeout=30):
        keys = load(ws)
        kept = {k: v for k, v in keys.items() if v.get("caller") != caller}
        if len(kept) == len(keys):
            return False
        tmp = path(ws).with_suffix(".tmp")
        tmp.write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path(ws))
    return True


class KeyRing:
    """The key file as the server reads it: reloaded when it changes (no restart to add a caller)."""

    def __init__(self, ws: Workspace):
        self.ws, self._stamp, self._keys = ws, None, {}
        self.refresh()

    def refresh(self) -> None:
        try:
            st = path(self.ws).stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._keys = {d: Caller(v["caller"], frozenset(v.get("tenants", []))) for d, v in load(self.ws).items()}
            self._stamp = stamp

    def caller(self, key: str | None) -> Caller | None:
        if not key:
            return None
        return self._keys.get(_digest(key))  # a dict lookup by digest: no timing on the key itself

    def __len__(self) -> int:
        return len(self._keys)
