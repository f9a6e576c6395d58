"""Validating many tenants' files in one go (bulk ingest): one file-backed GX context for the
whole batch, its new data assets written to the project config once, and its Data Docs built once
at the end.

Why: GX rewrites its whole ``great_expectations.yml`` (every tenant's data asset) after each asset
or batch definition it adds, and rebuilds the site per run. Per file, that made validation grow
with the workspace (0.34 s per tenant at 100 tenants, 1.1 s at 1,000, measured with
``python -m benchmarks.fleet --ingest-only``); per batch, it is one write and one build."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

from data_checks import expectations


class DocsBatch:
    """The open context, and the validation results (and suites) it kept per tenant."""

    def __init__(self, gx_context) -> None:
        self.gx_context = gx_context
        self.pages: dict[str, str | None] = {}
        self._kept: dict[str, list] = {}

    def keep(self, tenant: str, identifiers: list) -> None:
        self._kept[tenant] = identifiers

    def build(self) -> dict[str, str | None]:
        """Build the pages of every kept result and suite once (the site's index: once per bulk
        run, ``expectations.build_index``); tenant ->
        its validation page. Suites get their page too, as a single ingest's Data Docs action
        gives them."""
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        every = [i for ids in self._kept.values() for i in ids]
        if not every:
            return {}
        suites = {ExpectationSuiteIdentifier(name=i.expectation_suite_identifier.name) for i in every}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.gx_context.build_data_docs(site_names=["tailor"], resource_identifiers=every + sorted(suites, key=str),
                                            build_index=False)  # the index: once per bulk run (expectations.build_index)
            pages = {}
            for tenant, ids in self._kept.items():
                urls = self.gx_context.get_docs_sites_urls(resource_identifier=ids[-1], site_names=["tailor"]) if ids else []
                pages[tenant] = urls[0]["site_url"] if urls else None
        return pages


@contextmanager
def one_config_write(gx_context):
    """Add data assets and batch definitions with GX writing its project config once, at the end.

    GX serialises the whole ``great_expectations.yml`` (ruamel, every asset of every tenant) after
    each addition: 0.2 s per addition at 100 tenants, about 1 s at 1,000. The additions still land
    in the context's in-memory config (ids included) as they are made; only the file write waits.
    """
    save = gx_context._save_project_config
    gx_context._save_project_config = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del gx_context._save_project_config  # the class's method again
        save()


@contextmanager
def config_variables_read_once(gx_context):
    """Read GX's config variables (``uncommitted/config_variables.yml`` and the environment) once
    for the batch: GX parses that file again for every setting it looks up, about 20 times per
    validation (a fifth of a small file's validation time). The batch holds the GX lock, so no
    Tailor command changes them meanwhile."""
    provider = gx_context.config_provider
    values = provider.get_values()
    provider.get_values = lambda: dict(values)
    try:
        yield
    finally:
        del provider.get_values  # the class's method again


@contextmanager
def docs_batch(site: Path, tenants: list[str] = ()):
    """``with docs_batch(ws.data_docs_dir, tenants) as batch: validate_frame(..., context=batch)``;
    the data assets of ``tenants`` are added (one config write) before any validation refers to
    them, and the pages are built when the block ends: ``batch.pages`` holds them."""
    gx = expectations._import_gx()
    with expectations._gx_lock(site):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = DocsBatch(expectations.open_context(gx, Path(site)))
            with one_config_write(batch.gx_context):
                for tenant in tenants:
                    expectations.batch_definition(batch.gx_context, tenant)
        with config_variables_read_once(batch.gx_context):
            yield batch
            batch.pages = batch.build()
