"""The render stage: plan (file, soundfont, transposition) items, render one into the store, the
thin Prefect batch task. The rendering itself (no Prefect, no store): core.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from musika_model.audio import write_pcm16_flac
from tasks.pipeline.audio_io import audio_stats
from tasks.pipeline.batching import ItemFailed, ItemOutcome, WorkItem, count_statuses, run_batch
from tasks.pipeline.caching import STORE_OBJECTS
from tasks.pipeline.sources import SourceFile
from tasks.render.core import (
    MidiFileNotFound,
    MidiHasNoNotes,
    MidiHasNoPitchedNotes,
    MidiParseError,
    MidiTooLong,
    RenderError,
    SilentRender,
    _import_fluidsynth,
    default_soundfont,
    get_synth,
    load_midi,
    render_variants,
    soundfont_digest,
)
from tasks.render.params import RenderParams
from tasks.store import ArtifactStore, object_key

STAGE = "render"
STAGE_VERSION = 2
RENDERED_AUDIO = "audio.flac"
"""FluidSynth's output is int16, so 16-bit FLAC stores it exactly at an eighth of float WAV's size."""

_ITEM_REASONS: dict[type[RenderError], str] = {
    MidiFileNotFound: "missing_file",
    MidiParseError: "corrupt_midi",
    MidiHasNoNotes: "no_notes",
    MidiHasNoPitchedNotes: "no_pitched_notes",
    MidiTooLong: "too_long",
    SilentRender: "silent",
}
_NOT_REMEMBERED = frozenset({"no_pitched_notes"})
"""Failures decided by a setting outside the key (keep_unpitched): not recorded in the store, so
a run with the other setting tries the file again."""


def _variant_suffix(soundfont: Path, transpose: int, several_fonts: bool, several_shifts: bool) -> str:
    suffix = f"#sf={soundfont.stem}" if several_fonts else ""
    return suffix + (f"#t={transpose:+d}" if several_shifts or transpose else "")


def plan_render_items(files: Sequence[SourceFile], params: RenderParams) -> list[WorkItem]:
    """One work item per (file, soundfont, transposition) of `params`, keyed by the MIDI and
    soundfont contents and `params.item_key_params`.

    Checks FluidSynth and every soundfont first, so a missing library or a mistyped soundfont
    path stops the run before anything is rendered.
    """
    _import_fluidsynth()
    fonts = [Path(font) for font in params.soundfonts] or [default_soundfont()]
    digests = {font: soundfont_digest(font) for font in fonts}
    several_fonts, several_shifts = len(fonts) > 1, len(set(params.transpose)) > 1
    items = []
    for variant in render_variants(fonts, sorted(set(params.transpose)) or [0]):
        font_digest = digests[variant.soundfont]
        key_params = params.item_key_params(variant.transpose)
        suffix = _variant_suffix(variant.soundfont, variant.transpose, several_fonts, several_shifts)
        for file in files:
            inputs = (file.digest, font_digest)
            items.append(WorkItem(
                item_id=file.name + suffix,
                key=object_key(STAGE, STAGE_VERSION, key_params, inputs),
                inputs=inputs,
                params=key_params,
                source={"midi": file.name, "path": str(file.path), "soundfont": str(variant.soundfont),
                        "soundfont_digest": font_digest, "transpose": variant.transpose},
            ))
    return items


def render_item(item: WorkItem, out_dir: Path, max_duration_s: float, keep_unpitched: bool = False) -> dict[str, Any]:
    """Render one planned item to `out_dir/audio.flac`; per-item problems become `ItemFailed`.
    `max_duration_s` and `keep_unpitched` are the settings outside the item's key."""
    params, transpose = RenderParams.from_item_params(item.params)
    try:
        midi = load_midi(item.source["path"], max_duration_s, keep_unpitched)
        synth = get_synth(item.source["soundfont"], params.sample_rate)
        audio = synth.render(midi, params, item.source["path"], transpose)
    except tuple(_ITEM_REASONS) as error:
        raise ItemFailed(_ITEM_REASONS[type(error)], str(error)) from error
    write_pcm16_flac(out_dir / RENDERED_AUDIO, audio, params.sample_rate)
    notes = sum(len(instrument.notes) for instrument in midi.instruments)
    stats = audio_stats(audio, params.sample_rate).to_dict()
    stats.update(notes=notes, note_density=round(notes / max(stats["duration_s"], 1e-9), 3))
    return stats


@task(name="render-batch", cache_policy=STORE_OBJECTS, persist_result=True)
def render_batch(
    items: list[WorkItem], store_root: str, max_duration_s: float, keep_unpitched: bool = False,
    retry_failed: bool = False,
) -> list[ItemOutcome]:
    """Render a batch of MIDI items into the store (soundfonts load once per worker thread)."""
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    outcomes = run_batch(
        store, STAGE, STAGE_VERSION, items,
        lambda item, out_dir: render_item(item, out_dir, max_duration_s, keep_unpitched),
        log=logger.warning, retry_failed=retry_failed,
    )
    for outcome in outcomes:
        if outcome.status == "failed" and outcome.reason in _NOT_REMEMBERED:
            store.clear_failure(outcome.key)
    logger.info("render: %s", count_statuses(outcomes))
    return outcomes
