"""The tenant data contract as a Great Expectations 1.x suite, so every accepted file was checked by
the same declared rules and a reviewer can read them (and their results) in Data Docs."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from workspace.settings import ValidationSettings
from workspace.tenants import check_tenant_id

COLUMNS = ("text", "label")
_RULES = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()  # recorded outcomes are kept per rules
LABEL_COUNT = "examples_of_this_label"  # derived column: each row carries its label's row count
_BLANK = r"^\s*$"


@dataclass(frozen=True)
class ValidationReport:
    """What a validation found: ``failures`` are one-liners a person can act on."""

    passed: bool
    failures: list[str]
    stats: dict
    suite: str
    gx_version: str
    checked_at: str
    data_docs: str | None = field(default=None)  # this run's validation page in Data Docs, if kept
    data_docs_index: str | None = field(default=None)  # the site's index.html
    leakage: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    gx_checked_at: str | None = field(default=None)  # when GX ran the suite on these rows under these rules
    recorded: bool = field(default=False)  # the suite's outcome is GX's of gx_checked_at, not run again

    def to_dict(self) -> dict:
        return asdict(self)


def validate_frame(tenant: str, df: pd.DataFrame, settings: ValidationSettings,
                   docs_dir: Path | None = None, *, run_name: str | None = None,
                   others: dict[str, list[str]] | None = None,
                   split: tuple[list[int], list[int]] | None = None,
                   overlap: tuple[dict[str, int], int] | None = None, context=None,
                   recorded: Path | None = None) -> ValidationReport:
    """Run the suite ``tailor-<tenant>`` on ``df`` in an ephemeral GX context.

    Rules: columns text and label exist; neither is null or blank; texts are at most
    ``max_text_chars`` long; the number of distinct labels is within [min_labels, max_labels];
    every label has at least ``min_examples_per_label`` rows; exact duplicate texts are at most
    ``max_duplicate_fraction`` of the rows.

    GX has no "count per group" expectation. Rather than letting GX merely confirm a list of
    labels computed beforehand (``expect_column_values_to_be_in_set`` on the labels that already
    passed), each row gets a derived column holding its label's row count, and GX checks that
    column with ``expect_column_values_to_be_between(min_value=min_examples_per_label)``: GX
    judges the numbers itself, and its unexpected rows are exactly the rows of short labels.
    The duplicate rule is ``expect_column_proportion_of_unique_values_to_be_between`` on text,
    with ``min = 1 - max_duplicate_fraction`` (duplicate fraction = 1 - unique/rows).
    Column rules are only declared for columns that exist; a missing column is its own failure.

    With ``docs_dir`` (the workspace's Data Docs site) the run uses the workspace's file-backed
    GX context: the suite is saved, the result kept, and a page for this run (named ``run_name``)
    and its suite's page are added to the site; the site's index, which lists every kept result
    (O(fleet)), is rebuilt by bulk ingest and ``build_index``, not by each single validation.

    Leakage checks run as part of validation: ``others`` (tenant -> texts of other tenants'
    current data) gives the cross-tenant overlap, failing above ``max_cross_tenant_fraction``;
    ``split`` (support rows, query rows of the measuring split) gives support/query leakage,
    reported as a warning (duplicates are allowed up to ``max_duplicate_fraction``).
    ``overlap`` = (tenant -> shared texts, tenants compared) replaces ``others`` when the caller
    computed it from an index (bulk ingest).

    ``context``: a ``data_checks.batch.DocsBatch`` (one file-backed GX context whose Data Docs
    are built once for many validations); the report's ``data_docs`` is then filled in by it.

    ``recorded``: the workspace's folder of recorded suite outcomes (``data_checks.recorded``).
    Every run records its outcome there; a run without Data Docs (no ``docs_dir``, no
    ``context``) on rows and rules already recorded takes the recorded outcome instead of running
    GX again, and the report's ``gx_checked_at`` says when GX ran it.
    """
    from data_checks import recorded as records

    check_tenant_id(tenant)
    frame = _prepare(df)
    present = [c for c in COLUMNS if c in frame.columns]
    suite_name = f"tailor-{tenant}"
    site = Path(docs_dir) if docs_dir is not None else None
    stats = _stats(frame, present)
    key = records.key(frame, present, settings, _RULES) if recorded is not None else None
    known = records.read(recorded, key) if site is None and context is None else None
    page = None
    if known is not None:
        success, failures, gx_version, gx_at = known["success"], known["failures"], known["gx_version"], known["at"]
    else:
        gx = _import_gx()
        rules = _expectations(gx.expectations, present, settings)
        if context is not None:
            outcome = _checkpoint(gx, context.gx_context, suite_name, tenant, frame, rules, [], run_name)
            context.keep(tenant, list(outcome.run_results))
        else:
            outcome, page = _run_checkpoint(gx, suite_name, tenant, frame, rules, site, run_name)
        success, gx_version, gx_at = bool(outcome.success), gx.__version__, _now()
        failures = [line for run in outcome.run_results.values() for result in run.results if not result.success
                    for line in _describe(result, frame, settings, stats)]
        records.write(recorded, key, {"success": success, "failures": failures, "gx_version": gx_version,
                                      "at": gx_at})
    if len(frame) == 0:  # with no rows, "0 labels" and "0% duplicates" would only add noise
        failures = [f for f in failures if f.startswith(("column ", "the file has no rows"))]
    leakage, warnings_ = _leakage(frame, present, others, split, settings, overlap)
    failures += [w for w in warnings_ if w.startswith("cross-tenant")
                 and leakage["cross_tenant_fraction"] > settings.max_cross_tenant_fraction]
    index = site / "index.html" if site is not None else None
    return ValidationReport(
        passed=success and not failures, failures=failures, stats=stats,
        suite=suite_name, gx_version=gx_version, checked_at=_now() if known is not None else gx_at,
        data_docs=page, data_docs_index=str(index) if index is not None and index.exists() else None,
        leakage=leakage, warnings=warnings_, gx_checked_at=gx_at, recorded=known is not None)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _leakage(frame: pd.DataFrame, present: list[str], others: dict | None, split, s: ValidationSettings,
             overlap: tuple[dict[str, int], int] | None = None):
    """Cross-tenant overlap (texts also in another tenant's current data) and support/query
    leakage (the same normalised text on both sides of the measuring split)."""
    from data_checks.leakage import check_leakage, cross_tenant_overlap

    texts = frame["text"].dropna().astype(str).tolist() if "text" in present else []
    shared = overlap[0] if overlap is not None else cross_tenant_overlap(texts, others or {})
    fraction = max(shared.values(), default=0) / len(texts) if texts else 0.0
    leaked = []
    if split is not None and texts:
        support, query = split
        leaked = check_leakage([texts[i] for i in support if i < len(texts)],
                               [texts[i] for i in query if i < len(texts)])
    found = []
    if shared:
        worst = max(shared, key=shared.get)
        found.append(f"cross-tenant: {shared[worst]} of {len(texts)} texts also in tenant {worst}'s data "
                     f"({fraction:.0%}; at most {s.max_cross_tenant_fraction:.0%} allowed)")
    if leaked:
        found.append(f"support/query leakage: {len(leaked)} held-out text(s) also in the support split "
                     "(accuracy is inflated): remove duplicates")
    return {"cross_tenant": shared, "cross_tenant_fraction": round(fraction, 4),
            "support_query": len(leaked), "support_query_examples": leaked[:5],
            "checked_split": split is not None,
            "checked_tenants": overlap[1] if overlap is not None else len(others or {})}, found


def _run_checkpoint(gx, suite_name: str, tenant: str, frame: pd.DataFrame, rules: list, site: Path | None,
                    run_name: str | None = None):
    """Context → pandas source → dataframe asset → batch definition → suite → validation
    definition → checkpoint. Without ``site``: an ephemeral context, nothing kept. With it: the
    workspace's one file-backed context (``site``/../gx), so suites are saved, every validation
    result is kept and the Data Docs site gets this run's page and its suite's (not the index:
    ``build_index``); runs are named ``run_name`` (the file's md5, so a data version finds its page)."""
    with warnings.catch_warnings(), _gx_lock(site):
        warnings.simplefilter("ignore")  # GX's deprecation notices are for us, not the user
        context = open_context(gx, site)
        if site is not None:  # the shared asset and batch definition, once per workspace: one config write
            from data_checks.batch import one_config_write

            with one_config_write(context):
                batch_definition(context, tenant)
        outcome = _checkpoint(gx, context, suite_name, tenant, frame, rules, [], run_name)
        page = None
        if site is not None:
            from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

            results = list(outcome.run_results)
            context.build_data_docs(site_names=["tailor"], build_index=False,
                                    resource_identifiers=[*results, ExpectationSuiteIdentifier(name=suite_name)])
            for identifier in results:
                urls = context.get_docs_sites_urls(resource_identifier=identifier, site_names=["tailor"])
                page = urls[0]["site_url"] if urls else None
        return outcome, page


def build_index(site: Path) -> Path | None:
    """Rebuild the Data Docs site's index over every kept validation and suite (it grows with the
    fleet: bulk ingest calls it once per run, not per file); the index page, if built."""
    gx = _import_gx()
    with warnings.catch_warnings(), _gx_lock(site):
        warnings.simplefilter("ignore")
        context = open_context(gx, Path(site))
        context.build_data_docs(site_names=["tailor"], resource_identifiers=[], build_index=True)
    index = Path(site) / "index.html"
    return index if index.exists() else None


def open_context(gx, site: Path | None):
    """An ephemeral GX context (no ``site``), or the workspace's file-backed one with its Data
    Docs site ``tailor`` at ``site``. Callers hold ``_gx_lock(site)`` while using it."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if site is None:
        context = gx.get_context(mode="ephemeral")
    else:
        context = gx.get_context(mode="file", project_root_dir=str(Path(site).parent))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if site is not None and "tailor" not in (context.variables.data_docs_sites or {}):
        context.add_data_docs_site("tailor", {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    return context


def _checkpoint(gx, context, suite_name: str, tenant: str, frame: pd.DataFrame, rules: list, actions: list,
                run_name: str | None):
    """Pandas source → dataframe asset → batch definition → suite → validation definition →
    checkpoint, in ``context``; run it on ``frame``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = batch_definition(context, tenant)
        suite = context.suites.add_or_update(gx.ExpectationSuite(name=suite_name, expectations=rules))
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
        checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
            name=suite_name, validation_definitions=[definition], actions=actions,
            result_format={"result_format": "SUMMARY"}))
        run_id = gx.RunIdentifier(run_name=run_name) if run_name else None
        return checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)


