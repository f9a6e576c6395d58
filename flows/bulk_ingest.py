"""Bulk ingest: every ``<tenant-id>.csv|.jsonl`` of a folder through one flow run.

Each file is read and validated as ``tailor ingest TENANT FILE`` would (same suite, same
cross-tenant check, same quarantine of refused files); the passing ones are versioned in batches
of ``schedule.ingest_batch`` tenants, one DVC add + push and one git commit per batch, while the
next batch validates. A file's outcome is its own: a bad file, a bad name or a failed batch never
stops the others. The run leaves a markdown artifact with every file that was not versioned, and
why.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows import progress
from flows.common import open_workspace
from flows.retry import io_retry
from workspace.errors import UserError
from workspace.tenants import check_tenant_id

SUFFIXES = (".csv", ".jsonl")


def plan_files(folder: Path) -> tuple[list[tuple[str, Path]], list[dict]]:
    """(tenant, file) pairs of ``folder``, and failed outcomes for files that cannot be a tenant's
    (the name is not a tenant id, two files name one tenant, a link or a device)."""
    from data_checks.reading import check_input

    if not folder.is_dir():
        raise UserError(f"--dir {folder}: no such folder")
    found: dict[str, list[Path]] = {}
    refused = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in SUFFIXES:
            continue
        try:
            tenant = check_tenant_id(path.stem)
            check_input(path)
        except UserError as exc:
            refused.append(_outcome(path.stem, path, "failed", str(exc)))
            continue
        found.setdefault(tenant, []).append(path)
    files = []
    for tenant, paths in found.items():
        if len(paths) > 1:
            refused += [_outcome(tenant, p, "failed", f"{len(paths)} files for tenant {tenant} "
                                 f"({', '.join(q.name for q in paths)}): keep one") for p in paths]
        else:
            files.append((tenant, paths[0]))
    if not files and not refused:
        raise UserError(f"--dir {folder} holds no .csv or .jsonl file: name each file <tenant-id>.csv")
    return files, refused


def _outcome(tenant: str, path: Path, status: str, reason: str = "", **more) -> dict:
    return {"tenant": tenant, "file": str(path), "status": status, "reason": reason, **more}


@task(name="read-and-index", cache_policy=NO_CACHE)
def read_and_index(root: str, files: list[tuple[str, str]]) -> tuple[dict, dict, dict]:
    """Read every incoming file once: (tenant -> loaded file, tenant -> why unreadable, tenant ->
    (shared texts per other tenant, tenants compared)). The text index holds the incoming files and
    every tenant's current data, so each tenant's cross-tenant check costs its own texts
    (comparing each file with every other tenant's file would read 1,000 files 1,000 times)."""
    from data_checks.leakage import TextIndex
    from data_checks.reading import iter_texts, load_tenant_file
    from workspace import versioning

    ws, settings = open_workspace(root)
    loaded, unreadable, index = {}, {}, TextIndex()
    for tenant, file in files:
        try:
            loaded[tenant] = load_tenant_file(Path(file), settings.limits)
            index.add(tenant, loaded[tenant].frame["text"].tolist())
        except UserError as exc:
            unreadable[tenant] = str(exc)
    for tenant, path in versioning.data_files(ws).items():  # current data too: a refused file leaves it current
        try:
            index.add(tenant, list(iter_texts(path)))  # validated when ingested: streamed, not parsed by pandas
        except UserError:
            continue
    compared = max(0, len(index.tenants()) - 1)
    overlaps = {t: (index.overlap(t, f.frame["text"].tolist()), compared) for t, f in loaded.items()}
    return loaded, unreadable, overlaps


@task(name="validate-batch", cache_policy=NO_CACHE)
def validate_batch(root: str, batch: list[tuple[str, str]], loaded: dict, unreadable: dict,
                   overlaps: dict) -> list[dict]:
    """Validate each file of the batch in one GX context (its Data Docs built once); quarantine the
    refused ones. One outcome per file; passing ones have status "valid"."""
    from data_checks.batch import docs_batch
    from data_checks.expectations import validate_frame
    from data_checks.quarantine import quarantine

    ws, settings = open_workspace(root)
    logger = get_run_logger()
    reports, out = {}, []
    with docs_batch(ws.data_docs_dir, [t for t, _ in batch if t in loaded]) as docs:
        for tenant, _ in batch:
            if tenant in loaded:
                reports[tenant] = validate_frame(tenant, loaded[tenant].frame, settings.validation,
                                                 run_name=loaded[tenant].md5, overlap=overlaps[tenant],
                                                 context=docs, recorded=ws.validation_records).to_dict()
    for tenant, file in batch:
        if tenant in unreadable:
            where = quarantine(ws, tenant, Path(file), unreadable[tenant], settings.limits)
            out.append(_outcome(tenant, Path(file), "quarantined", unreadable[tenant], quarantined=str(where)))
            continue
        report = {**reports[tenant], "data_docs": docs.pages.get(tenant)}
        if report["passed"]:
            out.append(_outcome(tenant, Path(file), "valid", md5=loaded[tenant].md5,
                                n_rows=report["stats"].get("n_rows")))
        else:
            where = quarantine(ws, tenant, Path(file), report, settings.limits)
            out.append(_outcome(tenant, Path(file), "quarantined", "; ".join(report["failures"]),
                                quarantined=str(where)))
    for o in out:
        if o["status"] == "quarantined":
            logger.warning("%s: quarantined (%s)", o["tenant"], o["reason"])
    return out


@task(name="version-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=io_retry)
def version_batch(root: str, valid: list[dict], author: str = "") -> list[dict]:
    """One DVC add + push and one git commit (by ``author``) for the batch's valid files."""
    from workspace.bulk_versioning import track_many

    ws, settings = open_workspace(root)
    done = track_many(ws, [(o["tenant"], Path(o["file"]), o["md5"]) for o in valid], settings.stores,
                      max_bytes=settings.limits.max_bytes, author=author)
    return [{**o, "status": "failed", "reason": done[o["tenant"]]} if isinstance(done[o["tenant"]], str)
            else {**o, "status": "versioned", "data_version": done[o["tenant"]].to_dict()} for o in valid]


@task(name="data-docs-index", cache_policy=NO_CACHE)
def data_docs_index(root: str) -> str | None:
    """The Data Docs site's index, once per run: it lists every kept validation (the fleet's), so
    it is not rebuilt per batch nor by single ingests. A failure to build it loses no data."""
    from data_checks.expectations import build_index

    ws, _ = open_workspace(root)
    try:
        index = build_index(ws.data_docs_dir)
    except Exception:  # noqa: BLE001 - the pages themselves are built; the index is a convenience
        get_run_logger().warning("the Data Docs index was not rebuilt", exc_info=True)
        return None
    return str(index) if index else None


def _run_name() -> str:
    from prefect.runtime import flow_run

    return f"ingest-dir-{Path(str((flow_run.parameters or {}).get('folder', ''))).name}"


@flow(name="tailor-ingest-dir", flow_run_name=_run_name, log_prints=False)
def ingest_dir_flow(root: str, folder: str, author: str = "") -> list[dict]:
    """Ingest every tenant file of ``folder``; one outcome per file, in file order. ``author``: who
    ran it, the author of the data's git commits."""
    logger = get_run_logger()
    _, settings = open_workspace(root)
    files, outcomes = plan_files(Path(folder))
    size = settings.schedule.ingest_batch
    logger.info("%d tenant file(s) in %s, batches of %d", len(files), folder, size)
    with progress.step("ingesting tenant files", len(files) + len(outcomes)) as bar:
        bar.advance(len(outcomes))
        loaded, unreadable, overlaps = read_and_index(root, [(t, str(p)) for t, p in files])
        batches = [files[i:i + size] for i in range(0, len(files), size)]
        pending = None  # the previous batch's versioning, running while this batch validates
        for k, batch in enumerate(batches, 1):
            checked = validate_batch.with_options(task_run_name=f"validate-batch-{k}-of-{len(batches)}")(
                root, [(t, str(p)) for t, p in batch], {t: loaded[t] for t, _ in batch if t in loaded},
                {t: unreadable[t] for t, _ in batch if t in unreadable},
                {t: overlaps[t] for t, _ in batch if t in overlaps})
            refused = [o for o in checked if o["status"] != "valid"]
            outcomes += refused
            bar.advance(len(refused))
            if pending is not None:
                outcomes += _collect(*pending, bar)
            valid = [o for o in checked if o["status"] == "valid"]
            pending = (version_batch.with_options(task_run_name=f"version-batch-{k}-of-{len(batches)}").submit(
                root, valid, author), valid) if valid else None
        if pending is not None:
            outcomes += _collect(*pending, bar)
        if files:
            data_docs_index(root)
    summary = ingest_summary(outcomes)
    create_markdown_artifact(summary, key="tailor-ingest-dir", description=f"bulk ingest of {folder}")
    logger.info("%s", summary.splitlines()[2])
    order = {str(p): i for i, (_, p) in enumerate(files)}
    return sorted(outcomes, key=lambda o: (order.get(o["file"], -1), o["file"]))


def _collect(future, valid: list[dict], bar) -> list[dict]:
    """The batch's outcomes; a batch whose task failed after its retries fails each of its files."""
    try:
        done = future.result()
    except Exception as exc:  # noqa: BLE001 - contained to this batch, each file told why
        done = [{**o, "status": "failed", "reason": f"versioning failed: {exc}".splitlines()[0]} for o in valid]
    bar.advance(len(done))
    return done


def ingest_summary(outcomes: list[dict]) -> str:
    """The run's markdown artifact: counts, then every file that did not become a version."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["status"]] = counts.get(o["status"], 0) + 1
    lines = ["# Bulk ingest", "", ", ".join(f"**{n}** {status}" for status, n in sorted(counts.items())), ""]
    bad = sorted((o for o in outcomes if o["status"] != "versioned"), key=lambda o: o["file"])
    if bad:
        lines += ["| tenant | file | outcome | why |", "|---|---|---|---|"]
        lines += [f"| {_cell(o['tenant'])} | {_cell(Path(o['file']).name)} | {o['status']} | {_cell(o.get('reason'))} |"
                  for o in bad]
    return "\n".join(lines) + "\n"


def _cell(text) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")[:300]
