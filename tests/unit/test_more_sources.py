"""The extra text sources (corpora/gcide.py, vera.py, debian_packages.py, pydoc.py): enough real classes,
no shared texts, no label leaks."""
import statistics

import pytest

from corpora import masking
from corpora.catalog import ALL_SOURCES, MODULES, MORE_SOURCES, SOURCES, class_pools, label_name


@pytest.fixture(scope="module")
def pools():
    """Every source's classes of >= 20 texts, as benchmarks/sources.py reads them (~20 s)."""
    return class_pools(seed=0, sources=ALL_SOURCES)


@pytest.mark.parametrize("source", ALL_SOURCES)
def test_each_source_states_its_measured_leak_licence_and_taxonomies(pools, source):
    """A module's LEAK is the mean leak share of benchmarks/results/sources.md: recomputed here, so
    the constant cannot rot when a reader or its package changes."""
    module = MODULES[source]
    fresh = statistics.fmean(masking.leak_share(v, label_name(k)) for k, v in pools[source].items())
    assert module.LEAK[source] == pytest.approx(fresh, abs=0.005), f"{source}: rerun python -m benchmarks.sources"
    assert module.LICENCE.strip() and module.TAXONOMIES[source] and all(module.TAXONOMIES[source])


@pytest.mark.parametrize("source", MORE_SOURCES)
def test_each_new_source_has_twenty_real_classes_without_shared_texts_or_label_leaks(pools, source):
    classes = pools[source]
    assert len(classes) >= 20 and all(len(set(v)) >= 20 for v in classes.values())
    every = [t for v in classes.values() for t in set(v)]
    assert len(every) == len(set(every)), "a text in two classes"
    names = [label_name(k) for k in classes]
    assert len(set(names)) == len(names) and all(k.startswith(source + ":") for k in classes)
    assert max(masking.leak_share(v, label_name(k)) for k, v in classes.items()) <= 0.30


def test_leak_share_stems_and_ignores_stopwords():
    assert masking.leak_share(["Two animals ran", "a tree"], "Animal") == 0.5
    assert masking.leak_share(["the art of war"], "Art and others") == 1.0
    assert masking.leak_share(["of the and"], "Of the and") == 0.0
    assert masking.mask_label_words(["Musical notes", "drums"], "Music") == [f"{masking.MASK} notes", "drums"]


def test_class_pools_builds_only_the_sources_asked_for():
    assert ALL_SOURCES == SOURCES + MORE_SOURCES
    assert set(class_pools(sources=("pydoc",))) == {"pydoc"}
    with pytest.raises(ValueError, match="unknown text sources"):
        class_pools(sources=("nope",))


def test_benchmark_masks_the_label_words_of_the_older_sources():
    from benchmarks.data import mask_leaks

    raw = class_pools(seed=0, sources=("ha-intents",))
    masked = mask_leaks(raw)["ha-intents"]
    assert max(masking.leak_share(v, label_name(k)) for k, v in masked.items()) == 0
    assert max(masking.leak_share(v, label_name(k)) for k, v in raw["ha-intents"].items()) > 0.3
