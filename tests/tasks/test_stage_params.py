"""The stages' parameter models (`tasks/<stage>/params.py`): partial input merges over the
defaults, unknown fields and impossible combinations are refused, the store-key inputs are the
dicts the stages always hashed, the preset choices come from the preset tables, and importing
the models loads no heavy library (the CLI builds them before anything runs)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

import pytest
from prefect.exceptions import ParameterTypeError
from pydantic import BaseModel, ValidationError

from flows.audio_dataset import build_audio_dataset, path_params
from flows.evaluate import evaluate
from flows.midi_dataset import build_midi_dataset
from flows.train import pretrain
from flows.train_autoencoder import train_autoencoder_flow
from flows.youtube_dataset import refresh_youtube_dataset
from musika_model.train_config import PRESETS
from tasks.download.params import CrawlParams, InvalidCrawlParams
from tasks.evaluate.params import EvaluateParams
from tasks.generate.params import GenerateParams
from tasks.normalize.params import InvalidLoudnessParams, LoudnessParams
from tasks.pipeline.params import RunSettings
from tasks.quality.params import InvalidQualityParams, QualityParams
from tasks.render.params import RenderParams
from tasks.segment.params import InvalidSegmentParams, SegmentParams
from tasks.train import autoencoder
from tasks.train.params import AUTOENCODER_PRESETS, AutoencoderTrainingParams, GanTrainingParams

PARAMS_MODULES = ("tasks.render.params", "tasks.normalize.params", "tasks.segment.params", "tasks.quality.params",
                  "tasks.download.params", "tasks.generate.params", "tasks.evaluate.params", "tasks.train.params",
                  "tasks.pipeline.params")

PARTIAL: list[tuple[type[BaseModel], dict]] = [
    (RenderParams, {"transpose": [0, 2], "velocity_scale": 0.5}),
    (LoudnessParams, {"target_lufs": -14}),
    (SegmentParams, {"max_segment_s": 90}),
    (QualityParams, {"min_bandwidth_hz": 0, "deduplicate": False}),
    (CrawlParams, {"max_items": 20}),
    (GenerateParams, {"seconds": 30, "count": 4}),
    (EvaluateParams, {"samples": 2, "segment_lengths": [2.0]}),
    (GanTrainingParams, {"preset": "finetune_recordings", "concurrency_limit": "gpu"}),
    (AutoencoderTrainingParams, {"preset": "tiny", "stage1_steps": 0}),
    (RunSettings, {"batch_size": 8}),
]
"""Each model with a deployment-style partial dict (as `prefect.yaml` or `--param` pass them)."""


@pytest.mark.parametrize(("model", "given"), PARTIAL, ids=lambda value: getattr(value, "__name__", ""))
def test_a_partial_dict_keeps_every_other_default(model: type[BaseModel], given: dict) -> None:
    settings = model.model_validate(given)
    assert settings.model_dump(include=set(given)) == given
    assert settings.model_dump(exclude=set(given)) == model().model_dump(exclude=set(given))
    assert model.model_validate(settings.model_dump(mode="json")) == settings


@pytest.mark.parametrize("model", [model for model, _ in PARTIAL], ids=lambda model: model.__name__)
def test_unknown_fields_are_refused_and_the_model_is_frozen(model: type[BaseModel]) -> None:
    with pytest.raises(ValidationError, match="not_a_field"):
        model.model_validate({"not_a_field": 1})
    settings = model()
    name = next(iter(model.model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(settings, name, getattr(settings, name))


@pytest.mark.parametrize("model", [model for model, _ in PARTIAL], ids=lambda model: model.__name__)
def test_every_field_has_a_description(model: type[BaseModel]) -> None:
    assert [name for name, field in model.model_fields.items() if not field.description] == []


FLOW_PARAMETERS = [
    (build_midi_dataset, {"name": "x", "sources": []}, "loudness_settings", {"target_lufs": -14}),
    (build_midi_dataset, {"name": "x", "sources": []}, "render_settings", {"transpose": [0, 2]}),
    (build_audio_dataset, {"name": "x", "sources": []}, "quality_settings", {"deduplicate": False}),
    (refresh_youtube_dataset, {"name": "x", "sources": []}, "crawl_settings", {"max_items": 20}),
    (refresh_youtube_dataset, {"name": "x", "sources": []}, "segment_settings", {"max_segment_s": 90}),
    (pretrain, {"datasets": [], "name": "x"}, "settings", {"concurrency_limit": "gpu"}),
    (train_autoencoder_flow, {"dataset": "x"}, "settings", {"preset": "tiny"}),
    (evaluate, {"checkpoints": [], "reference": "x"}, "settings", {"samples": 2}),
    (evaluate, {"checkpoints": [], "reference": "x"}, "run", {"batch_size": 8}),
]


@pytest.mark.parametrize(("flow", "required", "parameter", "given"), FLOW_PARAMETERS,
                         ids=[f"{flow.name}-{parameter}" for flow, _, parameter, _ in FLOW_PARAMETERS])
def test_a_deployment_passes_a_partial_dict_by_the_flow_parameter_name(flow, required, parameter, given) -> None:
    """As `prefect.yaml` and `prefect deployment run --param` pass them: the flow's parameter
    becomes the full model, every field not given at its default; an unknown field is refused."""
    default = inspect.signature(flow.fn).parameters[parameter].default
    validated = flow.validate_parameters({**required, parameter: given})[parameter]
    assert validated == type(default).model_validate(given)
    assert validated.model_dump(exclude=set(given)) == default.model_dump(exclude=set(given))
    with pytest.raises(ParameterTypeError, match="not_a_field"):
        flow.validate_parameters({**required, parameter: {**given, "not_a_field": 1}})


@pytest.mark.parametrize(
    ("model", "given", "error", "named"),
    [
        (LoudnessParams, {"peak_ceiling_dbfs": -10.0, "target_lufs": -8.0}, InvalidLoudnessParams, "below the peak"),
        (SegmentParams, {"min_segment_s": 20.0}, InvalidSegmentParams, "GAN window"),
        (SegmentParams, {"min_segment_s": 40.0, "max_segment_s": 60.0}, InvalidSegmentParams, "twice"),
        (SegmentParams, {"min_gap_s": 0.4}, InvalidSegmentParams, "gap_padding_s"),
        (QualityParams, {"min_loudness_range_lu": 30.0}, InvalidQualityParams, "min_loudness_range_lu"),
        (CrawlParams, {"min_duration_s": 100.0, "max_duration_s": 10.0}, InvalidCrawlParams, "min_duration_s"),
    ],
)
def test_combinations_that_cannot_hold_are_refused_with_the_stage_error(
    model: type[BaseModel], given: dict, error: type[ValueError], named: str
) -> None:
    """Pydantic wraps the stage's error class in a ValidationError (itself a ValueError)."""
    with pytest.raises(ValidationError, match=named) as refused:
        model.model_validate(given)
    assert isinstance(refused.value.errors()[0]["ctx"]["error"], error)


