"""The workspace's running `tailor serve-api`, found by the commands of the same workspace: the
warm process answers `tailor predict TENANT TEXT...` in milliseconds where a cold command pays
torch's import and the champion's load (1.5-2 s). One copy of the logic: the server's engine
applies the same registry checks as a cold predict (digests, manifest, audit log, drift).

While it serves, ``.tailor/serve-api.json`` (mode 0600: readable by whoever may read the
workspace's models anyway) names its local URL, its pid and a key of the caller ``local-cli``
that may query every tenant; the server replaces that key at each start and removes the file when
it stops. A file whose pid is gone, or a server that does not answer within ``TIMEOUT``, is not
used: the command answers cold.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from workspace.paths import Workspace

CALLER = "local-cli"
TIMEOUT = 5.0


def path(ws: Workspace) -> Path:
    return ws.state_dir / "serve-api.json"


def announce(ws: Workspace, host: str, port: int) -> Path:
    """Write the discovery file for this server (called by ``serve`` before it listens)."""
    from tailor.api import keys

    key = keys.add_key(ws, CALLER, [keys.ALL])
    local = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    target = path(ws)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"url": f"http://{local}:{port}", "pid": os.getpid(), "key": key}, f)
    os.replace(tmp, target)
    return target


def withdraw(ws: Workspace) -> None:
    """Remove the discovery file if it is this process's (a later server may have replaced it)."""
    try:
        if json.loads(path(ws).read_text(encoding="utf-8")).get("pid") == os.getpid():
            path(ws).unlink()
    except (OSError, ValueError):
        pass


def predict(ws: Workspace, tenant: str, texts: list[str]) -> tuple[list[dict], str] | None:
    """(rows as `tailor predict` gives them, the server's URL) from the running server, or None
    when none runs or it does not answer (the caller answers cold). A refusal by the server (no
    champion, a champion the checks refuse) is the command's own error, as a cold predict's."""
    import urllib.error
    import urllib.request

    from workspace.errors import UserError

    try:
        info = json.loads(path(ws).read_text(encoding="utf-8"))
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    request = urllib.request.Request(f"{info['url']}/v1/tenants/{tenant}/predict",
                                     data=json.dumps({"texts": texts}).encode("utf-8"), method="POST",
                                     headers={"Authorization": f"Bearer {info['key']}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 409):
            try:
                detail = json.loads(exc.read()).get("detail")
            except ValueError:
                detail = None
            if detail:
                raise UserError(str(detail)) from None
        return None
    except (OSError, ValueError):
        return None
    served = {"version": str(body["version"]), "data_version": str(body.get("data_version") or "")}
    return [{**row, **served} for row in body["predictions"]], info["url"]
