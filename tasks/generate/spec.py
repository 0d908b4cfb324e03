"""The generate stage, as tasks.pipeline.registry knows it."""

from __future__ import annotations

from musika_model.checkpoints import CheckpointError
from musika_model.codec import CodecError
from musika_model.generation import GenerationError
from tasks.generate.params import GenerateParams
from tasks.generate.stage import STAGE, STAGE_VERSION
from tasks.pipeline.models import NotAModelError
from tasks.pipeline.registry import StageSpec

SPECS = (
    StageSpec(
        STAGE,
        STAGE_VERSION,
        params=GenerateParams,
        user_errors=(NotAModelError, CheckpointError, CodecError, GenerationError),
    ),
)
