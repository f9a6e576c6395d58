"""Support and query splits must share no text, or measured accuracy would be inflated."""
from data_checks.leakage import check_leakage


def test_disjoint_splits_have_no_leak():
    assert check_leakage(["reset password", "refund please"], ["where is my invoice"]) == []


def test_same_text_up_to_case_and_whitespace_is_a_leak():
    leaked = check_leakage(["Reset  my password", "refund"], ["reset my password ", "new text", "RESET MY\tpassword"])
    assert leaked == ["reset my password "]  # reported once, as the eval split spells it


def test_near_duplicates_that_differ_in_words_are_not_leaks():
    assert check_leakage(["reset my password"], ["reset my passwords"]) == []
