"""The segment stages, as tasks.pipeline.registry knows them: `segment-plan` (the cuts of a
recording, keyed by the segment settings) and `segment` (one segment of a plan)."""

from __future__ import annotations

from musika_model.audio import AudioError
from tasks.pipeline.registry import StageSpec
from tasks.segment.params import InvalidSegmentParams, SegmentParams
from tasks.segment.stage import PLAN_STAGE, PLAN_STAGE_VERSION, STAGE, STAGE_VERSION

SPECS = (
    StageSpec(
        PLAN_STAGE,
        PLAN_STAGE_VERSION,
        params=SegmentParams,
        user_errors=(InvalidSegmentParams, AudioError),
    ),
    StageSpec(STAGE, STAGE_VERSION),
)
