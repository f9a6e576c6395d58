"""Per-episode records -> the numbers the report shows (every one computed here, none typed).

A record is one method on one episode: ``protocol``, ``source``, ``shots``, ``episode``, ``method``,
``acc``. Everything is per source and, over sources, a stratified mean: each source weighs the same
whatever its episode count. Paired differences compare two methods on the episodes both scored."""
from __future__ import annotations

from benchmarks.stats import Estimate, estimate, paired, stratified

FROZEN = ("prototypes", "logreg", "logreg+names")
NAMES = "logreg+names"     # the frozen head a skeptic names first: logistic regression with label names
BASES = ("pooled", "fomaml", "reptile", "pooled-fomaml")
FIXED = ("logreg+names", "no-meta", *BASES)   # the fixed methods the per-tenant choice is held against
CHOICE = ("logreg+names", "no-meta")         # what the choice may pick besides the default base's adaptation
METHODS = (*FROZEN, "setfit", "no-meta", *BASES, "tailor")
SHOTS = (1, 5, 10)
PROTOCOLS = ("recurring", "new-categories", "new-domain")
LABELS = {
    "prototypes": "Prototypes, frozen", "logreg": "Logistic regression, frozen",
    "logreg+names": "Logistic regression + label names, frozen", "setfit": "SetFit",
    "no-meta": "Adaptation, no trained base", "pooled": "Pooled base", "fomaml": "FOMAML base",
    "reptile": "Reptile base", "pooled-fomaml": "Pooled → FOMAML base (Meta-Baseline)",
    "tailor": "**Tailor** (adapt_tenant: default base + per-tenant choice)",
}
SHORT = {"logreg+names": "frozen+names", "pooled-fomaml": "pooled→FOMAML", "no-meta": "no base"}


class Results:
    def __init__(self, results: dict):
        self.info, self.records = results["info"], results["records"]
        self.training, self.cost, self.work = results["training"], results["cost"], results.get("work", [])
        self.default = self.info["settings"]["meta_train"]["algorithm"]
        self.runs = self.info["runs"]
        self._index: dict = {}
        for r in self.records:
            if "acc" in r:
                self._index.setdefault((r["protocol"], r["source"], r["shots"], r["method"]), {})[r["episode"]] = r

    def sources(self, protocol: str) -> list[str]:
        return list(self.runs.get(protocol, []))

    def scores(self, protocol: str, source: str, shots: int, method: str) -> dict[int, float]:
        return {i: r["acc"] for i, r in self._index.get((protocol, source, shots, method), {}).items()}

    def acc(self, protocol: str, source: str, shots: int, method: str) -> Estimate:
        s = self.scores(protocol, source, shots, method)
        return estimate([s[i] for i in sorted(s)])

    def mean_acc(self, protocol: str, shots: int, method: str) -> Estimate:
        return stratified([list(self.scores(protocol, s, shots, method).values()) for s in self.sources(protocol)])

    def diff(self, protocol: str, source: str, shots: int, a: str, b: str) -> Estimate:
        return paired(self.scores(protocol, source, shots, a), self.scores(protocol, source, shots, b))

    def mean_diff(self, protocol: str, shots: int, a: str, b: str) -> Estimate:
        """a - b, paired within each source, stratified over sources."""
        groups = []
        for s in self.sources(protocol):
            sa, sb = self.scores(protocol, s, shots, a), self.scores(protocol, s, shots, b)
            groups.append([sa[i] - sb[i] for i in sorted(set(sa) & set(sb))])
        return stratified(groups)

    def pooled_diff(self, protocols: tuple[str, ...], shots: int, a: str, b: str) -> Estimate:
        """a - b over several protocols at once: each (protocol, source) a stratum weighing the same."""
        groups = []
        for p in protocols:
            for s in self.sources(p):
                sa, sb = self.scores(p, s, shots, a), self.scores(p, s, shots, b)
                groups.append([sa[i] - sb[i] for i in sorted(set(sa) & set(sb))])
        return stratified(groups)

    def best_fixed(self, protocol: str, shots: int = 5, methods: tuple[str, ...] = FIXED) -> str:
        """The fixed method (of ``methods``) with the best mean over sources on this protocol
        (measured, not assumed)."""
        scored = [(self.mean_acc(protocol, shots, m).mean, m) for m in methods if self.mean_acc(protocol, shots, m).n]
        return max(scored)[1] if scored else NAMES

    def best_base(self, protocols: tuple[str, ...] = ("recurring", "new-categories"), shots: int = 5) -> str:
        """The base training whose own adaptation scores best over ``protocols`` (5-shot, mean of
        the protocols' means over sources)."""
        def score(m):
            means = [self.mean_acc(p, shots, m) for p in protocols]
            return sum(e.mean for e in means) / len(means) if all(e.n for e in means) else float("-inf")
        return max(BASES, key=score)

    def chosen(self, protocol: str, shots: int = 5) -> dict[str, int]:
        """What the per-tenant choice picked, counted over episodes and sources."""
        out: dict[str, int] = {}
        for s in self.sources(protocol):
            for r in self._index.get((protocol, s, shots, "tailor"), {}).values():
                out[r.get("chosen", "?")] = out.get(r.get("chosen", "?"), 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def setfit_pairs(self, protocol: str) -> tuple[Estimate, int]:
        """tailor - SetFit over SetFit's own 5-shot episodes, stratified over sources, and their count."""
        groups = []
        for s in self.sources(protocol):
            sf, t = self.scores(protocol, s, 5, "setfit"), self.scores(protocol, s, 5, "tailor")
            groups.append([t[i] - sf[i] for i in sorted(set(sf) & set(t))])
        return stratified(groups), sum(map(len, groups))

    def training_rows(self) -> list[dict]:
        return [self.training[k] for k in sorted(self.training)]

    def adaptation_seconds(self) -> dict:
        """Median seconds of the product's whole adapt_tenant on a 50-example tenant, per source and threads."""
        rows = self.cost.get("adaptation", {}).get("timing", [])
        return {(r["source"], r["threads"]): r.get("adapt_tenant_s") for r in rows}
