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


class CrawlSettings(BaseModel):
    """Which videos a YouTube refresh takes and how politely it fetches them."""

    max_items: int | None = Field(default=None, ge=1, description="At most this many videos per source (None: all).")
    min_duration_s: float | None = Field(default=30.0, ge=0.0, description="Shorter videos are skipped.")
    max_duration_s: float | None = Field(default=4 * 3600.0, ge=0.0, description="Longer videos are skipped.")
    sleep_between_downloads_s: float = Field(default=3.0, ge=0.0, description="Pause between two downloads.")
    retries: int = Field(default=3, ge=0, le=20, description="Retries, with backoff, after HTTP 429/403/5xx or timeouts.")
    retry_backoff_s: float = Field(default=5.0, ge=0.0, description="First retry's wait; doubles each time.")
    socket_timeout_s: float = Field(default=30.0, gt=0.0, description="How long a connection may stay silent.")
    cookies_file: str | None = Field(default=None, description="Netscape cookies.txt for sites that need a login.")
    proxy: str | None = Field(default=None, description="e.g. socks5://127.0.0.1:1080; None uses the environment.")
    audio_format: str = Field(default="bestaudio/best", description="yt-dlp format selector of the stream fetched.")


class SegmentSettings(BaseModel):
    """How long recordings are cut: chapters first, then silences, then fixed windows."""

    min_segment_s: float = Field(default=30.0, description="Shortest segment; at least one GAN window (23.8 s).")
    max_segment_s: float = Field(default=120.0, description="Longest segment; at least twice the shortest.")
    silence_rel_db: float = Field(default=-40.0, lt=0.0, description="Silence: this far under the loud level.")
    silence_floor_dbfs: float = Field(default=-70.0, description="Silence whatever the level: under this.")
    min_gap_s: float = Field(default=1.0, gt=0.0, description="Silence at least this long separates two pieces.")
    gap_padding_s: float = Field(default=0.25, ge=0.0, description="Silence kept around each piece.")
    cut_search_s: float = Field(default=3.0, ge=0.0, description="A cut moves to the quietest point this near.")


class QualitySettings(BaseModel):
    """Quality filters on segments (a dropped segment is recorded with its reasons) and duplicates."""

    max_silence_ratio: float = Field(default=0.5, ge=0.0, le=1.0, description="Share of silent frames allowed.")
    max_clipping_ratio: float = Field(default=0.001, ge=0.0, le=1.0, description="Share of clipped samples allowed.")
    min_bandwidth_hz: float = Field(
        default=17000.0, ge=0.0, description="Lower bandwidth flags lossy uploads (128 kb/s MP3 stops near 16 kHz)."
    )
    min_loudness_range_lu: float = Field(default=1.0, ge=0.0, description="Flatter segments are dropped.")
    max_loudness_range_lu: float = Field(default=25.0, ge=0.0, description="Wilder segments are dropped.")
    deduplicate: bool = Field(default=True, description="Keep one copy of audio repeated across recordings.")
    duplicate_max_ber: float = Field(default=0.25, ge=0.0, le=1.0, description="Fingerprint bit error rate of a match.")
    duplicate_min_overlap_s: float = Field(default=20.0, gt=0.0, description="How long a match must last.")


