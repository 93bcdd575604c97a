"""The package's layout: no import cycle between the modules of batch/, no module over 500 lines.

Read from the source with `ast`, nothing imported: every import counts, a function's too
(an import deferred into a function is still a dependency, only a hidden one).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 500


def module_files(root: Path, package: str = "batch") -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` under `root` (a package by
    its __init__.py)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that module `name` (the file `path`) imports, anywhere in it.

    `from P import X` depends on P.X when that is a module, else on P (X is a name in it).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else source)
    return {module for module in found if module in modules and module != name}


def import_graph(root: Path, package: str = "batch") -> dict[str, set[str]]:
    modules = module_files(root, package)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (its modules, the first repeated at the end) per group of modules that import
    each other, found by depth-first search."""
    cycles: list[list[str]] = []
    done: set[str] = set()
    in_cycle: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                cycle = path[path.index(imported):] + [imported]
                if not in_cycle & set(cycle):
                    cycles.append(cycle)
                    in_cycle.update(cycle)
            elif imported not in done:
                visit(imported, path + [imported])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return cycles


def test_the_modules_of_batch_import_each_other_without_a_cycle() -> None:
    graph = import_graph(PROJECT_ROOT)
    # The graph is read, not empty: the launcher's entry point imports its main module.
    assert "batch.launcher.main" in graph["batch.launcher.__main__"]
    cycles = import_cycles(graph)
    assert cycles == [], "import cycles in batch/: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_a_cycle_through_a_relative_import_inside_a_function_is_named(tmp_path: Path) -> None:
    package = tmp_path / "batch"
    (package / "jobs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "jobs" / "__init__.py").write_text("")
    (package / "settings.py").write_text("import os\nfrom batch.jobs import runner\n")
    (package / "jobs" / "runner.py").write_text("def run():\n    from .. import settings\n")
    (package / "jobs" / "report.py").write_text("from . import runner\nfrom .runner import run\n")
    graph = import_graph(tmp_path)
    assert graph == {"batch": set(), "batch.jobs": set(), "batch.settings": {"batch.jobs.runner"},
                     "batch.jobs.runner": {"batch.settings"}, "batch.jobs.report": {"batch.jobs.runner"}}
    assert import_cycles(graph) == [["batch.jobs.runner", "batch.settings", "batch.jobs.runner"]]


@pytest.mark.parametrize("module", sorted(module_files(PROJECT_ROOT)))
def test_no_module_of_batch_is_over_500_lines(module: str) -> None:
    path = module_files(PROJECT_ROOT)[module]
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, (
        f"{path.relative_to(PROJECT_ROOT)} has {lines} lines, more than {MAX_MODULE_LINES}: split it")
