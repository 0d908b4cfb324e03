"""Golden store keys: the key of every stage's object for fixed inputs and parameters.

These keys were computed at commit c9adcede35e2856d2819faea101103954539642a and must never
change: a different key re-keys every user's store (nothing already computed is found again).
If a stage's key must change on purpose, bump that stage's STAGE_VERSION and update its literal
here in the same commit, saying so in the commit message.

Each key comes from the function the stage itself derives it with (its planning or key
function), fed hand-written inputs; nothing here recomputes `object_key` with its own dict, so a
drift in what a stage feeds into its key fails here. Inputs that a key function reads from the
store (dataset versions, models, checkpoints) are published into a scratch store with fixed
contents; upstream object keys are literals, so each stage fails alone (except `segment`: its
plan object is read from the store at the key `segment-plan` gives, so it fails with that one).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from musika_model.checkpoints import (
    CHECKPOINT_FORMAT,
    MARKER_FILE,
    STATE_FILE,
    TrainingState,
)
from musika_model.config import AutoencoderConfig
from musika_model.train_config import TrainConfig
from tasks.download.core import CrawlEntry
from tasks.download.params import CrawlParams
from tasks.download.stage import METADATA_FILE, plan_download_items
from tasks.encode.stage import LATENTS_FILE, plan_encode_items
from tasks.evaluate import stage as evaluate
from tasks.evaluate.params import EvaluateParams
from tasks.generate.params import GenerateParams
from tasks.generate.stage import plan_samples
from tasks.normalize.params import LoudnessParams
from tasks.normalize.stage import plan_normalize_items
from tasks.pipeline.batching import WorkItem
from tasks.pipeline.models import AUTOENCODER_ITEM, GAN_ITEM, StoredModel, resolve_model
from tasks.pipeline.sources import MIDI_EXTENSIONS, resolve_sources
from tasks.quality.core import Repeat, Verdict
from tasks.quality.params import QualityParams
from tasks.quality.stage import plan_piece_items, plan_quality_items
from tasks.render.params import RenderParams
from tasks.render.stage import plan_render_items
from tasks.reports.report import report_artifact_key
from tasks.segment.params import SegmentParams
from tasks.segment.stage import (
    PLAN_FILE,
    PLAN_STAGE,
    PLAN_STAGE_VERSION,
    plan_recording_items,
    plan_segment_items,
)
from tasks.store import ArtifactStore, DatasetVersion
from tasks.train import autoencoder
from tasks.train import gan as training
from tasks.train.config import parent_networks, train_config
from tests.helpers import publish_audio_dataset

GOLDEN_KEYS: dict[str, str] = {
    "render": "ef85c1180911aa59e538a3c0e3ed0aef602dadc06c7e885b93a81eddaecc068d",
    "normalize": "53a3dbde2b42258ecf9c21c15cd48a96610ec7b889a0698ef0450c1868922c1d",
    "download": "3b64d66ef6e6d0617db22f79608e3baa15169c2ef23489135b546d5b2972aa3c",
    "segment-plan": "8c9bf7783c3eaa4b464e338458c4e48e4f26e2c8628fd5ea814f983145e040d9",
    "segment": "b495c1c5b1f0cd6b43e03c19b104adfa88e2242fd1d76923f35b2416dbd4b5af",
    "quality": "49c75d95b5c36f1065aa1e94ba97069c607f29f35bcaaa327c4b807e0c94e042",
    "dedupe": "49c75d95b5c36f1065aa1e94ba97069c607f29f35bcaaa327c4b807e0c94e042",
    "dedupe-kept-stretch": "c30a338deb30d32c49eed30ccfee01cf40749c7ae0c6117e2065d7eb76447ef8",
    "encode": "964357583bad97761e4c2c052112c34c749c5d042d0479660d45f6c044cc19b1",
    "latents-dataset-digest": "sha256:9f2a32f6ad95a7e6036084d57e2f0b3717edca6c9fb6a6fd39542b40c58df333",
    "train-autoencoder": "f1d08e751b12c2357c4c78fa259d66ee9fb7bd7fcd8751581ee6560a35b5ef8b",
    "train-gan-pretrain": "9f161795981da9691981e1944636d3e7b9e3ad74b7443709d9f4031566dc3c88",
    "train-gan-finetune": "c474bd6b78b430c9ceb15f9875063c1cb099d8986ba82aaec99bc2f121076f2a",
    "train-gan-finished": "ca4832b3b47bf027131f4ecf8ff053cd00b344e2e30ce16fc5b817662f6e4653",
    "gan-checkpoint": "88df72c3a0546292bcc3031eb96896de8554089174dac00f9df3152e5fb4fd39",
    "generate": "cacd5d4678bc214d1810dd93b9fe9a4993eb1b9135881317953b1d96f902a563",
    "evaluate-reference": "adc3d1337303408295250c9f6ca3993210cfc9eabba3e62fe8658c52026ad543",
    "evaluate-model": "2e7a7eca1d6979ffc73b0b1450a2cab2f39f98bbbe1c58ca2feef6ffb0931c3f",
    "evaluate-model-autoencoder-only": "f7628173eeb0f961a086ffdf1b621d7982093286ab1c595b74a6704be9df8091",
    "report-location": "datasets/piano-audio/reports/000001.html",
    "report-artifact-key": "report-piano-audio-v2",
}
"""Stage (or case) -> its pinned key. `dedupe`'s settings must leave the quality key alone, so its
literal is the quality one; `dedupe` makes an object only for the kept stretch of a segment that
partly repeats earlier audio (`dedupe-kept-stretch`, pinned since that object appeared). Reports are no objects either: a report
is found by its path in the store and its Prefect artifact key, pinned instead."""

# Upstream object keys and content digests, written by hand (any 64 hex digits would do).
RENDERED_KEY = "a1" * 32
DOWNLOADED_KEY = "b2" * 32
SEGMENT_KEY = "c3" * 32
SEGMENT_PLAN_KEY = "d4" * 32
TRAINING_RUN_KEY = "e5" * 32
MIDI_BYTES = bytes.fromhex("4d546864000000060000000100604d54726b0000000400ff2f00")
"""A minimal standard MIDI file: header, one empty track."""
SOUNDFONT_BYTES = b"RIFF\x04\x00\x00\x00sfbk"
AUDIO_SECONDS = {"piece-a": 3.0, "piece-b": 2.0}
FIXTURE_STAGE = "golden-fixture"
"""The stage of the scratch store's stand-in objects (models, latents); no stage of the project."""


