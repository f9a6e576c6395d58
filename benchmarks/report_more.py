"""The report's diagnostic sections: the inner loop step by step, accuracy vs inner steps,
meta-training per fold, cost, and where the run's time went."""
from __future__ import annotations

import math

from benchmarks.setfit_baseline import head_bytes
from benchmarks.stats import stratified
from benchmarks.tables import FROZEN, Results

TRACE_MARKS = (0, 1, 2, 4, 8, 16)


def _table(head: list[str], rows: list[list]) -> list[str]:
    from benchmarks.report import table

    return table(head, rows)


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _secs(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "–"


def inner_loop(res: Results) -> list[str]:
    old, new = res.trace("old"), res.trace("new")
    if not old or not new:
        return []
    o, n = res.info["old_settings"], res.info["settings"]
    lines = ["## Why the old inner loop did not move (what to find out first)", "",
             f"The start without meta-learning, adapted step by step on the first {old[0]['n']} 5-shot episodes "
             "(all left-out sources together): support loss and gradient norms at the parameters after k steps, the "
             "share of query predictions that differ from step 0's, and query accuracy (the head the adaptation "
             "returns). **Old**: the adaptation before issue 15 "
             f"({o['meta_train']['optimizer']}, lr {o['meta_train']['inner_lr']} on every tensor, head "
             f"`{o['adapt']['head']}` = the support prototypes, no label names). **New**: today's defaults "
             f"({n['meta_train']['optimizer']} direction, adapter lr {n['meta_train']['inner_lr']}, head lr "
             f"{n['meta_train']['head_lr']}, label names as examples, head `{n['adapt']['head']}` re-fitted on the "
             "adapted embeddings).", ""]
    rows = []
    for k in [k for k in TRACE_MARKS if k in old or k in new]:
        cells = []
        for t in (old, new):
            r = t.get(k)
            cells += ([f"{r['loss']:.3f}", f"{r['grad_adapters']:.3f}", f"{r['grad_head']:.3f}",
                       f"{100 * r['changed']:.1f}%", f"{100 * r['acc']:.1f}"] if r else ["–"] * 5)
        rows.append([k, *cells])
    head = ["step"] + [f"{v}: {c}" for v in ("old", "new") for c in
                       ("support loss", "‖grad‖ adapters", "‖grad‖ head", "predictions changed", "query acc")]
    lines += _table(head, rows)
    last = max(old)
    o0, ok, n_last = old[0], old[last], new[max(new)]
    lines += [f"Why the old loop did not move: its head is the support set's own class prototypes at scale 10, so "
              f"the support loss starts at {o0['loss']:.3f} with gradient norms of {o0['grad_adapters']:.3f} "
              f"(adapters) and {o0['grad_head']:.3f} (head); {last} SGD steps of lr "
              f"{o['meta_train']['inner_lr']} times gradients that small changed {100 * ok['changed']:.1f}% of the "
              f"query predictions (accuracy {100 * o0['acc']:.1f} -> {100 * ok['acc']:.1f}), while the new loop, "
              f"whose Adam direction does not shrink with the gradient, changed {100 * n_last['changed']:.1f}% "
              f"(accuracy {100 * new[0]['acc']:.1f} -> {100 * n_last['acc']:.1f}).", ""]
    return lines


def _frozen_on_curve(res: Results, method: str, n_by_fold: dict[str, int]):
    groups = []
    for f in res.folds:
        s = res.scores(f, 5, method)
        groups.append([s[i] for i in sorted(s) if i < n_by_fold.get(f, 0)])
    return stratified(groups)


def steps_table(res: Results) -> list[str]:
    methods = [m for m in ("no-meta", res.algorithm, "reptile") if res.curves(m)]
    if not methods:
        return []
    n_by_fold = {f: len([r for r in res.records if r["fold"] == f and r["method"] == "no-meta" and r["shots"] == 5
                         and len(r.get("curve", {})) > 1]) for f in res.folds}
    marks = sorted({k for m in methods for k in res.curve(m)})
    rows = [[res.label(m), *[res.curve(m)[k].pts() if k in res.curve(m) else "–" for k in marks]] for m in methods]
    rows += [[res.label(m), *[_frozen_on_curve(res, m, n_by_fold).pts()] * len(marks)] for m in FROZEN]
    return ["## Accuracy vs inner steps (5-shot)", "",
            f"The first {max(n_by_fold.values())} 5-shot episodes of each left-out source, mean over sources; one run "
            f"of the inner loop scored on the way (the product's default is {res.steps} steps). Frozen baselines on "
            "the same episodes for reference.", ""] + _table(["method", *[f"{k} step(s)" for k in marks]], rows)


def training(res: Results) -> list[str]:
    rows = []
    for name, run in res.training.items():
        m = run["metrics"]
        curve = ", ".join(f"{h['step']}: {100 * h['val_acc']:.1f}" for h in run["history"])
        rows.append([run["fold"], res.label(run["algorithm"]), m["steps_run"], m["best_step"],
                     f"{100 * m['val_accuracy_start']:.1f}", f"{100 * m['val_accuracy']:.1f}",
                     f"{m['train_seconds']:.0f}", curve])
    return ["## Meta-training per fold", "", "Validation accuracy (the validation source's tasks, the same tasks at "
            "every validation) by meta-step; the kept weights are those of the best validation (step 0: no "
            "meta-learning). Seconds include caching and the start's validation.", ""] + _table(
        ["left-out source", "base", "steps run", "kept step", "val acc at start", "val acc kept", "seconds",
         "validation curve (step: acc)"], rows)


def cost(res: Results) -> list[str]:
    maml, mt = res.meta_step("maml"), res.info["settings"]["meta_train"]
    plan = res.info["profile_plan"]
    rows = [[res.label(a), f"{res.meta_step(a)['step_s']:.2f}", f"{maml['step_s'] / res.meta_step(a)['step_s']:.1f}x",
             f"{res.meta_step(a)['peak_mb']:.0f}"] for a in ("maml", "fomaml", "reptile")]
    lines = ["## Cost", "", f"Meta-step (meta-batch {mt['meta_batch']}, {mt['inner_steps']} inner steps, label "
             f"names, the first fold's meta-training tenants, the same meta-batches for every algorithm): the "
             f"algorithms interleaved step by step in one worker ({maml['threads']} thread), median of "
             f"{len(maml['step_s_all'])} after {plan['cost_warmup']} warm-up; peak memory: each alone in a fresh "
             f"process, RSS above setup over {plan['memory_steps']} step(s).", ""]
    lines += _table(["algorithm", "s / meta-step", "faster than MAML", "peak MiB above setup"], rows)
    b, threads, a = res.cost["adaptation"]["bytes"], res.thread_counts(), res.algorithm
    sources = res.cost["adaptation"]["sources"]
    head = ["what", *[f"{s}, {t} thread(s)" for s in sources for t in threads]]
    keys = [("no-meta_s", res.label("no-meta")), ("fomaml_s", res.label("fomaml")), ("reptile_s", res.label("reptile")),
            ("prototypes_s", "prototypes (frozen)"), ("logreg_s", "logistic regression (frozen)"),
            ("adapt_tenant_s", "the product's whole `adapt_tenant`")]
    rows = [[label, *[_secs(res.adapt_time(k, s, t)) for s in sources for t in threads]] for k, label in keys]
    lines += [f"Seconds per tenant of 50 examples (5 labels x 10, all the support set, + 5 label names), frozen "
              f"part cached, median of {plan['cost_repeats']} after a warm-up, in a fresh process after all other "
              "work (at more than 1 thread only Tailor is timed). One adaptation = `adapt_task` from that start; "
              "`adapt_tenant` measures every method on a held-out split, keeps the best, and refits it on all 50.", ""]
    lines += _table(head, rows)
    enc = b["encoder"]
    sizes = [("Tailor's delta (adapters + head, `delta.safetensors`)", b["tailor"]),
             (f"the product's delta for this tenant (head chosen: {b['product_head']})", b["product"]),
             ("prototypes", b["prototypes"]), ("logistic regression head", b["logreg"]),
             ("SetFit (a fine-tuned encoder + head)", enc + head_bytes(5))]
    lines += [f"Stored per tenant, against the encoder's `model.safetensors` ({_mib(enc)}); Tailor's manifest adds "
              f"{b['manifest']} B.", ""]
    lines += _table(["what", "bytes", "of the encoder"], [[w, _mib(n), f"{100 * n / enc:.3f}%"] for w, n in sizes])
    if res.setfit_n():
        lines += [f"SetFit on its {res.setfit_n()} episodes: median {res.seconds('setfit'):.1f} s per episode "
                  f"(fine-tuning and head, {res.setfit_pairs()} pairs at most); Tailor's adaptation of the same "
                  f"episodes in the same worker just before: median {res.seconds('tailor@setfit'):.2f} s.", ""]
    return lines


def run_time(res: Results) -> list[str]:
    rows = [[kind, w["jobs"], f"{w['wall_s'] / 60:.1f}", f"{w['cpu_s'] / 60:.1f}"]
            for kind, w in sorted(res.work_by_kind().items())]
    return ["## Run time", "", f"Whole run {res.info['runtime_s'] / 60:.1f} min. Work by kind, summed over jobs "
            "(two workers run side by side, so wall minutes add up to about twice the elapsed time; CPU minutes "
            "barely depend on what else loads the machine). Meta-training is bounded by `meta_train.max_minutes` "
            "per fold and algorithm.", ""] + _table(["work", "jobs", "wall min", "CPU min"], rows)
