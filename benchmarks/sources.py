"""Size and label leakage of every text source: `python -m benchmarks.sources` writes
benchmarks/results/sources.md (classes, texts, median words per text, and the leak share: the share of
a class's texts containing a word of its own label name, crudely stemmed, stopwords ignored; the
table gives the mean over classes and the worst class). The new sources (corpora/gcide.py, vera.py,
debian_packages.py, pydoc.py) mask label words, so theirs is 0; classes of the older sources above
LEAK_LIMIT are listed."""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from corpora.catalog import ALL_SOURCES, MORE_SOURCES, class_pools, label_name
from corpora.masking import leak_share

LEAK_LIMIT = 0.30
OUT = Path(__file__).parent / "results" / "sources.md"


def source_rows(pools) -> list[dict]:
    rows = []
    for source in ALL_SOURCES:
        classes = pools[source]
        leaks = {k: leak_share(v, label_name(k)) for k, v in classes.items()}
        words = [len(t.split()) for v in classes.values() for t in v]
        worst = max(leaks, key=leaks.get)
        rows.append({"source": source, "new": source in MORE_SOURCES, "classes": len(classes),
                     "texts": len(words), "median_words": statistics.median(words),
                     "mean_leak": statistics.fmean(leaks.values()), "worst": (label_name(worst), leaks[worst]),
                     "over": sorted(label_name(k) for k, s in leaks.items() if s > LEAK_LIMIT)})
    return rows


def render(rows, seconds: float) -> str:
    lines = ["# Text sources", "", f"Built by `python -m benchmarks.sources` ({seconds:.0f} s to read all sources; "
             f"classes of >= 20 texts). Leak share: texts of a class containing a word of its label name.", "",
             "| source | new | classes | texts | median words | mean leak | worst class (leak) | classes over "
             f"{LEAK_LIMIT:.0%} |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name, share = r["worst"]
        lines.append(f"| {r['source']} | {'yes' if r['new'] else ''} | {r['classes']} | {r['texts']} | "
                     f"{r['median_words']:g} | {r['mean_leak']:.1%} | {name} ({share:.0%}) | "
                     f"{len(r['over'])}: {', '.join(r['over'][:8])}{' ...' if len(r['over']) > 8 else ''} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    start = time.monotonic()
    pools = class_pools(seed=0, sources=ALL_SOURCES)
    text = render(source_rows(pools), time.monotonic() - start)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
