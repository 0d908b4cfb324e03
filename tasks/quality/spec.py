"""The quality stages, as tasks.pipeline.registry knows them: `quality` stores each segment's
measurements, `dedupe` the kept stretches of partly repeated segments (and records the segments
dropped as duplicates)."""

from __future__ import annotations

from tasks.pipeline.registry import StageSpec
from tasks.quality.params import InvalidQualityParams, QualityParams
from tasks.quality.stage import DEDUPE_STAGE, DEDUPE_STAGE_VERSION, STAGE, STAGE_VERSION

SPECS = (
    StageSpec(STAGE, STAGE_VERSION, params=QualityParams, user_errors=(InvalidQualityParams,)),
    StageSpec(DEDUPE_STAGE, DEDUPE_STAGE_VERSION),
)
