"""What each CLI command does, in terms of flows, registry and workspace functions.

Kept apart from argument parsing so the demo and tests call exactly what a person's command runs.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tailor.output import emit_json, not_unicode, printable, table
from tailor.progress import working
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings, load_settings
from workspace.tenants import check_tenant_id


@dataclass
class Context:
    root: Path | None = None
    debug: bool = False

    def open(self, prefect: bool = False, mlflow: bool = True, read_only: bool = False,
             preload: str | None = None) -> tuple[Workspace, Settings]:
        """The workspace and its settings, with Prefect (``prefect``) and MLflow set up for it.
        ``preload``: a module the command needs, imported while an embedded Prefect server starts."""
        ws = Workspace.find(self.root)
        if not ws.is_initialised():
            raise UserError(f"{ws.root} is not a Tailor workspace: run `tailor init {ws.root}` "
                            "or pass --workspace DIR")
        from tailor import logs

        if mlflow and not read_only:  # a command that writes the tracking store
            room(ws)
        logs.setup(ws, self.debug)
        settings = load_settings(ws.params_file)
        from workspace import pipeline

        pipeline.sync_if_changed(ws, settings)  # dvc.yaml: added if missing, tenant data deps kept current
        if prefect:
            self.start_prefect(ws, settings, preload)
        if mlflow:
            from registry.storage import store

            store.configure(ws, settings, read_only=read_only)
        return ws, settings

    def start_prefect(self, ws: Workspace, settings: Settings, preload: str | None = None) -> None:
        """Prefect for this command (the workspace's embedded server unless one is set), importing
        ``preload`` while an embedded server starts."""
        room(ws)
        from flows import runtime

        runtime.configure(ws, settings, self.debug, meanwhile=preload and (lambda: _preload(preload)))


MIN_FREE = 1 << 20  # bytes a changing command needs at least (logs, Prefect's and MLflow's databases, git)


def free_bytes(ws: Workspace) -> int | None:
    """Bytes free for this user on the workspace's filesystem; None when it cannot be told."""
    try:
        st = os.statvfs(ws.root)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def room(ws: Workspace) -> None:
    """Refuse to start changing state on a full filesystem, as the disk-full ``OSError`` the CLI
    reports in one line (exit 2), instead of failing half-way inside Prefect's or MLflow's database."""
    import errno

    free = free_bytes(ws)
    if free is not None and free < MIN_FREE:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(ws.root))


def _preload(module: str) -> None:
    """Import ``module`` (and, for ingest, Great Expectations) now: it is the command's next step.
    A failure is left to that step, which imports it again and reports it."""
    import importlib

    if module.startswith(("flows.ingest", "flows.bulk_ingest")):
        from data_checks.expectations import preload

        preload()
    try:
        importlib.import_module(module)  # Prefect among its imports: its settings are read again after
    except Exception:  # noqa: BLE001 - raised again, and reported, by the command's own import
        pass


@contextmanager
def answering(json_out: bool):
    """With ``--json``, stdout carries the JSON alone: what the work prints for people (progress,
    the stop reason of meta-training) goes to stderr meanwhile."""
    if not json_out:
        yield
        return
    with redirect_stdout(sys.stderr):
        yield


def done(json_out: bool, result, line: str):
    """The command's result as JSON, or its one line for people."""
    if json_out:
        emit_json(result)
    else:
        print(line)
    return result


def init(directory: Path, json_out: bool = False) -> dict:
    """``directory``: the folder to create or complete (the CLI passes -w DIR when no argument)."""
    from workspace.create import init_workspace

    with answering(json_out):
        ws = init_workspace(directory)
    return done(json_out, {"workspace": str(ws.root), "settings": str(ws.params_file)},
                f"workspace ready at {ws.root}\n  settings: {ws.params_file}\n  next: tailor ingest TENANT FILE")


def ingest(ctx: Context, tenant: str, file: Path, json_out: bool = False, user: str | None = None) -> dict:
    from data_checks.reading import check_input
    from registry.trail.identity import resolve

    person = resolve(user, "--user")  # the author of the data's git commit
    check_tenant_id(tenant)
    check_input(file)  # a missing file, folder, link or device: refused before Prefect starts
    ws, settings = ctx.open(mlflow=False)
    from workspace.versioning import unchanged_version

    same = unchanged_version(ws, tenant, file, settings.limits.max_bytes)
    if same is not None:  # as DVC says "didn't change, skipping": no flow run, no validation again
        return done(json_out, {"tenant": tenant, "passed": True, "unchanged": True, "data_version": same.to_dict(),
                               "report": None},
                    f"{tenant}: {printable(file.name)} is unchanged: data version {same.md5} (git "
                    f"{str(same.git_commit)[:7]}) is already current, nothing to do (`tailor validate {tenant}` "
                    "checks it under today's settings)")
    with working(f"ingesting {tenant}: validating (Great Expectations) and versioning (DVC)"):
        # the flow's imports (GX, Prefect: seconds) while an embedded Prefect server starts in its process
        ctx.start_prefect(ws, settings, "flows.ingest")
        from flows.ingest import ingest_flow

        result = ingest_flow(str(ws.root), tenant, str(file.absolute()), person)
        _sync_pipeline(ws, settings, tenant)
    if json_out:
        emit_json(result)
    elif result["passed"]:
        v = result["data_version"]
        print(f"{tenant}: {result['report']['stats']['n_rows']} rows, data version {v['md5']}"
              f"{' (git ' + v['git_commit'][:7] + ')' if v.get('git_commit') else ''}")
        if result.get("page"):
            print(f"  validation page: {result['page']}")
    if not result["passed"]:
        failures = "; ".join(result["report"]["failures"])
        raise UserError(f"{tenant}: {file.name} failed validation ({failures}); kept the previous data, "
                        f"quarantined the file in {result['quarantined']}")
    return result


