"""Retention: data.keep_versions prunes a tenant's older data versions from the DVC cache and remote,
recorded in the audit log first, and never the current version nor one a champion was trained on."""
import json

import pytest
import yaml

from flows.retention import prune_flow, prune_plan
from registry.review import approval
from registry.trail import audit
from registry.trail.verify import verify_all
from tests import governance as g
from workspace import erasure as data
from workspace import versioning
from workspace.errors import UserError
from workspace.settings import StoreSettings, load_settings


def _register_on(ws, base, base_dir, tenant, md5, seed):
    from registry.artifacts import candidates

    delta = g.make_delta(ws, base, tenant, seed=seed)
    manifest = json.loads((delta / "manifest.json").read_text())
    (delta / "manifest.json").write_text(json.dumps({**manifest, "data_version": md5}))
    return candidates.register_candidate(ws, tenant, delta, base_dir, base=base, validation=g.PASSED,
                                         requested_by="bob")


def test_prune_keeps_the_current_and_the_champions_data_and_removes_the_rest(tmp_path):
    ws, _ = g.fresh_workspace(tmp_path / "ws")
    versioning.init_repo(ws, StoreSettings())
    md5 = []
    for i in range(4):
        (tmp_path / f"v{i}.csv").write_text("text,label\n" + "".join(f"row {i} {k},L{k % 2}\n" for k in range(8)))
        md5.append(versioning.track(ws, "keep", tmp_path / f"v{i}.csv").md5)
    base, base_dir = g.make_base(ws)
    approval.approve(ws, load_settings(ws.params_file), "keep", _register_on(ws, base, base_dir, "keep", md5[0], 1),
                     "alice", "champion trained on the first version")
    with pytest.raises(UserError, match="retention is off"):
        prune_plan(ws, load_settings(ws.params_file))
    raw = yaml.safe_load(ws.params_file.read_text()) or {}
    ws.params_file.write_text(yaml.safe_dump({**raw, "data": {"keep_versions": 2}}))
    plan = prune_plan(ws, load_settings(ws.params_file))["keep"]
    assert plan["prune"] == [md5[1]], "v3 current, v2 among the newest 2, v0 a champion's: only v1 goes"
    assert plan["keep"][md5[0]].startswith("champion v1") and plan["keep"][md5[3]] == "current"

    done = prune_flow.fn(str(ws.root), "ops")
    assert done["keep"]["pruned"] == [md5[1]] and done["keep"]["cache"] == [md5[1]] == done["keep"]["remote"]
    left = data.where(ws, md5)
    assert md5[1] not in left["cache"] + left["remote"] and set(left["remote"]) == {md5[0], md5[2], md5[3]}
    (record,) = [r for r in audit.effective(audit.records(ws, "keep")) if r["action"] == "prune-data"]
    assert record["actor"] == "ops" and record["details"]["pruned"] == [md5[1]]
    verified = verify_all(ws)
    assert verified["ok"], verified["problems"]
    with pytest.raises(UserError, match="in neither the DVC cache nor the remote"):
        with versioning.version_file(ws, "keep", md5[1]):
            pass
    assert prune_flow.fn(str(ws.root), "ops") == {}, "nothing left to prune: nothing recorded again"
