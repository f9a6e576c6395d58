"""What one `tailor serve-api` process costs for many tenants (issue 21): resident memory with every
champion loaded, warm latency of one text, throughput with requests spread over 100 tenants vs one
tenant vs one-tenant-at-a-time (each request through its own ``TenantPredictor``, no grouping),
and how long an approval takes to reach serving.

    python -m benchmarks.serve_api --encoder tiny --tenants 1000      # the tiny test encoder
    python -m benchmarks.serve_api --tenants 1000                     # all-MiniLM-L6-v2

The workspace is built as the tests build one (three tenants ingested, a few meta-steps, one
adapted and approved); the other tenants are copies of that delta re-bound to their own tenant
id (new manifest, new digest), each registered and approved through the real transitions, so
every load runs the full isolation and drift checks. Throughput and latency are measured on the
serving engine in this process (the HTTP layer adds a roughly constant ~1-2 ms per request).
Writes ``serve_api.md`` and ``serve_api.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
TEXTS = ["dog cat horse", "bread rice soup with cheese", "hammer saw drill", "guitar piano drum and a song",
         "rain snow storm", "court judge jury appeal"]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(root: Path, encoder: str, n: int, say) -> tuple:
    from registry.artifacts import candidates, serving
    from registry.artifacts.base_model import get_base
    from registry.review import approval
    from registry.storage import store
    from registry.trail import transitions
    from lightning_modules.delta import load_delta, read_manifest, save_delta
    from tailor import cli
    from tests.conftest import synthetic_tenant, tiny_settings
    from tests.e2e.test_loop import TENANTS, write_csv
    from tests.governance import PASSED
    from workspace import versioning
    from workspace.create import init_workspace
    from workspace.settings import Settings, load_settings

    settings = tiny_settings(tenants="acme,globex", val_tenants="initech")
    if encoder != "tiny":   # the product's CPU layout: every layer frozen, the token adapter adapts
        defaults = Settings().encoder
        settings = settings.replace("encoder", name=encoder, adapted_layers=defaults.adapted_layers,
                                    lora_rank=defaults.lora_rank, token_rank=defaults.token_rank)
    ws = init_workspace(root, settings)
    for i, tenant in enumerate(["acme", "globex", "initech"]):
        versioning.track(ws, tenant, write_csv(root.parent / f"{tenant}.csv", *synthetic_tenant(TENANTS[tenant], 10, seed=i)))
    assert cli.main(["-w", str(root), "meta-train", "--register-anyway"]) == 0
    os.environ["TAILOR_USER"] = "base-reviewer"   # bases are reviewed: a second person approves it
    assert cli.main(["-w", str(root), "review", "approve", "--base-version", "1", "--reason", "benchmark"]) == 0
    os.environ["TAILOR_USER"] = "ci-bot"
    assert cli.main(["-w", str(root), "adapt", "acme"]) == 0
    settings = load_settings(ws.params_file)
    store.configure(ws, settings)
    approval.approve(ws, settings, "acme", "1", "alice", "bench", override_reason="bench")
    mv = serving.champion_version("acme")
    folder = serving.fetch_version(mv)
    tensors, manifest = load_delta(folder / "delta")
    base = get_base(mv.tags["base_version"])
    keep = {k: v for k, v in manifest.items() if k not in ("format", "tensors", "sha256", "created_at")}
    start = time.perf_counter()
    tenants = ["acme"]
    for i in range(n - 1):
        tenant = f"t{i:05d}"
        dst = root.parent / "fill" / tenant / "artifacts"
        save_delta(dst / "delta", tensors, {**keep, "tenant": tenant})
        (dst / "base").mkdir(parents=True)
        for f in (folder / "base").iterdir():
            (dst / "base" / f.name).write_bytes(f.read_bytes())
        name = f"tailor-tenant-{tenant}"
        store.ensure_registered_model(name)
        tags = candidates._version_tags(tenant, read_manifest(dst / "delta"), base, PASSED, (True, []),
                                        "service:scheduler", None)
        transitions.execute(ws, tenant, lambda: candidates.plan_register(
            name, tenant, dst.parent.as_uri(), mv.run_id, None, tags, "service:scheduler", None, base))
        approval.approve(ws, settings, tenant, "1", "alice", "bench", override_reason="bench")
        tenants.append(tenant)
        if (i + 2) % 100 == 0:
            say(f"  {i + 2}/{n} tenants registered and approved ({(i + 1) / (time.perf_counter() - start):.1f}/s)")
    return ws, settings, tenants


def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def throughput(engine, plan: list[str], clients: int = 16) -> float:
    """Requests of one text each, for ``plan``'s tenants, sent by ``clients`` threads; texts/s."""
    jobs = list(enumerate(plan))
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                if not jobs:
                    return
                i, tenant = jobs.pop()
            engine.predict(tenant, [TEXTS[i % len(TEXTS)]])

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(plan) / (time.perf_counter() - start)


def loop(engine, plan: list[str]) -> float:
    """The same requests answered one at a time, each by its tenant's own predictor (no grouping)."""
    start = time.perf_counter()
    for i, tenant in enumerate(plan):
        engine.champion(tenant).predictor.predict_proba([TEXTS[i % len(TEXTS)]])
    return len(plan) / (time.perf_counter() - start)


