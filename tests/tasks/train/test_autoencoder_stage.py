"""The train-autoencoder stage's planning: audio checks, too-short items, item selection, keys."""

from __future__ import annotations

import pytest

from musika_model.ae_training import AeTrainingConfig, AeTrainingError
from musika_model.config import AutoencoderConfig
from tasks.store import ArtifactStore, object_key
from tasks.train import autoencoder
from tasks.train.autoencoder import (
    AutoencoderStageError,
    TrainingItem,
    plan_training,
    select_evenly,
)
from tasks.train.params import AUTOENCODER_PRESETS
from tests.helpers import publish_audio_dataset, publish_latents_dataset

TINY = AutoencoderConfig.tiny()


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "store"))


def _items(count: int) -> list[TrainingItem]:
    return [TrainingItem(f"i{index}", f"{index:064x}", 5.0) for index in range(count)]


def test_select_evenly_spreads_over_the_items():
    items = _items(10)
    assert [item.item_id for item in select_evenly(items, 3)] == ["i0", "i4", "i9"]
    assert select_evenly(items, 1) == [items[0]]
    assert select_evenly(items, 20) == items
    assert select_evenly(items, None) == items
    with pytest.raises(AutoencoderStageError, match="max_items must be at least 1"):
        select_evenly(items, 0)


def test_training_config_presets_and_overrides():
    assert autoencoder.training_config("full") == AeTrainingConfig()
    demo = autoencoder.training_config("demo")
    assert demo.stage1_steps == AUTOENCODER_PRESETS["demo"]["stage1_steps"]
    tiny = autoencoder.training_config("tiny", stage2_steps=7, seed=None, learning_rate=2e-3)
    assert (tiny.stage1_steps, tiny.stage2_steps, tiny.learning_rate) == (2, 7, 2e-3)
    assert tiny.seed == AeTrainingConfig().seed
    with pytest.raises(AutoencoderStageError, match="unknown preset 'huge'"):
        autoencoder.training_config("huge")
    with pytest.raises(AeTrainingError, match="batch_size"):
        autoencoder.training_config("tiny", batch_size=0)


def test_plan_skips_short_items_and_keys_the_items_it_uses(store):
    ref = publish_audio_dataset(store, "mixed", {"a": 2.0, "b": 0.5, "c": 1.5, "d": 3.0})
    dataset = store.resolve(ref)
    training = autoencoder.training_config("tiny")
    plan = plan_training(store, dataset, TINY, training)

    assert plan.dataset == "mixed@1"
    assert [item.item_id for item in plan.items] == ["a", "c", "d"]
    assert [item.item_id for item in plan.too_short] == ["b"]
    assert plan.unselected == 0 and plan.total_steps == 6
    keys = {item.item_id: item.key for item in dataset.items}
    params = {"ae_config": TINY.to_dict(), "training": training.to_dict()}
    expected = object_key(
        autoencoder.STAGE, autoencoder.STAGE_VERSION, params, sorted(keys[name] for name in "acd")
    )
    assert plan.key == expected
    assert plan_training(store, dataset, TINY, training).key == plan.key

    fewer = plan_training(store, dataset, TINY, training, max_items=2)
    assert [item.item_id for item in fewer.items] == ["a", "d"] and fewer.unselected == 1
    longer = plan_training(
        store, dataset, TINY, autoencoder.training_config("tiny", stage1_steps=3)
    )
    narrower = plan_training(store, dataset, AutoencoderConfig.tiny(32), training)
    assert len({plan.key, fewer.key, longer.key, narrower.key}) == 4


def test_durations_come_from_the_files_when_the_items_lack_them(store):
    ref = publish_audio_dataset(
        store, "bare", {"long": 1.2, "short": 0.3}, with_duration_stat=False
    )
    plan = plan_training(store, store.resolve(ref), TINY, autoencoder.training_config("tiny"))
    assert [item.item_id for item in plan.items] == ["long"]
    assert plan.items[0].seconds == pytest.approx(1.2)
    assert [item.item_id for item in plan.too_short] == ["short"]


def test_all_items_too_short(store):
    ref = publish_audio_dataset(store, "crumbs", {"a": 0.4, "b": 0.6})
    with pytest.raises(
        AutoencoderStageError,
        match=r"crumbs@1: all 2 items are shorter than one training crop \(0\.76 s; "
        r"the longest is 0\.60 s\)",
    ):
        plan_training(store, store.resolve(ref), TINY, autoencoder.training_config("tiny"))


def test_a_dataset_without_audio_is_refused(store):
    ref = publish_latents_dataset(store, "some-latents")
    with pytest.raises(
        AutoencoderStageError,
        match=r"some-latents@1 \(stage 'encode'\) is not an audio dataset: item 'a' "
        r"holds \['latents.npy'",
    ):
        plan_training(store, store.resolve(ref), TINY, autoencoder.training_config("tiny"))
    empty = store.publish_dataset("nothing", stage="normalize", params={}, items=[]).ref
    with pytest.raises(
        AutoencoderStageError, match=r"nothing@1 \(stage 'normalize'\) has no items"
    ):
        plan_training(store, store.resolve(empty), TINY, autoencoder.training_config("tiny"))


def test_final_losses_keep_the_last_value_of_each_stage():
    history = [
        {"step": 1.0, "stage1/total": 3.0},
        {"step": 2.0, "stage1/total": 2.0},
        {"step": 3.0, "stage2/total": 0.5, "stage2/latent": 0.25},
    ]
    assert autoencoder.final_losses(history) == {
        "stage1/total": 2.0,
        "stage2/total": 0.5,
        "stage2/latent": 0.25,
    }