SHARED_ASSET = "tenant-file"  # one dataframe asset for every tenant: the frame comes with each run


def batch_definition(context, tenant: str):
    """The ``whole-file`` batch definition of the dataframe asset every tenant's validation uses,
    added on first use. One asset for all tenants, not one each: GX keeps assets in its project
    config, which it parses on every open and rewrites on every addition (1,000 tenants' assets
    made opening the context 6.9 s); suites, validation definitions and results are files of
    their own. ``tenant`` is checked, not used (a frame carries its tenant's rows)."""
    check_tenant_id(tenant)
    source = _get_or_add(lambda: context.data_sources.get("tailor"), lambda: context.data_sources.add_pandas("tailor"))
    asset = _get_or_add(lambda: source.get_asset(SHARED_ASSET), lambda: source.add_dataframe_asset(SHARED_ASSET))
    return _get_or_add(lambda: asset.get_batch_definition("whole-file"),
                       lambda: asset.add_batch_definition_whole_dataframe("whole-file"))


def _get_or_add(get, add):
    try:
        return get()
    except Exception:  # noqa: BLE001 - GX raises several types for "not found"
        return add()


@contextlib.contextmanager
def _gx_lock(site: Path | None):
    """One writer of the workspace's GX project at a time (its YAML and stores are plain files)."""
    if site is None:
        yield
        return
    from filelock import FileLock

    folder = Path(site).parent / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / "gx.lock"), timeout=300):
        yield


