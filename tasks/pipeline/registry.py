"""The stages of the pipeline, as each stage declares itself.

A stage package (`tasks/<package>/`) declares its store stages in its `spec` module as
`SPECS: tuple[StageSpec, ...]`: the name the store knows each stage by, its version, its
parameters model, the builder of its versions' report, and the errors that mean "fix your
input". Nothing here names a stage: the lookups find the `spec` modules by walking the `tasks`
package, so a new stage package is found without being listed anywhere.

`spec` is a module of its own, not a block of `stage`, so that a stage's report module can use
the stage's constants (file names inside its objects) without an import cycle, and so that
running a stage does not load the report machinery.

The walk only lists directories (`pkgutil`); the `spec` modules, which import their stage and
report modules (Prefect, numpy, Jinja2 and the stages' libraries: about 4 s in a fresh
process, most of it Prefect, which a flow has loaded already), are imported on the first lookup
and the result is kept for the life of the process.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

import tasks

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tasks.reports.page import ReportSections
    from tasks.store import ArtifactStore, DatasetVersion

SPEC_MODULE = "spec"
"""The module of a stage package that declares its stages."""
SPECS_NAME = "SPECS"
"""The tuple of StageSpec in it."""

ReportBuilder = Callable[["ArtifactStore", "DatasetVersion"], "ReportSections"]
"""Store and version in, the stage's sections of the version's report out."""


class RegistryError(RuntimeError):
    """A stage module declares its stages wrongly (a programming error, not a user error)."""


@dataclass(frozen=True)
class StageSpec:
    """One store stage: what the store calls it and what the rest of the project needs of it."""

    name: str
    """The stage as the store names it (object manifests, dataset versions, failures)."""
    version: int | None
    """Its STAGE_VERSION, part of its objects' keys; None for a stage that stores no objects of
    its own (it names dataset versions or recorded failures only)."""
    params: type[BaseModel] | None = None
    """The model of its parameters, if it takes any."""
    report: ReportBuilder | None = None
    """The sections of its versions' report; None: the generic report."""
    user_errors: tuple[type[Exception], ...] = ()
    """Errors it lets through that mean "fix your input" (a command prints them in one line)."""

    def __post_init__(self) -> None:
        bad = [error for error in self.user_errors if not issubclass(error, Exception)]
        if bad:
            raise RegistryError(f"stage {self.name!r}: user errors must be exceptions, not {bad}")


def _spec_modules() -> Iterator[ModuleType]:
    """`tasks.<package>.spec` of every subpackage of `tasks` that has one."""
    for package in pkgutil.iter_modules(tasks.__path__, prefix=f"{tasks.__name__}."):
        name = f"{package.name}.{SPEC_MODULE}"
        if package.ispkg and importlib.util.find_spec(name) is not None:
            yield importlib.import_module(name)


@cache
def _registry() -> dict[str, StageSpec]:
    specs: dict[str, StageSpec] = {}
    declared_in: dict[str, str] = {}
    for module in _spec_modules():
        declared = getattr(module, SPECS_NAME, None)
        if not isinstance(declared, tuple) or not all(isinstance(s, StageSpec) for s in declared):
            raise RegistryError(f"{module.__name__} must declare {SPECS_NAME}, a tuple of StageSpec")
        for spec in declared:
            if spec.name in specs:
                raise RegistryError(
                    f"stage {spec.name!r} is declared by {declared_in[spec.name]} and {module.__name__}"
                )
            specs[spec.name] = spec
            declared_in[spec.name] = module.__name__
    return specs


def all_specs() -> tuple[StageSpec, ...]:
    """Every declared stage, ordered by name."""
    return tuple(spec for _, spec in sorted(_registry().items()))


def spec_for(stage_name: str) -> StageSpec | None:
    """The stage the store calls `stage_name`; None for a stage no package declares (a store
    may hold versions of stages this code does not know, or no longer knows)."""
    return _registry().get(stage_name)


def user_errors() -> tuple[type[Exception], ...]:
    """Every stage's "fix your input" errors, each once."""
    return tuple(dict.fromkeys(error for spec in all_specs() for error in spec.user_errors))
