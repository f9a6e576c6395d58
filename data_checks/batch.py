"""Validating many tenants' files in one go (bulk ingest): one file-backed GX context for the
whole batch and its Data Docs built once at the end, instead of a context and a full site
rebuild per file (the site's index grows with every page, so per-file rebuilds slow down as a
workspace fills: 0.4 s at 10 tenants, 0.6 s at 40, measured here)."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

from data_checks import expectations


class DocsBatch:
    """The open context, and the validation results it kept per tenant."""

    def __init__(self, gx_context) -> None:
        self.gx_context = gx_context
        self._kept: dict[str, list] = {}

    def keep(self, tenant: str, identifiers: list) -> None:
        self._kept[tenant] = identifiers

    def build(self) -> dict[str, str | None]:
        """Build the pages of every kept result and the site's index once; tenant -> its page."""
        every = [i for ids in self._kept.values() for i in ids]
        if not every:
            return {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.gx_context.build_data_docs(site_names=["tailor"], resource_identifiers=every)
            pages = {}
            for tenant, ids in self._kept.items():
                urls = self.gx_context.get_docs_sites_urls(resource_identifier=ids[-1], site_names=["tailor"]) if ids else []
                pages[tenant] = urls[0]["site_url"] if urls else None
        return pages


@contextmanager
def docs_batch(site: Path):
    """``with docs_batch(ws.data_docs_dir) as batch: validate_frame(..., context=batch)``; the
    pages are built when the block ends and ``batch.pages`` holds them."""
    gx = expectations._import_gx()
    with expectations._gx_lock(site):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = DocsBatch(expectations.open_context(gx, Path(site)))
        yield batch
        batch.pages = batch.build()
