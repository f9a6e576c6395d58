"""Per-episode records -> the numbers the report shows (every one computed here, none typed)."""
from __future__ import annotations

import statistics

from benchmarks.stats import Estimate, estimate, paired

FROZEN = ("prototypes", "logreg")
ADAPTED = ("no-meta", "fomaml", "reptile")
LABELS = {
    "prototypes": "Prototypes on the frozen encoder (no training)",
    "logreg": "Logistic regression on frozen embeddings",
    "setfit": "SetFit recipe (re-implemented, see notes)",
    "no-meta": "Same adaptation, no meta-learning",
    "maml": "Second-order MAML (cost reference)",
    "fomaml": "FOMAML",
    "reptile": "Reptile",
}


class Results:
    def __init__(self, results: dict):
        self.info, self.records = results["info"], results["records"]
        self.training, self.cost = results["training"], results["cost"]
        self.algorithm = self.info["settings"]["meta_train"]["algorithm"]
        self.steps = self.info["settings"]["adapt"]["inner_steps"]

    def label(self, method: str) -> str:
        text = LABELS.get(method, method)
        return f"{text} (Tailor's default)" if method == self.algorithm else text

    def scores(self, setting: str, shots: int, method: str, upto: int | None = None) -> dict[int, float]:
        return {r["episode"]: r["acc"] for r in self.records if r["setting"] == setting and r["shots"] == shots
                and r["method"] == method and (upto is None or r["episode"] < upto)}

    def acc(self, setting: str, shots: int, method: str, upto: int | None = None) -> Estimate:
        s = self.scores(setting, shots, method, upto)
        return estimate([s[i] for i in sorted(s)])

    def best_frozen(self, setting: str, shots: int, upto: int | None = None) -> str:
        return max(FROZEN, key=lambda m: self.acc(setting, shots, m, upto).mean)

    def gain(self, setting: str, shots: int, method: str, upto: int | None = None) -> Estimate:
        """Paired difference to the better frozen-encoder baseline on the same episodes."""
        best = self.best_frozen(setting, shots, upto)
        return paired(self.scores(setting, shots, method, upto), self.scores(setting, shots, best, upto))

    def curve(self, setting: str, method: str) -> dict[int, Estimate]:
        rows = [r["curve"] for r in self.records if r["setting"] == setting and r["shots"] == 5
                and r["method"] == method and len(r.get("curve", {})) > 1]
        marks = sorted({int(k) for c in rows for k in c})
        return {m: estimate([float(c.get(m, c.get(str(m)))) for c in rows]) for m in marks}

    def curve_episodes(self, setting: str) -> int:
        return len([r for r in self.records if r["setting"] == setting and r["shots"] == 5
                    and r["method"] == "no-meta" and len(r.get("curve", {})) > 1])

    def diverged(self) -> int:
        return sum(bool(r.get("diverged")) for r in self.records)

    # SetFit ran on the first few in-domain 5-shot episodes; the paired rows were timed beside it.
    def setfit_n(self) -> int:
        return len(self.scores("in-domain", 5, "setfit"))

    def setfit_seconds(self, method: str) -> float:
        times = [r["seconds"] for r in self.records if r["method"] == method and r.get("seconds") is not None]
        return statistics.median(times) if times else float("nan")

    def setfit_pairs(self) -> int:
        return max((r.get("pairs", 0) for r in self.records if r["method"] == "setfit"), default=0)

    def meta_step(self, algorithm: str) -> dict:
        return next(m for m in self.cost["meta_step"] if m["algorithm"] == algorithm)

    def adapt_time(self, key: str, source: str, threads: int) -> float:
        row = next(r for r in self.cost["adaptation"]["timing"] if r["source"] == source and r["threads"] == threads)
        return row.get(key, float("nan"))

    def thread_counts(self) -> list[int]:
        return sorted({r["threads"] for r in self.cost["adaptation"]["timing"]})