def run(encoder: str, n: int, requests: int, out: Path, say=print) -> dict:
    import torch

    from registry.review import approval
    from registry.storage import store
    from tailor.api.engine import Engine

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        t0 = time.perf_counter()
        ws, settings, tenants = build(root, encoder, n, say)
        built = time.perf_counter() - t0
        settings = settings.replace("serving", poll_seconds=1.0, verify_seconds=0.0)
        store.configure(ws, settings, read_only=True)
        rss_start = _rss_mb()
        engine = Engine(settings).start()
        rss_encoder = _rss_mb()
        t0 = time.perf_counter()
        for tenant in tenants:
            engine.champion(tenant)
        load_s = time.perf_counter() - t0
        rss_all = _rss_mb()
        lat = []
        for i in range(200):
            tenant = tenants[i % len(tenants)]
            s = time.perf_counter()
            engine.predict(tenant, [TEXTS[i % len(TEXTS)]])
            lat.append((time.perf_counter() - s) * 1000)
        spread = [tenants[i % min(100, len(tenants))] for i in range(requests)]
        single = [tenants[0]] * requests
        rates = {"single_tenant": throughput(engine, single), "spread_100": throughput(engine, spread),
                 "one_at_a_time_loop": loop(engine, spread)}
        # approval visibility: a new version of acme, approved while the poller runs
        store.configure(ws, settings)
        from registry.artifacts import candidates, serving
        from registry.trail import transitions
        mv = store.client().get_model_version("tailor-tenant-acme", "1")
        name = "tailor-tenant-acme"
        # register the same artifact again under a new source folder -> version 2 of acme
        src = serving.fetch_version(mv)
        dst = root.parent / "acme-v2" / "artifacts"
        import shutil

        shutil.copytree(src, dst)
        tags = {**mv.tags, "status": candidates.PENDING}
        from registry.artifacts.base_model import get_base

        base = get_base(mv.tags["base_version"])
        transitions.execute(ws, "acme", lambda: candidates.plan_register(
            name, "acme", dst.parent.as_uri(), mv.run_id, None, tags, "service:scheduler", "1", base))
        approval.approve(ws, settings, "acme", "2", "alice", "bench", override_reason="bench")
        t0 = time.perf_counter()
        while engine.predict("acme", ["dog"])["version"] != "2":
            time.sleep(0.01)
        visible = time.perf_counter() - t0
        engine.stop()
    result = {"encoder": encoder, "tenants": n, "requests": requests, "setup_s": round(built, 1),
              "threads": torch.get_num_threads(), "machine": f"{platform.machine()}, {os.cpu_count()} CPU",
              "rss_mb": {"before_engine": round(rss_start), "encoder_loaded": round(rss_encoder),
                         "all_tenants_loaded": round(rss_all)},
              "load_all_s": round(load_s, 2),
              "latency_ms": {"p50": round(statistics.median(lat), 2), "p95": round(_pct(lat, 0.95), 2)},
              "texts_per_s": {k: round(v, 1) for k, v in rates.items()},
              "approval_visible_s": round(visible, 2)}
    result["targets"] = {
        "rss_under_1.5GB": result["rss_mb"]["all_tenants_loaded"] < 1536,
        "p50_under_30ms": result["latency_ms"]["p50"] < 30, "p95_under_100ms": result["latency_ms"]["p95"] < 100,
        "spread_ge_70pct_single": rates["spread_100"] >= 0.7 * rates["single_tenant"],
        "spread_ge_3x_loop": rates["spread_100"] >= 3 * rates["one_at_a_time_loop"],
        "approval_within_5s": visible < 5}
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve_api.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "serve_api.md").write_text(render(result))
    return result


def render(r: dict) -> str:
    t = r["targets"]
    mark = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    return "\n".join([
        "# One process serves every tenant (`tailor serve-api`)", "",
        f"Command: `python -m benchmarks.serve_api --encoder {r['encoder']} --tenants {r['tenants']}` "
        f"({r['machine']}, torch threads {r['threads']}). Encoder: **{r['encoder']}**"
        + (" (the tests' tiny encoder: memory and latency of all-MiniLM-L6-v2 are NOT measured here)"
           if r["encoder"] == "tiny" else "") + ".", "",
        "| measure | value | target | status |", "|---|---|---|---|",
        f"| resident memory, {r['tenants']} champions loaded | {r['rss_mb']['all_tenants_loaded']} MB "
        f"(encoder alone {r['rss_mb']['encoder_loaded']} MB) | < 1,536 MB | {mark(t['rss_under_1.5GB'])} |",
        f"| warm latency, one text, p50 | {r['latency_ms']['p50']} ms | < 30 ms | {mark(t['p50_under_30ms'])} |",
        f"| warm latency, one text, p95 | {r['latency_ms']['p95']} ms | < 100 ms | {mark(t['p95_under_100ms'])} |",
        f"| throughput, single tenant | {r['texts_per_s']['single_tenant']} texts/s | | |",
        f"| throughput, spread over 100 tenants | {r['texts_per_s']['spread_100']} texts/s | >= 70% of single "
        f"| {mark(t['spread_ge_70pct_single'])} |",
        f"| one-tenant-at-a-time loop, same requests | {r['texts_per_s']['one_at_a_time_loop']} texts/s | spread "
        f">= 3x loop | {mark(t['spread_ge_3x_loop'])} |",
        f"| approval visible to the next request | {r['approval_visible_s']} s | < 5 s | "
        f"{mark(t['approval_within_5s'])} |", "",
        f"Loading all {r['tenants']} champions (every isolation and drift check): {r['load_all_s']} s. "
        f"{r['requests']} requests of one text each per throughput row, 16 client threads; the loop runs "
        "each request alone through its tenant's own predictor.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2", choices=["all-MiniLM-L6-v2", "tiny"])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    print(json.dumps(run(args.encoder, args.tenants, args.requests, args.out), indent=2))


if __name__ == "__main__":
    main()
