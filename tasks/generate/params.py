"""The generate stage's parameters: one model for what a request asks and what the store keys
(`GenerateParams.sample_key_params`). Pydantic and the standard library only."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_SECONDS = 600.0
MAX_SAMPLES = 256


class GenerateParams(BaseModel):
    """How many samples of which length a stored model generates; sample i uses seed `seed + i`,
    so asking for more samples later reuses the first ones."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seconds: float = Field(default=30.0, gt=0.0, le=MAX_SECONDS, description="Length of each sample.")
    count: int = Field(default=4, ge=1, le=MAX_SAMPLES, description="Samples generated.")
    truncation: float = Field(
        default=2.0, gt=0.0, le=10.0, description="Bound of the truncated normal latents (lower: tamer samples)."
    )
    seed: int = Field(default=0, ge=0, description="Sample i is generated with seed + i.")
    base_channels: int | None = Field(
        default=None, ge=1, description="When given, must match the checkpoint's base_channels."
    )

    def sample_key_params(self, index: int) -> dict[str, Any]:
        """The store-key input of sample `index` (count and base_channels change no sample)."""
        return {"seconds": float(self.seconds), "truncation": float(self.truncation), "seed": self.seed + index}
