"""Prefect flows and tasks: ordering, retries, chunking and run ids; the work lives below."""
