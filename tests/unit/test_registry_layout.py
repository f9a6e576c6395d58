"""The shape of ``registry/``: grouped by owner, no import cycle, the artifact checks a leaf.

The import graph is read from the source with ``ast``, every import statement counted, those
inside functions too: a function-level import still makes a cycle, it only hides it until run time.
"""
from __future__ import annotations

import ast
import pickle
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ORDER = ["storage", "trail", "artifacts", "review"]  # each folder imports only from itself and those before it
GROUPS = set(ORDER)
CHECKS = "registry.artifacts.checks"
# Versions registered before the regrouping pickled their python_model as registry.pyfunc.TenantModel.
COMPAT = {"registry.pyfunc"}


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file, for every module and package under ``registry/``."""
    found = {}
    for path in sorted((root / "registry").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The registry modules that ``name`` imports anywhere in its file."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in candidates:
            while target and target not in known:  # registry.x.y.func -> registry.x.y
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
    return targets


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imported(name, path, known) for name, path in known.items()}


def cycle(edges: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path (first module repeated at the end), or [] when there is none."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_graph_sees_function_level_imports(tmp_path):
    pkg = tmp_path / "registry"
    (pkg / "storage").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "storage" / "__init__.py").write_text("")
    (pkg / "storage" / "a.py").write_text("from registry.storage import b\n")
    (pkg / "storage" / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    assert cycle(graph(tmp_path)) == ["registry.storage.a", "registry.storage.b", "registry.storage.a"]


def test_registry_has_no_import_cycle():
    assert cycle(graph()) == []


def test_the_checks_are_a_leaf():
    """Every load and gate calls the checks; they call nothing of registry's but the store."""
    edges = graph()
    assert {m for m in edges[CHECKS] if not m.startswith("registry.storage")} == set()


def test_each_folder_imports_only_from_the_folders_below_it():
    def rank(name: str) -> int:
        return ORDER.index(name.split(".")[1]) if name.count(".") >= 2 else len(ORDER)

    upward = sorted(f"{m} -> {t}" for m, targets in graph().items() for t in targets
                    if m not in COMPAT and rank(t) > rank(m))
    assert upward == []


def test_every_module_lives_in_a_group():
    top = {name: path for name, path in modules().items() if name.count(".") == 1}
    loose = {name for name, path in top.items() if path.name != "__init__.py"} - COMPAT
    assert loose == set(), "put each module in one of registry/" + ", registry/".join(sorted(GROUPS))
    assert {name.split(".")[1] for name, path in top.items() if path.name == "__init__.py"} == GROUPS


def test_a_version_registered_before_the_regrouping_still_finds_its_model_class():
    from registry.artifacts.pyfunc import TenantModel

    # What cloudpickle stored for such a version's python_model: a reference to the class by name.
    old = b"\x80\x02cregistry.pyfunc\nTenantModel\nq\x00."
    assert pickle.loads(old) is TenantModel
