"""The two files a meta-learned system is made of: the base (shared) and a tenant's delta.

Both are safetensors plus JSON; loading checks format, checksum, tenant and base digest before
any tensor is used, so a wrong or tampered file is refused instead of silently served.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from workspace.errors import UserError
from workspace.safe_io import sha256_file

BASE_FORMAT, DELTA_FORMAT = "tailor-base/1", "tailor-delta/1"


def _write_dir(dst: Path, tensors: dict, tensor_file: str, meta_file: str, meta: dict) -> Path:
    """Write into a temporary sibling, then rename: a crash never leaves a half-written folder."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}."))
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / tensor_file))
    digest = sha256_file(tmp / tensor_file)
    meta = meta(digest) if callable(meta) else meta
    (tmp / meta_file).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return dst


def save_base(dst: Path, meta_params: dict, info: dict) -> Path:
    """``info``: encoder name/digest, encoder settings, algorithm, metrics (JSON-able)."""
    return _write_dir(dst, meta_params, "base.safetensors", "base.json",
                      lambda d: {**info, "format": BASE_FORMAT, "digest": f"sha256:{d}"})


def load_base(src: Path) -> tuple[dict, dict]:
    src = Path(src)
    try:
        info = json.loads((src / "base.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{src} is not a Tailor base model (no readable base.json)") from None
    if info.get("format") != BASE_FORMAT:
        raise UserError(f"{src}: base format {info.get('format')!r}, expected {BASE_FORMAT}")
    if f"sha256:{sha256_file(src / 'base.safetensors')}" != info.get("digest"):
        raise UserError(f"{src}: base.safetensors does not match its digest; refusing to load")
    return load_file(str(src / "base.safetensors")), info


def save_delta(dst: Path, tensors: dict, manifest: dict) -> Path:
    shapes = {k: list(v.shape) for k, v in sorted(tensors.items())}
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _write_dir(dst, tensors, "delta.safetensors", "manifest.json",
                      lambda d: {"created_at": created, **manifest, "format": DELTA_FORMAT,
                                 "tensors": shapes, "sha256": d})


def read_manifest(src: Path) -> dict:
    try:
        return json.loads((Path(src) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{src} is not a Tailor delta (no readable manifest.json)") from None


def load_delta(src: Path, tenant: str | None = None, base_digest: str | None = None) -> tuple[dict, dict]:
    """Tensors and manifest, after checking format, checksum, tenant and base digest."""
    src = Path(src)
    manifest = read_manifest(src)
    if manifest.get("format") != DELTA_FORMAT:
        raise UserError(f"{src}: delta format {manifest.get('format')!r}, expected {DELTA_FORMAT}")
    if sha256_file(src / "delta.safetensors") != manifest.get("sha256"):
        raise UserError(f"{src}: delta.safetensors does not match the manifest checksum; refusing to load")
    if tenant is not None and manifest.get("tenant") != tenant:
        raise UserError(f"{src}: delta belongs to tenant {manifest.get('tenant')!r}, not {tenant!r}")
    if base_digest is not None and manifest.get("base", {}).get("digest") != base_digest:
        raise UserError(f"{src}: delta was adapted from another base model; re-adapt the tenant")
    tensors = load_file(str(src / "delta.safetensors"))
    if {k: list(v.shape) for k, v in tensors.items()} != manifest.get("tensors"):
        raise UserError(f"{src}: delta tensors differ from the manifest")
    return tensors, manifest
