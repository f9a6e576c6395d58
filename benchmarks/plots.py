"""The report's three PNG plots (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.tables import ADAPTED, FROZEN, Results  # noqa: E402

SETTINGS = ("in-domain", "cross-domain")
TITLES = {"in-domain": "in-domain (held-out classes)", "cross-domain": "cross-domain (unseen source: HA intents)"}
STYLE = {"prototypes": ("tab:gray", "s"), "logreg": ("tab:brown", "D"), "setfit": ("tab:purple", "*"),
         "no-meta": ("tab:blue", "o"), "fomaml": ("tab:red", "^"), "reptile": ("tab:green", "v")}


def _axes(title: str):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    fig.suptitle(title)
    return fig, axes


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_vs_shots(res: Results, out: Path) -> Path:
    fig, axes = _axes("5-way accuracy vs shots (mean, 95% CI)")
    for ax, setting in zip(axes, SETTINGS):
        for method in (*FROZEN, *ADAPTED):
            shots = [k for k in (1, 5, 10) if res.acc(setting, k, method).n]
            if not shots:
                continue
            est = [res.acc(setting, k, method) for k in shots]
            color, marker = STYLE[method]
            ax.errorbar(shots, [e.mean for e in est], yerr=[e.half if e.n > 1 else 0 for e in est], color=color,
                        marker=marker, capsize=3, label=res.label(method))
        sf = res.acc(setting, 5, "setfit")
        if sf.n:
            ax.errorbar([5.25], [sf.mean], yerr=[sf.half if sf.n > 1 else 0], color=STYLE["setfit"][0],
                        marker="*", markersize=11, capsize=3, linestyle="none",
                        label=f"{res.label('setfit')}, {sf.n} episodes")
        ax.set_title(TITLES[setting])
        ax.set_xlabel("shots (support examples per class)")
        ax.set_xticks([1, 5, 10])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("query accuracy")
    axes[0].legend(fontsize=7, loc="lower right")
    return _save(fig, out / "accuracy_vs_shots.png")


def accuracy_vs_inner_steps(res: Results, out: Path) -> Path:
    fig, axes = _axes("5-way 5-shot accuracy vs inner steps (mean, 95% CI)")
    for ax, setting in zip(axes, SETTINGS):
        n = res.curve_episodes(setting)
        for method in ADAPTED:
            curve = res.curve(setting, method)
            if not curve:
                continue
            color, marker = STYLE[method]
            ax.errorbar(list(curve), [e.mean for e in curve.values()], yerr=[e.half for e in curve.values()],
                        color=color, marker=marker, capsize=3, label=res.label(method))
        for method in FROZEN:
            ax.axhline(res.acc(setting, 5, method, upto=n).mean, color=STYLE[method][0], linestyle="--",
                       label=res.label(method))
        ax.axvline(res.steps, color="black", alpha=0.3, linestyle=":", label=f"adapt.inner_steps = {res.steps}")
        ax.set_xscale("log", base=2)
        ax.set_title(f"{TITLES[setting]}, {n} episodes")
        ax.set_xlabel("inner SGD steps on the support set")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("query accuracy")
    axes[0].legend(fontsize=7, loc="lower right")
    return _save(fig, out / "accuracy_vs_inner_steps.png")


def meta_training_curve(res: Results, out: Path) -> Path:
    fig, axes = _axes("meta-training: accuracy on the validation classes (early stopping)")
    for ax, setting in zip(axes, SETTINGS):
        for algorithm in ("fomaml", "reptile"):
            run = res.training.get(f"{setting} {algorithm}")
            if not run:
                continue
            hist = run["history"]
            color, marker = STYLE[algorithm]
            ax.plot([h["step"] for h in hist], [h["val_acc"] for h in hist], color=color, marker=marker,
                    label=res.label(algorithm))
            best = run["metrics"]["best_step"]
            ax.plot([best], [run["metrics"]["val_accuracy"]], color=color, marker="o", markersize=12,
                    fillstyle="none")
        ax.set_title(TITLES[setting].split(" (")[0] + " meta-training (circle: kept weights)")
        ax.set_xlabel("meta-step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy")
    axes[0].legend(fontsize=8)
    return _save(fig, out / "meta_training_curve.png")


def all_plots(res: Results, out: Path) -> list[Path]:
    return [accuracy_vs_shots(res, out), accuracy_vs_inner_steps(res, out), meta_training_curve(res, out)]
