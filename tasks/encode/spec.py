"""The encode stage, as tasks.pipeline.registry knows it: its versions are latents datasets,
hence the latents report; the autoencoder it is given may be no model, or unreadable weights or folder."""

from __future__ import annotations

from musika_model.codec import CodecError
from musika_model.official import OfficialWeightsError
from tasks.encode.report import latents_report
from tasks.encode.stage import STAGE, STAGE_VERSION
from tasks.pipeline.models import NotAModelError
from tasks.pipeline.registry import StageSpec

SPECS = (
    StageSpec(
        STAGE,
        STAGE_VERSION,
        report=latents_report,
        user_errors=(NotAModelError, OfficialWeightsError, CodecError),
    ),
)
