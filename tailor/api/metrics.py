"""Prometheus metrics of the prediction server, in a registry of its own (one per app)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("tailor_api_requests", "prediction requests per tenant and outcome",
                                ["tenant", "outcome"], registry=r)
        self.http = Counter("tailor_api_http_requests", "HTTP requests per route and status",
                            ["route", "status"], registry=r)
        self.latency = Histogram("tailor_api_request_seconds", "HTTP request latency per route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.tenant_latency = Histogram("tailor_api_tenant_seconds", "time to answer one tenant's texts",
                                        ["tenant"], buckets=LATENCY_BUCKETS, registry=r)
        self.texts = Counter("tailor_api_texts", "texts classified per tenant", ["tenant"], registry=r)
        self.cache = Counter("tailor_api_cache", "champion cache lookups (hit, miss)", ["result"], registry=r)
        self.refusals = Counter("tailor_api_refusals", "champions refused by the isolation or drift checks",
                                ["tenant"], registry=r)
        self.swaps = Counter("tailor_api_swaps", "champions replaced after a registry change", ["tenant"],
                             registry=r)
        self.evictions = Counter("tailor_api_evictions", "champions dropped by the LRU bound", registry=r)
        self.resident = Gauge("tailor_api_resident_tenants", "champions loaded now", registry=r)
        self.batch = Histogram("tailor_api_batch_texts", "texts per frozen-encoder pass",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r)
        self.poll = Histogram("tailor_api_poll_seconds", "time to read the registry's champions",
                              buckets=LATENCY_BUCKETS, registry=r)
