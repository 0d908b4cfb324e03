"""The render stage's parameters: one model for the flow's form, the CLI and the store key.

Pydantic and the standard library only, so the CLI can build it without loading FluidSynth.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_SAMPLE_RATE = 44100
DEFAULT_GAIN = 0.4
Semitones = Annotated[int, Field(ge=-127, le=127)]
_NOT_KEYED = frozenset({"soundfonts", "transpose", "max_midi_minutes", "keep_unpitched"})
"""Fields outside a rendering's key: soundfonts are item inputs (by digest), each transposition
is one item, and max_midi_minutes and keep_unpitched only decide which files are kept."""


class RenderParams(BaseModel):
    """How MIDI files become audio. Each (soundfont, transposition) pair renders every file once.

    Transposition adds semitones to melodic notes (drums keep their keys: a drum key is an
    instrument, not a pitch); notes pushed outside 0..127 are DROPPED, not clamped, since
    clamping would pile them onto the edge key as wrong, repeated pitches.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    soundfonts: list[str] = Field(
        default_factory=list,
        description="Paths of .sf2 soundfonts; empty uses the TimGM6mb.sf2 that pretty_midi ships.",
    )
    transpose: list[Semitones] = Field(
        default=[0], description="Semitone shifts (-127..127); each one is a rendering of every file."
    )
    force_piano: bool = Field(
        default=False, description="Play every melodic track with the acoustic grand piano (program 0)."
    )
    velocity_scale: float = Field(
        default=1.0, gt=0.0, le=4.0,
        description="Multiply every note velocity (then rounded and clamped to 1..127).",
    )
    tail_seconds: float = Field(
        default=3.0, ge=0.0, le=30.0,
        description="Release tail kept after the last note; trailing audio under the silence threshold is "
        "trimmed.",
    )
    max_midi_minutes: float = Field(default=20.0, gt=0.0, description="Longer MIDI files are rejected.")
    keep_unpitched: bool = Field(
        default=False,
        description="Render MIDI files whose notes are all on drum tracks (MIDI channel 10); by default they "
        "are dropped as no_pitched_notes.",
    )
    sample_rate: int = Field(
        default=DEFAULT_SAMPLE_RATE, ge=8000, le=96000, description="Output rate in Hz (FluidSynth's range)."
    )
    gain: float = Field(
        default=DEFAULT_GAIN, gt=0.0, le=10.0,
        description="FluidSynth's synth.gain; 0.4 keeps dense fortissimo piano under full scale (FluidSynth's "
        "int16 output clips hard).",
    )
    silence_threshold_dbfs: float = Field(
        default=-60.0, lt=0.0, description="Trailing audio under this level is trimmed; a render never "
        "reaching it is silent.",
    )

    def item_key_params(self, transpose: int) -> dict[str, Any]:
        """The store-key input of one rendering: the fields that change its audio, with its
        `transpose` (one of `self.transpose`)."""
        return {**self.model_dump(mode="json", exclude=set(_NOT_KEYED)), "transpose": transpose}

    @classmethod
    def from_item_params(cls, params: dict[str, Any]) -> tuple[RenderParams, int]:
        """The model and the transposition of one rendering back from `item_key_params`."""
        fields = dict(params)
        transpose = fields.pop("transpose")
        return cls.model_validate(fields), transpose
