"""Candidate against champion on the same texts: both accuracies with n and a 95% Wilson interval,
the paired difference with its interval, per-label precision/recall side by side, the texts
whose prediction changed, and the rows added and removed per label since the champion's data.
Pure functions over label names (the two versions may index labels differently); what
registration stores and the review page reads."""
from __future__ import annotations

import json
import math
from collections import Counter

Z95 = 1.959964


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of ``k`` successes in ``n`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def measured(accuracy: float | None, n: int | None) -> dict | None:
    """An accuracy measured on ``n`` held-out texts, as every place that shows one gives it: the
    accuracy, ``n`` and its 95% Wilson interval (``n`` None: a version registered before ``n`` was
    recorded, no interval). None when there is no accuracy."""
    if accuracy is None:
        return None
    if not n:
        return {"accuracy": accuracy, "n": None, "interval": None}
    return {"accuracy": accuracy, "n": n, "interval": list(wilson(round(accuracy * n), n))}


def measured_text(m: dict | None) -> str:
    """``0.833 [0.55,0.95] n=12``; ``0.833 (n not recorded)``; ``-``."""
    if not m:
        return "-"
    if not m.get("interval"):
        return f"{m['accuracy']:.3f} (n not recorded)"
    low, high = m["interval"]
    return f"{m['accuracy']:.3f} [{low:.2f},{high:.2f}] n={m['n']}"


def paired_difference(worse: int, better: int, n: int, z: float = Z95) -> tuple[float, float, float]:
    """(candidate minus champion accuracy, low, high) on the same ``n`` texts: ``better`` texts only
    the candidate gets right, ``worse`` only the champion. The interval is the normal one of the
    paired mean; its half-width is at least one text, so 0 discordant texts is not false certainty."""
    if n <= 0:
        return 0.0, -1.0, 1.0
    diff = (better - worse) / n
    var = max(0.0, ((better + worse) / n - diff * diff) / n)
    half = max(z * math.sqrt(var), 1.0 / n)
    return diff, max(-1.0, diff - half), min(1.0, diff + half)


def _per_label(labels: list[str], y_true: list[str], y_pred: list[str]) -> dict[str, dict]:
    out = {}
    for label in labels:
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == label and p == label)
        predicted = sum(1 for p in y_pred if p == label)
        support = sum(1 for t in y_true if t == label)
        out[label] = {"precision": round(tp / predicted, 4) if predicted else None,
                      "recall": round(tp / support, 4) if support else None, "support": support}
    return out


def compare(texts: list[str], y_true: list[str], candidate: list[str], champion: list[str]) -> dict:
    """Everything a reviewer reads about candidate vs champion on these texts (label names)."""
    n = len(y_true)
    ok_cand = [c == t for c, t in zip(candidate, y_true)]
    ok_champ = [c == t for c, t in zip(champion, y_true)]
    better = sum(1 for a, b in zip(ok_cand, ok_champ) if a and not b)
    worse = sum(1 for a, b in zip(ok_cand, ok_champ) if b and not a)
    k_cand, k_champ = sum(ok_cand), sum(ok_champ)
    diff, low, high = paired_difference(worse, better, n)
    labels = sorted(set(y_true) | set(candidate) | set(champion))
    pc, pk = _per_label(labels, y_true, candidate), _per_label(labels, y_true, champion)
    rows = []
    for label in labels:
        row = {"label": label, "support": pc[label]["support"]}
        for metric in ("precision", "recall"):
            a, b = pk[label][metric], pc[label][metric]
            row[f"champion_{metric}"], row[f"candidate_{metric}"] = a, b
            row[f"{metric}_change"] = None if a is None or b is None else round(b - a, 4)
        rows.append(row)
    changed = [{"text": t, "old": o, "new": c, "true": y} for t, y, c, o in zip(texts, y_true, candidate, champion)
               if c != o]
    return {"n": n,
            "candidate": {"correct": k_cand, "accuracy": k_cand / n if n else None, "interval": wilson(k_cand, n)},
            "champion": {"correct": k_champ, "accuracy": k_champ / n if n else None, "interval": wilson(k_champ, n)},
            "only_candidate_right": better, "only_champion_right": worse,
            "difference": {"value": diff, "interval": (low, high)},
            "per_label": rows, "changed": changed}


def gate_failure(difference_high: float, tolerance: float) -> bool:
    """The champion gate on the same texts: the candidate fails only when even the top of the
    paired difference's 95% interval is more than ``tolerance`` below zero, i.e. it is worse than
    the champion by more than the split can explain."""
    return difference_high < -tolerance


def interval_text(acc: float | None, interval, n: int) -> str:
    if acc is None:
        return "-"
    return f"{acc:.3f} [{interval[0]:.2f}, {interval[1]:.2f}] on {n} texts"


# --- the data change since the champion --------------------------------------------------------

EXAMPLES = 3  # texts shown per label and direction


def data_change(before: list[tuple[str, str]], after: list[tuple[str, str]], examples: int = EXAMPLES) -> dict:
    """Rows (text, label) added and removed per label between two data versions, with up to
    ``examples`` of each in file order. A text whose label changed is removed from its old label
    and added to its new one; a duplicated row counts as often as it occurs."""
    old, new = Counter(before), Counter(after)
    added, removed = new - old, old - new

    def firsts(rows, wanted: Counter) -> dict[str, list[str]]:
        left, out = Counter(wanted), {}
        for text, label in rows:
            if left[(text, label)] > 0:
                left[(text, label)] -= 1
                if len(out.setdefault(label, [])) < examples:
                    out[label].append(text)
        return out

    def per_label(rows: Counter) -> Counter:
        out = Counter()
        for (_, label), n in rows.items():
            out[label] += n
        return out

    ex_added, ex_removed = firsts(after, added), firsts(before, removed)
    n_before, n_after, n_added, n_removed = per_label(old), per_label(new), per_label(added), per_label(removed)
    rows = []
    for label in sorted(set(n_before) | set(n_after)):
        rows.append({"label": label, "before": n_before[label], "after": n_after[label],
                     "added": n_added[label], "removed": n_removed[label],
                     "added_examples": ex_added.get(label, []), "removed_examples": ex_removed.get(label, [])})
    return {"rows_before": len(before), "rows_after": len(after), "added": sum(added.values()),
            "removed": sum(removed.values()), "labels": rows}


def data_change_tag(change: dict, limit: int) -> str:
    """``change`` as JSON of at most ``limit`` characters, for a tag that ``review list`` reads
    without downloading anything: counts only, never texts (a tag is copied into the audit log's
    intent record, which can never be edited, so a tenant's erasure could not reach it; the run's
    ``review/data_change.json`` keeps the examples, and erasure deletes it). Unchanged labels are
    left out first if it does not fit (``labels_cut``)."""
    def dump(value) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    labels = [{k: v for k, v in r.items() if not k.endswith("_examples")} for r in change.get("labels", [])]
    out = {**change, "labels": labels}
    if len(dump(out)) <= limit:
        return dump(out)
    changed = [r for r in labels if r["added"] or r["removed"]]
    out = {**out, "labels": changed, "labels_cut": True}
    while changed and len(dump(out)) > limit:
        changed = changed[:-1]
        out = {**out, "labels": changed}
    return dump(out)


def data_change_from_tag(tags: dict) -> dict | None:
    """The ``data_change`` tag as a dict (None when the version has none or it is unreadable)."""
    try:
        value = json.loads(tags.get("data_change") or "null")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def data_change_text(change: dict | None) -> str:
    """One cell for ``review list``: ``+3 -1 since v1 (Billing +2 -1, Login +1)``."""
    if not change:
        return "-"
    since = f"v{change['champion_version']}" if change.get("champion_version") else "the champion"
    if change.get("error"):
        return f"unknown since {since}: {change['error']}"
    if change.get("same_data"):
        return f"same data as {since}"
    parts = []
    for r in change.get("labels", []):
        signs = ([f"+{r['added']}"] if r.get("added") else []) + ([f"-{r['removed']}"] if r.get("removed") else [])
        if signs:
            parts.append(f"{r['label']} {' '.join(signs)}")
    return f"+{change.get('added', 0)} -{change.get('removed', 0)} since {since}" + (
        f" ({', '.join(parts)})" if parts else "")
