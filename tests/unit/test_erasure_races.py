"""The registry's part of an erasure holds under concurrency and crashes: approve, reject and erase
of one tenant racing in separate processes leave one consistent state (every version erased, no
alias, the audit log matching the registry), and a process killed at any step of the erasure's
transition is completed by the next one."""
import pytest

from registry.review import approval, erasure
from registry.storage import store
from registry.trail import audit, transitions
from registry.trail.verify import verify_all
from tests import governance as g
from tests.unit.test_transitions import spawn
from workspace.errors import UserError


@pytest.fixture
def gov(tmp_path):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws, data_versions={"leave": "md5:aaa", "stay": "md5:bbb"})
    return {"ws": ws, "settings": settings, "base": base, "base_dir": base_dir}


def erased_consistently(tenant: str) -> None:
    name = f"tailor-tenant-{tenant}"
    assert {mv.tags["status"] for mv in store.versions(name)} == {"erased"}
    assert store.client().get_registered_model(name).aliases == {}
    assert erasure.state(tenant)["state"] == "started"


@pytest.mark.parametrize("rival", ["approve", pytest.param("reject", marks=pytest.mark.slow)])
def test_a_decision_racing_an_erasure_leaves_one_consistent_state(gov, tmp_path, rival):
    v1 = g.register(gov["ws"], gov["base"], gov["base_dir"], "leave", seed=1)
    approval.approve(gov["ws"], gov["settings"], "leave", v1, "alice", "first")
    v2 = g.register(gov["ws"], gov["base"], gov["base_dir"], "leave", seed=2)
    go = tmp_path / "go"
    procs = [spawn(gov, rival, "leave", v2, "alice", go), spawn(gov, "erase", "leave", "-", "bob", go)]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert procs[1].returncode == 0, outs[1]
    assert procs[0].returncode in (0, 2), outs[0]   # before the erasure it succeeded; after, it was refused
    erased_consistently("leave")
    assert erasure.bases_with("leave")[0].tags["erased_data"] == "leave"
    assert verify_all(gov["ws"])["ok"]
    with pytest.raises(UserError, match="is erased"):
        approval.approve(gov["ws"], gov["settings"], "leave", v2, "carol", "after")


# two points in `make test`, the rest in `make test-slow` (a killed process each: seconds apiece)
FAST = ("after-intent", "after-aliases")


@pytest.mark.parametrize("point", [p if p in FAST else pytest.param(p, marks=pytest.mark.slow)
                                   for p in transitions.POINTS if p != "after-create"])
def test_an_erasure_killed_at_any_step_is_completed_by_the_next_run(gov, point):
    v1 = g.register(gov["ws"], gov["base"], gov["base_dir"], "leave", seed=1)
    approval.approve(gov["ws"], gov["settings"], "leave", v1, "alice", "first")
    proc = spawn(gov, "erase", "leave", "-", "bob", fault=f"erase:{point}")
    proc.communicate(timeout=120)
    assert proc.returncode == -9
    champion = store.alias_version("tailor-tenant-leave", "champion")
    assert champion is None or str(champion.version) == v1   # the old state or the new one
    again = erasure.begin(gov["ws"], "leave", "bob", "again", [])
    assert again["resumed"], "the next run finishes the killed one's transition, then resumes"
    erasure.mark_bases(gov["ws"], "leave", "bob", "again")
    erased_consistently("leave")
    erases = [r for r in audit.effective(audit.records(gov["ws"], "leave")) if r["action"] == "erase"]
    assert len(erases) == 1, "one erase record, not two"
    assert verify_all(gov["ws"])["ok"]


def test_the_audit_record_of_an_erasure_names_hashes_and_ids_never_texts(gov):
    v1 = g.register(gov["ws"], gov["base"], gov["base_dir"], "leave", seed=1)
    erasure.begin(gov["ws"], "leave", "bob", "customer left", ["md5:aaa"])
    (record,) = [r for r in audit.effective(audit.records(gov["ws"], "leave")) if r["action"] == "erase"]
    assert record["actor"] == "bob" and record["details"]["data_versions"] == ["md5:aaa"]
    assert record["details"]["versions"] == [v1]
    tags = store.client().get_model_version("tailor-tenant-leave", v1).tags
    assert tags["status"] == "erased" and tags["labels"] == "[]" and tags["erased_by"] == "bob"


def test_a_base_registered_while_its_tenant_is_erased_is_marked_as_it_registers(gov):
    """Meta-training that read a tenant's data before its erasure began registers after the erasure
    marked the bases: the registration marks itself (both hold the base's lock)."""
    erasure.begin(gov["ws"], "gone", "bob", "customer left", ["md5:ggg"])
    late, _ = g.make_base(gov["ws"], "late", approve=False, data_versions={"gone": "md5:ggg", "stay": "md5:bbb"})
    assert store.client().get_model_version("tailor-base", late.version).tags["erased_data"] == "gone"
    other, _ = g.make_base(gov["ws"], "other", approve=False, data_versions={"stay": "md5:bbb"})
    assert "erased_data" not in store.client().get_model_version("tailor-base", other.version).tags
    assert verify_all(gov["ws"])["ok"]
