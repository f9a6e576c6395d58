"""The report's three PNG plots (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.tables import ADAPTED, FROZEN, SHOTS, Results  # noqa: E402

STYLE = {"prototypes": ("tab:gray", "s"), "logreg": ("tab:brown", "D"), "logreg+names": ("tab:olive", "P"),
         "setfit": ("tab:purple", "*"), "no-meta": ("tab:blue", "o"), "fomaml": ("tab:red", "^"),
         "reptile": ("tab:green", "v")}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _yerr(est) -> list[float]:
    return [e.half if math.isfinite(e.half) else 0.0 for e in est]


def accuracy_vs_shots(res: Results, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for method in (*FROZEN, *ADAPTED):
        shots = [k for k in SHOTS if res.has(method, k)]
        if not shots:
            continue
        est = [res.mean_acc(k, method) for k in shots]
        color, marker = STYLE[method]
        ax.errorbar(shots, [e.mean for e in est], yerr=_yerr(est), color=color, marker=marker, capsize=3,
                    label=res.label(method).replace("**", ""))
    if res.has("setfit", 5):
        e = res.mean_acc(5, "setfit")
        ax.errorbar([5.3], [e.mean], yerr=_yerr([e]), color=STYLE["setfit"][0], marker="*", markersize=11,
                    capsize=3, linestyle="none", label=f"SetFit ({res.setfit_n()} episodes)")
    ax.set_title(f"5-way accuracy vs shots, mean over {len(res.folds)} left-out source(s) (95% CI)")
    ax.set_xlabel("shots (support examples per class)")
    ax.set_ylabel("query accuracy")
    ax.set_xticks(list(SHOTS))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out / "accuracy_vs_shots.png")


def accuracy_vs_inner_steps(res: Results, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for method in ADAPTED:
        curve = res.curve(method)
        if not curve:
            continue
        color, marker = STYLE[method]
        ax.errorbar(list(curve), [e.mean for e in curve.values()], yerr=_yerr(curve.values()), color=color,
                    marker=marker, capsize=3, label=res.label(method).replace("**", ""))
    ax.axvline(res.steps, color="black", alpha=0.3, linestyle=":", label=f"adapt.inner_steps = {res.steps}")
    ax.set_xscale("log", base=2)
    ax.set_title("5-way 5-shot accuracy vs inner steps, mean over left-out sources (95% CI)")
    ax.set_xlabel("inner steps on the support set")
    ax.set_ylabel("query accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out / "accuracy_vs_inner_steps.png")


def meta_training_curves(res: Results, out: Path) -> Path:
    n = max(1, len(res.folds))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, fold in zip(axes.flat, res.folds):
        for algorithm in ("fomaml", "reptile"):
            run = res.training.get(f"{fold} {algorithm}")
            if not run or not run["history"]:
                continue
            hist, color = run["history"], STYLE[algorithm][0]
            ax.plot([h["step"] for h in hist], [h["val_acc"] for h in hist], color=color,
                    marker=STYLE[algorithm][1], label=algorithm)
            ax.plot([run["metrics"]["best_step"]], [run["metrics"]["val_accuracy"]], color=color, marker="o",
                    markersize=12, fillstyle="none")
        val = next(f["val"] for f in res.info["folds"] if f["test"] == fold)
        ax.set_title(f"left out {fold}\n(validation: {val})", fontsize=9)
        ax.set_xlabel("meta-step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes[0][0].set_ylabel("validation accuracy")
    fig.suptitle("meta-training: validation accuracy (circle: kept weights)")
    return _save(fig, out / "meta_training_curves.png")


def all_plots(res: Results, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [accuracy_vs_shots(res, out), accuracy_vs_inner_steps(res, out), meta_training_curves(res, out)]