@pytest.mark.parametrize(
    ("model", "given", "named"),
    [
        (RenderParams, {"transpose": [0, 200]}, "transpose"),
        (RenderParams, {"transpose": [1.5]}, "integer"),
        (RenderParams, {"sample_rate": 1000}, "sample_rate"),
        (LoudnessParams, {"peak_policy": "clip"}, "peak_policy"),
        (LoudnessParams, {"min_duration_s": 0.2}, "min_duration_s"),
        (QualityParams, {"max_silence_ratio": 1.5}, "max_silence_ratio"),
        (CrawlParams, {"retries": -1}, "retries"),
        (GenerateParams, {"seconds": 0.0}, "seconds"),
        (GenerateParams, {"count": 257}, "count"),
        (GanTrainingParams, {"preset": "huge"}, "preset"),
    ],
)
def test_values_out_of_bounds_are_refused_naming_the_field(model: type[BaseModel], given: dict, named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        model.model_validate(given)


def test_the_store_key_inputs_are_the_dicts_the_stages_always_hashed() -> None:
    render = {"force_piano": False, "transpose": 3, "velocity_scale": 1.0, "sample_rate": 44100, "gain": 0.4,
              "tail_seconds": 3.0, "silence_threshold_dbfs": -60.0}
    assert RenderParams(soundfonts=["a.sf2"], transpose=[0, 3], max_midi_minutes=5).item_key_params(3) == render
    assert RenderParams.from_item_params(render) == (RenderParams(), 3)
    assert LoudnessParams().model_dump(mode="json") == {
        "target_lufs": -20.0, "peak_ceiling_dbfs": -1.0, "peak_policy": "limit", "min_duration_s": 1.0,
        "max_gain_db": 40.0, "max_limiting_db": 12.0, "silence_threshold_lufs": -70.0}
    assert SegmentParams().model_dump(mode="json") == {
        "min_segment_s": 30.0, "max_segment_s": 120.0, "silence_rel_db": -40.0, "silence_floor_dbfs": -70.0,
        "min_gap_s": 1.0, "gap_padding_s": 0.25, "cut_search_s": 3.0, "frame_s": 0.05, "sample_rate": 44100}
    measuring = {"silence_rel_db": -40.0, "silence_floor_dbfs": -70.0, "max_silence_ratio": 0.5, "clip_level": 0.999,
                 "clip_run": 3, "max_clipping_ratio": 0.001, "min_bandwidth_hz": 17000.0, "bandwidth_cliff_db": 20.0,
                 "min_loudness_range_lu": 1.0, "max_loudness_range_lu": 25.0}
    assert QualityParams(deduplicate=False, duplicate_max_ber=0.1).measure_key_params() == measuring
    assert GenerateParams(seconds=2, truncation=1, seed=5, count=3).sample_key_params(2) == {
        "seconds": 2.0, "truncation": 1.0, "seed": 7}


def test_the_recordings_path_records_its_settings_as_before() -> None:
    """A dataset version's `params`: a re-run with unchanged settings must say `unchanged`."""
    recorded = path_params(SegmentParams(), QualityParams(deduplicate=False), LoudnessParams())
    assert recorded["segment"] == SegmentParams().model_dump(mode="json")
    assert recorded["quality"] == {**QualityParams().measure_key_params(), "duplicate_max_ber": 0.25,
                                   "duplicate_min_overlap_s": 20.0}
    assert recorded["deduplicate"] is False
    assert recorded["loudness"] == LoudnessParams().model_dump(mode="json")


def test_the_preset_choices_are_the_preset_tables() -> None:
    assert typing.get_args(GanTrainingParams.model_fields["preset"].annotation) == tuple(PRESETS)
    assert typing.get_args(AutoencoderTrainingParams.model_fields["preset"].annotation) == tuple(AUTOENCODER_PRESETS)
    for name in AUTOENCODER_PRESETS:
        assert autoencoder.training_config(name, **AutoencoderTrainingParams(preset=name).training_overrides())


def test_the_training_overrides_are_the_fields_given() -> None:
    gan = GanTrainingParams(preset="tiny", xla=False, seed=3, device="cpu", publish_every=2, runs_dir="runs")
    assert gan.config_overrides() == {"xla": False, "seed": 3}
    assert AutoencoderTrainingParams(batch_size=4, max_items=3, width_divisor=8).training_overrides() == {
        "batch_size": 4}


def test_the_params_modules_load_no_heavy_library() -> None:
    code = (f"import sys\nfor name in {PARAMS_MODULES!r}: __import__(name)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'prefect', 'tensorflow', 'keras', "
            "'yt_dlp', 'fluidsynth', 'pretty_midi', 'scipy', 'soxr', 'pyloudnorm'}))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
