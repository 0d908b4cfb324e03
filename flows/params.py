"""Flow parameters as pydantic models: Prefect turns them into forms in the UI and validates
`prefect deployment run --params` against them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class RenderSettings(BaseModel):
    """How MIDI files become audio. Each (soundfont, transposition) pair renders every file once."""

    soundfonts: list[str] = Field(
        default_factory=list,
        description="Paths of .sf2 soundfonts; empty uses the TimGM6mb.sf2 that pretty_midi ships.",
    )
    transpose: list[int] = Field(default=[0], description="Semitone shifts; each one is a rendering of every file.")
    force_piano: bool = Field(default=False, description="Play every melodic track with the acoustic grand piano.")
    velocity_scale: float = Field(default=1.0, gt=0.0, le=4.0, description="Multiply every note velocity.")
    tail_seconds: float = Field(default=3.0, ge=0.0, le=30.0, description="Release tail kept after the last note.")
    max_midi_minutes: float = Field(default=20.0, gt=0.0, description="Longer MIDI files are rejected.")


class LoudnessSettings(BaseModel):
    """Integrated-loudness normalization with a true-peak ceiling."""

    target_lufs: float = Field(default=-20.0, ge=-60.0, le=-5.0)
    peak_ceiling_dbfs: float = Field(default=-1.0, le=0.0, description="True-peak ceiling (dBTP).")
    peak_policy: Literal["limit", "reject"] = Field(
        default="limit",
        description="limit: a look-ahead limiter keeps peaks under the ceiling; reject: drop such items.",
    )


class RunSettings(BaseModel):
    """Where results go and how strict a run is."""

    store: str | None = Field(
        default=None, description="Artifact store root (path or fsspec URL); default MUSIKA_PIANO_DATA or data/store."
    )
    batch_size: int = Field(default=32, ge=1, le=1000, description="Items per Prefect task.")
    max_failure_ratio: float = Field(
        default=0.5, ge=0.0, le=1.0, description="A stage fails when more than this share of its items fail."
    )
    retry_failed: bool = Field(default=False, description="Try again items whose earlier failure was recorded.")