def ingest_dir(ctx: Context, folder: Path, json_out: bool = False, user: str | None = None) -> list[dict]:
    """Every ``<tenant-id>.csv|.jsonl`` of ``folder`` through one flow; exit 2 when a file was refused
    (the others are versioned)."""
    from registry.trail.identity import resolve

    person = resolve(user, "--user")
    if not folder.is_dir():
        raise UserError(f"--dir {folder}: no such folder")
    with working(f"ingesting the tenant files of {printable(str(folder))}"):
        ws, settings = ctx.open(prefect=True, mlflow=False, preload="flows.bulk_ingest")
        from flows.bulk_ingest import ingest_dir_flow

        outcomes = ingest_dir_flow(str(ws.root), str(folder.absolute()), person)
        _sync_pipeline(ws, settings)
    if json_out:
        emit_json(outcomes)
    ok = [o for o in outcomes if o["status"] == "versioned"]
    bad = [o for o in outcomes if o["status"] != "versioned"]
    if not json_out:
        print(f"{len(ok)} tenant file(s) versioned, {len(bad)} refused ({folder})")
        for o in bad:
            where = f"; quarantined in {o['quarantined']}" if o.get("quarantined") else ""
            print(f"  {printable(Path(o['file']).name)}: {o['status']}: {printable(o['reason'])}{where}")
    if bad:
        raise UserError(f"{len(bad)} of {len(outcomes)} file(s) in {folder} not ingested (see above); "
                        "the others are versioned")
    return outcomes


def validate(ctx: Context, tenant: str, json_out: bool = False) -> dict:
    ws, settings = ctx.open(mlflow=False)
    with working(f"validating {tenant}'s current data (Great Expectations)"):
        from flows.common import checked_data

        _, report = checked_data(ws, settings, tenant)
    if json_out:
        emit_json(report.to_dict())
    else:
        print(f"{tenant}: validation {'passed' if report.passed else 'FAILED'} "
              f"({report.stats.get('n_rows')} rows, {report.stats.get('n_labels')} labels)")
        for failure in report.failures:
            print(f"  - {failure}")
        if report.recorded:
            print(f"  Great Expectations' outcome of {report.gx_checked_at} on the same rows and rules (not run again)")
        if report.data_docs:
            print(f"  validation page: {report.data_docs}")
    if not report.passed:
        raise UserError(f"{tenant}: data fails validation; fix the file and `tailor ingest` it again")
    return report.to_dict()


def meta_train(ctx: Context, algorithm: str | None, json_out: bool = False, register_anyway: bool = False,
               user: str | None = None, started: float | None = None) -> dict:
    """``started``: when the command began (``time.time()``): the console script passes its process's
    start, since meta_train.max_minutes bounds the whole command; a caller inside another command's
    process (the demo's step, a benchmark) passes nothing and the budget counts from this call."""
    started = started or time.time()
    from registry.trail.identity import resolve

    person = resolve(user, "--user")  # the register-base record names who trained it
    with answering(json_out), working("training the base (meta_train.max_minutes bounds it)"):
        ws, _ = ctx.open(prefect=True, preload="flows.training")
        from flows.training import meta_train_flow

        ref = meta_train_flow(str(ws.root), algorithm, started, register_anyway, person)
    if not json_out and ref.get("evidence"):
        print(evidence_table(ref["evidence"]))
    took = f"{time.time() - started:.0f}s in all"
    if not ref.get("registered"):
        return done(json_out, ref, f"no base registered ({ref['reason']}), {took}")
    weights = (f"{ref['metrics'].get('kept')} weights of step {ref.get('best_step')}" if ref["metrics"].get("improved")
               else "the start weights, no training step improved them (--register-anyway)")
    return done(json_out, ref, f"registered {ref['name']} v{ref['version']} ({ref['digest'][:19]}…) pending review: "
                               f"{weights}, {took}; "
                               f"`adapt` uses it once someone other than {person} approves it "
                               f"(`tailor review approve --base-version {ref['version']} --reason TEXT`)")


def process_started() -> float:
    """When this process started (``time.time()`` clock): a budget counts the interpreter's start and
    imports too, which take seconds on a loaded machine."""
    try:
        import psutil

        return min(psutil.Process().create_time(), time.time())
    except Exception:  # noqa: BLE001 - no psutil or no /proc: from now
        return time.time()


EVIDENCE_NAMES = {"new_base": "the new base (what a tenant gets)", "current_base": "the current base",
                  "no_meta": "no trained base (same adaptation)", "frozen_names": "frozen encoder + label names"}


def evidence_table(ev: dict) -> str:
    """The base's evidence for people: accuracy per method and the new base's paired differences,
    each with n and a 95% interval."""
    def pts(d: dict, signed: bool = False) -> str:
        ci = "" if d.get("ci95") is None else f" ± {100 * d['ci95']:.1f}"
        return f"{100 * d['mean']:{'+' if signed else ''}.1f}{ci}"

    if not ev.get("n_splits"):
        return "evidence: no held-out split could be scored"
    rows = []
    for method, acc in ev["accuracy"].items():
        pair = ev["paired"].get(f"new_base-{method}")
        rows.append({"method": EVIDENCE_NAMES.get(method, method), "accuracy": pts(acc),
                     "new base minus it": pts(pair, True) if pair else ""})
    head = (f"evidence on {len(ev['held_out_tenants'])} tenant(s) never trained on ({', '.join(ev['held_out_tenants'])}), "
            f"{ev['n_splits']} split(s) of {ev.get('shots')} examples per label, {ev['n_queries']} texts scored; "
            f"points, 95% interval over splits:")
    return head + "\n" + table(rows, ["method", "accuracy", "new base minus it"])


