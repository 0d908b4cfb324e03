"""The stage registry: every store stage found from its package's spec.py, lazily, each once, with
its report template and its input errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks.pipeline.registry import RegistryError, StageSpec, all_specs, spec_for, user_errors
from tasks.render.core import RenderError
from tasks.reports.page import environment
from tasks.train.config import TrainingInputError

STORE_STAGES = {
    "list", "download", "segment-plan", "segment", "quality", "dedupe", "render", "normalize",
    "encode", "train-autoencoder", "checkpoint-import", "train-gan", "gan-checkpoint",
    "checkpoint", "generate", "evaluate", "evaluate-reference", "evaluate-model",
}  # fmt: skip


def test_every_store_stage_is_declared_once() -> None:
    names = [spec.name for spec in all_specs()]
    assert sorted(names) == sorted(STORE_STAGES)
    assert spec_for("render") is not None and spec_for("render").version == 2
    assert spec_for("mystery") is None  # a stage no package declares: the generic report


def test_reports_are_declared_for_the_versions_that_have_their_own() -> None:
    reported = {spec.name for spec in all_specs() if spec.report is not None}
    assert reported == {"normalize", "encode", "checkpoint", "evaluate"}
    for name in reported:
        package = spec_for(name).report.__module__.rpartition(".")[0]
        assert environment().get_template(f"{package}:report.html.j2")  # shipped beside it


def test_user_errors_are_the_union_of_the_stages_errors() -> None:
    errors = user_errors()
    assert len(errors) == len(set(errors))
    assert set(errors) == {error for spec in all_specs() for error in spec.user_errors}
    assert RenderError in errors and TrainingInputError in errors


def test_a_spec_refuses_user_errors_that_are_not_exceptions() -> None:
    with pytest.raises(RegistryError, match="must be exceptions"):
        StageSpec("odd", 1, user_errors=(int,))  # type: ignore[arg-type]


def test_importing_the_registry_imports_no_stage() -> None:
    code = (
        "import sys, tasks.pipeline.registry; "
        "print(sorted(m for m in sys.modules if m.endswith(('.stage', '.spec'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
