"""The layers hold by contract: `lint-imports` checks the contracts in pyproject.toml (layers, a pure core, Prefect
only in flows, DuckDB only in the store), and no two modules import each other, even by a detour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "5 kept, 0 broken" in done.stdout


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Import circles between modules; a package's re-exports of its own modules (its __init__) are not imports."""
    def imports(m: str) -> set[str]:
        return {i for i in graph.find_modules_directly_imported_by(m) if not i.startswith(m + ".")}

    circles, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for i in sorted(imports(m)):
            if state.get(i) == "open":
                circles.append([*path[path.index(i):], i])
            elif i not in state:
                visit(i, [*path, i])
        state[m] = "closed"

    for m in sorted(graph.modules):
        if m not in state:
            visit(m, [m])
    return circles


def test_no_import_circles() -> None:
    graph = grimp.build_graph("east_tasks", "flows")
    assert _circles(graph) == []
    graph.add_import(importer="east_tasks.config", imported="east_tasks.store.file")  # the check can fail
    assert any("east_tasks.config" in c for c in _circles(graph))
