"""The checkpoint-import stage, as tasks.pipeline.registry knows it (the model versions it
publishes are of stage `checkpoint`, declared by tasks/train/spec.py)."""

from __future__ import annotations

from musika_model.official import OfficialWeightsError
from tasks.checkpoint_import.stage import STAGE, STAGE_VERSION
from tasks.pipeline.registry import StageSpec

SPECS = (StageSpec(STAGE, STAGE_VERSION, user_errors=(OfficialWeightsError,)),)