def adapt(ctx: Context, tenants: list[str] | None, requested_by: str | None, force: bool = False,
          json_out: bool = False, dry_run: bool = False) -> list[dict]:
    from registry.trail.identity import resolve

    requested_by = resolve(requested_by, "--user")
    if dry_run:
        with working("dry run: checking which tenants changed (data, base, settings)"):
            ws, settings = ctx.open()
            from flows import runtime

            runtime.environment(ws, ctx.debug)  # no flow runs, so no server; Prefect's logs stay in the log file
            from flows.adaptation import preview_adapt

            plan = preview_adapt(ws, settings, tenants, force)
        names = ", ".join(f"{w['tenant']} ({w['why']})" for w in plan["would_adapt"]) or "none"
        return done(json_out, plan, f"dry run: would adapt {len(plan['would_adapt'])} tenant(s) to "
                                    f"{plan['base']['name']} v{plan['base']['version']}: {names}; "
                                    f"{len(plan['unchanged'])} unchanged; nothing changed")
    with answering(json_out), working(f"adapting {', '.join(tenants) if tenants else 'every changed tenant'}"[:80]):
        ws, _ = ctx.open(prefect=True, preload="flows.adaptation")
        from flows.adaptation import run_adapt

        outcomes = run_adapt(str(ws.root), tenants, requested_by, force)
    if json_out:
        emit_json(outcomes)
    registered = [o for o in outcomes if o.get("version")]
    failed = [o for o in outcomes if o["status"] in ("failed", "error")]
    skipped = [o for o in outcomes if o["status"] == "skipped"]
    new = [o for o in registered if not o.get("existing")]
    for line in [] if json_out else _adapt_lines(outcomes, registered, new, skipped):
        print(line)
    if failed:  # the others are registered; the command still says it did not do all it was asked
        error = UserError(f"not adapted: " + "; ".join(f"{o['tenant']}: {o['reason']}" for o in failed))
        if all(o["status"] == "error" for o in failed):
            error.exit_code = 1
        raise error
    return outcomes


def _adapt_lines(outcomes, registered, new, skipped):
    yield (f"{len(new)} new candidate(s) pending review, {len(registered) - len(new)} already registered "
          f"({len(outcomes) - len(registered) - len(skipped)} not registered"
          + (f", {len(skipped)} unchanged since their newest version: `--force` adapts them too)"
             if skipped else ")"))
    for o in outcomes:
        if o["status"] in ("invalid", "rejected"):
            yield f"  {o['tenant']}: not registered: {printable(o['reason'])}"
        elif o.get("version"):  # new, or an identical delta mapped to the version it made before
            yield f"  {o['tenant']}: " + (f"v{o['version']} already existed ({o['existing']}): the same delta"
                                          if o.get("existing") else f"v{o['version']} new, pending review")


def predict(ctx: Context, tenant: str, texts: list[str] | None, file: Path | None, out: Path | None,
            json_out: bool, force: bool = False, cold: bool = False) -> dict:
    """Classify ``texts`` or the rows of ``file``, streamed in ``predict.batch_size`` batches to
    ``out`` (through ``workspace.outputs``: ``force`` replaces an existing file), to ``--json`` or
    to a table; reports rows/s (as JSON alone with ``--json`` and ``--out``)."""
    check_tenant_id(tenant)
    if texts:
        blank = [i for i, t in enumerate(texts, start=1) if not t.strip()]
        if blank:
            raise UserError(f"text {blank[0]} is empty: give the text to classify "
                            "(in a --file, empty rows get an empty result)")
        bad = not_unicode(texts)
        if bad:
            raise UserError(f"text {bad} is not UTF-8 text (your terminal or script passed bytes of "
                            "another encoding): convert it, or use --file with a UTF-8 CSV")
    if file is not None:
        from data_checks.reading import check_input

        check_input(file)
    ws, settings = ctx.open(read_only=True)  # the embedded store is read without importing MLflow
    target = None
    if out is not None:
        from workspace.outputs import requested

        target = requested(ws, out, "--out", force, settings.stores, inputs=(file,) if file else ())
    source = texts if texts else _file_texts(file)
    loading = f"loading {tenant}'s champion (encoder, base and delta)"
    warm = None
    if texts and out is None and not cold and len(texts) <= settings.serving.max_request_texts:
        from tailor.api import local

        warm = local.predict(ws, tenant, texts)  # the workspace's serve-api, when one runs
    if warm is not None:
        print(f"answered by the workspace's `tailor serve-api` at {warm[1]} (warm; its champion as of its last "
              "registry poll)", file=sys.stderr)
    else:
        from registry.artifacts.serving import labels, predict_batches
    if target is not None:
        from data_checks.safe_csv import csv_rows

        with working(loading) as note:
            names = labels(tenant)  # loads the champion: start-up, not part of the rows/s
            start, n, empty = time.perf_counter(), 0, 0
            with target.open() as f:
                write = csv_rows(f, ["text", "label", "score", "version", "data_version"])
                for rows in predict_batches(tenant, source, settings.predict.batch_size):
                    write(rows)
                    n, empty = n + len(rows), empty + sum(r["label"] is None for r in rows)
                    note(f"predicting with {tenant}'s champion: {n:,} rows written")
    else:
        if warm is not None:
            batches = [warm[0]]
            names = [str(r["label"]) for r in warm[0] if r["label"] is not None]
        else:
            with working(loading):
                names = labels(tenant)
            batches = predict_batches(tenant, source, settings.predict.batch_size)
        start, n, empty = time.perf_counter(), 0, 0
        if json_out:
            print("[", end="")
            for rows in batches:
                for row in rows:
                    print(("," if n else "") + "\n  " + json.dumps(row, sort_keys=True), end="")
                    n, empty = n + 1, empty + (row["label"] is None)
            print("\n]" if n else "]")
        else:
            width = max([5, *(len(printable(x)) for x in names)])
            for rows in batches:
                if not n and rows:   # what answers, as the registry records it, above the table
                    data = rows[0]["data_version"] or "not recorded"
                    print(f"{tenant} v{rows[0]['version']} (data {data})")
                    print(f"{'label':<{width}}  score   text")
                for row in rows:
                    score = "" if row["score"] is None else f"{row['score']:.3f}"
                    print(f"{printable(row['label'] or '-'):<{width}}  {score:<6}  {printable(row['text'])}")
                    n, empty = n + 1, empty + (row["label"] is None)
    rate = n / max(time.perf_counter() - start, 1e-9)
    summary = {"rows": n, "empty": empty, "rows_per_second": round(rate, 1)}
    if out is not None:
        summary["out"] = str(out)
        note = f"; {empty} empty text(s) left unlabelled" if empty else ""
        done(json_out, summary, f"wrote {n} predictions to {out} ({rate:.0f} rows/s{note})")
    return summary


