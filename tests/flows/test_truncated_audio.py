"""A recording cut short (a WAV whose header declares 60 s, holding 2 s) under the recordings
flow: dropped by segment-plan as `truncated` with both lengths, counted in the build's result."""

from __future__ import annotations

import os

import soundfile as sf

from flows.audio_dataset import build_audio_dataset
from tasks.pipeline.params import RunSettings
from tasks.segment.params import SegmentParams
from tasks.store import ArtifactStore
from tests.helpers import compilation, piano_like


def test_a_truncated_recording_is_dropped_as_truncated(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    for seed, name in enumerate(("etude.flac", "nocturne.wav"), start=1):
        sf.write(folder / name, compilation([piano_like(26.0, seed)]), 44100, subtype="PCM_16")
    cut = folder / "cut.wav"
    sf.write(cut, piano_like(60.0, 3), 44100, subtype="PCM_16")
    sf.write(tmp_path / "two-seconds.wav", piano_like(2.0, 3), 44100, subtype="PCM_16")
    os.truncate(cut, (tmp_path / "two-seconds.wav").stat().st_size)  # the header, then 2 s of frames

    store_root = tmp_path / "store"
    result = build_audio_dataset(name="cut", sources=[str(folder)],
                                 segment_settings=SegmentParams(min_segment_s=24.0, max_segment_s=60.0),
                                 run=RunSettings(store=str(store_root)))
    assert result["items"] == 2 and result["failures_by_reason"] == {"segment-plan": {"truncated": 1}}
    [failure] = ArtifactStore(str(store_root)).resolve("cut").failures
    assert (failure.item_id, failure.stage) == ("rec/cut.wav", "segment-plan")
    assert failure.reason == f"truncated: {cut}: truncated file: declares 60.00 s, holds 2.00 s"
