"""The render stage, as tasks.pipeline.registry knows it."""

from __future__ import annotations

from tasks.pipeline.registry import StageSpec
from tasks.render.core import RenderError
from tasks.render.params import RenderParams
from tasks.render.stage import STAGE, STAGE_VERSION

SPECS = (
    StageSpec(STAGE, STAGE_VERSION, params=RenderParams, user_errors=(RenderError,)),
)