def _file_texts(file: Path):
    from data_checks.reading import iter_texts

    texts = iter_texts(file)
    first = next(texts)  # no rows, no text column, not UTF-8 at the start: refused before any output
    return itertools.chain([first], texts)


def review_list(ctx: Context, status: str, json_out: bool, limit: int = 200, offset: int = 0) -> list[dict]:
    """A page of ``limit`` rows (0: all) from ``offset``; the line after it says how many there are."""
    _, settings = ctx.open(read_only=True)  # the embedded store is read without importing MLflow
    from registry.artifacts.compare import data_change_text, measured_text
    from registry.review.approval import list_reviews

    from registry.review.bases import list_bases

    if limit < 0 or offset < 0:
        raise UserError("--limit and --offset must be >= 0")
    found = list_bases(None if status == "all" else status)   # a handful: every one, on every page
    page: dict = {}
    rows = [{"kind": "tenant", **r} for r in list_reviews(None if status == "all" else status, settings,
                                                          limit=limit or None, offset=offset, page=page)]
    more = page["total"] - offset - len(rows)
    if more > 0:  # on stderr with --json: stdout carries the JSON alone
        print(f"{len(rows)} of {page['total']} {'' if status == 'all' else status + ' '}tenant version(s) from "
              f"{offset + 1}: `--offset {offset + len(rows)}` for the next page, `--limit 0` for all",
              file=sys.stderr if json_out else sys.stdout)
    if json_out:
        emit_json(found + rows)
        return found + rows
    if found:
        print(base_table(found))
    if not rows:
        print(f"no {status} candidates" + (" of tenants" if found else ""))
    else:
        cells = []
        for r in rows:  # every accuracy with its n and 95% (Wilson) interval
            cells.append({**r, "accuracy": measured_text(r.get("accuracy")),
                          "baseline": f"{measured_text(r.get('baseline'))} {r['baseline_method']}".strip(),
                          "champion": (f"v{r['champion_version']} {measured_text(r.get('champion_measured'))}"
                                       if r.get("champion_version") else "none"),
                          "same_texts": same_texts_cell(r.get("same_texts")),
                          "data_since": data_change_text(r.get("data_change"))})
        print(table(cells, ["tenant", "version", "status", "accuracy", "baseline", "champion", "same_texts",
                            "data_since", "head", "gates", "requested_by"],
                    ["tenant", "version", "status", "accuracy (95%)", "baseline (95%)", "champion (95%)",
                     "vs champion, same texts (95%)", "data since champion", "head", "gates", "requested by"]))
    return found + rows


def base_table(found: list[dict]) -> str:
    """Base models (tailor-base) as review list shows them: who trained it, on how many tenants'
    data, who was left out, and the evidence, one line per accuracy and paired difference."""
    for b in found:
        b["trained"] = f"{len(b['trained_on'])} tenant(s)" + (f", {len(b['left_out'])} left out" if b["left_out"] else "")
        b["evidence_cell"] = "; ".join(b["evidence_lines"])
        b["state"] = b["status"] + (" (contains erased data)" if b["erased_data"] else "")
        b["name"] = "tailor-base"
    return table(found, ["name", "version", "state", "trained", "evidence_cell", "requested_by"],
                 ["base model", "version", "status", "trained on", "evidence (held-out tenants)", "trained by"])


def same_texts_cell(s: dict | None) -> str:
    """``0.833 [0.55,0.95] vs v1 0.667 [0.39,0.86], n=12``: both accuracies on the same held-out texts."""
    if not s:
        return "-"
    if "error" in s:
        return "not compared"
    c, k = s["candidate"], s["champion"]
    return (f"{c['accuracy']:.3f} [{c['interval'][0]:.2f},{c['interval'][1]:.2f}] vs v{s['champion_version']} "
            f"{k['accuracy']:.3f} [{k['interval'][0]:.2f},{k['interval'][1]:.2f}], n={s['n']}")


def would(json_out: bool, result: dict) -> dict:
    """A ``--dry-run``'s answer: what the command would do, every check run, nothing changed."""
    frm, to = result.get("from"), result.get("to")
    moves = f" (v{frm} -> v{to})" if frm and to else (f" (v{frm or to})" if frm or to else "")
    return done(json_out, result, f"dry run: {result['actor']} would {result['action']} {result['tenant']}{moves}; "
                                  "every check passed, nothing changed")


