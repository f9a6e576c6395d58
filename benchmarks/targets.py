"""The issue's targets, each checked against the measured numbers, with a generated reason per miss."""
from __future__ import annotations

from benchmarks.tables import BEST, Results

BUDGET_MIN = {"full": 120.0, "quick": 15.0}
ADAPT_BUDGET_S, DELTA_SHARE, MIN_SETFIT = 2.0, 0.02, 60
META_STEPS_IN_10_MIN, META_GAIN, SETFIT_GAIN, SETFIT_SPEEDUP = 1000, 0.015, 0.01, 20.0


def _row(target: str, measured: str, met: bool, why: str) -> list[str]:
    return [target, measured, "met" if met else "**missed**", "" if met else why]


def _kept(res: Results) -> str:
    runs = [r for r in res.training.values() if r["algorithm"] == res.algorithm]
    kept = ", ".join(f"{r['fold']} {r['metrics']['best_step']}/{r['metrics']['steps_run']}" for r in runs)
    return f"meta-training kept step (of steps run) {kept}" if runs else "no base was meta-trained"


def _why_gain(res: Results) -> str:
    a = res.algorithm
    meta, no_meta = res.mean_diff(5, a, "no-meta"), res.mean_diff(5, "no-meta", BEST)
    names = res.mean_diff(5, "logreg+names", "logreg")
    curve = res.curve("no-meta")
    moves = ""
    if len(curve) > 1:
        lo, hi = min(curve), max(curve)
        moves = f"; without meta-learning {lo} inner step(s) give {curve[lo].pts()} and {hi} give {curve[hi].pts()}"
    return (f"meta-learning adds {meta.pts(True)} pts over the same adaptation without it, which is itself "
            f"{no_meta.pts(True)} vs the best frozen baseline (label names add {names.pts(True)} to logistic "
            f"regression){moves}; {_kept(res)}. Other inner loops (SetFit's contrastive objective, meta-learned "
            f"or not) and ensembles with the frozen head: 'What was tried' below")


def _accuracy_rows(res: Results) -> list[list[str]]:
    a, rows = res.algorithm, []
    gain = res.mean_diff(5, a, BEST)
    rows.append(_row("5-shot, mean over left-out sources: Tailor >= best frozen baseline (label names included) "
                     "+ 2 pts", f"{gain.pts(True)} pts ({len(res.folds)} source(s))", gain.mean >= 0.02, _why_gain(res)))
    meta = res.mean_diff(5, a, "no-meta")
    rows.append(_row(f"5-shot: the meta-learned start >= the same adaptation from the no-meta start + "
                     f"{100 * META_GAIN:.1f} pts", f"{meta.pts(True)} pts", meta.mean >= META_GAIN,
                     f"{_kept(res)} (a kept step well below the steps run: validation on the held-out "
                     f"source stopped improving early)"))
    n = res.setfit_n()
    if n:
        vs = res.mean_diff(5, a, "setfit")
        speed = res.setfit_speedup()
        why = (f"only {n} SetFit episode(s) in this run (the full profile runs more per source)" if n < MIN_SETFIT else
               f"SetFit fine-tunes all six encoder layers on contrastive pairs ({res.setfit_pairs()} per episode); "
               "Tailor adapts a token adapter on the frozen encoder's states")
        rows.append(_row(f"5-shot: Tailor >= SetFit + {100 * SETFIT_GAIN:.0f} pt (paired, >= {MIN_SETFIT} episodes) at "
                         f">= {SETFIT_SPEEDUP:.0f}x less time per adaptation",
                         f"{vs.pts(True)} pts over {n} episodes (Tailor {res.mean_acc(5, a).pts()} on all "
                         f"episodes, SetFit {res.mean_acc(5, 'setfit').pts()} on its own), "
                         + (f"{speed:.0f}x faster" if speed else "time not measured"),
                         n >= MIN_SETFIT and vs.mean >= SETFIT_GAIN and (speed or 0) >= SETFIT_SPEEDUP, why))
    diffs = {f: res.diff(f, 5, a, BEST) for f in res.folds}
    below = {f: d for f, d in diffs.items() if d.n > 1 and d.mean + d.half < 0}
    worst = min(diffs, key=lambda f: diffs[f].mean)
    rows.append(_row("5-shot: no left-out source below the best frozen baseline beyond its interval",
                     (", ".join(f"{f} {d.pts(True)}" for f, d in below.items()) or
                      f"none (lowest: {worst} {diffs[worst].pts(True)})"), not below,
                     "on those sources the adapted embeddings fit the support set and not the query "
                     "(see the paired table: Tailor vs no-meta and no-meta vs names alone)"))
    return rows


def _cost_rows(res: Results) -> list[list[str]]:
    rows, a = [], res.algorithm
    b = res.cost["adaptation"]["bytes"]
    share = b["tailor"] / b["encoder"]
    rows.append(_row(f"stored delta <= {100 * DELTA_SHARE:.0f}% of the encoder", f"{100 * share:.3f}% "
                     f"({b['tailor']} B of {b['encoder']} B)", share <= DELTA_SHARE, "the delta's tensors outgrew it"))
    sources, threads = res.cost["adaptation"]["sources"], res.thread_counts()
    most = max(threads)
    times = {s: res.adapt_time(f"{a}_s", s, most) for s in sources}
    slow = max(times, key=times.get)
    one = ", ".join(f"{s} {res.adapt_time(f'{a}_s', s, 1):.2f} s" for s in sources)
    rows.append(_row(f"one 50-example tenant adapted in < {ADAPT_BUDGET_S:.0f} s (one adaptation, frozen part cached)",
                     ", ".join(f"{s} {t:.2f} s" for s, t in times.items()) + f" at {most} thread(s) ({one} at 1)",
                     times[slow] < ADAPT_BUDGET_S,
                     f"{res.steps} inner steps, forward and backward through the adapted layer over 55 rows (50 "
                     f"texts and 5 label names, run in groups of similar length), then the logistic-regression "
                     f"head; {slow} has the longest texts; the CPU was shared (load "
                     f"{res.info['load_end'][0]:.1f} at the end)"))
    rate = res.steps_per_second()
    if rate is not None:
        steps = rate * 600
        rows.append(_row(f">= {META_STEPS_IN_10_MIN} meta-steps in 10 minutes on this machine (meta-training runs, "
                         "features cached)", f"{steps:.0f} ({rate:.2f} meta-steps/s, median over runs)",
                         steps >= META_STEPS_IN_10_MIN, "validation and the shared CPU take their share"))
    minutes, budget = res.info["runtime_s"] / 60, BUDGET_MIN.get(res.info["profile"], 90.0)
    rows.append(_row(f"{res.info['profile']} run <= {budget:.0f} min", f"{minutes:.1f} min", minutes <= budget,
                     f"the CPU was shared (load {res.info['load_start'][0]:.1f} at start, "
                     f"{res.info['load_end'][0]:.1f} at the end); see Run time for the work per kind"))
    return rows


def targets(res: Results) -> list[str]:
    rows = _accuracy_rows(res) + _cost_rows(res)
    met = sum(r[2] == "met" for r in rows)
    lines = ["## Targets", "", f"{met} of {len(rows)} met. 'Tailor' is the product's default meta-learning "
             f"algorithm ({res.algorithm}) with its default adaptation; ± is the 95% confidence interval; points are "
             "accuracy points (paired differences on the same episodes).", "",
             "| target | measured | status | why (where missed) |", "|---|---|---|---|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + [""]
