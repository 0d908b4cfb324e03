"""Run code around a module's first import, without importing it ahead of need: the CLI uses it
to quiet TensorFlow's loading (`native_logs`) and to make Prefect's temporary server die with the
CLI (`prefect_server`), both modules that take seconds to import."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

Around = Callable[[ModuleType, Callable[[ModuleType], None]], None]
"""`around(module, run)`: must call `run(module)`, which executes the module's code."""


def around_first_import(fullname: str, around: Around) -> None:
    """Have `around` wrap the execution of module `fullname` when it is first imported (once;
    nothing happens when it is already imported or already hooked)."""
    if fullname in sys.modules:
        return
    if not any(isinstance(finder, _AroundImport) and finder.fullname == fullname for finder in sys.meta_path):
        sys.meta_path.insert(0, _AroundImport(fullname, around))


class _AroundImport(importlib.abc.MetaPathFinder):
    """Lets the standard path finder find the module and wraps its execution; leaves sys.meta_path
    once the module runs (not when it is only looked up: `importlib.util.find_spec` asks the
    finders too)."""

    def __init__(self, fullname: str, around: Around) -> None:
        self.fullname, self.around = fullname, around

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.fullname:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        run_module = spec.loader.exec_module

        def execute(module: ModuleType) -> None:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            self.around(module, run_module)

        spec.loader.exec_module = execute  # type: ignore[method-assign]
        return spec