def approve(ctx: Context, tenant: str, version: str, reviewer: str | None, reason: str, override: str | None,
            json_out: bool = False, dry_run: bool = False) -> dict:
    from registry.trail.identity import resolve

    reviewer = resolve(reviewer, "--user")
    with working(f"{'dry run: ' if dry_run else ''}approving {tenant} v{version}: gates, four eyes, audit record"):
        ws, settings = ctx.open()
        from registry.review.approval import approve as do_approve

        result = do_approve(ws, settings, tenant, version, reviewer, reason, override_reason=override,
                            dry_run=dry_run)
    if dry_run:
        return would(json_out, result)
    return done(json_out, result, f"{tenant} v{result['version']} is now champion (approved by {reviewer})")


def approve_base(ctx: Context, version: str, reviewer: str | None, reason: str, json_out: bool = False,
                 dry_run: bool = False) -> dict:
    from registry.trail.identity import resolve

    reviewer = resolve(reviewer, "--user")
    with working(f"{'dry run: ' if dry_run else ''}approving tailor-base v{version}: four eyes, audit record"):
        ws, settings = ctx.open()
        from registry.review.bases import approve_base as do_approve

        result = do_approve(ws, settings, version, reviewer, reason, dry_run=dry_run)
    if dry_run:
        return would(json_out, {**result, "tenant": "tailor-base"})
    return done(json_out, result, f"tailor-base v{result['version']} is now current (approved by {reviewer}): "
                                  "the next `tailor adapt` starts from it; every champion keeps its own base")


def reject_base(ctx: Context, version: str, reviewer: str | None, reason: str, json_out: bool = False,
                dry_run: bool = False) -> dict:
    from registry.trail.identity import resolve

    reviewer = resolve(reviewer, "--user")
    with working(f"{'dry run: ' if dry_run else ''}rejecting tailor-base v{version}: audit record"):
        ws, _ = ctx.open()
        from registry.review.bases import reject_base as do_reject

        result = do_reject(ws, version, reviewer, reason, dry_run=dry_run)
    if dry_run:
        return would(json_out, {**result, "tenant": "tailor-base"})
    return done(json_out, result, f"tailor-base v{result['version']} rejected by {reviewer}")


def reject(ctx: Context, tenant: str, version: str, reviewer: str | None, reason: str, json_out: bool = False,
           dry_run: bool = False) -> dict:
    from registry.trail.identity import resolve

    reviewer = resolve(reviewer, "--user")
    with working(f"{'dry run: ' if dry_run else ''}rejecting {tenant} v{version}: audit record"):
        ws, _ = ctx.open()
        from registry.review.approval import reject as do_reject

        result = do_reject(ws, tenant, version, reviewer, reason, dry_run=dry_run)
    if dry_run:
        return would(json_out, result)
    return done(json_out, result, f"{tenant} v{result['version']} rejected by {reviewer}")


def rollback(ctx: Context, tenant: str | None, base_version: str | None, reason: str, actor: str | None,
             json_out: bool = False, dry_run: bool = False) -> dict:
    from registry.trail.identity import resolve

    actor = resolve(actor, "--user")
    ws, settings = ctx.open()
    if base_version:
        if dry_run:
            raise UserError("--dry-run covers a tenant's rollback, not --base-version")
        from registry.artifacts.base_model import set_current_base

        result = set_current_base(ws, base_version, actor=actor, reason=reason)
        return done(json_out, {"base_version": result.version},
                    f"tailor-base v{result.version} is current again (by {actor}); re-adapt tenants with "
                    "`tailor adapt --all`")
    from registry.review.approval import rollback as do_rollback

    with working(f"{'dry run: ' if dry_run else ''}rolling {tenant} back: audit record"):
        result = do_rollback(ws, settings, tenant, actor, reason, dry_run=dry_run)
    if dry_run:
        return would(json_out, result)
    if result["action"] == "request-rollback":
        line = (f"{tenant}: rollback requested by {actor}; gates.rollback_alone needs a second person to run "
                f"`tailor rollback {tenant} --reason TEXT`")
    else:
        line = f"{tenant}: champion rolled back from v{result['from']} to v{result['to']} by {actor}"
    return done(json_out, result, line)


def lineage(ctx: Context, tenant: str, version: str | None, at: datetime | None, json_out: bool) -> dict:
    ws, _ = ctx.open(read_only=True)
    from registry.review.lineage import lineage as get_lineage, render

    result = get_lineage(ws, tenant, version=version, at=at)
    if json_out:
        emit_json(result)
    else:
        print(render(result))
    return result


def lineage_tenant_data(ctx: Context, tenant: str, json_out: bool) -> dict:
    """Which bases and which tenants' champions were trained on ``tenant``'s data, and when."""
    check_tenant_id(tenant)
    ws, _ = ctx.open(read_only=True)
    from registry.review.data_lineage import render, tenant_data

    result = tenant_data(ws, tenant)
    return done(json_out, result, render(result))


def lineage_all(ctx: Context, json_out: bool, html: Path | None, force: bool = False) -> dict:
    ws, settings = ctx.open(read_only=True)
    from registry.review.report import audit_report, render_html

    target = None
    if html is not None:
        from workspace.outputs import requested

        target = requested(ws, html, "--html", force, settings.stores)
    report = audit_report(ws)
    if target is not None:
        with target.open(newline=None) as f:
            f.write(render_html(report))
        print(f"wrote the audit report ({len(report['tenants'])} tenant(s)) to {html}",
              file=sys.stderr if json_out else sys.stdout)
    if json_out:
        emit_json(report)
    elif html is None:
        for t in report["tenants"]:
            print(f"{t['tenant']}: champion {('v' + t['champion']) if t['champion'] else 'none'}, "
                  f"{len(t['versions'])} version(s)")
    return report


