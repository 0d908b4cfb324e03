"""The evaluate stage's parameters: what is generated and measured. One model for the flow's form,
the CLI, the dataset version's record (`model_dump(mode="json")`) and the subjects' keys (which
take the fields `tasks.evaluate.stage.plan_reference` / `plan_model` name). Pydantic and the
standard library only."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

SegmentLength = Annotated[float, Field(ge=1.0, le=120.0)]


class EvaluateParams(BaseModel):
    """What is generated and measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: int = Field(default=8, ge=1, le=64, description="Clips generated per checkpoint.")
    seconds: float = Field(default=10.0, ge=1.0, le=120.0, description="Length of each clip (and reference crop).")
    truncation: float = Field(default=2.0, gt=0.0, le=10.0, description="Bound of the truncated normal latents.")
    seed: int = Field(default=0, ge=0, description="Clip i is generated with seed + i.")
    reference_items: int = Field(default=16, ge=1, le=1000, description="Reference items measured (first by id).")
    segment_lengths: list[SegmentLength] = Field(
        default=[2.0, 5.0, 10.0], min_length=1, max_length=8,
        description="Crop lengths (s) of the autoencoder round-trip error.",
    )
    base_channels: int | None = Field(
        default=None, ge=1, description="When given, must match every checkpoint's base_channels."
    )
