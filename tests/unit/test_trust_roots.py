"""Issue 31, findings 1, 2 and 10 (trust root), and issue 30's incremental verify: what a writer of
the tracking store (or of the workspace's trust root) can still try, and what stops it.

1. An old intent replayed by editing unsigned index tags: recovery reads the signed records only.
2. A tenant's last records deleted, then another tenant's transition: the anchor and the tenant's
   mark only move forward, serving checks them, a gap in sequence numbers is named.
10. The trust root (pinned key, key path) changes only by a signed `rotate-key` record, which git
   history and the anchor pin; any other change is named.
"""
import base64
import json
import subprocess

import pytest

from registry.review import approval
from registry.storage import store
from registry.trail import audit
from registry.trail.verify import verify_all
from tests import governance as g
from workspace import signing
from workspace.errors import UserError


@pytest.fixture
def gov(tmp_path):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)
    return {"ws": ws, "settings": settings.replace("gates", rollback_alone="alice"), "base": base,
            "base_dir": base_dir}


def reg(gov, tenant, **kw):
    return g.register(gov["ws"], gov["base"], gov["base_dir"], tenant, **kw)


def approve(gov, tenant, version, who="alice"):
    return approval.approve(gov["ws"], gov["settings"], tenant, version, who, "ok")


def champion(tenant):
    mv = store.alias_version(f"tailor-tenant-{tenant}", "champion")
    return None if mv is None else str(mv.version)


def served(tenant):
    from registry.artifacts import serving

    return str(serving.champion_version(tenant).version)


def _full(ws) -> dict:
    """``verify_all(ws, full=True)`` (where there is no ``full``, as before issue 30: every verify was full)."""
    import inspect

    return verify_all(ws, full=True) if "full" in inspect.signature(verify_all).parameters else verify_all(ws)


def _exp():
    return store.client().get_experiment_by_name(audit.EXPERIMENT).experiment_id


def _move_head_tag(count, digest):
    store.client().set_experiment_tag(_exp(), "head", json.dumps({"count": count, "hash": digest}))


# --- finding 1 ------------------------------------------------------------------------------------

def test_an_old_intent_replayed_by_its_tags_is_not_applied_again(gov):
    """The attack: reopen the approval of v2 (rolled back since) by its intent run's ``open`` tag,
    and hide its commit by editing the commit run's ``intent`` tag. Before, the next transition (or
    serving) re-applied that approval and signed a new commit: v2 served again, verify intact."""
    v1 = reg(gov, "replay", seed=1)
    approve(gov, "replay", v1)
    v2 = reg(gov, "replay", seed=2)
    approve(gov, "replay", v2)
    approval.rollback(gov["ws"], gov["settings"], "replay", "alice", "complaints")
    assert champion("replay") == v1
    recs = audit.records(gov["ws"], "replay")
    intent = next(r for r in recs if r.get("phase") == "intent" and r["action"] == "approve" and r["to"] == v2)
    commit = next(r for r in recs if r.get("phase") == "commit" and r.get("intent") == intent["seq"])
    c = store.client()
    c.set_tag(intent["_run_id"], "open", "yes")
    c.set_tag(commit["_run_id"], "intent", "000000999")
    assert served("replay") == v1  # serving finishes open intents first: none is open
    v3 = reg(gov, "replay", seed=3)  # the next transition recovers first: nothing to recover
    assert champion("replay") == v1 and v3
    assert [r["seq"] for r in recs] == [r["seq"] for r in audit.records(gov["ws"], "replay")][:len(recs)]
    assert not [r for r in audit.records(gov["ws"], "replay") if r["seq"] > commit["seq"]
                and r.get("intent") == intent["seq"]], "the old approval was committed a second time"
    assert _full(gov["ws"])["ok"]  # the tags are an index, not part of the log


def test_open_intents_are_what_the_signed_head_says(gov):
    """A killed approval leaves an intent open in the signed head; its commit closes it, whatever
    the tags say afterwards."""
    from registry.trail import transitions

    v1 = reg(gov, "opened", seed=1)
    plan = approval.plan_approve(store.model_version("tailor-tenant-opened", v1, "version"), None,
                                 gov["settings"], "alice", "ok", "", [])
    intent = audit.append(gov["ws"], actor="alice", action="approve", tenant="opened", frm=None, to=v1,
                          reason="ok", phase="intent", details={"plan": plan.to_json()})
    assert [r["seq"] for r in audit.open_intents("opened")] == [intent["seq"]]
    assert audit.records(gov["ws"], "opened")[-1]["open"] == {"opened": [intent["seq"]]}
    store.client().set_tag(intent["_run_id"], "open", "no")  # a tag cannot close it either
    assert [r["seq"] for r in audit.open_intents("opened")] == [intent["seq"]]
    transitions.repair(gov["ws"], ["opened"])
    assert audit.open_intents("opened") == [] and champion("opened") == v1