def docs_page(site: Path, tenant: str, data_md5: str) -> str | None:
    """The newest validation page of ``tenant``'s data version ``data_md5`` (bare hex), if any."""
    pages = sorted((Path(site) / "validations" / f"tailor-{tenant}" / data_md5).glob("*/*.html"))
    return pages[-1].resolve().as_uri() if pages else None


def preload() -> None:
    """Import GX now, while this process would only wait (for the embedded Prefect server to
    start); a failure is left for the validation to raise and report."""
    try:
        _import_gx()
    except Exception:  # noqa: BLE001 - the real import, when validating, raises it again
        pass


def _import_gx():
    """Import GX only when validating (~1 s), with its logs and progress bars off the screen."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)  # before import: it logs while importing
    import great_expectations as gx

    # GX sets one of its own loggers to INFO at import; lower every logger it has created
    for name in ["great_expectations", *logging.root.manager.loggerDict]:
        if name.startswith("great_expectations"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return gx


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    """A 0..n-1 indexed copy whose labels are strings (labels are names, never numbers)."""
    frame = df.reset_index(drop=True).copy()
    frame.columns = [str(c) for c in frame.columns]
    for name in COLUMNS:
        if name in frame.columns:
            col = frame[name]
            frame[name] = col.astype(object).where(col.isna(), col.astype(str))
    if "label" in frame.columns:
        frame[LABEL_COUNT] = frame.groupby("label", dropna=True)["label"].transform("size")
    return frame


def _expectations(E, present: list[str], s: ValidationSettings) -> list:
    rules = [E.ExpectColumnToExist(column=c) for c in COLUMNS]
    rules.append(E.ExpectTableRowCountToBeBetween(min_value=1))
    for c in present:
        rules += [E.ExpectColumnValuesToNotBeNull(column=c),
                  E.ExpectColumnValuesToNotMatchRegex(column=c, regex=_BLANK)]
    if "text" in present:
        rules += [E.ExpectColumnValueLengthsToBeBetween(column="text", max_value=s.max_text_chars),
                  E.ExpectColumnProportionOfUniqueValuesToBeBetween(
                      column="text", min_value=1.0 - s.max_duplicate_fraction)]
    if "label" in present:
        rules += [E.ExpectColumnUniqueValueCountToBeBetween(
                      column="label", min_value=s.min_labels, max_value=s.max_labels),
                  E.ExpectColumnValuesToBeBetween(column=LABEL_COUNT, min_value=s.min_examples_per_label)]
    return rules


def _stats(frame: pd.DataFrame, present: list[str]) -> dict:
    n = len(frame)
    stats: dict = {"n_rows": n}
    if "label" in present:
        counts = frame["label"].value_counts(dropna=True)
        stats["n_labels"] = int(len(counts))
        stats["label_counts"] = {str(k): int(v) for k, v in counts.sort_index().items()}
    if "text" in present and n:
        stats["duplicate_fraction"] = round(1.0 - frame["text"].nunique(dropna=True) / n, 4)
        stats["max_text_chars"] = int(frame["text"].dropna().astype(str).str.len().max() or 0)
    return stats


def _rows(result) -> str:
    """The first offending data rows, 1-based, as a person counts them below the header."""
    index = result.result.get("partial_unexpected_index_list") or []
    shown = ", ".join(str(int(i) + 1) for i in index[:5])
    more = "…" if result.result.get("unexpected_count", 0) > len(index[:5]) else ""
    word = "row" if len(index) == 1 and not more else "rows"
    return f" ({word} {shown}{more})" if shown else ""


def _describe(result, frame: pd.DataFrame, s: ValidationSettings, stats: dict) -> list[str]:
    """One readable line per failed expectation (several for per-label counts)."""
    kind = result.expectation_config.type
    column = result.expectation_config.kwargs.get("column")
    info = result.result or {}
    bad = info.get("unexpected_count", 0)
    if result.exception_info and result.exception_info.get("raised_exception"):
        return [f"check {kind} on {column!r} could not run: {result.exception_info.get('exception_message')}"]
    if kind == "expect_column_to_exist":
        found = ", ".join(c for c in frame.columns if c != LABEL_COUNT) or "none"
        return [f"column {column!r} is missing (found: {found}): the file needs columns text,label"]
    if kind == "expect_table_row_count_to_be_between":
        return ["the file has no rows: add one row per labelled example"]
    if kind == "expect_column_values_to_not_be_null":
        return [f"{column} is missing in {bad} row(s){_rows(result)}"]
    if kind == "expect_column_values_to_not_match_regex":
        return [f"{column} is blank in {bad} row(s){_rows(result)}"]
    if kind == "expect_column_value_lengths_to_be_between":
        return [f"{bad} text(s) are longer than {s.max_text_chars} characters{_rows(result)}: "
                "shorten them or raise validation.max_text_chars"]
    if kind == "expect_column_proportion_of_unique_values_to_be_between":
        dup = stats.get("duplicate_fraction", 0.0)
        return [f"duplicate texts are {dup:.0%} of rows, at most {s.max_duplicate_fraction:.0%} allowed: "
                "remove repeated examples"]
    if kind == "expect_column_unique_value_count_to_be_between":
        n = info.get("observed_value")
        return [f"{n} distinct label(s), needs between {s.min_labels} and {s.max_labels}"]
    if kind == "expect_column_values_to_be_between" and column == LABEL_COUNT:
        counts = stats.get("label_counts", {})
        return [f"label {label!r} has {n} example(s), needs >= {s.min_examples_per_label}"
                for label, n in counts.items() if n < s.min_examples_per_label]
    return [f"{kind} failed on {column!r}: {info}"]
