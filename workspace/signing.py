"""The workspace signing key: who may write the audit trail, kept apart from the store it signs.

Every audit record and the workspace anchor are signed with an Ed25519 key (``stores.signing_key``,
default ``.tailor/audit-signing.key``, created mode 0600 on first use) that lives outside the MLflow
tracking store, so someone who can write that store cannot write a record Tailor accepts. The
public half is pinned in ``audit-signing.pub`` beside ``params.yaml``, which git tracks: a verifier
without the private key (an auditor's clone) checks against it, and a key that does not match it
is refused. See docs/security.md for the threat model.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path

from workspace.errors import UserError
from workspace.paths import Workspace

PUBLIC_FILE = "audit-signing.pub"
DEFAULT_KEY = ".tailor/audit-signing.key"
_HEADER = "tailor-audit-ed25519"


def key_path(ws: Workspace, setting: str = "") -> Path:
    """The private key file: ``stores.signing_key`` (``~`` expanded, relative to the workspace),
    or ``.tailor/audit-signing.key``."""
    return (ws.root / Path(setting or DEFAULT_KEY).expanduser()).resolve()


def public_path(ws: Workspace) -> Path:
    return ws.root / PUBLIC_FILE


def _exclusive_write(path: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` to ``path`` only if it does not exist (atomic: a temporary file, then a hard
    link); False when another process created it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def raw_public(key) -> bytes:
    """The raw 32 bytes of a private or public Ed25519 key's public half."""
    from cryptography.hazmat.primitives import serialization

    public = key.public_key() if hasattr(key, "public_key") else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _load_private(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise UserError(f"cannot read the audit signing key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise UserError(f"{path} is not an unencrypted Ed25519 private key (PEM)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path} is not an Ed25519 private key")
    return key


def pinned_public(ws: Workspace) -> bytes | None:
    """The raw public key pinned beside params.yaml, None when there is none; ``UserError`` when
    the file is not one."""
    path = public_path(ws)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        raise UserError(f"{PUBLIC_FILE} is unreadable") from None
    raw = parse_public(text)
    if raw is None:
        raise UserError(f"{PUBLIC_FILE} is not a Tailor audit public key ('{_HEADER} BASE64')")
    return raw


def parse_public(text: str) -> bytes | None:
    """The raw key of an ``audit-signing.pub`` text, None when it is not one."""
    parts = str(text).split()
    try:
        if len(parts) != 2 or parts[0] != _HEADER:
            return None
        raw = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def public_text(raw: bytes) -> str:
    return f"{_HEADER} {base64.b64encode(raw).decode()}\n"


def _pin(ws: Workspace, raw: bytes) -> None:
    _exclusive_write(public_path(ws), public_text(raw).encode(), 0o644)


def new_private_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption())


def load_private(path: Path):
    """The Ed25519 private key in ``path`` (``UserError`` when it is not one)."""
    return _load_private(path)


def write_private(path: Path, pem: bytes) -> None:
    """Write a private key file, mode 0600, atomically (replacing one that is there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def replace_pin(ws: Workspace, raw: bytes) -> None:
    """Pin another public key (``tailor audit rotate-key`` only: the log records the handover)."""
    path = public_path(ws)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(public_text(raw), encoding="utf-8")
    os.replace(tmp, path)


def ensure_key(ws: Workspace, setting: str = ""):
    """The private key (created 0600 on first use, its public half pinned if nothing is); refused
    with one line when it is not the key the workspace pins."""
    path = key_path(ws, setting)
    if not path.exists():
        if pinned_public(ws) is not None:
            raise UserError(f"no audit signing key at {path}, but {PUBLIC_FILE} pins one: copy the team's "
                            "key there (or set stores.signing_key); a new key would sign records nobody accepts")
        _exclusive_write(path, new_private_pem(), 0o600)
    key = _load_private(path)
    pinned = pinned_public(ws)
    if pinned is None:
        _pin(ws, raw_public(key))
        pinned = pinned_public(ws)
    if pinned != raw_public(key):
        raise UserError(f"the audit signing key {path} is not the one {PUBLIC_FILE} pins: use the team's key")
    return key


def verifying_key(ws: Workspace | None, setting: str = ""):
    """(public key, None) to check signatures with, or (None, why there is none): the pinned one,
    else the one derived from the private key file. A private key that differs from the pin is a
    reason, not a key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    hint = ""
    if ws is None:  # a pyfunc under `mlflow models serve`: the workspace is TAILOR_HOME or the current folder
        ws, hint = Workspace.find(), " (set TAILOR_HOME to the workspace)"
    try:
        pinned = pinned_public(ws)
        path = key_path(ws, setting)
        own = raw_public(_load_private(path)) if path.exists() else None
    except UserError as exc:
        return None, str(exc)
    if pinned is not None and own is not None and own != pinned:
        return None, f"the audit signing key {path} is not the one {PUBLIC_FILE} pins"
    raw = pinned if pinned is not None else own
    if raw is None:
        return None, f"no audit public key ({PUBLIC_FILE} beside params.yaml) to check signatures with{hint}"
    return Ed25519PublicKey.from_public_bytes(raw), None


def sign(key, message: str) -> str:
    return base64.b64encode(key.sign(message.encode("utf-8"))).decode()


def valid(public, message: str, signature) -> bool:
    from cryptography.exceptions import InvalidSignature

    if not isinstance(signature, str):
        return False
    try:
        public.verify(base64.b64decode(signature, validate=True), message.encode("utf-8"))
        return True
    except (InvalidSignature, ValueError):
        return False
