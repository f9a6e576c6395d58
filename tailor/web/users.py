"""Review-page users: names (normalised identities) with scrypt-hashed passwords in one workspace
file, ``.tailor/users.json``. Only hashes are stored; comparisons are constant-time."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import datetime, timezone

from filelock import FileLock

from registry.trail import identity
from workspace.errors import UserError
from workspace.paths import Workspace

_N, _R, _P = 2 ** 14, 8, 1  # scrypt cost: ~50 ms per check here, 16 MiB of memory
# what a name with no user is checked against: a hash of the same cost that no password matches,
# so an unknown name costs the one scrypt a wrong password costs (no enumeration by timing)
_NOBODY = f"scrypt${_N}${_R}${_P}${'00' * 16}${'00' * 32}"


def _file(ws: Workspace):
    return ws.state_dir / "users.json"


def _hash(password: str, salt: bytes, n: int = _N, r: int = _R, p: int = _P) -> str:
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def load(ws: Workspace) -> dict:
    try:
        data = json.loads(_file(ws).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        raise UserError(f"{_file(ws)} is not valid JSON: restore it or add users again") from None
    return data if isinstance(data, dict) else {}


def add_user(ws: Workspace, name: str, password: str) -> str:
    """Add or reset ``name``; returns the normalised identity it logs in as."""
    who = identity.checked(name, "user name")
    if not who or len(who) > 64:
        raise UserError("a user name must be 1-64 characters")
    if identity.is_service(who):
        raise UserError(f"{who} is a service identity: service identities cannot log in")
    if len(password) < 8:
        raise UserError("the password must have at least 8 characters")
    with FileLock(str(ws.state_dir / "users.json.lock"), timeout=30):
        users = load(ws)
        # a new session token: a reset password ends every session signed in with the old one
        users[who] = {"password": _hash(password, secrets.token_bytes(16)), "session": secrets.token_hex(16),
                      "added": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _write(ws, users)
    return who


def _write(ws: Workspace, users: dict) -> None:
    tmp = _file(ws).with_suffix(".tmp")
    tmp.write_text(json.dumps(users, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, _file(ws))


def session_token(ws: Workspace, who: str) -> str | None:
    """The token every session of ``who`` carries (created for a user added before tokens); None
    for a user that no longer exists. A session is valid only while its token is the user's."""
    entry = load(ws).get(who)
    if entry is None:
        return None
    if entry.get("session"):
        return entry["session"]
    with FileLock(str(ws.state_dir / "users.json.lock"), timeout=30):
        users = load(ws)
        if who not in users:
            return None
        users[who].setdefault("session", secrets.token_hex(16))
        _write(ws, users)
        return users[who]["session"]


def end_sessions(ws: Workspace, who: str) -> None:
    """End every session of ``who`` (log out everywhere): a new token makes the old cookies void."""
    with FileLock(str(ws.state_dir / "users.json.lock"), timeout=30):
        users = load(ws)
        if who in users:
            users[who]["session"] = secrets.token_hex(16)
            _write(ws, users)


def remove_user(ws: Workspace, name: str) -> bool:
    """Remove ``name``; its sessions end with it. False when there was no such user."""
    who = identity.normalise(name)
    with FileLock(str(ws.state_dir / "users.json.lock"), timeout=30):
        users = load(ws)
        if users.pop(who, None) is None:
            return False
        _write(ws, users)
    return True


def check(ws: Workspace, name: str, password: str) -> str | None:
    """The identity when ``name``/``password`` match a user, else None: one scrypt hash either
    way, of the user's cost, or of the default cost for a name with no user."""
    who = identity.normalise(name)
    entry = load(ws).get(who)
    stored = entry["password"] if entry else _NOBODY
    try:
        _, n, r, p, salt, _ = stored.split("$")
        candidate = _hash(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return None
    return who if entry and hmac.compare_digest(candidate, stored) else None
