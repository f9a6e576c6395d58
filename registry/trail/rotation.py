"""``tailor audit rotate-key``: hand the audit log over to a new signing key (or a new key path).

The handover is a record of the log (``rotate-key``, scope ``_keys``) signed by the old key and
countersigned by the new one, holding both public keys and both ``stores.signing_key`` paths;
then the new key is put in place, ``audit-signing.pub`` (and ``params.yaml`` when the path
changes) is rewritten and committed to git, and the workspace anchor is signed again by the new
key, naming it. Records before the handover stay checked with the old key (``keys``). Every step
can be run again: a rotation interrupted after its record is finished by running the command again.
"""
from __future__ import annotations

import base64
import os
import re
from pathlib import Path

from registry.storage import store
from registry.trail import anchor, audit, keys
from workspace import gitrepo, signing
from workspace.errors import UserError
from workspace.paths import Workspace


def _side(raw: bytes, key_path: str) -> dict:
    return {"public": base64.b64encode(raw).decode(), "fingerprint": keys.fingerprint(raw), "key_path": key_path}


def rotate(ws: Workspace, *, actor: str, reason: str, key_path: str | None = None) -> dict:
    """Rotate to a new key at ``key_path`` (default: where the key is now); returns
    {"record", "old", "new", "key_path", "committed"}."""
    if not reason.strip():
        raise UserError("say why the key is rotated (--reason)")
    setting = store.signing_key_setting() or signing.DEFAULT_KEY
    target = key_path or setting
    new_path = signing.key_path(ws, target)
    staging = new_path.with_name(new_path.name + ".rotating")
    with audit.lock(ws, keys.SCOPE):
        ring = audit.keyring(ws)
        if ring.retired_pin is not None:  # the record is written: finish putting the new key in place
            record = next(r for r in reversed(audit.records(ws, keys.SCOPE))
                          if keys.fingerprint(keys._raw(r["details"], "new") or b"") == ring.retired_pin)
            target = record["details"]["new"]["key_path"]
            new_path = signing.key_path(ws, target)
            staging = new_path.with_name(new_path.name + ".rotating")
        else:
            problems = audit.trust_root_problems(ws, store.signing_key_setting())
            if problems:
                raise UserError(f"{problems[0]}: put the pinned key and path back before rotating")
            old = signing.ensure_key(ws, store.signing_key_setting())
            if not staging.exists():
                signing.write_private(staging, signing.new_private_pem())
            new = signing.load_private(staging)
            old_raw, new_raw = signing.raw_public(old), signing.raw_public(new)
            details = {"old": _side(old_raw, setting), "new": _side(new_raw, target),
                       "new_sig": signing.sign(new, keys.countersign_message(keys.fingerprint(old_raw),
                                                                             keys.fingerprint(new_raw)))}
            record = audit.append(ws, actor=actor, action=keys.ROTATE, tenant=None, scope=keys.SCOPE,
                                  frm=keys.fingerprint(old_raw), to=keys.fingerprint(new_raw), reason=reason,
                                  details=details)
        new_fp = record["details"]["new"]["fingerprint"]
        committed = _install(ws, record, staging, new_path, target, new_fp, actor)
    return {"record": record["seq"], "old": record["details"]["old"]["fingerprint"], "new": new_fp,
            "key_path": target, "committed": committed}


def _install(ws: Workspace, record: dict, staging: Path, new_path: Path, target: str, new_fp: str,
             actor: str) -> str | None:
    """Put the new key, its pin and its path in place (each step only if not done yet), commit
    them, and anchor the log with the new key."""
    if staging.exists() and keys.fingerprint(signing.raw_public(signing.load_private(staging))) == new_fp:
        os.replace(staging, new_path)
    if not new_path.exists() or keys.fingerprint(signing.raw_public(signing.load_private(new_path))) != new_fp:
        raise UserError(f"the new signing key ({keys.short(new_fp)}) is not at {new_path}: it was lost before it was "
                        "put in place; the log was handed over to it at record "
                        f"{record['seq']}: restore it there and run `tailor audit rotate-key` again")
    key = signing.load_private(new_path)
    signing.replace_pin(ws, signing.raw_public(key))
    if target != (store.signing_key_setting() or signing.DEFAULT_KEY):
        set_key_path(ws.params_file, target)
        store.set_signing_key_setting(target)
    committed = _commit(ws, record, actor)
    with audit.lock(ws, "audit"):
        ring = audit.keyring(ws)
        head = audit.checked_tail(ws, ring)
        anchor.write(ws, {"count": head["seq"], "hash": head["hash"]}, key, store.tracking_uri(), target)
    return committed


def set_key_path(params: Path, value: str) -> None:
    """Write ``stores.signing_key: value`` into params.yaml, keeping every other line (a file that
    is not laid out as ``tailor init`` writes it is rewritten from its parsed settings)."""
    import yaml

    text = params.read_text(encoding="utf-8")
    if text.strip() in ("", "{}"):
        text = ""
    line = f'  signing_key: "{value}"'
    pattern = re.compile(r"^(  signing_key:)[^#\n]*?(\s*#.*)?$", re.MULTILINE)
    stores = re.search(r"^stores:[ \t]*(#.*)?$", text, re.MULTILINE)
    if stores and pattern.search(text, stores.end()):
        match = pattern.search(text, stores.end())
        text = text[:match.start()] + f'{match.group(1)} "{value}"{match.group(2) or ""}' + text[match.end():]
    elif stores:
        text = text[:stores.end()] + "\n" + line + text[stores.end():]
    else:
        text = text.rstrip("\n") + f"\nstores:\n{line}\n"
    try:
        ok = (yaml.safe_load(text) or {}).get("stores", {}).get("signing_key") == value
    except (yaml.YAMLError, AttributeError):
        ok = False
    if not ok:
        raw = yaml.safe_load(params.read_text(encoding="utf-8")) or {}
        raw.setdefault("stores", {})["signing_key"] = value
        text = yaml.safe_dump(raw, sort_keys=False)
    params.write_text(text, encoding="utf-8")


def _commit(ws: Workspace, record: dict, actor: str) -> str | None:
    """Commit the pin (and params.yaml) so git history holds every key the log hands over to."""
    if not (ws.root / ".git").exists():
        return None
    files = [signing.PUBLIC_FILE, "params.yaml"]
    gitrepo.git(ws, "add", "--", *files)
    if not gitrepo.git(ws, "diff", "--cached", "--quiet", "--", *files, check=False, rc=True):
        return gitrepo.git(ws, "log", "-1", "--format=%H", "--", signing.PUBLIC_FILE, check=False) or None
    old, new = (keys.short(record["details"][s]["fingerprint"]) for s in ("old", "new"))
    gitrepo.git(ws, "commit", "-q", f"--author={gitrepo.author(actor)}", "-m",
                f"audit: signing key {old} -> {new} (audit record {record['seq']})", "--", *files)
    return gitrepo.git(ws, "rev-parse", "HEAD")
