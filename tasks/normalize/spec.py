"""The normalize stage, as tasks.pipeline.registry knows it: its versions are the datasets the
dataset flows publish, hence the dataset report."""

from __future__ import annotations

from musika_model.audio import AudioError
from tasks.normalize.params import InvalidLoudnessParams, LoudnessParams
from tasks.normalize.report import dataset_report
from tasks.normalize.stage import STAGE, STAGE_VERSION
from tasks.pipeline.registry import StageSpec

SPECS = (
    StageSpec(
        STAGE,
        STAGE_VERSION,
        params=LoudnessParams,
        report=dataset_report,
        user_errors=(InvalidLoudnessParams, AudioError),
    ),
)