class TrainingSettings(BaseModel):
    """A GAN training configuration: a preset, and any of its fields replaced.

    Every field is also a flag of `musika-piano train pretrain|finetune` (`--field-name`, help
    from the description), so a field left unset says its default in its description."""

    preset: Literal["piano_pretrain", "finetune_recordings", "tiny"] = Field(
        default="piano_pretrain",
        description="piano_pretrain: base_channels 256, lr 2e-5, 283 epochs; finetune_recordings: 15 epochs at "
        "4e-5 then 85 at 1e-5; tiny: seconds on a CPU, for tests and the demo.",
    )
    base_channels: int | None = Field(
        default=None, ge=4, le=1024,
        description="Network width; default: the preset's (fine-tuning: the parent's).",
    )
    small: bool | None = Field(
        default=None,
        description="128-frame windows instead of 256; default: the preset's (fine-tuning: the parent's).",
    )
    lr_phases: list[tuple[int, float]] | None = Field(
        default=None, description="(epochs, learning rate) phases run in order: [[15, 4e-5], [135, 1e-5]], on "
        "the command line 15@4e-5,135@1e-5; default: the preset's.",
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=1024, description="Windows per training step; default: the preset's.",
    )
    iterations_per_epoch: int | None = Field(
        default=None, ge=1, description="Steps per epoch; default: the preset's.",
    )
    save_every: int | None = Field(
        default=None, ge=1, description="Save a checkpoint every N epochs; default: the preset's.",
    )
    keep_checkpoints: int | None = Field(
        default=None, ge=1, description="Checkpoints kept in the run folder; default: the preset's.",
    )
    publish_every: int = Field(
        default=10, ge=1, description="Publish a model version every N epochs (and always the final checkpoint).",
    )
    seed: int | None = Field(
        default=None, ge=0, description="Seed of the data draws and the initial weights; default: the preset's.",
    )
    max_rollbacks: int | None = Field(
        default=None, ge=0, description="Divergence rollbacks (restore the last healthy epoch, halve the lr) "
        "before giving up; default: the preset's.",
    )
    collapse_as_divergence: bool | None = Field(
        default=None, description="Treat collapsed samples (silence, beeps) like a NaN: roll back, lower the lr; "
        "default: the preset's (a warning only).",
    )
    mixed_precision: bool | None = Field(
        default=None, description="Compute in a half type, keep float32 weights; default: on when a GPU is visible.",
    )
    mixed_precision_dtype: Literal["float16", "bfloat16"] | None = Field(
        default=None, description="Half type of mixed precision: float16 (with dynamic loss scaling; any CUDA GPU) "
        "or bfloat16 (no loss scaling; Ampere or newer GPUs, CPUs with AVX512-BF16); default: float16.",
    )
    xla: bool | None = Field(
        default=None, description="Compile the training step with XLA; default: on when a GPU is visible.",
    )
    device: Literal["auto", "gpu", "cpu"] = Field(
        default="auto", description="auto: a GPU when TensorFlow sees one, else the CPU; gpu: refuse to start "
        "without one; cpu: hide the GPUs from this run.",
    )
    allow_cpu: bool = Field(
        default=False, description="Train a GPU-sized preset (piano_pretrain, finetune_recordings) without a GPU, "
        "which takes weeks; without it such a run is refused before it starts.",
    )
    runs_dir: str | None = Field(
        default=None, description="Where run folders (checkpoints, TensorBoard) live; default: "
        "$MUSIKA_PIANO_RUNS, else runs/ beside the store.",
    )
    concurrency_limit: str | None = Field(
        default=None, description="Prefect global concurrency limit held while training (the deployments use "
        "'gpu'; create it first: prefect gcl create gpu --limit 1); default: none.",
    )


class AutoencoderTrainingSettings(BaseModel):
    """How long and how the autoencoder trains; a preset plus optional overrides. Every field is
    also a flag of `musika-piano train autoencoder`."""

    preset: Literal["demo", "tiny", "full"] = Field(
        default="full",
        description="full: 2000 + 1000 steps at batch 8 (the trainer's defaults); demo: 30-40 s "
        "of training on 2 CPU cores; tiny: a few steps, for tests.",
    )
    stage1_steps: int | None = Field(default=None, ge=0, description="Level-1 steps; default: the preset's.")
    stage2_steps: int | None = Field(default=None, ge=0, description="Level-2 steps; default: the preset's.")
    batch_size: int | None = Field(
        default=None, ge=1, le=256, description="Crops per step; default: the preset's."
    )
    learning_rate: float | None = Field(
        default=None, gt=0.0, description="Stage-1 Adam learning rate; default: the preset's."
    )
    seed: int | None = Field(
        default=None, ge=0, description="Seed of crops and initial weights; default: the preset's."
    )
    max_items: int | None = Field(
        default=None,
        ge=1,
        description="Train on at most this many items, spread evenly over the dataset (the training "
        "audio is held in memory); default: all.",
    )
    width_divisor: int = Field(
        default=16,
        ge=1,
        le=128,
        description="Every hidden width of the official autoencoder divided by this "
        "(1: the official widths, impractical on a CPU).",
    )