def audit_verify(ctx: Context, repair: bool = False, json_out: bool = False, full: bool = False) -> dict:
    ws, _ = ctx.open(read_only=not repair)  # only a repair writes
    from registry.trail.verify import verify_all

    result = verify_all(ws, repair=repair, full=full)
    if json_out:
        emit_json(result)
    else:
        for line in result["repaired"]:
            print(f"repaired: {line}")
        for line in result["problems"]:
            print(f"  - {line}")
    if result["problems"]:
        raise UserError(f"audit verify found {len(result['problems'])} problem(s) "
                        f"({result['records']} record(s) checked); see the lines above")
    if not json_out:
        print(f"audit log intact: {_checked(result)}")
    return result


def _checked(result: dict) -> str:
    """How much ``audit verify`` read, in words."""
    c = result["checked"]
    if c["full"]:
        return (f"all {result['records']} record(s) checked (hash chain, signatures, anchors, trust root), "
                "and the registry of every tenant matches the log")
    new = f"records {c['from']}-{c['to']}" if c["count"] else "no new records"
    return (f"{new} checked from the checkpoint at record {c['checkpoint']} (of {result['records']}), with the "
            f"anchors and trust root, and the registry of the {c['tenants']} tenant(s) they touch; "
            "`--full` checks every record and every tenant")


def audit_rotate_key(ctx: Context, reason: str, key_path: str | None, actor: str | None,
                     json_out: bool = False) -> dict:
    from registry.trail.identity import resolve

    actor = resolve(actor, "--user")
    ws, _ = ctx.open()
    from registry.trail.rotation import rotate

    result = rotate(ws, actor=actor, reason=reason, key_path=key_path)
    committed = f", committed as {result['committed'][:10]}" if result["committed"] else ""
    return done(json_out, result, f"audit log handed over to key {result['new'][7:19]} at record {result['record']} "
                                  f"(was {result['old'][7:19]}); key at {result['key_path']}, audit-signing.pub "
                                  f"updated{committed}")


def review_serve(ctx: Context, host: str, port: int) -> None:
    ws, settings = ctx.open()
    from tailor.web.app import serve

    serve(ws, settings, host, port)


def serve_api(ctx: Context, host: str, port: int, add_key: str | None = None, tenants: str = "",
              revoke_key: str | None = None) -> str | None:
    """Run the prediction API, or manage its callers' keys (stored hashed in the workspace)."""
    from tailor.api import keys

    if add_key and revoke_key:
        raise UserError("give --add-key or --revoke-key (not both)")
    if add_key or revoke_key:
        ws, _ = ctx.open(mlflow=False)
        if revoke_key:
            if not keys.revoke(ws, revoke_key):
                raise UserError(f"caller {revoke_key!r} has no key")
            print(f"{revoke_key}'s key is revoked (a running server stops accepting it within serving.poll_seconds)")
            return None
        key = keys.add_key(ws, add_key, tenants.split(","))
        print(f"API key of {add_key} (shown once; only its hash is kept):\n{key}")
        return key
    if tenants:
        raise UserError("--tenants goes with --add-key CALLER")
    ws, settings = ctx.open(read_only=True)  # the embedded store is read without importing MLflow
    from tailor.api.app import serve

    print(f"serving every tenant's champion at http://{host}:{port} (Ctrl-C stops after requests in flight)")
    serve(ws, settings, host, port)
    return None


UI_WARNING = ("look, do not change: an alias moved or a tag edited there is drift, which `tailor audit verify` "
              "names and serving refuses; approve, reject and roll back with `tailor review` and `tailor rollback`")


