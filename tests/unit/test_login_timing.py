"""A sign-in with an unknown user name does the same work as one with a known name and a wrong
password (one scrypt hash each), so the login page does not tell which names exist by its timing
(issue 31, finding 5: 207-286 ms against 121-203 ms before)."""
import hashlib
import statistics
import time

import pytest

from tailor.web import users
from workspace.paths import Workspace


@pytest.fixture
def ws(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    ws.params_file.write_text("{}\n", encoding="utf-8")
    users.add_user(ws, "alice", "a long enough password")
    return ws


def test_a_known_and_an_unknown_name_cost_one_scrypt_hash_each(ws, monkeypatch):
    calls = []
    real = hashlib.scrypt

    def counted(*args, **kwargs):
        calls.append(kwargs.get("n"))
        return real(*args, **kwargs)

    monkeypatch.setattr(users.hashlib, "scrypt", counted)
    assert users.check(ws, "alice", "wrong password") is None
    known = list(calls)
    calls.clear()
    assert users.check(ws, "mallory", "wrong password") is None
    assert known == calls == [users._N], (known, calls)
    calls.clear()
    assert users.check(ws, "alice", "a long enough password") == "alice" and calls == [users._N]


def test_unknown_and_known_names_take_the_same_time(ws):
    """Interleaved pairs (known, unknown, alternating which goes first), so load on the machine
    falls on both alike; the median of the per-pair ratios is compared, not single timings.
    Before the change an unknown name took two hashes: a median ratio near 2."""
    ratios = []
    for i in range(16):
        timed = {}
        for name in (("alice", "mallory") if i % 2 else ("mallory", "alice")):
            start = time.perf_counter()
            users.check(ws, name, "wrong password")
            timed[name] = time.perf_counter() - start
        ratios.append(timed["mallory"] / timed["alice"])
    median = statistics.median(ratios)
    assert 0.67 < median < 1.5, f"unknown/known time ratio {median:.2f} (pairs: {[round(r, 2) for r in ratios]})"