@dataclass(frozen=True)
class GoldenInputs:
    """The scratch store and what the key functions read from it."""

    store: ArtifactStore
    scratch: Path
    audio: DatasetVersion
    """A normalized dataset (`publish_audio_dataset`), two items."""
    model: StoredModel
    """A model with an autoencoder and a GAN checkpoint (piano_pretrain networks) that records
    `replayed-latents@1` as its training data."""
    autoencoder_model: StoredModel
    """A model holding only the same autoencoder."""


def write_checkpoint(folder: Path, config: TrainConfig, step: int, epoch: int) -> Path:
    """What `read_checkpoint_info` reads of a checkpoint into `folder`: the training state and
    the marker (no weight files: no key depends on them)."""
    state = TrainingState(config, step=step, epoch=epoch)
    (folder / STATE_FILE).write_text(json.dumps(state.to_dict()))
    (folder / MARKER_FILE).write_text(json.dumps({"format": CHECKPOINT_FORMAT, "files": {}}))
    return folder


def publish_stand_in(store: ArtifactStore, role: str, files: dict[str, bytes]) -> str:
    """An object of `FIXTURE_STAGE` holding `files`; its key depends on `role` only."""
    with store.publish_object(FIXTURE_STAGE, 1, {"role": role}, [], item=role) as staged:
        for name, content in files.items():
            (staged.dir / name).write_bytes(content)
    return staged.key


