"""ema_core's public surface: a complete, documented __all__; imports point one way."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import ema_core

PUBLIC_MODULES = (
    "ema", "swa", "swap", "stats", "snapshot", "client", "exceptions", "posthoc", "posthoc_ema",
    "posthoc_files", "posthoc_synthesis",
    "effective_length", "compat", "whatif", "averager_state",
)


def test_all_names_are_exported_and_documented() -> None:
    assert len(ema_core.__all__) == len(set(ema_core.__all__))
    for name in ema_core.__all__:
        member = getattr(ema_core, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            doc = inspect.getdoc(member) or ""
            assert len(doc) > 40, f"{name} needs a docstring with shapes, units and errors"


def test_main_classes_and_functions_of_each_public_module_are_re_exported() -> None:
    import importlib

    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(f"ema_core.{module_name}")
        for name in module.__all__:
            member = getattr(module, name)
            if inspect.isclass(member) and member.__module__ == module.__name__:
                assert name in ema_core.__all__, f"ema_core.{module_name}.{name} not re-exported"


def test_ema_core_never_imports_the_server_side() -> None:
    root = Path(ema_core.__file__).parent
    pattern = re.compile(
        r"^\s*(import|from)\s+(fastapi|sqlalchemy|starlette|backend|emaboard_server)\b", re.M
    )
    offenders = [str(p) for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
