"""Fault injection for crash tests: ``TAILOR_FAULT=<point>`` makes the process SIGKILL itself
when it reaches that point, exactly as ``kill -9`` would, so tests can prove that a kill at every
step of a state change leaves the old state or the new one, never a mix.

``TAILOR_FAULT=<point>:ENOSPC`` (any errno name) raises that ``OSError`` there instead, as a full
disk or a failing device would, so tests can prove such a failure is one line and loses nothing."""
from __future__ import annotations

import errno
import os
import signal
import time

ENV = "TAILOR_FAULT"
DELAY_ENV = "TAILOR_FAULT_DELAY"  # seconds to wait at the point first (to act while it hangs there)


def point(name: str) -> None:
    """Die here (no cleanup, no atexit, no finally) when ``$TAILOR_FAULT`` names this point; raise
    the ``OSError`` it names after it (``<point>:ENOSPC``)."""
    wanted = os.environ.get(ENV, "")
    where, _, code = wanted.rpartition(":")
    if where == name and code.isupper() and isinstance(getattr(errno, code, None), int):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
    if wanted == name:
        time.sleep(float(os.environ.get(DELAY_ENV) or 0))
        os.kill(os.getpid(), signal.SIGKILL)
