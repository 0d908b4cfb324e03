"""The evaluate stages, as tasks.pipeline.registry knows them: `evaluate` names the evaluation
versions (hence the evaluation report; its objects are the subjects'), `evaluate-reference`
and `evaluate-model` store a subject's measurements."""

from __future__ import annotations

from musika_model.audio import AudioError
from musika_model.codec import CodecError
from musika_model.generation import GenerationError
from tasks.evaluate.params import EvaluateParams
from tasks.evaluate.report import evaluation_report
from tasks.evaluate.stage import MODEL_STAGE, REFERENCE_STAGE, STAGE, STAGE_VERSION
from tasks.pipeline.models import NotAModelError
from tasks.pipeline.registry import StageSpec

SPECS = (
    StageSpec(
        STAGE,
        None,
        params=EvaluateParams,
        report=evaluation_report,
        user_errors=(NotAModelError, AudioError, CodecError, GenerationError),
    ),
    StageSpec(REFERENCE_STAGE, STAGE_VERSION),
    StageSpec(MODEL_STAGE, STAGE_VERSION),
)
