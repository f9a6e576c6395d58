"""Size and label leakage of every text source: `python -m benchmarks.sources` writes
benchmarks/results/sources.md (classes, texts, median words per text, and the leak share: the share of
a class's texts containing a word of its own label name, crudely stemmed, stopwords ignored; the
table gives the mean over classes and the worst class). The new sources (corpora/gcide.py, vera.py,
debian_packages.py, pydoc.py) mask label words, so theirs is 0; classes of the older sources above
LEAK_LIMIT are listed. A second table counts each source's categories of other real taxonomies over
the same texts (corpora.catalog.all_regroupings: renamed, merged, split), on the pools as the
benchmark cleans them (label words masked, at most PER_CLASS texts a class), with the share of
their texts that contain a word of their own name."""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from corpora.catalog import ALL_SOURCES, MORE_SOURCES, all_regroupings, class_pools, label_name
from corpora.masking import leak_share
from corpora.regrouping import KINDS

LEAK_LIMIT = 0.30
PER_CLASS, SEED = 40, 0      # the benchmark's full profile keeps 40 texts a class
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


def regrouping_rows(pools) -> list[dict]:
    """Per source: how many categories of each kind its other taxonomies give, their taxonomies,
    and the mean share of a category's texts that contain a word of its name."""
    rows = []
    for source, found in all_regroupings(pools, seed=SEED).items():
        texts = lambda r: list(r.texts) if r.texts else [t for k in r.members for t in pools[source][k]]  # noqa: E731
        rows.append({"source": source, "classes": len(pools[source]),
                     **{kind: sum(r.kind == kind for r in found) for kind in KINDS},
                     "split_texts": sum(len(r.texts) for r in found if r.texts),
                     "name_leak": statistics.fmean(leak_share(texts(r), r.name) for r in found) if found else 0.0,
                     "taxonomies": sorted({r.taxonomy for r in found})})
    return rows


def render_regroupings(rows, seconds: float) -> str:
    lines = ["", "## Other real taxonomies over the same texts", "",
             f"`corpora.catalog.all_regroupings` on the benchmark's cleaned pools (label words masked, at most "
             f"{PER_CLASS} texts a class, seed {SEED}; {seconds:.0f} s): categories of another real labelling that "
             "rename one class, merge 2+ classes or split one (a split keeps >= 10 texts). Name leak: mean share "
             "of a category's texts containing a word of its own name.", "",
             "| source | classes | renamed | merged | split | split texts | name leak | taxonomies |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['source']} | {r['classes']} | {r['renamed']} | {r['merged']} | {r['split']} | "
                     f"{r['split_texts']} | {r['name_leak']:.1%} | {', '.join(r['taxonomies'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    start = time.monotonic()
    pools = class_pools(seed=SEED, sources=ALL_SOURCES)
    text = render(source_rows(pools), time.monotonic() - start)
    # Read the sources before importing the benchmark's data module: what it imports (torch ...) patches
    # the standard library, and one of pydoc's docstrings (inspect.getsourcefile's) goes missing after.
    from benchmarks.data import clean_pools, mask_leaks

    start = time.monotonic()
    cleaned = clean_pools(mask_leaks(pools), PER_CLASS, SEED)
    rows = regrouping_rows(cleaned)
    text += render_regroupings(rows, time.monotonic() - start)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
