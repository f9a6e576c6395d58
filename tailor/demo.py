"""`tailor demo`: build demo tenants from real data and walk the whole loop as a person would.

Every step calls the same functions as the CLI command printed before it (``$ tailor ...``), so
what the demo shows is what a user gets.
"""
from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path

from tailor import cli, commands
from tailor.output import table
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings
from workspace.pipeline import dvc_cli

REVIEWER = "alice"
TRAINER = "bob"


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _as(who: str) -> None:
    """The demo plays several people: each command acts as the identity TAILOR_USER names."""
    os.environ["TAILOR_USER"] = who


def _run(root: Path, *argv: str, who: str = REVIEWER) -> int:
    _as(who)
    shown = " ".join(a if " " not in a else f'"{a}"' for a in argv)
    print(f"$ TAILOR_USER={who} tailor -w {root.name} {shown}", flush=True)
    return cli.main(["--workspace", str(root), *argv])


def demo_settings(catalog) -> Settings:
    """The demo's params.yaml: the base is trained on the meta-training tenants (the product's own
    split: a seeded share held out as evidence, a fifth of the rest to stop early); a shorter budget
    than the default 10 minutes (4, caching the frozen features and the evidence included), so the
    whole demo stays within 10 minutes."""
    meta = [t.id for t in catalog.meta_train()]
    return Settings().replace("meta_train", tenants=",".join(meta), meta_steps=3000, val_every=50, val_tasks=16,
                              max_minutes=4.0)


PROTOCOL = {"recurring": "recurring, renamed", "eval": "new categories"}


def _comparison(outcomes: list[dict], roles: dict[str, str]) -> list[dict]:
    """One row per evaluation tenant (cross-validated accuracy of what it ships and of each method),
    then the mean of each protocol: tenants whose categories the base was trained on under other
    names, and tenants with categories it never saw."""
    rows = []
    for o in outcomes:
        if o["tenant"] in roles and o.get("metrics"):
            m = o["metrics"]
            names = m.get("logreg_names_accuracy", 0.0)
            rows.append({"tenant": o["tenant"], "protocol": PROTOCOL[roles[o["tenant"]]], "labels": m["n_labels"],
                         "n": m["n_query"], "tailor": m["query_accuracy"], "base": m["base_accuracy"],
                         "no_meta": m["no_meta_accuracy"], "names": names, "gain": m["query_accuracy"] - names,
                         "ships": (o.get("adaptation") or {}).get("head", "")})
    means = []
    for protocol in PROTOCOL.values():
        group = [r for r in rows if r["protocol"] == protocol]
        if group:
            mean = lambda k: sum(r[k] for r in group) / len(group)  # noqa: E731
            means.append({"tenant": f"mean ({len(group)} tenants)", "protocol": protocol, "labels": "",
                          "n": sum(r["n"] for r in group), "ships": "",
                          **{k: mean(k) for k in ("tailor", "base", "no_meta", "names", "gain")}})
    return rows + means