def publish_latents(store: ArtifactStore, name: str, ae_key: str, parent: str) -> str:
    """A latents dataset like the encode flow publishes: params and lineage name the autoencoder."""
    keys = {item_id: publish_stand_in(store, f"latents-{name}-{item_id}", {LATENTS_FILE: b"latents"})
            for item_id in AUDIO_SECONDS}
    return store.publish_dataset(
        name, stage="encode", params={"autoencoder": ae_key},
        items=[{"item_id": item_id, "key": key} for item_id, key in keys.items()],
        lineage={"parents": [parent], "autoencoder": ae_key},
    ).ref


def build_golden_inputs(root: Path) -> GoldenInputs:
    store = ArtifactStore(str(root / "store"))
    audio = store.resolve(publish_audio_dataset(store, "piano-audio", AUDIO_SECONDS))
    ae_key = publish_stand_in(store, AUTOENCODER_ITEM, {"autoencoder.json": b"{}"})
    replayed = publish_latents(store, "replayed-latents", ae_key, audio.ref)
    publish_latents(store, "piano-latents", ae_key, audio.ref)
    with store.publish_object(FIXTURE_STAGE, 1, {"role": GAN_ITEM}, [], item=GAN_ITEM) as staged:
        write_checkpoint(staged.dir, train_config("piano_pretrain", {}), 2_653_125, 283)
    store.publish_dataset(
        "piano-model", stage=training.MODEL_STAGE, params={"format": training.MODEL_FORMAT},
        items=[{"item_id": AUTOENCODER_ITEM, "key": ae_key}, {"item_id": GAN_ITEM, "key": staged.key}],
        lineage={"datasets": [{"ref": replayed, "weight": 1.0}]},
    )
    store.publish_dataset("piano-autoencoder", stage=training.MODEL_STAGE, params={},
                          items=[{"item_id": AUTOENCODER_ITEM, "key": ae_key}])
    scratch = root / "scratch"
    scratch.mkdir()
    return GoldenInputs(store, scratch, audio, resolve_model(store, "piano-model"),
                        resolve_model(store, "piano-autoencoder"))


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> GoldenInputs:
    return build_golden_inputs(tmp_path_factory.mktemp("golden"))


# ---- one function per stage: the key its own planning code gives for fixed inputs ---------------


def render_key(inputs: GoldenInputs) -> str:
    midi = inputs.scratch / "piece.mid"
    midi.write_bytes(MIDI_BYTES)
    soundfont = inputs.scratch / "piano.sf2"
    soundfont.write_bytes(SOUNDFONT_BYTES)
    files = resolve_sources([str(midi)], MIDI_EXTENSIONS).files
    (item,) = plan_render_items(files, RenderParams(soundfonts=[str(soundfont)], transpose=[0]))
    return item.key


def normalize_key(inputs: GoldenInputs) -> str:
    (item,) = plan_normalize_items([WorkItem("piece.mid", RENDERED_KEY, ())], LoudnessParams())
    return item.key


def download_key(inputs: GoldenInputs) -> str:
    entry = CrawlEntry(item_id="youtube-dQw4w9WgXcQ", video_id="dQw4w9WgXcQ", extractor="youtube",
                       url="https://www.youtube.com/watch?v=dQw4w9WgXcQ", duration_s=600.0)
    (item,), rejected = plan_download_items([entry], CrawlParams())
    assert rejected == []
    return item.key


def segment_plan_item(inputs: GoldenInputs) -> WorkItem:
    (item,) = plan_recording_items(
        [("youtube-dQw4w9WgXcQ", DOWNLOADED_KEY, {"metadata": METADATA_FILE, "source": "channel"})],
        SegmentParams(),
    )
    return item


def segment_plan_key(inputs: GoldenInputs) -> str:
    return segment_plan_item(inputs).key


