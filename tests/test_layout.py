"""The package's shape: each idea in a module of readable size, Ray behind the engine, the service apart from the CLI.

These are the layout rules the README's Layout section states; a change that breaks one should move code to its
home instead of relaxing the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "orchestrator"
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 100
RAY_MODULES = {
    # The engine is the one adapter between ablate and Ray Tune; the search's Tune searcher, the Tune schedulers
    # and the service's Ray head go with it.
    "engine",
    "search.py",
    "tune_schedulers.py",
    "service/_ray_head.py",
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_no_module_is_over_800_lines() -> None:
    long = {_relative(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_over_100_lines() -> None:
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long[f"{_relative(path)}:{node.name}"] = lines
    assert long == {}


def test_ray_is_imported_only_by_the_engine_and_its_adapters() -> None:
    importers = set()
    for path in _modules():
        relative = _relative(path)
        if any(name == "ray" or name.startswith("ray.") for name in _imports(ast.parse(relative and path.read_text()))):
            importers.add(relative)
    allowed = {m for m in importers if m in RAY_MODULES or m.split("/")[0] in RAY_MODULES}
    assert importers - allowed == set()
    assert "engine/_driver.py" in importers  # the check sees imports inside functions too


def test_the_service_imports_nothing_from_the_cli() -> None:
    found = {
        _relative(path): name
        for path in sorted((PACKAGE / "service").rglob("*.py"))
        for name in _imports(ast.parse(path.read_text()))
        if name == "orchestrator.cli" or name.startswith("orchestrator.cli.")
    }
    assert found == {}
