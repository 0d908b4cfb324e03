"""The normalize stage's parameters: one model for the flow's form, the CLI and the store key
(`model_dump(mode="json")` is the key input). Pydantic and the standard library only."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PYLOUDNORM_MIN_SECONDS = 0.4
"""One BS.1770 gating block; shorter input has no integrated loudness."""


class InvalidLoudnessParams(ValueError):
    """Loudness settings that cannot all hold (pydantic reports it inside a ValidationError)."""


class LoudnessParams(BaseModel):
    """Integrated-loudness normalization with a true-peak ceiling.

    peak_policy "limit" is the default because piano's peak-to-loudness ratio often exceeds the
    19 dB that -20 LUFS under -1 dBTP allows on its loudest chords; rejecting those would drop
    the most dynamic pieces from a dataset. The limiter (5 ms ramps, 20 ms hold, driven by the
    4x oversampled signal) is followed by a re-measure and a gain correction, so the result
    stays within 0.5 LU of the target.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_lufs: float = Field(
        default=-20.0, ge=-60.0, le=-5.0, description="Integrated loudness (LUFS) of every item; below the ceiling."
    )
    peak_ceiling_dbfs: float = Field(default=-1.0, le=0.0, description="True-peak ceiling (dBTP).")
    peak_policy: Literal["limit", "reject"] = Field(
        default="limit",
        description="limit: a look-ahead limiter keeps peaks under the ceiling; reject: drop such items.",
    )
    min_duration_s: float = Field(
        default=1.0, ge=PYLOUDNORM_MIN_SECONDS,
        description="Shorter items are rejected (one BS.1770 block, 0.4 s, at least).",
    )
    max_gain_db: float = Field(
        default=40.0, gt=0.0, description="Items needing more gain are near-silence and rejected."
    )
    max_limiting_db: float = Field(
        default=12.0, gt=0.0, description="Items needing more gain reduction from the limiter are rejected: "
        "that much limiting is audible.",
    )
    silence_threshold_lufs: float = Field(
        default=-70.0, description="Quieter items count as silent (BS.1770's absolute gate)."
    )

    @model_validator(mode="after")
    def _target_below_ceiling(self) -> LoudnessParams:
        if not self.target_lufs < self.peak_ceiling_dbfs:
            raise InvalidLoudnessParams(
                f"target_lufs ({self.target_lufs}) must be below the peak ceiling "
                f"({self.peak_ceiling_dbfs} dBFS)"
            )
        return self
