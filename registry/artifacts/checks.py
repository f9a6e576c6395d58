"""Tenant isolation, checked before a delta may be approved.

What isolation means here, and no more: a delta is self-contained (its file matches its
checksum and its declared tensors), bound to exactly one tenant and one base (the manifest names
both, and the base digest matches the base it is registered with), and it cannot modify the
shared base: it may only carry low-rank adapters (``L<i>.<module>.lora_A|B``, the token adapter
``tok.lora_A|B`` and its pooling scores ``tok.score``) and the tenant's
own classification head (one row per label of its own), never a frozen encoder or base weight.
Serving loads base + delta per tenant, so one tenant's delta cannot reach another's predictions.
It does not prove that a tenant's training data held no other tenant's text; that is the data
contract's job (``data_checks``).

These checks are the leaf every load and every gate calls (registration, approval, ``predict``,
the pyfunc, ``serve-api``): they import no other part of ``registry``, so each caller depends on
them and they depend on none of their callers (``tests/unit/test_registry_layout.py``).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from workspace.safe_io import sha256_file


@dataclass(frozen=True)
class BaseRef:
    """A version of the shared base, as a delta is checked against it."""
    name: str
    version: str
    digest: str
    run_id: str


def labels_digest(labels) -> str:
    """The digest a version records for its label set (order matters: it indexes the head rows)."""
    text = json.dumps(list(labels or []), ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


ADAPTER = re.compile(r"^(L\d+\.[A-Za-z0-9_.]+\.lora_[AB]|tok\.lora_[AB]|tok\.score)$")
HEAD = ("head.weight", "head.bias")


def _file_tensors(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:  # reads the header, not the tensors
        return {name: list(f.get_slice(name).get_shape()) for name in f.keys()}


def allowed_name(name: str) -> bool:
    return name in HEAD or bool(ADAPTER.match(name))


def check(tenant: str, delta_dir: Path, base: BaseRef) -> tuple[bool, list[str]]:
    """(passed, reasons it failed); reasons are short sentences for a reviewer."""
    from lightning_modules.delta import DELTA_FORMAT, read_manifest

    delta_dir = Path(delta_dir)
    manifest = read_manifest(delta_dir)
    reasons = []
    if manifest.get("format") != DELTA_FORMAT:
        reasons.append(f"format is {manifest.get('format')!r}, not {DELTA_FORMAT}")
    if manifest.get("tenant") != tenant:
        reasons.append(f"manifest names tenant {manifest.get('tenant')!r}, not {tenant!r}")
    if (manifest.get("base") or {}).get("digest") != base.digest:
        reasons.append(f"adapted from base {(manifest.get('base') or {}).get('digest')!r}, "
                       f"not {base.name} v{base.version} ({base.digest})")
    path = delta_dir / "delta.safetensors"
    if not path.is_file():
        return False, reasons + ["delta.safetensors is missing"]
    if sha256_file(path) != manifest.get("sha256"):
        reasons.append("delta.safetensors does not match the manifest checksum")
    try:
        tensors = _file_tensors(path)
    except Exception as exc:  # a corrupt header is a failed check, not a crash
        return False, reasons + [f"delta.safetensors is unreadable ({type(exc).__name__})"]
    if tensors != manifest.get("tensors"):
        reasons.append("tensor names or shapes differ from the manifest")
    foreign = sorted(name for name in tensors if not allowed_name(name))
    if foreign:
        reasons.append(f"carries tensors outside the adapters and head: {', '.join(foreign[:5])}")
    labels = manifest.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        reasons.append("labels must be a non-empty list of names")
    elif len(set(labels)) != len(labels):
        reasons.append("labels are not unique")
    elif "head.weight" in tensors and tensors["head.weight"][0] != len(labels):
        reasons.append(f"head has {tensors['head.weight'][0]} rows for {len(labels)} labels")
    return not reasons, reasons


def files_digest(parts: dict[str, Path]) -> str:
    """One digest of every file under each of ``parts`` (``{"delta": dir, "base": dir}``), names
    and bytes: an edited, added, renamed or removed file changes it (``base.json`` included, which
    the weights' digest does not cover)."""
    entries = []
    for part, root in sorted(parts.items()):
        root = Path(root)
        for path in sorted(p for p in root.rglob("*") if not p.is_dir()):
            kind = sha256_file(path) if path.is_file() and not path.is_symlink() else "not-a-file"
            entries.append([f"{part}/{path.relative_to(root).as_posix()}", kind])
    text = json.dumps(entries, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_artifacts(recorded: dict, folder: Path) -> list[str]:
    """What differs between a version's files (``folder``/delta, ``folder``/base) and what was
    recorded when it was registered (``recorded``: its tags, or the pyfunc's model config).

    Every load runs this: the delta's bytes against ``delta_sha256``, its manifest's tenant,
    base digest and label set against the version's, the base's bytes against ``base_digest``, and
    (versions registered since it is recorded) every file against ``files_sha256``.
    """
    folder = Path(folder)
    delta, base = folder / "delta" / "delta.safetensors", folder / "base" / "base.safetensors"
    if not delta.is_file():
        return ["delta.safetensors is missing"]
    problems = []
    digest = sha256_file(delta)
    if digest != recorded.get("delta_sha256"):
        problems.append(f"delta bytes (sha256 {digest[:12]}) are not the ones registered "
                        f"({str(recorded.get('delta_sha256'))[:12]})")
    try:
        manifest = json.loads((folder / "delta" / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict):
        return problems + ["manifest.json is unreadable"]
    if manifest.get("sha256") != digest:
        problems.append("manifest checksum does not match delta.safetensors")
    if manifest.get("tenant") != recorded.get("tenant"):
        problems.append(f"manifest names tenant {manifest.get('tenant')!r}, the version is {recorded.get('tenant')!r}'s")
    if (manifest.get("base") or {}).get("digest") != recorded.get("base_digest"):
        problems.append("manifest names another base than the version")
    if labels_digest(manifest.get("labels")) != recorded.get("labels_sha256"):
        problems.append("manifest labels differ from the registered label set")
    if not base.is_file() or f"sha256:{sha256_file(base)}" != recorded.get("base_digest"):
        problems.append("base.safetensors is not the registered base")
    if recorded.get("files_sha256") and not problems and \
            files_digest({"delta": folder / "delta", "base": folder / "base"}) != recorded["files_sha256"]:
        problems.append("its files differ from the registered ones (a file edited, added or removed)")
    return problems

