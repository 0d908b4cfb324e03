"""Models in the artifact store: resolving a model reference and loading its networks.

A model is a version of a named dataset whose items are network sets:

    autoencoder   an object holding official enc/dec .h5 files or this project's
                  `autoencoder.json` format (trained by `train-autoencoder`)
    gan           an object holding gen.h5, gen_ema.h5, critic.h5 (+ optimizer state and
                  switch): an imported official folder, or a checkpoint folder of the trainer
                  (`checkpoint.json`, `training_state.json`, samples)

Imported official checkpoints, trained autoencoders and GAN checkpoints all follow it, so
encode, generate, evaluate and the app take any of them by `NAME` or `NAME@V`. Networks are
loaded once per process and key (TensorFlow is imported only then).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.store import ArtifactStore, DatasetVersion

if TYPE_CHECKING:
    import keras

    from musika_model.codec import Autoencoder

AUTOENCODER_ITEM = "autoencoder"
GAN_ITEM = "gan"
MODEL_ITEMS = (AUTOENCODER_ITEM, GAN_ITEM)


class NotAModelError(ValueError):
    """A reference to a dataset version that holds no network set."""


class NoAutoencoderInModel(NotAModelError):
    """A model version without an `autoencoder` item."""


class NoGanInModel(NotAModelError):
    """A model version without a `gan` item."""


@dataclass(frozen=True)
class StoredModel:
    """A model version and the store objects of its network sets (None where absent)."""

    version: DatasetVersion
    autoencoder_key: str | None
    gan_key: str | None
    autoencoder_dir: Path | None
    gan_dir: Path | None

    @property
    def ref(self) -> str:
        return self.version.ref

    def require_autoencoder(self) -> tuple[str, Path]:
        if self.autoencoder_key is None or self.autoencoder_dir is None:
            raise NoAutoencoderInModel(
                f"{self.ref} has no {AUTOENCODER_ITEM!r} item (items: {self._item_names()}); "
                "pass a model made by `musika-piano import-musika` or `musika-piano train`"
            )
        return self.autoencoder_key, self.autoencoder_dir

    def require_gan(self) -> tuple[str, Path]:
        if self.gan_key is None or self.gan_dir is None:
            raise NoGanInModel(
                f"{self.ref} has no {GAN_ITEM!r} item (items: {self._item_names()}); "
                "pass a model made by `musika-piano import-musika` or `musika-piano train`"
            )
        return self.gan_key, self.gan_dir

    def _item_names(self) -> str:
        return ", ".join(item.item_id for item in self.version.items) or "none"


def model_of(store: ArtifactStore, version: DatasetVersion) -> StoredModel:
    """The network sets of `version`; NotAModelError when it has none."""
    keys = {item.item_id: item.key for item in version.items if item.item_id in MODEL_ITEMS}
    if not keys:
        found = ", ".join(item.item_id for item in version.items[:5]) or "none"
        raise NotAModelError(
            f"{version.ref} (stage {version.stage!r}) is not a model: it has no "
            f"{' or '.join(repr(name) for name in MODEL_ITEMS)} item (items: {found})"
        )
    ae_key, gan_key = keys.get(AUTOENCODER_ITEM), keys.get(GAN_ITEM)
    return StoredModel(
        version=version,
        autoencoder_key=ae_key,
        gan_key=gan_key,
        autoencoder_dir=store.local_path(ae_key) if ae_key else None,
        gan_dir=store.local_path(gan_key) if gan_key else None,
    )


def resolve_model(store: ArtifactStore, ref: str) -> StoredModel:
    """The model version `ref` (NAME, NAME@V or NAME@tag)."""
    return model_of(store, store.resolve(ref))


def list_models(store: ArtifactStore) -> list[StoredModel]:
    """Every version of every model in the store, newest version of each name first.

    A version whose file is unreadable (its summary has a `problem`) is left out: the others
    stay listed, and `musika-piano store verify` reports that one.
    """
    models = []
    for name in store.dataset_names():
        for entry in sorted(store.list_versions(name), key=lambda v: -v.version):
            if entry.problem is not None:
                continue
            version = store.read_version(name, entry.version)
            if any(item.item_id in MODEL_ITEMS for item in version.items):
                models.append(model_of(store, version))
    return models


@lru_cache(maxsize=2)
def load_autoencoder(store_root: str, ae_key: str) -> Autoencoder:
    """The autoencoder stored under `ae_key`, loaded once per process (official .h5 files or
    this project's `autoencoder.json` format)."""
    from musika_model.codec import CONFIG_FILE, Autoencoder

    folder = ArtifactStore(store_root).local_path(ae_key)
    if (folder / CONFIG_FILE).is_file():
        return Autoencoder.load(folder)
    return Autoencoder.from_official(folder)


@lru_cache(maxsize=4)
def load_generator(store_root: str, gan_key: str, base_channels: int | None = None) -> keras.Model:
    """The EMA generator stored under `gan_key`, loaded once per process; `base_channels`,
    when given, must match the checkpoint's."""
    from musika_model.checkpoints import load_generator as load_from_folder

    return load_from_folder(ArtifactStore(store_root).local_path(gan_key), base_channels=base_channels)
