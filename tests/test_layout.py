"""Repository layout: benchmarks and scripts stand on the installed packages, never on the test
suite."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_bench_and_scripts_never_import_tests() -> None:
    scripts = sorted([*(ROOT / "bench").glob("*.py"), *(ROOT / "scripts").glob("*.py")])
    assert scripts
    offenders = {script.name: sorted(m for m in imported_modules(script)
                                     if m == "tests" or m.startswith("tests."))
                 for script in scripts}
    assert {name: found for name, found in offenders.items() if found} == {}
