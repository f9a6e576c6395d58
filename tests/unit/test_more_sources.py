"""The extra text sources of tailor/more_sources.py: enough real classes, no shared texts, no label leaks."""
import pytest

from tailor import more_sources as more
from tailor.demo_data import ALL_SOURCES, MORE_SOURCES, SOURCES, class_pools
from tailor.demo_sources import label_name


@pytest.fixture(scope="module")
def pools():
    return class_pools(seed=0, sources=MORE_SOURCES)


@pytest.mark.parametrize("source", MORE_SOURCES)
def test_each_new_source_has_twenty_real_classes_without_shared_texts_or_label_leaks(pools, source):
    classes = pools[source]
    assert len(classes) >= 20 and all(len(set(v)) >= 20 for v in classes.values())
    every = [t for v in classes.values() for t in set(v)]
    assert len(every) == len(set(every)), "a text in two classes"
    names = [label_name(k) for k in classes]
    assert len(set(names)) == len(names) and all(k.startswith(source + ":") for k in classes)
    assert max(more.leak_share(v, label_name(k)) for k, v in classes.items()) <= 0.30


def test_leak_share_stems_and_ignores_stopwords():
    assert more.leak_share(["Two animals ran", "a tree"], "Animal") == 0.5
    assert more.leak_share(["the art of war"], "Art and others") == 1.0
    assert more.leak_share(["of the and"], "Of the and") == 0.0
    assert more.mask_label_words(["Musical notes", "drums"], "Music") == [f"{more.MASK} notes", "drums"]


def test_class_pools_builds_only_the_sources_asked_for():
    assert ALL_SOURCES == SOURCES + MORE_SOURCES
    assert set(class_pools(sources=("pydoc",))) == {"pydoc"}
    with pytest.raises(ValueError, match="unknown text sources"):
        class_pools(sources=("nope",))


def test_benchmark_masks_the_label_words_of_the_older_sources():
    from benchmarks.data import mask_leaks

    raw = class_pools(seed=0, sources=("ha-intents",))
    masked = mask_leaks(raw)["ha-intents"]
    assert max(more.leak_share(v, label_name(k)) for k, v in masked.items()) == 0
    assert max(more.leak_share(v, label_name(k)) for k, v in raw["ha-intents"].items()) > 0.3