def _second_version(src: Path, dst: Path) -> Path:
    """A re-export of a tenant's data with the last fifth of each label's rows dropped."""
    with open(src, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_label: dict[str, list[dict]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    kept = [r for group in by_label.values() for r in group[: max(6, int(len(group) * 0.8))]]
    with open(dst, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in kept)
    return dst


def run_demo(root: Path, fresh: bool = False, debug: bool = False) -> None:
    from corpora.demo_tenants import build_demo_tenants
    from workspace.create import init_workspace

    start = time.perf_counter()
    root = root.resolve()
    if fresh and root.exists():
        shutil.rmtree(root)
    _step("1. Build demo tenants from real text: WordNet glosses, Home Assistant intents, fortunes, the Bible, FOLDOC")
    catalog = build_demo_tenants(root / "inbox")
    evaluation = {t.id: t.role for t in catalog.evaluation()}
    print(table([{"tenant": t.id, "role": t.role, "labels": len(t.labels), "rows": t.n_rows,
                  "source": "+".join(t.sources), "label names": ", ".join(t.labels[:3]) + ", ..."}
                 for t in catalog.tenants], ["tenant", "role", "labels", "rows", "source", "label names"]))

    _step(f"2. Create the workspace {root} (git + DVC, embedded MLflow and Prefect)")
    init_workspace(root, demo_settings(catalog))
    ctx = commands.Context(root, debug)

    _step("3. Ingest every tenant: Great Expectations validation, then a DVC version (Prefect flow)")
    for tenant in catalog.tenants:
        commands.ingest(ctx, tenant.id, tenant.path)
    bad_tenant = catalog.tenants[0].id
    print(f"$ tailor ingest {bad_tenant} {catalog.bad_file.name}   # a broken export")
    try:
        commands.ingest(ctx, bad_tenant, catalog.bad_file)
    except UserError as exc:
        print(f"error: {exc}")

    _step("4. Train the base on the meta-training tenants, judged on some of them held out (its evidence)")
    _as(TRAINER)
    print(f"$ TAILOR_USER={TRAINER} tailor meta-train --register-anyway   # the workspace's first base: registered "
          "even if no step beat its start, so the walk-through goes on")
    base = commands.meta_train(ctx, None, register_anyway=True)
    print("# bases are candidates too: adapt starts from a base only once someone other than who trained it approves it")
    _run(root, "review", "approve", "--base-version", str(base["version"]), "--reason", "checked what it was trained on",
         who=TRAINER)
    _run(root, "review", "approve", "--base-version", str(base["version"]), "--reason", "checked its evidence")

    _step("5. Adapt every tenant and register each delta as a pending candidate in MLflow")
    _as("service:scheduler")
    outcomes = commands.adapt(ctx, None, None, force=True)  # a rerun shows every tenant's metrics again
    print("$ dvc status   # both runs are recorded in dvc.lock: `dvc repro` would skip them")
    print(dvc_cli(Workspace.find(root), "status").strip())
    rows = _comparison(outcomes, evaluation)
    _step("6. New tenants: categories the base knows under other names, and categories it never saw")
    print(table(rows, ["tenant", "protocol", "labels", "n", "tailor", "base", "no_meta", "names", "gain", "ships"],
                ["tenant", "protocol", "labels", "n", "Tailor (ships)", "the base's adaptation", "no trained base",
                 "frozen + label names", "Tailor - frozen+names", "candidate carries"]))
    print("Accuracy cross-validated over each tenant's examples. A candidate carries the base's adaptation unless "
          "another method beats it there by adapt.choice_margin beyond its noise; a frozen head ships as a head "
          "alone. `make bench` measures the same on ten sources and three protocols "
          "(benchmarks/results/meta_learning.md).")

    _step("7. Review: approve candidates (gates: validation, isolation, champion, best baseline without meta-learning)")
    _run(root, "review", "list")
    registered = {o["tenant"]: o["version"] for o in outcomes if o.get("version")}
    approved = []
    for tenant in [t.id for t in catalog.tenants if t.id in registered][:6]:
        code = _run(root, "review", "approve", tenant, registered[tenant], "--reason", "held-out accuracy reviewed")
        if code == 0:
            approved.append(tenant)
        else:
            _run(root, "review", "reject", tenant, registered[tenant], "--reason", "fails an approval gate")

    if approved:
        tenant = approved[0]
        source = next(t.path for t in catalog.tenants if t.id == tenant)
        _step(f"8. New data for {tenant}, a second candidate, approval, then a rollback")
        v2 = _second_version(source, root / "inbox" / f"{tenant}-v2.csv")
        _run(root, "ingest", tenant, str(v2))
        _run(root, "adapt", tenant, who="bob")
        version = str(_latest_version(tenant))
        print("# four-eyes: bob asked for this candidate, so bob's own approval is refused")
        _run(root, "review", "approve", tenant, version, "--reason", "my own change looks fine", who="bob")
        _run(root, "review", "approve", tenant, version, "--reason", "new export looks fine",
             "--override-reason", "demo: ship the new data even if a gate disagrees")
        _run(root, "rollback", tenant, "--reason", "customer reports worse routing since the new export")
        _step(f"9. Lineage and audit for {tenant}")
        _run(root, "lineage", tenant)
        _run(root, "audit", "verify")
        _run(root, "lineage", "--all", "--html", str(root / "audit-report.html"))
        print(f"review page: `tailor -w {root.name} user add NAME`, then `tailor -w {root.name} review serve`")
    trained_on = set(base.get("train_tenants", [])) | set(base.get("val_tenants", []))
    _erase_one(root, next(t for t in catalog.meta_train() if t.id in trained_on and t.id not in approved))
    print(f"\ndemo finished in {time.perf_counter() - start:.0f}s; workspace: {root}")
    homes = [t.id for t in catalog.tenants if t.id in approved and "ha-intents" in t.sources]
    if homes:
        print(f'try: tailor -w {root} predict {homes[0]} "turn on the kitchen lights"')


def _erase_one(root: Path, tenant) -> None:
    """A tenant the base was trained on leaves and asks for its data to be erased: what would go, the
    erasure (the base is marked as containing erased data, the retraining planned), then a byte
    search of the whole workspace (files, and git's objects unpacked) for its texts."""
    _step(f"10. {tenant.id} leaves: erase its data everywhere, and show it is gone")
    others = set()
    for path in (root / "inbox").glob("*.csv"):
        if path.name != Path(tenant.path).name:
            with open(path, newline="", encoding="utf-8") as f:
                others |= {row["text"] for row in csv.DictReader(f)}
    with open(tenant.path, newline="", encoding="utf-8") as f:  # a text another tenant has too is its data as well
        texts = [row["text"] for row in csv.DictReader(f) if len(row["text"]) >= 20 and row["text"] not in others][:20]
    print(f"# {_found(root, texts)} of {len(texts)} of its texts (none of them in another tenant's data) are in the "
          "workspace now")
    _run(root, "tenant", "erase", tenant.id, "--reason", "customer left; erasure requested", "--dry-run")
    _run(root, "tenant", "erase", tenant.id, "--reason", "customer left; erasure requested")
    print(f"# after the erasure: {_found(root, texts)} of the same {len(texts)} texts are anywhere in the workspace")
    _run(root, "lineage", "--tenant-data", tenant.id)
    _run(root, "audit", "verify")


def _found(root: Path, texts: list[str]) -> int:
    """How many of ``texts`` occur in any file of the workspace or any git object (decompressed);
    the demo's ``inbox/`` (the exports it built, standing for the customer's own files) is not
    Tailor's and is left out."""
    import subprocess

    needles = {t.encode("utf-8") for t in texts}
    seen = set()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and "inbox" not in path.relative_to(root).parts[:1]:
            blob = path.read_bytes()
            seen |= {n for n in needles - seen if n in blob}
    objects = subprocess.run(["git", "-C", str(root), "cat-file", "--batch-all-objects", "--batch"],
                             capture_output=True).stdout
    return len(seen | {n for n in needles if n in objects})


def _latest_version(tenant: str) -> int:
    from registry.review.approval import list_reviews

    versions = [int(r["version"]) for r in list_reviews(None) if r["tenant"] == tenant]
    return max(versions)
