"""The quality stage's parameters (filters and deduplication): one model for the flow's form, the
CLI and the store key. Pydantic and the standard library only."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_DEDUPE_FIELDS = frozenset({"deduplicate", "duplicate_max_ber", "duplicate_min_overlap_s"})
"""Deduplication compares stored fingerprints: it changes no quality object, so no key."""


class InvalidQualityParams(ValueError):
    """Thresholds that cannot all hold (pydantic reports it inside a ValidationError)."""


class QualityParams(BaseModel):
    """Quality filters on segments (a dropped segment is recorded with its reasons) and duplicates.

    Set a max to 1.0 or a min to 0 to disable a filter. A stretch of a segment repeats earlier
    audio when at most `duplicate_max_ber` of its aligned fingerprint bits differ (different audio
    differs in about half) for `duplicate_min_overlap_s` (or 80 % of the shorter item, if that is
    shorter). Repeats are cut out; what is left is kept where it lasts `min_segment_s`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    silence_rel_db: float = Field(
        default=-40.0, lt=0.0, description="A frame this far under the segment's loud level is silent."
    )
    silence_floor_dbfs: float = Field(default=-70.0, description="A frame under this level is silent.")
    max_silence_ratio: float = Field(default=0.5, ge=0.0, le=1.0, description="Share of silent frames allowed.")
    clip_level: float = Field(
        default=0.999, gt=0.0, le=1.0, description="Clipped samples are at or above this level (full scale 1)."
    )
    clip_run: int = Field(
        default=3, ge=1, description="Clipped samples come in runs this long at least (flat tops, not single "
        "loud samples)."
    )
    max_clipping_ratio: float = Field(default=0.001, ge=0.0, le=1.0, description="Share of clipped samples allowed.")
    min_bandwidth_hz: float = Field(
        default=17000.0, ge=0.0, description="Lower bandwidth flags lossy uploads (128 kb/s MP3 stops near 16 kHz; "
        "192 kb/s MP3, 128 kb/s AAC and Opus pass)."
    )
    bandwidth_cliff_db: float = Field(
        default=20.0, gt=0.0, description="The bandwidth ends where the spectrum stays this far under the "
        "kilohertz just below."
    )
    min_loudness_range_lu: float = Field(default=1.0, ge=0.0, description="Flatter segments are dropped.")
    max_loudness_range_lu: float = Field(default=25.0, ge=0.0, description="Wilder segments are dropped.")
    deduplicate: bool = Field(default=True, description="Keep one copy of audio repeated across recordings.")
    duplicate_max_ber: float = Field(default=0.25, ge=0.0, le=1.0, description="Fingerprint bit error rate of a match.")
    duplicate_min_overlap_s: float = Field(default=20.0, gt=0.0, description="How long a match must last.")

    @model_validator(mode="after")
    def _loudness_range_can_hold(self) -> QualityParams:
        if self.min_loudness_range_lu > self.max_loudness_range_lu:
            raise InvalidQualityParams(
                f"min_loudness_range_lu ({self.min_loudness_range_lu}) is above "
                f"max_loudness_range_lu ({self.max_loudness_range_lu})"
            )
        return self

    def measure_key_params(self) -> dict[str, Any]:
        """The store-key input of a quality object: the measuring thresholds, without the
        deduplication fields."""
        return self.model_dump(mode="json", exclude=set(_DEDUPE_FIELDS))