# MLflow 3's server also starts a job runner with seven huey consumers (for its GenAI jobs, which
# Tailor does not use): off, with one uvicorn worker instead of four it is 3 processes, not 11
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _ui_argv(uri: str, root: str, host: str, port: int) -> list[str]:
    """MLflow's UI on the store with one worker process (``UI_ENV`` turns its job runner off)."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--default-artifact-root", root,
            "--host", host, "--port", str(port), "--workers", "1"]


def mlflow_ui(ctx: Context, host: str, port: int, ready_seconds: float = 180.0) -> int:
    """MLflow's own UI on the workspace's store (the embedded sqlite database and artifact folder),
    so what it shows is what Tailor registered. Says it is starting, and prints its address only
    once it answers; its logs go to ``.tailor/logs/mlflow-ui.log``; Ctrl-C stops it."""
    import signal
    import subprocess
    import urllib.error
    import urllib.request

    ws, settings = ctx.open(mlflow=False)
    from registry.storage.reader import sqlite_path
    from registry.storage.store import is_server, locations

    uri, root = locations(ws, settings)
    if is_server(uri):
        raise UserError(f"this workspace's store is the tracking server {uri}: open that address in a browser")
    if sqlite_path(uri) is not None and not sqlite_path(uri).is_file():
        raise UserError(f"no MLflow store yet at {sqlite_path(uri)}: run `tailor meta-train` or `tailor adapt` first")
    log = ws.state_dir / "logs" / "mlflow-ui.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    print(f"starting MLflow's UI of {uri} (one worker; its log: {log}) ...", file=sys.stderr, flush=True)
    def stop(signum, frame):  # SIGTERM, as Ctrl-C, stops MLflow's server with this command
        raise SystemExit(128 + signum)

    with open(log, "ab") as out:
        proc = subprocess.Popen(_ui_argv(uri, root, host, port), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **UI_ENV})
    before = signal.signal(signal.SIGTERM, stop)
    try:
        deadline = time.monotonic() + ready_seconds
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None:
                last = (log.read_text(encoding="utf-8", errors="replace").strip().splitlines() or ["no output"])[-1]
                raise UserError(f"MLflow's UI stopped before it answered (exit {proc.returncode}): {last[:200]}")
            if time.monotonic() > deadline:
                raise UserError(f"MLflow's UI did not answer at {url} within {ready_seconds:.0f} s: see {log}")
            time.sleep(0.25)
        print(f"MLflow UI of {uri} at {url} (Ctrl-C stops it)", flush=True)
        print(UI_WARNING, file=sys.stderr, flush=True)
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, before)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def user_add(ctx: Context, name: str, password_stdin: bool, json_out: bool = False) -> dict:
    import getpass

    ws, _ = ctx.open(mlflow=False)
    from tailor.web.users import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise UserError("the passwords differ; nothing changed")
    who = add_user(ws, name, password)
    return done(json_out, {"user": who}, f"user {who} can now log in to `tailor review serve`")


def data_show(ctx: Context, tenant: str, json_out: bool) -> list:
    ws, _ = ctx.open(mlflow=False)
    from workspace import versioning

    history = [v.to_dict() for v in versioning.history(ws, check_tenant_id(tenant))]
    if not history:
        raise UserError(f"tenant {tenant!r} has no data: run `tailor ingest {tenant} FILE` first")
    if json_out:
        emit_json(history)
    elif versioning.current_version(ws, tenant) is None:  # erased: git keeps the versions' pointers only
        print(f"{tenant}: no current data (removed; `tailor tenant show {tenant}` says whether it was erased); "
              "earlier versions, as git's .dvc pointers:")
        print(table(history, ["md5", "git_commit", "n_bytes"], ["data version", "git commit", "bytes"]))
    else:
        print(f"{tenant}: current data version {history[0]['md5']}")
        print(table(history, ["md5", "git_commit", "n_bytes"], ["data version", "git commit", "bytes"]))
    return history


def data_checkout(ctx: Context, tenant: str, rev: str, json_out: bool = False, dry_run: bool = False) -> dict:
    ws, settings = ctx.open(mlflow=False)
    from workspace import versioning

    if dry_run:
        version = versioning.checkout(ws, check_tenant_id(tenant), rev, settings.stores, dry_run=True)
        return done(json_out, {**version.to_dict(), "dry_run": True},
                    f"dry run: {tenant}'s data version {version.md5} (git {str(version.git_commit)[:10]}) would "
                    "become current; nothing changed")

    with answering(json_out), working(f"restoring {tenant}'s data {rev} (DVC)"):
        version = versioning.checkout(ws, check_tenant_id(tenant), rev, settings.stores)
        _sync_pipeline(ws, settings, tenant)
    return done(json_out, version.to_dict(),
                f"{tenant}: data version {version.md5} is current again; `tailor adapt {tenant}` to use it")


def data_prune(ctx: Context, user: str | None, json_out: bool = False, dry_run: bool = False) -> dict:
    """Retention: prune older data versions as params.yaml's data.keep_versions / keep_days say."""
    from registry.trail.identity import resolve

    actor = resolve(user, "--user")
    if dry_run:
        with working("dry run: which data versions retention would prune"):
            ws, settings = ctx.open()
            from flows.retention import prune_plan

            plan = prune_plan(ws, settings)
        n = sum(len(p["prune"]) for p in plan.values())
        result = {"dry_run": True, "tenants": plan}
        line = f"dry run: would prune {n} data version(s) of {sum(bool(p['prune']) for p in plan.values())} tenant(s)"
        if not json_out:
            for tenant, p in plan.items():
                for md5 in p["prune"]:
                    line += f"\n  {tenant}: {md5}"
        return done(json_out, result, line + "; nothing changed")
    with answering(json_out), working("pruning older data versions (DVC cache and remote, validation pages)"):
        ws, settings = ctx.open(prefect=True, preload="flows.retention")
        from flows.retention import prune_flow

        result = prune_flow(str(ws.root), actor)
        _sync_pipeline(ws, settings)
    n = sum(len(r["pruned"]) for r in result.values())
    return done(json_out, result, f"pruned {n} data version(s) of {len(result)} tenant(s); each recorded in the "
                                  "audit log (git keeps their .dvc pointers)")


def tenant_set(ctx: Context, tenant: str, allow: bool, reason: str, user: str | None, json_out: bool = False,
               dry_run: bool = False) -> dict:
    from registry.trail.identity import resolve

    actor = resolve(user, "--user")
    check_tenant_id(tenant)
    ws, _ = ctx.open()
    from registry.review.consent import set_consent

    result = set_consent(ws, tenant, allow, actor, reason, dry_run=dry_run)
    word = "may" if allow else "may not"
    if dry_run:
        return done(json_out, result, f"dry run: {actor} would record that {tenant}'s data {word} train the base; "
                                      "nothing changed")
    return done(json_out, result, f"{tenant}: its data {word} train the shared base (recorded by {actor}; the next "
                                  "`tailor meta-train` follows it)")


def tenant_show(ctx: Context, tenant: str, json_out: bool = False) -> dict:
    check_tenant_id(tenant)
    ws, settings = ctx.open(read_only=True)
    from registry.review import consent, erasure
    from workspace import versioning

    decision = consent.decisions(ws, settings, [tenant])[tenant]
    current = versioning.current_version(ws, tenant)
    result = {"tenant": tenant, "train_base": decision["train_base"], "consent": decision,
              "data_version": None if current is None else current.md5, "erasure": erasure.state(tenant)}
    e = result["erasure"]
    line = (f"{tenant}: data {result['data_version'] or 'none'}; may train the base: "
            f"{'yes' if decision['train_base'] else 'no'} ({decision['why']})")
    if e:
        line += f"\n  erasure {e.get('state')} at {e.get('at')} by {e.get('by')}"
    return done(json_out, result, line)


