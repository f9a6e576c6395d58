"""The DVC remote tenant data is pushed to: configured from params.yaml's ``stores`` before every
push and pull (so a changed setting takes effect without re-init), and its failures told apart:
a wrong bucket, missing credentials or a missing plugin is the user's to fix (``UserError``, never
retried); anything else may be transient (``VersioningError``, which the flows retry).

A helper of ``workspace/versioning.py``: the DVC calls here run on the repo handle it opens.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

from workspace.errors import UserError
from workspace.gitrepo import VersioningError
from workspace.paths import Workspace
from workspace.settings import StoreSettings

NAME = "local"  # the remote's name in .dvc/config (kept from the first release: existing workspaces use it)
_DVC_LOGGERS = ("dvc", "dvc_data", "dvc_objects")


def wanted(ws: Workspace, store: StoreSettings) -> dict:
    """The remote section .dvc/config should hold for ``store``.

    A local folder inside the workspace is stored relative, so the workspace can move.
    """
    from dvc.config_schema import RelPath

    url = store.dvc_remote or str(ws.dvc_remote_dir)
    if "://" not in url:
        local = (ws.root / url).resolve()
        local.mkdir(parents=True, exist_ok=True)
        url = RelPath(str(local)) if local.is_relative_to(ws.root) else str(local)
    section = {"url": url}
    if store.dvc_endpoint_url:
        section["endpointurl"] = store.dvc_endpoint_url
    return section


def configure(repo, ws: Workspace, store: StoreSettings) -> bool:
    """Point remote ``local`` (the default) at ``store``'s remote; True if .dvc/config changed.

    Options a user added with ``dvc remote modify`` are kept while the URL stays the same; a new
    URL starts from a clean section (an S3 option would be invalid on a folder remote).
    """
    from dvc.config import ConfigError

    want = wanted(ws, store)
    conf = repo.config.load_one("repo")
    have = conf.get("remote", {}).get(NAME, {})
    same_url = _same_url(have.get("url"), want["url"])
    up_to_date = (same_url and all(have.get(k) == v for k, v in want.items())
                  and (store.dvc_endpoint_url or "endpointurl" not in have)
                  and conf.get("core", {}).get("remote") == NAME
                  and conf.get("core", {}).get("analytics") is False)
    if up_to_date:
        return False
    section = {**have, **want} if same_url else dict(want)
    if not store.dvc_endpoint_url:
        section.pop("endpointurl", None)
    try:
        with repo.config.edit("repo") as edit:
            edit["core"]["analytics"] = False
            edit["core"]["remote"] = NAME
            edit["remote"][NAME] = section
    except ConfigError as exc:
        raise UserError(f"stores.dvc_remote {store.dvc_remote!r}: {_first_line(exc)}") from None
    return True


def describe(ws: Workspace, store: StoreSettings) -> str:
    return store.dvc_remote or str(ws.dvc_remote_dir.relative_to(ws.root))


def describe_configured(repo, ws: Workspace) -> str:
    """The default remote as .dvc/config names it (for messages when no setting was passed)."""
    url = str(repo.config.get("remote", {}).get(NAME, {}).get("url", "")) or "(none configured)"
    if "://" not in url and Path(url).is_absolute() and Path(url).is_relative_to(ws.root):
        return Path(url).relative_to(ws.root).as_posix()
    return url


@contextmanager
def translated_errors(where: str):
    """Run a push or pull; turn its failure into one line a person can act on.

    DVC logs each failed transfer (with the real cause) and then raises a summary such as
    "1 files failed to upload": the records are caught here, off the user's screen, to find
    the cause.
    """
    caught: list[logging.LogRecord] = []

    class _Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record)

    loggers = [logging.getLogger(n) for n in _DVC_LOGGERS]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
    catch = _Catch(level=logging.WARNING)
    for lg in loggers:
        lg.handlers[:] = [catch]
        lg.propagate = False
    try:
        yield
    except UserError:
        raise  # already the one line a person can act on
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised as one of ours
        causes = _chain(exc) + [e for r in caught if r.exc_info for e in _chain(r.exc_info[1])]
        problem = _user_problem(causes, where)
        if problem:
            raise UserError(problem) from exc
        detail = next((r.getMessage() for r in caught if r.levelno >= logging.ERROR), "")
        raise VersioningError(f"DVC remote {where}: {detail or _first_line(exc)}") from exc
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers[:] = handlers
            lg.propagate = propagate


def _user_problem(causes: list[BaseException], where: str) -> str | None:
    """The user's mistake among ``causes`` (a chain of exceptions), as one line, or None."""
    for exc in causes:
        name, text = type(exc).__name__, str(exc)
        if isinstance(exc, ImportError) and "is supported, but requires" in text:
            return (f"the DVC remote {where} needs a plugin this install lacks ({_first_line(exc)}): "
                    "change stores.dvc_remote in params.yaml or install the plugin")
        if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
            return (f"no credentials for the DVC remote {where}: set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment")
        if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
            return (f"the DVC remote {where} does not exist (no such bucket): create it, or fix "
                    "stores.dvc_remote in params.yaml")
        if isinstance(exc, PermissionError) or any(code in text for code in (
                "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden")):
            return (f"the DVC remote {where} refused access ({_first_line(exc)}): check its credentials "
                    "and stores.dvc_remote")
        if name == "ConfigError":
            return f"the DVC remote {where} is misconfigured: {_first_line(exc)}"
    return None


def _chain(exc: BaseException | None) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _same_url(old, new) -> bool:
    if old is None:
        return False
    if "://" in str(old) or "://" in str(new):
        return str(old) == str(new)
    return os.path.abspath(old) == os.path.abspath(new)
