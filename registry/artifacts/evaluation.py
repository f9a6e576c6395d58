"""What a reviewer reads besides accuracy: per-label precision/recall and a confusion matrix,
computed from the held-out predictions adaptation returns, and logged as MLflow artifacts."""
from __future__ import annotations

from pathlib import Path


def per_label(labels: list[str], y_true: list[int], y_pred: list[int]) -> list[dict]:
    """One row per label: precision, recall, f1 and support on the held-out split."""
    from sklearn.metrics import precision_recall_fscore_support

    if not y_true:
        return []
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(labels))),
                                                 zero_division=0)
    return [{"label": name, "precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
             "f1": round(float(f[i]), 4), "support": int(s[i])} for i, name in enumerate(labels)]


def confusion(labels: list[str], y_true: list[int], y_pred: list[int]) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix

    if not y_true:
        return [[0] * len(labels) for _ in labels]
    return confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))).tolist()


def confusion_png(labels: list[str], matrix: list[list[int]], path: Path, title: str) -> Path:
    """A labelled heat map (rows: true label, columns: predicted), written with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    n = max(len(labels), 1)
    fig = Figure(figsize=(2.5 + 0.6 * n, 2.0 + 0.6 * n), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    short = [name if len(name) <= 18 else name[:17] + "…" for name in labels]
    ax.set_xticks(range(len(labels)), short, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), short, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    peak = max((v for row in matrix for v in row), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                    color="white" if peak and value > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(str(path))
    return Path(path)
