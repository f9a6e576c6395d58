"""Demo tenants: the shape the demo and the benchmarks rely on, built from real WordNet, HA, fortune, Bible and FOLDOC text."""
import csv
from collections import Counter
from pathlib import Path

import pytest

from corpora.catalog import SOURCES, class_pools, label_name
from corpora.demo_tenants import MIN_ROWS_PER_LABEL, build_demo_tenants
from corpora.ha_intents import intent_classes
from corpora.wordnet_db import WORDNET_DIR, gloss_definition, iter_synsets
from workspace.settings import ValidationSettings
from workspace.tenants import TENANT_ID


@pytest.fixture(scope="module", autouse=True)
def _wordnet():
    if not (WORDNET_DIR / "data.noun").is_file():
        pytest.fail(f"WordNet is missing at {WORDNET_DIR}: `make setup` installs Debian's wordnet-base")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return build_demo_tenants(tmp_path_factory.mktemp("demo"), seed=0)


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["text", "label"], path
        return list(reader)


def test_enough_meta_training_and_evaluation_tenants(catalog):
    assert len(catalog.meta_train()) >= 12
    assert len(catalog.evaluation()) >= 4
    assert {s for t in catalog.meta_train() for s in t.sources} == set(SOURCES)


def test_label_counts_vary_within_four_to_ten(catalog):
    counts = [len(t.labels) for t in catalog.tenants if t.role != "recurring"]
    assert all(4 <= n <= 10 for n in counts)
    assert all(3 <= len(t.labels) <= 5 for t in catalog.tenants if t.role == "recurring")
    assert len(set(counts)) >= 4, "label counts should vary across tenants"


def test_evaluation_classes_are_never_seen_in_meta_training(catalog):
    meta = {k for t in catalog.meta_train() for k in t.class_keys}
    held = {k for t in catalog.evaluation() if t.role == "eval" for k in t.class_keys}
    assert not meta & held


def test_recurring_tenants_have_trained_classes_under_another_real_name(catalog):
    """What a SaaS mostly sees: a new tenant's categories are ones the meta-training tenants have,
    named differently (a WordNet synonym, never the training tenants' own label)."""
    trained = {k: lab for t in catalog.meta_train() for k, lab in zip(t.class_keys, t.labels)}
    recurring = [t for t in catalog.evaluation() if t.role == "recurring"]
    assert len(recurring) >= 3
    for t in recurring:
        for key, label in zip(t.class_keys, t.labels):
            assert key in trained, (t.id, key)
            assert label.lower() != trained[key].lower() and label.lower() not in {
                x.lower() for x in trained.values()}, (t.id, label)
    wordnet_eval = [t for t in catalog.evaluation() if any(s.startswith("wordnet") for s in t.sources)]
    ha_eval = [t for t in catalog.evaluation() if t.sources == ["ha-intents"]]
    assert len(wordnet_eval) >= 2 and len(ha_eval) >= 1


def test_evaluation_files_share_no_text_with_meta_training_files(catalog):
    meta = {r["text"] for t in catalog.meta_train() for r in _rows(t.path)}
    assert not any(r["text"] in meta for t in catalog.evaluation() for r in _rows(t.path))


def test_every_file_is_a_valid_tenant_csv(catalog):
    minimum = ValidationSettings().min_examples_per_label
    for t in catalog.tenants:
        rows = _rows(t.path)
        assert len(rows) == t.n_rows
        assert all(r["text"].strip() and r["label"].strip() for r in rows), t.id
        per_label = Counter(r["label"] for r in rows)
        assert set(per_label) == set(t.labels) and len(t.labels) == len(t.class_keys)
        assert all(MIN_ROWS_PER_LABEL <= n <= 24 and n >= minimum for n in per_label.values()), t.id
        assert len({r["text"] for r in rows}) == len(rows), f"{t.id} repeats a text"


def test_tenant_ids_are_valid_and_unique(catalog):
    ids = [t.id for t in catalog.tenants]
    assert all(TENANT_ID.fullmatch(i) for i in ids) and len(set(ids)) == len(ids)
    assert all(t.path.name == f"{t.id}.csv" for t in catalog.tenants)


def test_same_seed_gives_byte_identical_files(catalog, tmp_path):
    again = build_demo_tenants(tmp_path, seed=0)
    first = sorted(p.relative_to(catalog.out_dir) for p in catalog.out_dir.rglob("*") if p.is_file())
    second = sorted(p.relative_to(again.out_dir) for p in again.out_dir.rglob("*") if p.is_file())
    assert first == second
    assert all((catalog.out_dir / p).read_bytes() == (again.out_dir / p).read_bytes() for p in first)


def test_catalog_json_round_trips(catalog):
    import json
    saved = json.loads((catalog.out_dir / "catalog.json").read_text(encoding="utf-8"))
    assert [t["id"] for t in saved["tenants"]] == [t.id for t in catalog.tenants]
    assert (catalog.out_dir / saved["bad_file"]) == catalog.bad_file


def test_bad_file_breaks_the_per_label_minimum(catalog):
    rows = _rows(catalog.bad_file)
    per_label = Counter(r["label"] for r in rows if r["text"].strip())
    assert min(per_label.values()) < ValidationSettings().min_examples_per_label
    assert any(not r["text"].strip() for r in rows), "the bad file should also carry blank texts"


def test_wordnet_gloss_parse_gives_the_definition_of_dog():
    dog = next(s for s in iter_synsets() if s.offset == "02084071" and s.pos == "n")
    assert dog.lexname == "noun.animal" and dog.lemmas[0] == "dog"
    assert dog.definition == ("a member of the genus Canis (probably descended from the common wolf) that has "
                              "been domesticated by man since prehistoric times; occurs in many breeds")


def test_gloss_definition_drops_quoted_examples_even_with_semicolons():
    gloss = 'move fast; go quickly; "he ran; she walked" - Anon; "run!"'
    assert gloss_definition(gloss) == "move fast; go quickly"


def test_missing_wordnet_says_how_to_install_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make setup"):
        next(iter_synsets(tmp_path))


def test_pools_hold_only_classes_with_twenty_texts():
    pools = class_pools(seed=0)
    assert set(pools) == set(SOURCES) == {"wordnet-lex", "wordnet-topic", "ha-intents", "fortunes", "bible", "foldoc"}
    assert len(pools["wordnet-lex"]) == 45 and all(len(pools[s]) >= 30 for s in SOURCES)
    assert all(len(texts) >= 20 for pool in pools.values() for texts in pool.values())
    assert not any(t.startswith("(law)") for t in pools["wordnet-topic"]["wordnet-topic:law"]), \
        "a leading '(law)' marker would name the label"


def test_intent_samples_are_deterministic_distinct_and_capped():
    a, b = intent_classes(per_intent=30, seed=3), intent_classes(per_intent=30, seed=3)
    assert a == b
    assert all(len(v) == len(set(v)) <= 30 for v in a.values())
    assert not any("{" in t or "<" in t for v in a.values() for t in v), "unfilled template slots"
    assert label_name("ha-intent:HassTurnOn") == "Turn on or open"
    assert label_name("wordnet-lex:verb.motion") == "Motion verbs"
    assert label_name("wordnet-topic:computer science") == "Computer science"
