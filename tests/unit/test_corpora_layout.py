"""``corpora/`` sits below the demo and the benchmark: it imports nothing of Tailor but ``workspace``.

Imports are read from the source with ``ast``, those inside functions too (a function-level import
still ties the floors together, it only hides it until run time).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ABOVE = {"tailor", "flows", "registry", "benchmarks", "data_checks", "lightning_modules", "tests"}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def test_the_import_reader_sees_function_level_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("import os\n\ndef f():\n    from tailor.demo import run_demo\n    import flows.adapt\n")
    assert imported_packages(path) == {"os", "tailor", "flows"}


def test_corpora_imports_nothing_above_it():
    upward = sorted(f"{path.relative_to(ROOT)} -> {name}" for path in sorted((ROOT / "corpora").rglob("*.py"))
                    for name in imported_packages(path) & ABOVE)
    assert upward == []


def test_the_text_sources_left_the_face():
    assert not [p.name for p in (ROOT / "tailor").glob("*.py") if p.stem.endswith(("_sources", "_data"))]
