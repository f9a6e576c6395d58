"""The serving engine: champions in a bounded LRU cache, a poller that swaps them when the
registry changes, and a batcher that groups requests of different tenants into one frozen pass.

Consistency: a request takes each tenant's ``Champion`` (an immutable object: version, tensors,
labels) once, before its texts are queued, and every text of that tenant is answered by it; a
swap replaces the cache entry, never the object, so no request mixes two versions.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass

from registry.artifacts import champions
from tailor.api.metrics import Metrics
from workspace.errors import UserError
from workspace.settings import Settings

log = logging.getLogger("tailor.api")


class Refused(Exception):
    """A tenant that may not be served now; ``status``: 404 (no champion) or 409 (checks failed)."""

    def __init__(self, reason: str, status: int = 409):
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Entry:
    fingerprint: str
    champion: champions.Champion | None = None
    refused: str | None = None


@dataclass
class _Job:
    champion: champions.Champion
    texts: list[str]
    future: Future


class Engine:
    def __init__(self, settings: Settings, metrics: Metrics | None = None, on_poll=None):
        self.settings, self.conf = settings, settings.serving
        self.metrics = metrics or Metrics()
        self.on_poll = on_poll  # called after each poll (the key file is re-read there)
        self._cache: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()           # the cache
        self._registry = threading.RLock()      # registry reads and loads, one at a time
        self._fps: dict[str, str] = {}
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_poll: float | None = None
        self.poll_error: str | None = None
        self._next_verify = 0.0

    # life cycle -------------------------------------------------------------------------------
    def start(self) -> "Engine":
        champions.warm(self.settings.encoder)
        self.poll_once()
        self._next_verify = time.monotonic() + self.conf.verify_seconds
        for target, name in ((self._poll_loop, "tailor-api-poll"), (self._batch_loop, "tailor-api-batch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Answer what is queued, then stop polling and batching."""
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def ready(self) -> tuple[bool, str]:
        if self.last_poll is None:
            return False, "the registry has not been read yet"
        age = time.monotonic() - self.last_poll
        if age > max(10.0, 5 * self.conf.poll_seconds):
            return False, f"the registry was last read {age:.0f} s ago ({self.poll_error or 'no answer'})"
        return True, "ok"

    # champions --------------------------------------------------------------------------------
    def resident(self) -> int:
        with self._lock:
            return sum(e.champion is not None for e in self._cache.values())

    def known(self, tenant: str) -> bool:
        """Whether ``tenant`` had a champion in the registry at the last poll."""
        return tenant in self._fps

    def champion(self, tenant: str) -> champions.Champion:
        """The tenant's champion (loaded on first use), or ``Refused``."""
        with self._lock:
            entry = self._cache.get(tenant)
            if entry is not None:
                self._cache.move_to_end(tenant)
        self.metrics.cache.labels("hit" if entry is not None else "miss").inc()
        if entry is None:
            entry = self._load(tenant, only_if_absent=True)
        if entry.champion is None:
            raise Refused(entry.refused or f"tenant {tenant} has no approved champion",
                          404 if entry.refused is None else 409)
        return entry.champion

    def _load(self, tenant: str, only_if_absent: bool = False) -> Entry:
        """Load (or refuse) the tenant's champion and put it in the cache, registry-ordered: loads
        run one at a time and each is stored before the next starts, so a later registry state
        always wins."""
        with self._registry:
            if only_if_absent:
                with self._lock:
                    entry = self._cache.get(tenant)
                if entry is not None:
                    return entry
            try:
                found = champions.load(tenant)
                entry = Entry(found.fingerprint, champion=found)
            except champions.NoChampion:
                with self._lock:
                    self._cache.pop(tenant, None)
                return Entry("", None, None)
            except UserError as exc:
                entry = Entry(self._fps.get(tenant, ""), refused=str(exc))
                self.metrics.refusals.labels(tenant).inc()
                log.warning("refused %s: %s", tenant, exc)
            with self._lock:
                old = self._cache.get(tenant)
                self._cache[tenant] = entry
                self._cache.move_to_end(tenant)
                while len(self._cache) > self.conf.cache_tenants:
                    self._cache.popitem(last=False)
                    self.metrics.evictions.inc()
                self.metrics.resident.set(sum(e.champion is not None for e in self._cache.values()))
            if old is not None and old.champion is not None and entry.champion is not None \
                    and old.champion.version != entry.champion.version:
                self.metrics.swaps.labels(tenant).inc()
                log.info("%s: now serving v%s (was v%s)", tenant, entry.champion.version, old.champion.version)
            return entry

    # polling ----------------------------------------------------------------------------------
    def poll_once(self) -> list[str]:
        """Read every champion's fingerprint; reload the loaded tenants whose champion changed.
        Returns the tenants reloaded."""
        start = time.perf_counter()
        with self._registry:
            fps = champions.fingerprints()
            self._fps = fps
            with self._lock:
                stale = [t for t, e in self._cache.items() if fps.get(t) != e.fingerprint]
            stale = [t for t in stale if not champions.in_transition(t)]  # the next poll sees its commit
        self.metrics.poll.observe(time.perf_counter() - start)
        for tenant in stale:
            self._load(tenant)
        if time.monotonic() >= self._next_verify and self.conf.verify_seconds > 0:
            self._verify()
            self._next_verify = time.monotonic() + self.conf.verify_seconds
        self.last_poll, self.poll_error = time.monotonic(), None
        if self.on_poll is not None:
            self.on_poll()
        return stale

    def _verify(self) -> None:
        """Check the files of every cached champion against the registry again; refuse drifted
        ones, retry refused ones."""
        with self._lock:
            tenants = list(self._cache)
        for tenant in tenants:
            with self._registry:
                problem = champions.recheck(tenant)
                with self._lock:
                    entry = self._cache.get(tenant)
                if entry is None:
                    continue
                if problem and entry.champion is not None:
                    self.metrics.refusals.labels(tenant).inc()
                    log.warning("refused %s: %s", tenant, problem)
                    with self._lock:
                        self._cache[tenant] = Entry(entry.fingerprint, refused=problem)
                elif not problem and entry.champion is None:
                    self._load(tenant)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.conf.poll_seconds):
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001 - a registry hiccup must not stop serving
                self.poll_error = f"{type(exc).__name__}: {exc}"
                log.warning("registry poll failed: %s", self.poll_error)

    # batching ---------------------------------------------------------------------------------
    def submit(self, champion: champions.Champion, texts: list[str]) -> Future:
        future: Future = Future()
        if self._stop.is_set() and not self._threads:
            future.set_exception(RuntimeError("the server is shutting down"))
            return future
        self._queue.put(_Job(champion, texts, future))
        return future

    def _batch_loop(self) -> None:
        window = self.conf.batch_window_ms / 1000
        while True:
            job = self._queue.get()
            if job is None:
                if self._stop.is_set() and self._queue.empty():
                    return
                continue
            jobs, n = [job], len(job.texts)
            deadline = time.monotonic() + window
            while n < self.conf.max_batch_texts:
                try:
                    more = self._queue.get(timeout=max(0.0, deadline - time.monotonic())) \
                        if time.monotonic() < deadline else self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop once these are answered
                    break
                jobs.append(more)
                n += len(more.texts)
            self._run(jobs, n)

    def _run(self, jobs: list[_Job], n: int) -> None:
        self.metrics.batch.observe(n)
        try:
            probs = champions.predict_many([(j.champion, j.texts) for j in jobs], self.settings.predict.batch_size)
        except Exception as exc:  # noqa: BLE001 - every waiting request learns it failed
            for j in jobs:
                j.future.set_exception(exc)
            return
        for j, p in zip(jobs, probs):
            j.future.set_result(p)

    # one call ---------------------------------------------------------------------------------
    def predict(self, tenant: str, texts: list[str], timeout: float = 60.0) -> dict:
        """``{"tenant", "version", "data_version", "predictions"}`` for ``texts``, all by one
        champion; blank texts get label and score None (as `tailor predict`)."""
        return self.wait(self.start_predict(tenant, texts), timeout)

    def start_predict(self, tenant: str, texts: list[str]):
        champion = self.champion(tenant)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        future = self.submit(champion, [texts[i] for i in todo]) if todo else None
        return champion, texts, todo, future, time.perf_counter()

    def wait(self, started, timeout: float = 60.0) -> dict:
        champion, texts, todo, future, start = started
        rows = [{"text": t, "label": None, "score": None} for t in texts]
        if future is not None:
            proba = future.result(timeout)
            for i, p in zip(todo, proba):
                best = int(p.argmax())
                rows[i].update(label=champion.labels[best], score=round(float(p[best]), 4))
        self.metrics.tenant_latency.labels(champion.tenant).observe(time.perf_counter() - start)
        self.metrics.texts.labels(champion.tenant).inc(len(texts))
        return {"tenant": champion.tenant, "version": champion.version, "data_version": champion.data_version,
                "predictions": rows}
