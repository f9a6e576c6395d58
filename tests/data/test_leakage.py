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
