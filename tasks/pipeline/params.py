"""`RunSettings`: where a flow's results go and how strict a run is. No stage's parameters, so
no store key depends on them. Pydantic and the standard library only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RunSettings(BaseModel):
    """Where results go and how strict a run is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str | None = Field(
        default=None, description="Artifact store root (path or fsspec URL); default MUSIKA_PIANO_DATA or data/store."
    )
    batch_size: int = Field(default=32, ge=1, le=1000, description="Items per Prefect task.")
    max_failure_ratio: float = Field(
        default=0.5, ge=0.0, le=1.0, description="A stage fails when more than this share of its items fail."
    )
    retry_failed: bool = Field(default=False, description="Try again items whose earlier failure was recorded.")