# --- finding 2 ------------------------------------------------------------------------------------

def _delete_last_records_of(ws, tenant, n):
    """What a store writer does: soft-delete the tenant's last ``n`` audit runs, move the head tag
    back over them, and undo what they did to the registry (the champion alias)."""
    recs = audit.records(ws, tenant)
    gone, kept = recs[-n:], recs[:-n]
    for r in gone:
        store.client().delete_run(r["_run_id"])
    everyone = [r for r in audit.all_records() if r]
    last = max(everyone, key=lambda r: r["seq"])
    _move_head_tag(last["seq"], last["hash"])
    return gone, kept


def test_deleted_last_records_are_refused_and_another_tenants_transition_cannot_hide_them(gov):
    v1 = reg(gov, "gone", seed=1)
    approve(gov, "gone", v1)
    v2 = reg(gov, "gone", seed=2)
    approve(gov, "gone", v2)
    reg(gov, "other", seed=1)
    assert served("gone") == v2
    # the approval of v2 was the last thing "gone" did, but "other" registered after it
    _delete_last_records_of(gov["ws"], "gone", 2)
    store.client().set_registered_model_alias("tailor-tenant-gone", "champion", v1)
    store.client().set_model_version_tag("tailor-tenant-gone", v2, "status", "pending")
    with pytest.raises(UserError, match="audit records after record .* are missing: this workspace saw record"):
        served("gone")
    reg(gov, "other", seed=2)  # another tenant's transition goes on (its own history is whole) ...
    with pytest.raises(UserError, match="are missing"):  # ... and hides nothing
        served("gone")
    problems = _full(gov["ws"])["problems"]
    assert any("missing from the log (sequence numbers jump" in p for p in problems)


def test_records_deleted_from_the_end_stop_every_append_until_restored(gov):
    """The finding's exact steps: delete the last runs, move the head tag back; the next
    transition of *any* tenant used to re-anchor the shorter log, and verify then said intact."""
    v1 = reg(gov, "tail", seed=1)
    approve(gov, "tail", v1)
    v2 = reg(gov, "tail", seed=2)
    approve(gov, "tail", v2)
    gone, _ = _delete_last_records_of(gov["ws"], "tail", 2)
    store.client().set_registered_model_alias("tailor-tenant-tail", "champion", v1)
    with pytest.raises(UserError, match="are missing"):
        served("tail")
    with pytest.raises(UserError, match="no longer holds record .* as this workspace's anchor saw it"):
        reg(gov, "bystander")
    assert not _full(gov["ws"])["ok"]
    for r in gone:  # MLflow keeps soft-deleted runs: restoring them restores the log
        store.client().restore_run(r["_run_id"])
    _move_head_tag(gone[-1]["seq"], gone[-1]["hash"])
    store.client().set_registered_model_alias("tailor-tenant-tail", "champion", v2)
    assert served("tail") == v2 and reg(gov, "bystander")


def test_a_gap_is_named_by_its_sequence_numbers(gov):
    for tenant in ("a1", "a2", "a3"):
        reg(gov, tenant)
    middle = [r for r in audit.records(gov["ws"], "a2")]
    for r in middle:
        store.client().delete_run(r["_run_id"])
    problems = _full(gov["ws"])["problems"]
    first, last = middle[0]["seq"], middle[-1]["seq"]
    assert problems[0] == (f"records {first} to {last} are missing from the log (sequence numbers jump from "
                           f"{first - 1} to {last + 1}): deleted outside Tailor")


# --- issue 30: verify from a checkpoint -----------------------------------------------------------

def test_verify_reads_only_what_came_after_its_checkpoint(gov, monkeypatch):
    """Its work follows the records since the last clean verify, not the log's size or the fleet's."""
    def parsed_by_verify(**kw):
        from registry.trail import index

        count = {"n": 0}
        real = index.parse

        def counting(run):
            count["n"] += 1
            return real(run)

        monkeypatch.setattr(index, "parse", counting)
        result = verify_all(gov["ws"], **kw)
        monkeypatch.setattr(index, "parse", real)
        return result, count["n"]

    for i in range(3):
        reg(gov, f"small-{i}")
    first, _ = parsed_by_verify()
    assert first["ok"] and first["checked"]["full"]  # no checkpoint yet: everything
    reg(gov, "new-a")
    small, parsed_small = parsed_by_verify()
    for i in range(12):
        reg(gov, f"more-{i}")
    verify_all(gov["ws"])
    reg(gov, "new-b")
    large, parsed_large = parsed_by_verify()
    assert small["ok"] and large["ok"]
    assert small["checked"]["count"] == large["checked"]["count"] == 2  # one registration: intent + commit
    assert not small["checked"]["full"] and large["checked"]["checkpoint"] == large["records"] - 2
    assert large["checked"]["tenants"] == 1
    assert parsed_large <= parsed_small + 2, (parsed_small, parsed_large)  # not 15 tenants' worth more
    full, parsed_full = parsed_by_verify(full=True)
    assert full["ok"] and full["checked"]["full"] and parsed_full > 3 * parsed_large


