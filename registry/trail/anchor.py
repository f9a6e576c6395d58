"""What this workspace has seen of the audit log, kept outside the tracking store.

* The **anchor** (``.tailor/audit-head.json``, signed): the head (count, hash) after the last
  append from here, the tracking store it belongs to, and the trust root: the fingerprint of the
  signing key and the ``stores.signing_key`` path. It only moves forward: an append must extend it.
* **Marks** (``.tailor/audit-marks/<scope>.json``): per tenant (and ``_base``, ``_keys``), the
  newest record of that scope this workspace wrote or checked. A scope's records may never end
  before its mark: deleting a tenant's last records is named even when other tenants' records
  were appended after them. Any process that checked a scope's signed records may move its mark
  forward (a mark only ever names a signed record), never back.
* The **checkpoint** (``.tailor/audit-checkpoint.json``, signed): the head as of the last
  ``tailor audit verify`` that found nothing wrong; the next verify starts there.

Store writers cannot write these files (docs/security.md).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from registry.trail import keys
from workspace import signing
from workspace.paths import Workspace

ANCHOR, CHECKPOINT, MARKS = "audit-head.json", "audit-checkpoint.json", "audit-marks"


def anchor_file(ws: Workspace) -> Path:
    return ws.state_dir / ANCHOR


def anchor_message(anchor: dict) -> str:
    if "key" not in anchor:  # written before the trust root was anchored
        return f"tailor-audit-anchor/1 {anchor.get('store')} {anchor.get('count')} {anchor.get('hash')}"
    return (f"tailor-audit-anchor/2 {anchor.get('store')} {anchor.get('count')} {anchor.get('hash')} "
            f"{anchor.get('key')} {anchor.get('key_path')}")


def _checkpoint_message(cp: dict) -> str:
    return f"tailor-audit-checkpoint/1 {cp.get('store')} {cp.get('count')} {cp.get('hash')} {cp.get('at')}"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "unreadable"


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _count(data: dict) -> int | None:
    try:
        count = int(data.get("count"))
    except (TypeError, ValueError):
        return None
    return count if count >= 0 else None


def load(ws: Workspace, ring: keys.Keyring, store_uri: str) -> tuple[dict | None, str | None]:
    """(the workspace anchor, None) when it is present, readable, of this store and signed by a key
    of the log; else (None, why not), or (None, None) when there is none."""
    data = _read_json(anchor_file(ws))
    name = f"workspace anchor ({ANCHOR})"
    if data is None:
        return None, None
    if not isinstance(data, dict) or _count(data) is None:
        return None, f"{name} is unreadable"
    if data.get("store") != store_uri:
        return None, f"{name} belongs to another store ({data.get('store')!r})"
    count = _count(data)
    if not ring.signed_by_any(anchor_message(data), data.get("sig"), (count, count + 1)):
        return None, f"{name} is not signed with the workspace key (written outside Tailor)"
    return data, None


def peek_count(ws: Workspace) -> int:
    """The anchor's count, unchecked: only a hint where to start looking for the head."""
    data = _read_json(anchor_file(ws))
    return (_count(data) or 0) if isinstance(data, dict) else 0


def write(ws: Workspace, head: dict, key, store_uri: str, key_path: str) -> None:
    anchor = {"count": head["count"], "hash": head["hash"], "store": store_uri,
              "key": keys.fingerprint(signing.raw_public(key)), "key_path": key_path}
    anchor["sig"] = signing.sign(key, anchor_message(anchor))
    _write_json(anchor_file(ws), anchor)


def mark(ws: Workspace | None, scope: str) -> dict | None:
    """The newest record of ``scope`` this workspace saw: {"seq", "hash"}, or None."""
    if ws is None:
        return None
    data = _read_json(ws.state_dir / MARKS / f"{scope}.json")
    if not isinstance(data, dict) or not isinstance(data.get("seq"), int):
        return None
    return data


def advance_mark(ws: Workspace | None, scope: str, seq: int, digest: str, strict: bool = False) -> None:
    """Move ``scope``'s mark forward to record ``seq`` (never back). ``strict``: an error to write it
    is raised (an append); otherwise (a reader on a read-only workspace) it is skipped."""
    if ws is None:
        return
    current = mark(ws, scope)
    if current is not None and current["seq"] >= seq:
        return
    try:
        _write_json(ws.state_dir / MARKS / f"{scope}.json", {"seq": seq, "hash": digest})
    except OSError:
        if strict:
            raise


def marks(ws: Workspace) -> dict[str, dict]:
    """Every scope's mark (``audit verify --full``)."""
    folder = ws.state_dir / MARKS
    found = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return {p.stem: m for p in found if (m := mark(ws, p.stem)) is not None}


def load_checkpoint(ws: Workspace, ring: keys.Keyring, store_uri: str) -> dict | None:
    data = _read_json(ws.state_dir / CHECKPOINT)
    if not isinstance(data, dict) or _count(data) is None or data.get("store") != store_uri:
        return None
    if not ring.signed_by_any(_checkpoint_message(data), data.get("sig"), (_count(data), _count(data) + 1)):
        return None
    return data


def write_checkpoint(ws: Workspace, head: dict, key, store_uri: str, at: str) -> None:
    cp = {"count": head["count"], "hash": head["hash"], "store": store_uri, "at": at}
    cp["sig"] = signing.sign(key, _checkpoint_message(cp))
    _write_json(ws.state_dir / CHECKPOINT, cp)


def drop_checkpoint(ws: Workspace) -> None:
    (ws.state_dir / CHECKPOINT).unlink(missing_ok=True)
