"""The text sources that demo and benchmark tenants are built from, one module per source, read offline.

Each source module states its licence (``LICENCE``), the labellings of its texts (``TAXONOMIES``) and
the measured share of a class's texts that name their own label (``LEAK``, from
``python -m benchmarks.sources``); ``catalog`` lists the sources and builds their class pools;
``demo_tenants`` writes the demo's tenant files. The package imports nothing of Tailor but
``workspace``: the face (``tailor/``) and ``benchmarks/`` import it, never the other way round.
"""
