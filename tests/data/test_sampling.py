"""Large tenants are sampled to limits.max_adapt_rows: stratified, seeded, no label lost."""
import pandas as pd

from data_checks.sampling import bounded_sample


def frame(counts: dict) -> pd.DataFrame:
    rows = [(f"{label} {i}", label) for label, n in counts.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["text", "label"])


def test_a_tenant_within_the_limit_is_untouched():
    df = frame({"a": 10, "b": 10})
    same, info = bounded_sample(df, 20, seed=0)
    assert same is df and info is None


def test_sampling_keeps_label_shares_every_label_and_the_file_order():
    df = frame({"a": 7000, "b": 2990, "c": 10})
    sample, info = bounded_sample(df, 200, seed=0, min_per_label=4)
    counts = sample["label"].value_counts().to_dict()
    assert len(sample) == 200 and info["kept"] == 200 and info["rows"] == 10_000
    assert counts["c"] == 4  # the small label keeps its minimum; the rest is shared by size
    assert abs(counts["a"] / 200 - 0.70) <= 0.03 and abs(counts["b"] / 200 - 0.299) <= 0.03
    order = [int(t.split()[1]) + {"a": 0, "b": 7000, "c": 9990}[lb] for t, lb in zip(sample["text"], sample["label"])]
    assert order == sorted(order)
    assert info["summary"].startswith("200 of 10000 rows (stratified by label, seed 0")


def test_sampling_is_seeded():
    df = frame({"a": 500, "b": 500})
    assert bounded_sample(df, 50, seed=1)[0].equals(bounded_sample(df, 50, seed=1)[0])
    assert not bounded_sample(df, 50, seed=1)[0].equals(bounded_sample(df, 50, seed=2)[0])


def test_minimums_win_over_the_limit_when_there_are_many_labels():
    df = frame({f"l{i}": 30 for i in range(40)})
    sample, _ = bounded_sample(df, 50, seed=0, min_per_label=2)
    assert sample["label"].nunique() == 40 and len(sample) <= 90
