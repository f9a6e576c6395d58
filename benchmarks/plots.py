"""The report's PNG plots (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.tables import LABELS, PROTOCOLS, SHOTS, Results  # noqa: E402

STYLE = {"logreg+names": ("tab:olive", "P"), "setfit": ("tab:purple", "*"), "no-meta": ("tab:blue", "o"),
         "pooled": ("tab:orange", "s"), "fomaml": ("tab:red", "^"), "reptile": ("tab:green", "v"),
         "pooled-fomaml": ("tab:pink", "D"), "tailor": ("black", "X")}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _yerr(est) -> list[float]:
    return [e.half if math.isfinite(e.half) else 0.0 for e in est]


def accuracy_vs_shots(res: Results, out: Path) -> Path:
    """One panel per protocol: mean accuracy over sources against shots, each method."""
    shown = [p for p in PROTOCOLS if res.sources(p)]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 4.6), squeeze=False)
    for ax, protocol in zip(axes[0], shown):
        for method, (color, marker) in STYLE.items():
            shots = [k for k in SHOTS if res.mean_acc(protocol, k, method).n]
            if not shots:
                continue
            est = [res.mean_acc(protocol, k, method) for k in shots]
            ax.errorbar(shots, [100 * e.mean for e in est], yerr=[100 * h for h in _yerr(est)], color=color,
                        marker=marker, capsize=3, label=LABELS[method].replace("**", ""),
                        linestyle="none" if len(shots) == 1 else "-")
        ax.set_title(protocol)
        ax.set_xlabel("examples per category (5-way)")
        ax.set_xticks(SHOTS)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("query accuracy, % (mean over sources)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    return _save(fig, out / "accuracy_vs_shots.png")


def training_curves(res: Results, out: Path) -> Path:
    """Validation accuracy along base training, per algorithm, for every training set (thin lines)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    seen = set()
    for t in res.training_rows():
        color, _ = STYLE.get(t["algorithm"], ("gray", "o"))
        curve = [(h["step"], h["val_acc"]) for h in t["history"] if "val_acc" in h and h.get("phase", t["algorithm"])]
        if len(curve) < 2:
            continue
        start = curve[0][1]
        label = LABELS.get(t["algorithm"]) if t["algorithm"] not in seen else None
        seen.add(t["algorithm"])
        ax.plot([s for s, _ in curve], [100 * (v - start) for _, v in curve], color=color, alpha=0.5, lw=1,
                label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation accuracy - its start, points")
    ax.grid(alpha=0.3)
    if seen:
        ax.legend(fontsize=7)
    return _save(fig, out / "base_training_curves.png")


def write(res: Results, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [accuracy_vs_shots(res, out), training_curves(res, out)]
