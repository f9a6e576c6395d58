"""Other real taxonomies over the sources' texts (corpora/regrouping.py and each source's
``regroupings``): what the "recurring categories" protocol may rely on."""
import pytest

from benchmarks.data import clean_pools, mask_leaks
from corpora import catalog
from corpora.catalog import ALL_SOURCES, MODULES, all_regroupings, class_pools, label_name
from corpora.masking import label_stems
from corpora.regrouping import Regrouping, distinct, merges, problems, splits, tidy


@pytest.fixture(scope="module")
def pools():
    """Every source's pools as the benchmark cleans them (label words masked, 40 texts a class)."""
    return clean_pools(mask_leaks(class_pools(seed=0, sources=ALL_SOURCES)), 40, 0)


@pytest.fixture(scope="module")
def found(pools):
    return all_regroupings(pools, seed=0)


@pytest.mark.parametrize("source", ALL_SOURCES)
def test_each_source_keeps_the_contract(pools, found, source):
    """Only keys and texts of the pools; a split has 10+ of its member's texts and shares none with
    its siblings; names are non-empty, used once, and no class label; taxonomies are the module's."""
    mine = found[source]
    assert mine, f"{source} has no other name for any of its classes"
    assert problems(mine, pools[source], label_name) == []
    labels = {label_name(k).lower() for k in pools[source]}
    assert all(r.name.strip() and r.name.lower() not in labels for r in mine)
    assert {r.taxonomy for r in mine} <= set(MODULES[source].TAXONOMIES[source])


def test_a_rename_is_another_name_also_after_stemming(found):
    renamed = [(source, r) for source, rs in found.items() for r in rs if r.kind == "renamed"]
    assert len({source for source, _ in renamed}) >= 8
    for source, r in renamed:
        label = label_name(r.members[0])
        assert r.name.lower() != label.lower() and not label_stems(r.name) & label_stems(label), (source, r.name)


def test_the_sources_with_a_second_taxonomy_merge_or_split(found):
    kinds = {source: {r.kind for r in rs} for source, rs in found.items()}
    for source in ("bible", "wordnet-topic", "pydoc", "ha-intents"):
        assert "merged" in kinds[source], source
    for source in ("wordnet-lex", "debian-pkg", "ha-intents"):
        assert "split" in kinds[source], source
    bible = {r.name: {label_name(k) for k in r.members} for r in found["bible"] if r.kind == "merged"}
    assert bible["Gospels"] == {"Matthew", "Mark", "Luke", "John"}


def test_regroupings_are_deterministic(pools, found):
    again = all_regroupings({s: pools[s] for s in ("ha-intents", "bible", "wordnet-topic", "debian-pkg")}, seed=0)
    assert all(again[s] == found[s] for s in again)


def test_all_regroupings_refuses_an_unknown_source():
    with pytest.raises(ValueError, match="unknown text sources"):
        all_regroupings({"nope": {}})
    assert set(catalog.REGROUPINGS) == set(ALL_SOURCES)


# --- the contract itself, on small hand-made pools ------------------------------------------------

TOY = {"toy:a": [f"a{i}" for i in range(30)], "toy:b": [f"b{i}" for i in range(12)]}
LABEL = {"toy:a": "Animals", "toy:b": "Plants"}.__getitem__


def test_distinct_refuses_the_same_word_its_stem_spelling_abbreviation_and_acronym():
    assert distinct("Fauna", "Animals") and distinct("Jurisprudence", "Law")
    for same in ("animals", "Animal", "animal life", "Animalia", "anim.", "artefact"):
        assert not distinct(same, "Animals" if same != "artefact" else "Artifacts"), same
    assert not distinct("WWW", "World Wide Web") and not distinct("Zool.", "Zoology")
    assert not distinct("", "Animals") and not distinct("of the", "Animals")


def test_problems_names_every_broken_rule():
    split = lambda name, texts: Regrouping(name, "split", ("toy:a",), tuple(texts), "t")  # noqa: E731
    bad = [Regrouping("Ghost", "renamed", ("toy:zzz",), None, "t"),
           split("short", TOY["toy:a"][:9]),
           split("first", TOY["toy:a"][:10]), split("overlap", TOY["toy:a"][5:15]),
           split("foreign", ["not a text"] * 10),
           Regrouping("Animal", "renamed", ("toy:a",), None, "t"),
           Regrouping("first", "merged", ("toy:a", "toy:b"), None, "t")]
    found = "\n".join(problems(bad, TOY, LABEL))
    for expected in ("'Ghost': a member is not in the pools", "'short': needs 10+", "'overlap': shares texts",
                     "'foreign': needs 10+", "'Animal': not another name", "'first': the name is used twice"):
        assert expected in found
    assert problems([split("first", TOY["toy:a"][:10]), split("second", TOY["toy:a"][10:20])], TOY, LABEL) == []


def test_a_regrouping_checks_its_own_shape():
    with pytest.raises(ValueError):
        Regrouping("x", "merged", ("toy:a",), None, "t")             # a merge needs two classes
    with pytest.raises(ValueError):
        Regrouping("x", "split", ("toy:a",), None, "t")              # a split lists its texts
    with pytest.raises(ValueError):
        Regrouping(" ", "renamed", ("toy:a",), None, "t")            # a name
    with pytest.raises(ValueError):
        Regrouping("x", "reshuffled", ("toy:a",), None, "t")


def test_splits_keep_ten_texts_up_to_three_quarters_and_merges_two_classes():
    group_of = {t: ("big" if i < 25 else "small") for i, t in enumerate(TOY["toy:a"])}
    assert splits(TOY, "toy:a", group_of, "t") == []                 # 25 of 30 > 3/4, 5 < 10
    group_of = {t: ("one" if i < 12 else "two") for i, t in enumerate(TOY["toy:a"][:22])}
    assert [(r.name, len(r.texts)) for r in splits(TOY, "toy:a", group_of, "t")] == [("one", 12), ("two", 10)]
    assert [r.members for r in merges(TOY, {"Life": ["toy:a", "toy:b"], "Lone": ["toy:a", "toy:zzz"]}, "t")] \
        == [("toy:a", "toy:b")]
    dup = [Regrouping("Fauna", "renamed", ("toy:a",), None, "t"), Regrouping("fauna", "renamed", ("toy:b",), None, "t"),
           Regrouping("Plants", "renamed", ("toy:a",), None, "t")]
    assert [r.name for r in tidy(dup, TOY, LABEL)] == ["Fauna"]
