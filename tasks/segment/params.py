"""The segment stage's parameters: one model for the flow's form, the CLI and the store key
(`model_dump(mode="json")` is the key input). Pydantic, the standard library and the
TensorFlow-free network constants only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from musika_model.config import SAMPLE_RATE, SAMPLES_PER_LATENT, GanConfig

GAN_WINDOW_S = GanConfig().latent_length * SAMPLES_PER_LATENT / SAMPLE_RATE
"""23.78 s: one GAN training window; no segment may be shorter."""


class InvalidSegmentParams(ValueError):
    """Segment bounds or thresholds that cannot all hold (pydantic reports it inside a
    ValidationError)."""


class SegmentParams(BaseModel):
    """How long recordings are cut: chapters first, then silences, then fixed windows.

    A 50 ms frame is silent when its RMS is more than `-silence_rel_db` dB under the
    recording's loud level (95th percentile frame), or under `silence_floor_dbfs` whatever the
    level.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_segment_s: float = Field(
        default=30.0, description=f"Shortest segment; at least one GAN window ({GAN_WINDOW_S:.1f} s)."
    )
    max_segment_s: float = Field(default=120.0, description="Longest segment; at least twice the shortest.")
    silence_rel_db: float = Field(default=-40.0, lt=0.0, description="Silence: this far under the loud level.")
    silence_floor_dbfs: float = Field(default=-70.0, description="Silence whatever the level: under this.")
    min_gap_s: float = Field(
        default=1.0, gt=0.0, description="Silence at least this long separates two pieces (at least twice the "
        "padding)."
    )
    gap_padding_s: float = Field(default=0.25, ge=0.0, description="Silence kept around each piece.")
    cut_search_s: float = Field(
        default=3.0, ge=0.0, description="A chapter mark or window cut moves to the quietest frame this near."
    )
    frame_s: float = Field(default=0.05, gt=0.0, le=0.5, description="Length of one envelope frame.")
    sample_rate: int = Field(
        default=SAMPLE_RATE, gt=0, description="Rate of the segments (the source is resampled when it differs)."
    )

    @model_validator(mode="after")
    def _bounds_can_hold(self) -> SegmentParams:
        if self.min_segment_s < GAN_WINDOW_S:
            raise InvalidSegmentParams(
                f"min_segment_s must be at least one GAN window ({GAN_WINDOW_S:.2f} s), got {self.min_segment_s}"
            )
        if self.max_segment_s < 2 * self.min_segment_s:
            raise InvalidSegmentParams(
                f"max_segment_s ({self.max_segment_s}) must be at least twice min_segment_s "
                f"({self.min_segment_s}) so any long stretch splits into in-bound windows"
            )
        if self.min_gap_s < 2 * self.gap_padding_s:
            raise InvalidSegmentParams(
                f"need 2 * gap_padding_s <= min_gap_s, got gap_padding_s={self.gap_padding_s}, "
                f"min_gap_s={self.min_gap_s}"
            )
        return self
