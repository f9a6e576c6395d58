"""SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts") as the benchmark's
anchor, run through the ``setfit`` package itself (the optional ``bench`` extra: `make bench`).

At setfit 1.2.0's defaults: contrastive pairs from the support set by "oversampling",
CosineSimilarityLoss, one epoch, batch 16, lr 2e-5, seed 42, then its default head, a scikit-learn
LogisticRegression, on the fine-tuned embeddings. The whole encoder is fine-tuned, so a tenant
stores a full encoder copy plus the head. Only what must not leak is configured: no reporting
integration (setfit's "all" would open an MLflow store in the working directory), no checkpoints,
no logs or progress bars, and every file setfit's trainer writes lands in a temporary directory.
setfit is imported inside the functions: the rest of the benchmark works without the extra.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import math
import os
import platform
import random
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

SEED, BATCH = 42, 16
MISSING = "SetFit needs the optional `bench` extra: `make bench` installs it (or run the benchmark with --skip-setfit)"


def _quiet_libraries():
    """Silence setfit, transformers, sentence-transformers and datasets for one call, then restore
    them: setfit's modules set its logger to INFO on import, and the Hugging Face trainer prints
    its logs and progress bars unless told otherwise."""
    import datasets.utils as ds_utils
    import setfit.logging as sf_logging
    from transformers.utils import logging as hf_logging

    stack = contextlib.ExitStack()
    levels = (sf_logging.get_verbosity(), hf_logging.get_verbosity())
    bars = (sf_logging.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled(),
            not ds_utils.are_progress_bars_disabled())
    st_logger = logging.getLogger("sentence_transformers")
    st_level = st_logger.level

    def restore():
        sf_logging.set_verbosity(levels[0])
        hf_logging.set_verbosity(levels[1])
        st_logger.setLevel(st_level)
        for on, enable in zip(bars, (sf_logging.enable_progress_bar, hf_logging.enable_progress_bar,
                                     ds_utils.enable_progress_bars)):
            if on:
                enable()

    stack.callback(restore)
    sf_logging.set_verbosity_error()
    hf_logging.set_verbosity_error()
    st_logger.setLevel(logging.ERROR)
    sf_logging.disable_progress_bar()
    hf_logging.disable_progress_bar()
    ds_utils.disable_progress_bars()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")   # e.g. "pin_memory ... no accelerator is found" on every CPU run
    return stack


def _max_steps(n_pairs: int, max_pairs: int | None) -> int:
    """setfit caps pairs through ``max_steps`` (it builds at most max_steps * batch pairs); -1 keeps
    setfit's own count. Never more steps than one epoch of setfit's own pairs: the Hugging Face
    trainer would otherwise run extra epochs to reach ``max_steps``."""
    if not max_pairs or max_pairs >= n_pairs:
        return -1
    return math.ceil(max_pairs / BATCH)


def fit_predict(support: list[str], support_y: list[int], query: list[str],
                max_pairs: int | None = None, seed: int = SEED) -> tuple[np.ndarray, float, int]:
    """Fine-tune a fresh copy of the packaged encoder on the support set with setfit, fit its head,
    predict the query.

    Returns (predicted labels, adaptation seconds (trainer set-up, fine-tuning and head, not loading
    the encoder nor predicting), contrastive pairs trained on)."""
    if importlib.util.find_spec("setfit") is None:
        raise RuntimeError(MISSING)
    with _quiet_libraries():
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
        from setfit.sampler import ContrastiveDataset
        from transformers import PrinterCallback, ProgressCallback

        from lightning_modules.encoder import packaged_model_dir

        model = SetFitModel.from_pretrained(str(packaged_model_dir()), device="cpu")
        with tempfile.TemporaryDirectory(prefix="tailor-setfit-") as out:
            start = time.perf_counter()
            steps = _max_steps(len(ContrastiveDataset(support, support_y, multilabel=False)), max_pairs)
            args = TrainingArguments(output_dir=out, batch_size=BATCH, num_epochs=1, seed=seed, max_steps=steps,
                                     report_to="none", save_strategy="no", logging_strategy="no",
                                     show_progress_bar=False)
            trainer = Trainer(model=model, args=args,
                              train_dataset=Dataset.from_dict({"text": list(support), "label": list(support_y)}))
            trainer.remove_callback(ProgressCallback)
            trainer.remove_callback(PrinterCallback)
            trainer.train()
            seconds = time.perf_counter() - start
            trained = trainer.st_trainer.train_dataset
            pairs = len(trained) if steps == -1 else min(len(trained), steps * BATCH)
        pred = model.predict(list(query), batch_size=64, as_numpy=True, show_progress_bar=False)
    return pred, seconds, pairs


def head_bytes(n_way: int, dim: int = 384) -> int:
    """float32 coefficients and intercepts of the logistic-regression head (binary: one row)."""
    rows = 1 if n_way == 2 else n_way
    return 4 * rows * (dim + 1)


# --- python -m benchmarks.setfit_baseline: setfit's cost and accuracy on this machine -------------

def wordnet_episodes(n: int, seed: int, ways: int = 5, shots: int = 5, queries: int = 20):
    """5-way 5-shot episodes from WordNet's classes (the demo's text source), 20 query texts a class."""
    from corpora.wordnet import wordnet_classes

    classes = {k: v for k, v in wordnet_classes().items() if len(v) >= shots + queries}
    episodes = []
    for e in range(n):
        rng = random.Random(seed + e)
        support, support_y, query, query_y = [], [], [], []
        for label, key in enumerate(rng.sample(sorted(classes), ways)):
            texts = rng.sample(classes[key], shots + queries)
            support += texts[:shots]
            query += texts[shots:]
            support_y += [label] * shots
            query_y += [label] * queries
        episodes.append((support, support_y, query, np.array(query_y)))
    return episodes


def frozen_head_predict(support: list[str], support_y: list[int], query: list[str]) -> np.ndarray:
    """setfit's head on the untouched encoder (no contrastive phase): the reference that shows what
    the fine-tuning adds."""
    with _quiet_libraries():
        from setfit import SetFitModel

        from lightning_modules.encoder import packaged_model_dir

        model = SetFitModel.from_pretrained(str(packaged_model_dir()), device="cpu")
        model.fit(list(support), list(support_y), num_epochs=1, show_progress_bar=False)
        return model.predict(list(query), batch_size=64, as_numpy=True, show_progress_bar=False)


def main(argv: list[str] | None = None) -> Path:
    import torch

    from benchmarks.stats import estimate, paired

    ap = argparse.ArgumentParser(prog="python -m benchmarks.setfit_baseline",
                                 description="Seconds and accuracy of setfit per 5-way 5-shot WordNet episode.")
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads, one pass each")
    ap.add_argument("--max-pairs", type=int, default=None, help="cap on contrastive pairs (default: setfit's)")
    ap.add_argument("--seed", type=int, default=0, help="episode sampling seed")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if importlib.util.find_spec("setfit") is None:
        raise SystemExit(MISSING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load, t0 = os.getloadavg()[0], time.perf_counter()
    episodes = wordnet_episodes(args.episodes, args.seed)
    frozen = {i: float(np.mean(frozen_head_predict(s, sy, q) == qy)) for i, (s, sy, q, qy) in enumerate(episodes)}
    fit_predict(episodes[0][0], episodes[0][1], episodes[0][2][:1], max_pairs=BATCH)  # warm-up, off the record
    # thread counts alternate within each episode, so a busy neighbour slows both alike
    rows, per_threads = [], {t: ({}, []) for t in args.threads}
    for i, (s, sy, q, qy) in enumerate(episodes):
        for threads, (acc, secs) in per_threads.items():
            torch.set_num_threads(threads)
            pred, seconds, pairs = fit_predict(s, sy, q, args.max_pairs)
            acc[i] = float(np.mean(pred == qy))
            secs.append(seconds)
            rows.append(f"| {i} | {threads} | {pairs} | {seconds:.1f} | {100 * acc[i]:.1f} | {100 * frozen[i]:.1f} | "
                        f"{os.getloadavg()[0]:.1f} |")
            print(rows[-1], flush=True)
    lines = [
        "# setfit on this CPU", "",
        f"`{' '.join(['python -m benchmarks.setfit_baseline', *(sys.argv[1:] if argv is None else argv)])}` "
        f"on {os.cpu_count()} CPU cores ({platform.machine()}), "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average at start {load:.1f} (a shared machine: "
        f"read ratios, not absolute seconds). Whole run: {time.perf_counter() - t0:.0f} s.", "",
        f"setfit 1.2.0 at its defaults on the packaged all-MiniLM-L6-v2, {args.episodes} WordNet episodes "
        "(5 classes, 5 support and 20 query texts each). Seconds: trainer set-up, contrastive fine-tuning and "
        "the logistic-regression head, not loading the encoder nor predicting. 'Frozen head': setfit's head on "
        "the untouched encoder, the same episodes.", "",
        "| torch threads | seconds per episode (median, min-max) | setfit accuracy | frozen head | setfit - frozen head |",
        "|---|---|---|---|---|"]
    for threads, (acc, secs) in per_threads.items():
        lines.append(f"| {threads} | {np.median(secs):.1f} ({min(secs):.1f}-{max(secs):.1f}) | "
                     f"{estimate(list(acc.values())).pts()} | {estimate(list(frozen.values())).pts()} | "
                     f"{paired(acc, frozen).pts(signed=True)} |")
    lines += ["", "Per episode:", "",
              "| episode | threads | pairs | seconds | setfit acc | frozen head acc | load average after |",
              "|---|---|---|---|---|---|---|", *rows, ""]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "setfit_baseline.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
