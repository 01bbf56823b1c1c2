"""Load a recipe script (recipes/...: data tools that are not in the wheel) as a module, for its tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def load_recipe(relative: str) -> ModuleType:
    """``recipes/<relative>`` imported once under a private module name (dataclasses need it registered)."""
    path = RECIPES / relative
    name = "_recipe_" + relative.replace("/", "_").replace("-", "_").removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
