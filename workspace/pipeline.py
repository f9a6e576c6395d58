"""The workspace's DVC pipeline (``dvc.yaml``): the project's template with each stage's tenant data
listed, and the small JSON record each stage outputs, so ``dvc repro`` reruns exactly the stages
whose data or params.yaml keys changed, and ``dvc.lock`` says what the current base and candidates
were made from.

A helper of ``workspace/versioning.py`` (one owner of DVC): it uses the same repo lock and handle.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from workspace import versioning
from workspace.errors import UserError
from workspace.gitrepo import VersioningError, git
from workspace.paths import Workspace
from workspace.settings import Settings

TEMPLATE = Path(__file__).resolve().parent.parent / "dvc.yaml"
# libyaml's safe loader and dumper where PyYAML has them: dvc.yaml lists every tenant's file
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
PIPELINE_FILE = "dvc.yaml"
OUTS = {"meta-train": "pipeline/base.json", "adapt": "pipeline/candidates.json"}
HEADER = ("# Written by Tailor from its dvc.yaml template; each stage's tenant data deps are kept current\n"
          "# by every tailor command. Stages you add are kept. Run `dvc repro` here to reproduce.\n")


def under_dvc() -> str | None:
    """The stage ``dvc repro`` is running now (DVC sets DVC_STAGE for its commands), else None."""
    return os.environ.get("DVC_STAGE") or None


def stage_inputs(ws: Workspace, settings: Settings) -> dict[str, list[str]]:
    """Stage -> the tenant data files it reads, relative to the workspace root.

    Configured tenants without data are left out: the stage itself refuses to run then.
    """
    files = versioning.data_files(ws)
    cfg = settings.meta_train
    meta = set(cfg.tenant_list() or files) | set(cfg.val_tenant_list())
    path = lambda t: files[t].relative_to(ws.root).as_posix()  # noqa: E731
    return {"meta-train": [path(t) for t in files if t in meta], "adapt": [path(t) for t in files]}


def render(ws: Workspace, settings: Settings) -> str:
    """The workspace's dvc.yaml text: the template's stages with their tenant data deps, plus any
    other stage already in the workspace's file."""
    try:
        template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_LOADER)
    except OSError:
        raise UserError(f"Tailor's pipeline template {TEMPLATE} is missing: reinstall Tailor (`make setup`)") from None
    existing = _load_existing(ws)
    stages = dict(existing.get("stages") or {})
    for name, tenant_data in stage_inputs(ws, settings).items():
        stage = copy.deepcopy(template["stages"][name])
        stage["deps"] = list(stage.get("deps") or []) + tenant_data
        stages[name] = stage
    doc = {**existing, "stages": stages}
    return HEADER + yaml.dump(doc, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)


def is_current(ws: Workspace, text: str) -> bool:
    """Whether dvc.yaml is ``text`` (what ``render`` gives)."""
    path = ws.root / PIPELINE_FILE
    return path.is_file() and path.read_text(encoding="utf-8") == text


def sync(ws: Workspace, settings: Settings) -> bool:
    """Write dvc.yaml if it is missing or lists other tenant data than today's; True if written.

    While ``dvc repro`` runs, the file is DVC's to read, never Tailor's to change: a stale one
    stops the stage with a line saying how to refresh it.
    """
    text = render(ws, settings)
    if is_current(ws, text):
        _write_stamp(ws, settings)
        return False
    if under_dvc():
        raise UserError("dvc.yaml lists other tenant data than params.yaml and data/tenants/ now hold: "
                        "run `tailor init .` to refresh it, then `dvc repro` again")
    _write_atomic(ws.root / PIPELINE_FILE, text)
    _write_stamp(ws, settings)
    return True


def sync_if_changed(ws: Workspace, settings: Settings, tenant: str | None = None) -> bool:
    """``sync``, skipped when nothing it reads changed since the last one: the meta-training
    tenants of the settings, dvc.yaml, the template and the set of tenant folders (their stats,
    a few microseconds; ``render`` lists every tenant's file, which grows with the fleet). A
    tenant's file whose type changed in its own folder (``tenant``, after its ingest or checkout)
    is found by looking for it in dvc.yaml."""
    try:
        fresh = (ws.state_dir / _STAMP).read_text(encoding="utf-8") == _fingerprint(ws, settings)
    except OSError:
        fresh = False
    if fresh and tenant is not None:
        current = versioning.data_file(ws, tenant)
        text = (ws.root / PIPELINE_FILE).read_text(encoding="utf-8")
        fresh = current is None or f"- {current.relative_to(ws.root).as_posix()}\n" in text
    return False if fresh else sync(ws, settings)


_STAMP = "pipeline-sync.stamp"


def _fingerprint(ws: Workspace, settings: Settings) -> str:
    parts = [settings.meta_train.tenants, settings.meta_train.val_tenants]
    for path in (ws.root / PIPELINE_FILE, ws.data_dir, TEMPLATE):
        try:
            st = path.stat()
            parts.append(f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append("-")
    return "|".join(parts)


def _write_stamp(ws: Workspace, settings: Settings) -> None:
    try:
        ws.state_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(ws.state_dir / _STAMP, _fingerprint(ws, settings))
    except OSError:
        pass  # the next command renders again


def record(ws: Workspace, stage: str, payload: dict, lock: bool = True) -> str | None:
    """Write ``stage``'s output record; outside ``dvc repro``, also record the stage in dvc.lock
    (``dvc commit``) and commit the pipeline files to git, so a run by hand and a run by DVC
    leave the same trace. ``lock=False`` when the run did not follow params.yaml (e.g. a
    command-line override): dvc.lock then keeps saying the stage must be reproduced.

    Returns None, or why dvc.lock could not be updated: the stage's work (registered models)
    is done by then and stays done, so that is a note for the user, not a failure.
    """
    out = ws.root / OUTS[stage]
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(out, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    if under_dvc() or not lock:
        return None
    files = [PIPELINE_FILE, "dvc.lock", "params.yaml", OUTS[stage]]
    try:
        with versioning.locked(ws):
            dvc_cli(ws, "commit", "--force", stage)
        git(ws, "add", "--", *files)
        if git(ws, "diff", "--cached", "--quiet", "--", *files, check=False, rc=True):
            git(ws, "commit", "-q", "-m", f"pipeline: {stage} recorded", "--", *files)
    except VersioningError as exc:  # e.g. another command holds the repo, or no base yet for adapt
        return f"dvc.lock not updated for stage {stage} ({exc}); `dvc status` shows it as changed"
    return None


def dvc_cli(ws: Workspace, *args: str) -> str:
    """Run the ``dvc`` command in the workspace (for commands whose Python API resolves stage
    names and params against the process's working directory); its output, or VersioningError."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=ws.root, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no output"])[0].removeprefix("ERROR: ")
        raise VersioningError(f"dvc {args[0]} failed: {detail}")
    return done.stdout


def _load_existing(ws: Workspace) -> dict:
    path = ws.root / PIPELINE_FILE
    if not path.is_file():
        return {}
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid YAML ({str(exc).splitlines()[0]}): fix it, or delete it "
                        "and Tailor writes it again") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("stages", {}), dict):
        raise UserError(f"{path} is not a DVC pipeline (no mapping of stages): fix it, or delete it")
    return doc


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
