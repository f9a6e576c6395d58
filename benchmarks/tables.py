"""Per-episode records -> the numbers the report shows (every one computed here, none typed).

Everything is per left-out source (a fold) and, over sources, a stratified mean: each source
weighs the same whatever its episode count."""
from __future__ import annotations

import statistics

from benchmarks.stats import Estimate, estimate, paired, stratified

# the frozen-encoder baselines; "best frozen" is the best of them, label names included
FROZEN = ("prototypes", "logreg", "logreg+names")
BEST = "best-frozen"
ADAPTED = ("no-meta", "fomaml", "reptile")
METHODS = (*FROZEN, *ADAPTED, "setfit")
SHOTS = (1, 5, 10)
LABELS = {
    "prototypes": "Prototypes, frozen encoder",
    "logreg": "Logistic regression, frozen encoder",
    "logreg+names": "Logistic regression + label names, frozen",
    "no-meta": "Tailor's adaptation without meta-learning (no-meta start)",
    "fomaml": "FOMAML base",
    "reptile": "Reptile base",
    "setfit": "SetFit",
    "maml": "Second-order MAML (cost reference)",
    BEST: "best frozen baseline",
}


class Results:
    def __init__(self, results: dict):
        self.info, self.records = results["info"], results["records"]
        self.training, self.cost = results["training"], results["cost"]
        self.trace_rows, self.work = results.get("trace", []), results.get("work", [])
        self.algorithm = self.info["settings"]["meta_train"]["algorithm"]
        self.steps = self.info["settings"]["adapt"]["inner_steps"]
        self.folds = [f["test"] for f in self.info["folds"]]

    def label(self, method: str) -> str:
        text = LABELS.get(method, method)
        return f"**Tailor** = {text} (the product default)" if method == self.algorithm else text

    # --- accuracy ---------------------------------------------------------------------------------
    def scores(self, fold: str, shots: int, method: str) -> dict[int, float]:
        if method == BEST:
            best = self.best_frozen(fold, shots)
            return self.scores(fold, shots, best) if best else {}
        return {r["episode"]: r["acc"] for r in self.records if r["fold"] == fold and r["shots"] == shots
                and r["method"] == method and "acc" in r}

    def acc(self, fold: str, shots: int, method: str) -> Estimate:
        s = self.scores(fold, shots, method)
        return estimate([s[i] for i in sorted(s)])

    def mean_acc(self, shots: int, method: str) -> Estimate:
        return stratified([list(self.scores(f, shots, method).values()) for f in self.folds])

    def best_frozen(self, fold: str, shots: int) -> str | None:
        """The best frozen baseline on this source at these shots, label names included (measured on
        its own episodes)."""
        have = [m for m in FROZEN if self.scores(fold, shots, m)]
        return max(have, key=lambda m: self.acc(fold, shots, m).mean) if have else None

    def diff(self, fold: str, shots: int, a: str, b: str) -> Estimate:
        """Paired difference a - b on the episodes both scored."""
        return paired(self.scores(fold, shots, a), self.scores(fold, shots, b))

    def mean_diff(self, shots: int, a: str, b: str) -> Estimate:
        groups = []
        for f in self.folds:
            sa, sb = self.scores(f, shots, a), self.scores(f, shots, b)
            groups.append([sa[i] - sb[i] for i in sorted(set(sa) & set(sb))])
        return stratified(groups)

    def has(self, method: str, shots: int | None = None) -> bool:
        return any(r["method"] == method and "acc" in r and (shots is None or r["shots"] == shots)
                   for r in self.records)

    # --- accuracy vs inner steps -----------------------------------------------------------------
    def curves(self, method: str) -> dict[int, list[list[float]]]:
        """Step count -> per fold, accuracy of each curve episode."""
        out: dict[int, list[list[float]]] = {}
        for i, f in enumerate(self.folds):
            for r in self.records:
                if r["fold"] == f and r["shots"] == 5 and r["method"] == method and len(r.get("curve", {})) > 1:
                    for k, v in r["curve"].items():
                        out.setdefault(int(k), [[] for _ in self.folds])[i].append(float(v))
        return dict(sorted(out.items()))

    def curve(self, method: str) -> dict[int, Estimate]:
        return {k: stratified(groups) for k, groups in self.curves(method).items()}

    def curve_episodes(self) -> int:
        return sum(1 for r in self.records if r["method"] == "no-meta" and r["shots"] == 5
                   and len(r.get("curve", {})) > 1)

    # --- the inner loop, step by step ------------------------------------------------------------
    def trace(self, variant: str) -> dict[int, dict[str, float]]:
        """Step -> mean over traced episodes (all folds) of loss, gradient norms, changed share, accuracy."""
        out: dict[int, dict[str, float]] = {}
        for step in sorted({r["step"] for r in self.trace_rows if r["variant"] == variant}):
            rows = [r for r in self.trace_rows if r["variant"] == variant and r["step"] == step]
            out[step] = {k: statistics.mean(r[k] for r in rows) for k in
                         ("loss", "grad_adapters", "grad_head", "changed", "acc")} | {"n": len(rows)}
        return out

    # --- SetFit and cost --------------------------------------------------------------------------
    def setfit_n(self) -> int:
        return sum(len(self.scores(f, 5, "setfit")) for f in self.folds)

    def seconds(self, method: str) -> float:
        times = [r["seconds"] for r in self.records if r["method"] == method and r.get("seconds") is not None]
        return statistics.median(times) if times else float("nan")

    def setfit_speedup(self) -> float | None:
        """SetFit's median seconds per adaptation over Tailor's (None where either was not timed)."""
        ours, theirs = self.seconds("tailor@setfit"), self.seconds("setfit")   # timed on SetFit's episodes
        return theirs / ours if ours == ours and theirs == theirs and ours > 0 else None

    def steps_per_second(self) -> float | None:
        """Median meta-steps per second of the default algorithm's meta-training runs (whole runs:
        validation included)."""
        rates = [r["metrics"]["steps_run"] / r["metrics"]["train_seconds"] for r in self.training.values()
                 if r["algorithm"] == self.algorithm and r["metrics"].get("train_seconds")]
        return statistics.median(rates) if rates else None

    def setfit_pairs(self) -> int:
        return max((r.get("pairs", 0) for r in self.records if r["method"] == "setfit"), default=0)

    def meta_step(self, algorithm: str) -> dict:
        return next(m for m in self.cost["meta_step"] if m["algorithm"] == algorithm)

    def adapt_time(self, key: str, source: str, threads: int) -> float:
        row = next((r for r in self.cost["adaptation"]["timing"] if r["source"] == source and r["threads"] == threads),
                   {})
        return row.get(key, float("nan"))

    def thread_counts(self) -> list[int]:
        return sorted({r["threads"] for r in self.cost["adaptation"]["timing"]})

    def diverged(self) -> int:
        return sum(bool(r.get("diverged")) for r in self.records)

    def work_by_kind(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for w in self.work:
            row = out.setdefault(w["kind"], {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0})
            row["jobs"] += 1
            row["wall_s"] += w["wall_s"]
            row["cpu_s"] += w["cpu_s"]
        return out
