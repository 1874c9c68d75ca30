"""ema_core's public surface, exact as in httpx's tests/test_exported_members.py: every public
module's ``__all__`` is the sorted list of the public names it defines, ema_core's own
``__all__`` is the sorted list of its lazy ``_EXPORTS``, each documented; imports point one
way."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import ema_core

ROOT = Path(ema_core.__file__).parent
NOT_EXPORTED = {"__all__", "logger"}  # module plumbing, public by convention only


def public_modules() -> list[str]:
    """Every module of ema_core with no private (``_``) part in its dotted name."""
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if len(parts) > 1 and not any(part.startswith("_") for part in parts):
            names.append(".".join(parts))
    return names


def defined_public_names(path: Path) -> list[str]:
    """Names a module binds at its top level by def, class or assignment (imports and
    ``if TYPE_CHECKING:`` blocks excluded), without a leading underscore, sorted."""
    found: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                found.append(node.name)
            elif isinstance(node, ast.Assign):
                found.extend(t.id for t in node.targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                found.append(node.target.id)
            elif isinstance(node, ast.If) and not (
                    isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return sorted({n for n in found if not n.startswith("_") and n not in NOT_EXPORTED})


def module_path(name: str) -> Path:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    return Path(module.__file__)


def test_the_public_modules_are_found() -> None:
    assert {"ema_core.ema", "ema_core.wire", "ema_core.integrations.lightning"} <= set(
        public_modules())


@pytest.mark.parametrize("name", public_modules())
def test_all_is_exactly_the_sorted_public_names_of_the_module(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == defined_public_names(module_path(name)), (
        f"{name}.__all__ must list, sorted, every public name the module defines: make a "
        "helper private (_name) or export it"
    )


def test_ema_core_all_is_exactly_the_sorted_lazy_exports() -> None:
    assert ema_core.__all__ == sorted(ema_core._EXPORTS)
    assert defined_public_names(Path(ema_core.__file__)) == []  # every name comes lazily
    assert set(ema_core.__all__) <= set(dir(ema_core))


def test_every_lazy_export_names_the_module_that_defines_it() -> None:
    for name, module_name in ema_core._EXPORTS.items():
        module = importlib.import_module(module_name)
        assert name in module.__all__, f"{name} is not in {module_name}.__all__"
        assert getattr(ema_core, name) is getattr(module, name)


def test_the_type_checking_imports_match_the_lazy_exports() -> None:
    tree = ast.parse(Path(ema_core.__file__).read_text())
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and (
                node.test.id == "TYPE_CHECKING"):
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module is not None
                imported.update((alias.name, stmt.module) for alias in stmt.names)
    assert imported == ema_core._EXPORTS


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'ema_core' has no attribute 'Nope'"):
        ema_core.Nope  # noqa: B018


def test_all_names_are_documented() -> None:
    for name in ema_core.__all__:
        member = getattr(ema_core, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            doc = inspect.getdoc(member) or ""
            assert len(doc) > 40, f"{name} needs a docstring with shapes, units and errors"


# Modules whose classes belong at the top level (the engine, snapshots, the Monitor, errors).
TOP_LEVEL_MODULES = (
    "ema", "swa", "swap", "stats", "snapshot", "client", "exceptions", "posthoc", "posthoc_ema",
    "posthoc_files", "posthoc_synthesis", "effective_length", "compat", "whatif",
    "averager_state",
)


@pytest.mark.parametrize("module_name", TOP_LEVEL_MODULES)
def test_classes_of_the_main_modules_are_re_exported(module_name: str) -> None:
    module = importlib.import_module(f"ema_core.{module_name}")
    for name in module.__all__:
        member = getattr(module, name)
        protocol = getattr(member, "_is_protocol", False)  # a typing aid, not an object
        if inspect.isclass(member) and member.__module__ == module.__name__ and not protocol:
            assert name in ema_core.__all__, f"ema_core.{module_name}.{name} not re-exported"


def test_ema_core_never_imports_the_server_side() -> None:
    pattern = re.compile(
        r"^\s*(import|from)\s+(fastapi|sqlalchemy|starlette|backend|emaboard_server)\b", re.M
    )
    offenders = [str(p) for p in ROOT.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