def segment_key(inputs: GoldenInputs) -> str:
    """The second segment of a plan object holding two (the plan's contents are hand-written:
    a segment's key depends on its index and the plan's key only)."""
    plan = segment_plan_item(inputs)
    document = {"segments": [{"index": 0}, {"index": 1}], "sample_ranges": [[0, 100], [100, 200]],
                "parent": {}, "source_rate": 44100, "output_rate": 44100}
    with inputs.store.publish_object(PLAN_STAGE, PLAN_STAGE_VERSION, plan.params, plan.inputs) as staged:
        (staged.dir / PLAN_FILE).write_text(json.dumps(document))
    assert staged.key == plan.key
    return plan_segment_items(inputs.store, [plan])[1].key


def quality_key_with(params: QualityParams) -> str:
    (item,) = plan_quality_items([WorkItem("youtube-dQw4w9WgXcQ#0001", SEGMENT_KEY, (SEGMENT_PLAN_KEY,))],
                                 params)
    return item.key


def quality_key(inputs: GoldenInputs) -> str:
    return quality_key_with(QualityParams())


def dedupe_key(inputs: GoldenInputs) -> str:
    return quality_key_with(QualityParams(duplicate_max_ber=0.1, duplicate_min_overlap_s=5.0))


def dedupe_kept_stretch_key(inputs: GoldenInputs) -> str:
    segment = WorkItem("youtube-dQw4w9WgXcQ#0001", SEGMENT_KEY, (SEGMENT_PLAN_KEY,), {}, {"start_s": 12.5})
    repeat = Repeat(40.375, 75.0, "youtube-abc#0000", 0.12)
    (item,) = plan_piece_items(segment, Verdict(kept=((0.0, 40.375),), repeats=(repeat,)))
    return item.key


def encode_key(inputs: GoldenInputs) -> str:
    ae_key, _ = inputs.model.require_autoencoder()
    return plan_encode_items(inputs.audio, ae_key)[0].key


def latents_dataset_digest(inputs: GoldenInputs) -> str:
    return inputs.store.resolve("piano-latents").content_digest


def train_autoencoder_key(inputs: GoldenInputs) -> str:
    plan = autoencoder.plan_training(inputs.store, inputs.audio, AutoencoderConfig.tiny(),
                                     autoencoder.training_config("full"))
    return plan.key


def pretrain_plan(inputs: GoldenInputs, config: TrainConfig) -> training.TrainingPlan:
    """The plan of `flows.train.pretrain` on `piano-latents` with `config`."""
    mixture = [training.resolve_latents(inputs.store, *training.parse_weighted_ref("piano-latents"))]
    return training.plan_training(inputs.store, "piano", config, mixture)


def pretrain_key(inputs: GoldenInputs) -> str:
    return pretrain_plan(inputs, train_config("piano_pretrain", {})).key


def finetune_key(inputs: GoldenInputs) -> str:
    """The plan of `flows.train.finetune` on `piano-latents` with a quarter of replay."""
    model, parent_gan = parent_networks(inputs.store, "piano-model")
    config = train_config("finetune_recordings", {}, parent_gan)
    new = [training.resolve_latents(inputs.store, *training.parse_weighted_ref("piano-latents:2"))]
    mixture = training.replay_mixture(new, training.parent_training_data(inputs.store, model), 0.25)
    return training.plan_training(inputs.store, "piano-ft", config, mixture, parent=model).key


def run_plan(inputs: GoldenInputs) -> training.TrainingPlan:
    """The pretrain plan with the run key `TRAINING_RUN_KEY` (a run's objects are keyed by the
    run key, which `train-gan-pretrain` pins on its own)."""
    plan = pretrain_plan(inputs, train_config("piano_pretrain", {}))
    return replace(plan, key=TRAINING_RUN_KEY)


def finished_run_key(inputs: GoldenInputs) -> str:
    return training.finished_run_key(run_plan(inputs))


