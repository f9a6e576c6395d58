"""Which public key checks which audit record: the pinned key, and the keys it replaced.

The key that signs the log changes only by a ``rotate-key`` record (``tailor audit rotate-key``),
signed by the old key and countersigned by the new one. Walking back from the key pinned in
``audit-signing.pub`` through such records gives every key its range of sequence numbers, and a
record is valid only when the key of its range signed it: a retired (perhaps leaked) key cannot
sign a new record, a store writer (who holds no key) cannot introduce one, and a workspace writer
who pins a key of their own finds no record that hands over to it. Pure functions over records
and raw keys: ``audit.keyring`` reads the rotation records and calls ``build``.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from workspace import signing

ROTATE = "rotate-key"
SCOPE = "_keys"  # the record scope (lock and sub-chain) of key rotations


def fingerprint(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def short(fp: str | None) -> str:
    return str(fp or "?").removeprefix("sha256:")[:12]


def countersign_message(old_fp: str, new_fp: str) -> str:
    return f"tailor-audit-rotate/1 {old_fp} {new_fp}"


def record_message(digest: str) -> str:
    return f"tailor-audit-record/1 {digest}"


def _public(raw: bytes):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def _raw(details: dict, side: str) -> bytes | None:
    try:
        raw = base64.b64decode(str((details.get(side) or {}).get("public")), validate=True)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


@dataclass
class Span:
    """One key and the sequence numbers it signs: ``first`` .. ``last`` (None: open-ended)."""

    raw: bytes
    first: int
    last: int | None = None
    key_path: str | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def covers(self, seq: int) -> bool:
        return seq >= self.first and (self.last is None or seq <= self.last)


@dataclass
class Keyring:
    """The keys of the log, oldest first; ``problem`` says why a record cannot be checked at all
    (no key), or why new records cannot be written (the pinned key was retired)."""

    spans: list[Span] = field(default_factory=list)
    problem: str | None = None
    retired_pin: str | None = None

    def key_at(self, seq: int) -> bytes | None:
        for span in self.spans:
            if span.covers(seq):
                return span.raw
        return None

    def signed(self, record: dict) -> bool:
        """Whether ``record``'s hash carries a valid signature of the key of its sequence number."""
        try:
            raw = self.key_at(int(record.get("seq")))
        except (TypeError, ValueError):
            return False
        return raw is not None and signing.valid(_public(raw), record_message(str(record.get("hash"))),
                                                 record.get("sig"))

    def signed_by_any(self, message: str, sig, seqs: tuple[int, ...]) -> bool:
        """Whether one of the keys of ``seqs`` signed ``message`` (anchors, checkpoints)."""
        return any(raw is not None and signing.valid(_public(raw), message, sig)
                   for raw in {self.key_at(s) for s in seqs})

    @property
    def current(self) -> Span | None:
        return self.spans[-1] if self.spans else None


def rotation_valid(record: dict, old_raw: bytes) -> bool:
    """A rotation record handing over from ``old_raw``: signed by it, countersigned by the new key."""
    details = record.get("details") or {}
    new_raw = _raw(details, "new")
    if new_raw is None or _raw(details, "old") != old_raw:
        return False
    if not signing.valid(_public(old_raw), record_message(str(record.get("hash"))), record.get("sig")):
        return False
    return signing.valid(_public(new_raw), countersign_message(fingerprint(old_raw), fingerprint(new_raw)),
                         details.get("new_sig"))


def build(pinned: bytes, rotations: list[dict], hash_ok=lambda r: True) -> Keyring:
    """The key ring ending at the ``pinned`` key, from the log's rotation records (any order; ones
    that do not verify are ignored, so a forged rotation adds no key). ``hash_ok(record)`` says
    whether a record's stored hash is its content's."""
    rots = sorted((r for r in rotations if isinstance(r, dict) and isinstance(r.get("seq"), int) and hash_ok(r)),
                  key=lambda r: r["seq"], reverse=True)
    spans: list[Span] = []
    current, last, seen = pinned, None, set()
    while current not in seen:
        seen.add(current)
        handover = next((r for r in rots if (last is None or r["seq"] < last)
                         and _raw(r.get("details") or {}, "new") == current
                         and rotation_valid(r, _raw(r["details"], "old") or b"")), None)
        if handover is None:
            spans.insert(0, Span(current, 1, last))
            break
        new_path = (handover["details"].get("new") or {}).get("key_path")
        spans.insert(0, Span(current, handover["seq"] + 1, last, new_path))
        current, last = _raw(handover["details"], "old"), handover["seq"]
    ring = Keyring(spans)
    newest = spans[-1]
    retire = next((r for r in rots if r["seq"] >= newest.first and rotation_valid(r, pinned)), None)
    if retire is not None:  # rotated away from the pinned key, but the pin was not moved on
        newest.last = retire["seq"]
        ring.retired_pin = fingerprint(_raw(retire["details"], "new") or b"")
        ring.problem = (f"the signing key was rotated at record {retire['seq']} (to {short(ring.retired_pin)}) but "
                        f"{signing.PUBLIC_FILE} still pins the old key: run `tailor audit rotate-key` again to finish")
    return ring
