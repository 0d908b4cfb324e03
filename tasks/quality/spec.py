"""The quality stages, as tasks.pipeline.registry knows them: `quality` stores each segment's
measurements, `dedupe` records failures only (the duplicates dropped)."""

from __future__ import annotations

from tasks.pipeline.registry import StageSpec
from tasks.quality.params import InvalidQualityParams, QualityParams
from tasks.quality.stage import DEDUPE_STAGE, STAGE, STAGE_VERSION

SPECS = (
    StageSpec(STAGE, STAGE_VERSION, params=QualityParams, user_errors=(InvalidQualityParams,)),
    StageSpec(DEDUPE_STAGE, None),
)
