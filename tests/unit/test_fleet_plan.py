"""Which tenants a fleet run adapts: only those whose data, base or adaptation settings changed
since their newest version (plain functions, no stores)."""
from flows import fleet
from workspace.settings import Settings

NEWEST = {"acme": {"version": "3", "status": "approved", "data_version": "md5:a", "base_digest": "sha256:b",
                   "settings_digest": "sha256:s"}}


def test_an_unchanged_tenant_is_skipped_and_a_new_one_adapted():
    plan = fleet.plan(["acme", "newco"], {"acme": "md5:a", "newco": "md5:n"}, NEWEST, "sha256:b", "sha256:s")
    assert plan.todo == ["newco"] and plan.why == {"newco": "first candidate"}
    assert plan.skipped[0]["tenant"] == "acme" and "unchanged since v3 (approved)" in plan.skipped[0]["reason"]


def test_data_base_or_settings_changing_readapts():
    for data, base, digest, why in (("md5:x", "sha256:b", "sha256:s", "data changed"),
                                    ("md5:a", "sha256:x", "sha256:s", "base changed"),
                                    ("md5:a", "sha256:b", "sha256:x", "settings changed")):
        plan = fleet.plan(["acme"], {"acme": data}, NEWEST, base, digest)
        assert plan.todo == ["acme"] and plan.why["acme"] == why
    assert fleet.plan(["acme"], {"acme": "md5:a"}, NEWEST, "sha256:b", "sha256:s", force=True).todo == ["acme"]


def test_the_settings_digest_follows_adaptation_settings_only():
    s = Settings()
    assert fleet.settings_digest(s) == fleet.settings_digest(s.replace("gates", champion_tolerance=0.5))
    assert fleet.settings_digest(s) != fleet.settings_digest(s.replace("adapt", inner_steps=s.adapt.inner_steps + 1))
    assert fleet.settings_digest(s) != fleet.settings_digest(s.replace("limits", max_adapt_rows=100))


def test_the_summary_says_what_was_registered_failed_and_skipped_and_why():
    outcomes = [{"tenant": "acme", "status": "adapted", "version": "2", "why": "data changed",
                 "metrics": {"query_accuracy": 0.9, "baseline_accuracy": 0.8, "n_query": 10}},
                {"tenant": "bad|co", "status": "failed", "reason": "no data"},
                {"tenant": "zed", "status": "skipped", "reason": "unchanged since v1 (pending)"}]
    text = fleet.summary_markdown(outcomes, {"name": "tailor-base", "version": "4"}, 1.5)
    assert "**1** registered" in text and "**1** failed" in text and "**1** skipped" in text
    assert "v2: accuracy 0.900 [0.60,0.98] n=10 vs baseline 0.800 (data changed)" in text  # with n and interval
    assert "| bad\\|co | failed | no data |" in text and "unchanged since v1 (pending)" in text


def test_registration_retries_a_transient_failure_but_not_a_users_mistake(monkeypatch):
    """One tenant's registration is retried inside its chunk's task (a task run per tenant cost
    more than the registration): a transient error then success registers once; a UserError is
    not retried."""
    from flows import adaptation
    from workspace.errors import UserError

    calls = []

    def flaky(ws, tenant, *args, **kwargs):
        calls.append(tenant)
        if tenant == "flaky" and len(calls) == 1:
            raise OSError("database is locked")
        if tenant == "wrong":
            raise UserError("not this tenant's delta")
        return "7"

    monkeypatch.setattr(adaptation.candidates, "register_candidate", flaky)
    monkeypatch.setattr(adaptation, "REGISTER_DELAY", 0.0)
    monkeypatch.setattr(adaptation, "flow_run_id", lambda: None)
    base = {"name": "tailor-base", "version": "1", "digest": "sha256:b", "run_id": "r"}
    outcome = {"tenant": "flaky", "delta_dir": "d", "validation": {}}
    assert adaptation._register_one(None, outcome, "b", base, "bob") == "7" and calls == ["flaky", "flaky"]
    calls.clear()
    failed = adaptation._contained("wrong", adaptation._register_one, None, {**outcome, "tenant": "wrong"}, "b",
                                   base, "bob")
    assert failed == {"tenant": "wrong", "status": "failed", "reason": "not this tenant's delta"} and calls == ["wrong"]