def tenant_erase(ctx: Context, tenant: str, reason: str, user: str | None, json_out: bool = False,
                 dry_run: bool = False) -> dict:
    """Erase a tenant (``--dry-run``: list what would go)."""
    from registry.trail.identity import require_person, resolve

    actor = require_person(resolve(user, "--user"), "erase a tenant")
    check_tenant_id(tenant)
    if not reason or not reason.strip():
        raise UserError("reason must not be empty: pass --reason TEXT")
    if dry_run:
        with working(f"dry run: what erasing {tenant} would remove"):
            ws, settings = ctx.open()
            from flows.erasure import preview

            plan = preview(ws, settings, tenant)
        return done(json_out, plan, erase_lines(plan))
    with answering(json_out), working(f"erasing {tenant}: registry, DVC, validation pages, MLflow, Prefect, caches"):
        ws, settings = ctx.open(prefect=True, preload="flows.erasure")
        from flows.erasure import erase_flow

        result = erase_flow(str(ws.root), tenant, actor, reason)
        _sync_pipeline(ws, settings)
    if result.get("already"):
        return done(json_out, result, f"{tenant} was erased at {result['at']} by {result['by']}: nothing left to remove")
    lines = [f"{tenant} erased by {actor} (audit record {result['audit_seq']}): "
             f"{len(result['data_versions'])} data version(s) out of the DVC cache ({result['cache_objects']}) and "
             f"remote ({result['remote_objects']}), {result['page_files']} validation page/result file(s), the "
             f"artifacts of {len(result['runs'])} run(s), {result['cache_files']} cache file(s), "
             f"{len(result['prefect_runs'])} Prefect run(s); {len(result['versions_archived'])} version(s) archived"]
    if result["shared_kept"]:
        lines.append(f"  kept: {', '.join(result['shared_kept'])} (the same bytes are another tenant's data too)")
    if result["bases_marked"]:
        lines.append(f"  bases trained on its data, now refused for adapt: "
                     f"{', '.join('v' + b for b in result['bases_marked'])}")
    lines += [f"  next: {step}" for step in result["plan"]["steps"]]
    return done(json_out, result, "\n".join(lines))


def erase_lines(plan: dict) -> str:
    d, reg = plan["data"], plan["registry"]
    lines = [f"dry run: erasing {plan['tenant']} would remove or change:",
             f"  data: {len(d['data_versions'])} version(s) {', '.join(m[:16] for m in d['data_versions'])}; "
             f"bytes in the DVC cache: {len(d['objects']['cache'])}, in the remote: {len(d['objects']['remote'])}; "
             f"files: {', '.join(d['files']) or 'none'}"
             + (f"; kept (another tenant's data too): {', '.join(d['shared'])}" if d["shared"] else ""),
             f"  registry: {len(reg['versions'])} version(s) archived "
             f"({', '.join('v' + v['version'] + (' @' + ' @'.join(v['aliases']) if v['aliases'] else '') for v in reg['versions']) or 'none'}); "
             f"the artifacts of {len(reg['runs'])} run(s) deleted",
             f"  validation pages and results: {plan['page_files']} file(s) in {len(plan['pages'])} place(s)",
             f"  caches derived from texts: {len(plan['caches'])} file(s)/folder(s)",
             f"  Prefect: {plan['prefect']}", f"  MLflow store: {plan['store']}"]
    if reg["bases"]:
        lines.append("  bases trained on its data, to be refused for adapt: "
                     + ", ".join(f"v{b['version']} ({b['status']}{', current' if b['current'] else ''})"
                                 for b in reg["bases"]))
    lines += [f"  then: {step}" for step in plan["plan"]["steps"]]
    lines.append("nothing changed")
    return "\n".join(lines)


def serve(ctx: Context, once: bool, pool: str | None = None) -> None:
    """``--once``: the fleet run now, on the embedded server. Otherwise the deployments on a Prefect
    server with a scheduler: ``stores.prefect_api_url``, or one started here for as long as this
    command serves (a work pool's deployments must outlive the command: they need the former)."""
    if once:
        ws, settings = ctx.open(prefect=True)
        from flows.schedule import serve as serve_flows

        serve_flows(ws, settings, once=True)
        return
    ws, settings = ctx.open()
    if pool and not settings.stores.prefect_api_url:
        raise UserError("--pool needs a Prefect server that outlives this command: run `prefect server start` "
                        "and set stores.prefect_api_url in params.yaml")
    from flows import runtime

    url, server = settings.stores.prefect_api_url, None
    if not url:
        url, server = runtime.start_full_server(ws, settings)
        print(f"started a local Prefect server at {url} (its UI: {url.removesuffix('/api')}); "
              "it stops with this command")
    runtime.configure(ws, settings, ctx.debug, api_url=url)  # before Prefect is first imported
    try:
        from flows.schedule import serve as serve_flows

        serve_flows(ws, settings, pool=pool)
    finally:
        if server is not None:
            runtime.stop_full_server(server)


def _sync_pipeline(ws: Workspace, settings: Settings, tenant: str | None = None) -> None:
    """After a tenant's data file appeared or changed type, list it in dvc.yaml (``tenant``: the one
    tenant whose file may have changed; None: any, as after a bulk ingest)."""
    from workspace import pipeline

    if tenant is None:
        pipeline.sync(ws, settings)
    else:
        pipeline.sync_if_changed(ws, settings, tenant)
