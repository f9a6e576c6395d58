"""Support and query splits must share no text, or measured accuracy would be inflated."""
from data_checks.leakage import check_leakage


def test_disjoint_splits_have_no_leak():
    assert check_leakage(["reset password", "refund please"], ["where is my invoice"]) == []


def test_same_text_up_to_case_and_whitespace_is_a_leak():
    leaked = check_leakage(["Reset  my password", "refund"], ["reset my password ", "new text", "RESET MY\tpassword"])
    assert leaked == ["reset my password "]  # reported once, as the eval split spells it


def test_near_duplicates_that_differ_in_words_are_not_leaks():
    assert check_leakage(["reset my password"], ["reset my passwords"]) == []


def test_the_bulk_text_index_finds_what_the_pairwise_overlap_finds():
    """Bulk ingest compares each file with every other tenant through one index; it must report
    exactly what comparing the file with each other tenant's texts reports."""
    import random

    from data_checks.leakage import TextIndex, cross_tenant_overlap

    rng = random.Random(3)
    pool = [f"text {i}" for i in range(40)] + ["  Text 1 ", "TEXT 2"]
    tenants = {f"t{i}": rng.sample(pool, 12) for i in range(6)}
    index = TextIndex()
    for tenant, texts in tenants.items():
        index.add(tenant, texts)
    for tenant, texts in tenants.items():
        others = {t: x for t, x in tenants.items() if t != tenant}
        assert index.overlap(tenant, texts) == cross_tenant_overlap(texts, others)


def test_the_workspace_text_index_answers_as_reading_every_other_current_file(tmp_path):
    """A single ingest's cross-tenant check reads the text index, not every tenant's file: after
    ingests, a data checkout by another path and the index deleted, it answers exactly what
    comparing with every other tenant's current file answers."""
    from data_checks import text_index
    from data_checks.leakage import cross_tenant_overlap
    from data_checks.reading import iter_texts
    from tests.conftest import tiny_settings
    from tests.e2e.test_loop import write_csv
    from workspace import versioning
    from workspace.create import init_workspace

    ws = init_workspace(tmp_path / "ws", tiny_settings())
    texts = {t: [f"{t} text {i}" for i in range(6)] for t in ("a-co", "b-co", "c-co")}
    texts["b-co"][:2] = texts["a-co"][:2]  # b shares two of a's texts
    for tenant, rows in texts.items():
        versioning.track(ws, tenant, write_csv(tmp_path / f"{tenant}.csv", rows, ["x", "y"] * 3))
    incoming = texts["a-co"][:3] + texts["c-co"][:1] + ["new text"]

    def pairwise(tenant):
        others = {t: list(iter_texts(p)) for t, p in versioning.data_files(ws).items() if t != tenant}
        return cross_tenant_overlap(incoming, others), len(others)

    assert text_index.overlap(ws, "d-co", incoming) == pairwise("d-co") == ({"a-co": 3, "b-co": 2, "c-co": 1}, 3)
    first = versioning.current_version(ws, "b-co")
    versioning.track(ws, "b-co", write_csv(tmp_path / "b2.csv", texts["a-co"], ["x", "y"] * 3))  # b now holds all of a's
    assert text_index.overlap(ws, "d-co", incoming) == pairwise("d-co") == ({"a-co": 3, "b-co": 3, "c-co": 1}, 3)
    versioning.checkout(ws, "b-co", first.md5)  # back again, by another command than ingest
    assert text_index.overlap(ws, "d-co", incoming) == pairwise("d-co")
    assert text_index.overlap(ws, "a-co", incoming) == pairwise("a-co") == ({"b-co": 2, "c-co": 1}, 2)
    text_index.path(ws).unlink()  # a cache: rebuilt from the current files
    assert text_index.overlap(ws, "d-co", incoming) == pairwise("d-co")