# --- finding 10: the trust root -------------------------------------------------------------------

def _git(ws, *args):
    return subprocess.run(["git", "-C", str(ws.root), *args], capture_output=True, text=True, check=True).stdout


def _in_git(ws):
    _git(ws, "init", "-q")
    _git(ws, "-c", "user.name=t", "-c", "user.email=t@t", "add", "audit-signing.pub", "params.yaml")
    _git(ws, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")


def test_rotate_key_hands_over_in_a_signed_record_and_old_records_still_verify(gov):
    from registry.trail.rotation import rotate

    ws = gov["ws"]
    v1 = reg(gov, "rot", seed=1)
    approve(gov, "rot", v1)
    _in_git(ws)
    old_key = signing.key_path(ws).read_bytes()
    old_pub = (ws.root / "audit-signing.pub").read_text()
    done = rotate(ws, actor="alice", reason="laptop lost")
    assert done["old"] != done["new"] and (ws.root / "audit-signing.pub").read_text() != old_pub
    assert "audit: signing key" in _git(ws, "log", "-1", "--format=%s %an") and "alice" in _git(ws, "log", "-1",
                                                                                                    "--format=%an")
    v2 = reg(gov, "rot", seed=2)  # signed by the new key
    approve(gov, "rot", v2)
    result = _full(ws)
    assert result["ok"], result["problems"]
    assert served("rot") == v2
    ring = audit.keyring(ws)
    assert [s.fingerprint for s in ring.spans] == [done["old"], done["new"]]
    assert ring.spans[0].last == done["record"]
    # the retired key cannot sign a new record, even with its pin put back
    signing.key_path(ws).write_bytes(old_key)
    (ws.root / "audit-signing.pub").write_text(old_pub)
    with pytest.raises(UserError):
        reg(gov, "rot", seed=3)
    problems = _full(ws)["problems"]
    assert any("is not the key the workspace anchor pins" in p for p in problems)


def test_a_trust_root_replaced_outside_rotate_key_is_named(gov):
    """A workspace writer with a key of their own: a new key pair, every record re-signed with it,
    the anchor signed again, the pin committed. Only git history still holds the old pin."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ws = gov["ws"]
    reg(gov, "root", seed=1)
    _in_git(ws)
    mine = Ed25519PrivateKey.generate()
    raw = getattr(signing, "raw_public", getattr(signing, "_raw_public", None))(mine)
    for record in [r for r in audit.all_records() if r]:
        body = {k: v for k, v in record.items() if k not in ("_run_id", "sig")}
        body["sig"] = signing.sign(mine, audit._record_message(body["hash"]))
        store.client().set_tag(record["_run_id"], "record_0", json.dumps(body, sort_keys=True))
    from cryptography.hazmat.primitives import serialization

    pem = mine.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    signing.key_path(ws).write_bytes(pem)
    (ws.root / "audit-signing.pub").write_text(f"tailor-audit-ed25519 {base64.b64encode(raw).decode()}\n")
    head = audit.records(ws)[-1]
    from registry.trail import anchor

    anchor.write(ws, {"count": head["seq"], "hash": head["hash"]}, mine, store.tracking_uri(), signing.DEFAULT_KEY)
    problems = _full(ws)["problems"]
    assert any("audit-signing.pub differs from the one committed in git" in p for p in problems)
    _git(ws, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "new key")
    problems = _full(ws)["problems"]
    assert any("to a key no `tailor audit rotate-key` record hands over to" in p for p in problems), problems


def test_a_key_path_changed_outside_rotate_key_is_named_and_refused(gov, tmp_path):
    ws = gov["ws"]
    reg(gov, "path", seed=1)
    moved = tmp_path / "elsewhere.key"
    moved.write_bytes(signing.key_path(ws).read_bytes())
    settings = gov["settings"].replace("stores", signing_key=str(moved))
    store.configure(ws, settings)
    assert any("stores.signing_key is" in p and "changes only by `tailor audit rotate-key`" in p
               for p in _full(ws)["problems"])
    with pytest.raises(UserError, match="stores.signing_key is"):
        reg(gov, "path", seed=2)
    # the same move through rotate-key (key kept in a new place): recorded, pinned, accepted
    store.configure(ws, gov["settings"])
    from registry.trail import keys
    from registry.trail.rotation import rotate

    done = rotate(ws, actor="alice", reason="the key moves to the secret mount", key_path=str(tmp_path / "k2"))
    assert (tmp_path / "k2").is_file() and f'signing_key: "{tmp_path / "k2"}"' in ws.params_file.read_text()
    assert keys.short(done["new"]) and _full(ws)["ok"]