def gan_checkpoint_key(inputs: GoldenInputs) -> str:
    plan = run_plan(inputs)
    folder = inputs.scratch / "run" / "checkpoints" / "epoch-0001"
    folder.mkdir(parents=True, exist_ok=True)
    write_checkpoint(folder, plan.config, step=9375, epoch=1)
    return training.publish_checkpoint(inputs.store, plan, folder)


def generate_key(inputs: GoldenInputs) -> str:
    """The second sample (seed + 1) of a request for two."""
    return plan_samples(inputs.model, GenerateParams(seconds=30.0, count=2, truncation=2.0, seed=0))[1].key


def reference_plan(inputs: GoldenInputs) -> evaluate.SubjectPlan:
    params = EvaluateParams()
    items = evaluate.chosen_reference_items(inputs.audio, params.reference_items)
    return evaluate.plan_reference(inputs.audio, items, params)


def evaluate_reference_key(inputs: GoldenInputs) -> str:
    return reference_plan(inputs).key


def evaluate_model_key(inputs: GoldenInputs) -> str:
    return evaluate.plan_model(inputs.model, reference_plan(inputs).reference_keys, EvaluateParams()).key


def evaluate_autoencoder_key(inputs: GoldenInputs) -> str:
    return evaluate.plan_model(inputs.autoencoder_model, reference_plan(inputs).reference_keys,
                               EvaluateParams()).key


def report_location(inputs: GoldenInputs) -> str:
    """Where the report of `piano-audio@1` is written, relative to the store root."""
    uri = inputs.store.write_report(inputs.audio.name, inputs.audio.version, "<html></html>")
    assert uri.startswith(inputs.store.root)
    return uri.removeprefix(inputs.store.root).lstrip("/")


def report_key(inputs: GoldenInputs) -> str:
    return report_artifact_key("Piano Audio_v2")


KEY_FUNCTIONS: dict[str, Callable[[GoldenInputs], str]] = {
    "render": render_key,
    "normalize": normalize_key,
    "download": download_key,
    "segment-plan": segment_plan_key,
    "segment": segment_key,
    "quality": quality_key,
    "dedupe": dedupe_key,
    "dedupe-kept-stretch": dedupe_kept_stretch_key,
    "encode": encode_key,
    "latents-dataset-digest": latents_dataset_digest,
    "train-autoencoder": train_autoencoder_key,
    "train-gan-pretrain": pretrain_key,
    "train-gan-finetune": finetune_key,
    "train-gan-finished": finished_run_key,
    "gan-checkpoint": gan_checkpoint_key,
    "generate": generate_key,
    "evaluate-reference": evaluate_reference_key,
    "evaluate-model": evaluate_model_key,
    "evaluate-model-autoencoder-only": evaluate_autoencoder_key,
    "report-location": report_location,
    "report-artifact-key": report_key,
}


@pytest.mark.parametrize("stage", list(GOLDEN_KEYS), ids=str)
def test_stage_key_is_unchanged(golden: GoldenInputs, stage: str) -> None:
    assert KEY_FUNCTIONS[stage](golden) == GOLDEN_KEYS[stage]


def test_every_stage_has_a_pinned_key() -> None:
    assert KEY_FUNCTIONS.keys() == GOLDEN_KEYS.keys()


def test_mixed_precision_dtype_is_in_the_run_key_only_when_not_the_default(golden: GoldenInputs) -> None:
    """TrainConfig.to_dict leaves later fields out at their defaults: the default config keeps
    the pinned key, bfloat16 is another run."""
    pretrain = train_config("piano_pretrain", {})
    assert "mixed_precision_dtype" not in pretrain.to_dict()
    explicit_default = replace(pretrain, mixed_precision_dtype="float16")
    assert pretrain_plan(golden, explicit_default).key == GOLDEN_KEYS["train-gan-pretrain"]
    bfloat16 = replace(pretrain, mixed_precision_dtype="bfloat16")
    assert pretrain_plan(golden, bfloat16).key != GOLDEN_KEYS["train-gan-pretrain"]
