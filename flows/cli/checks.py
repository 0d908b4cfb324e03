"""Input checks the flow-running commands make before they import their flow (and Prefect).

A wrong dataset or model ref, a missing source or soundfont, an invalid name are reported in
about a second, as one line, instead of after Prefect's start-up. Each check calls the function
the flow itself calls (the store's `resolve`, `resolve_model`, `source_files`, ...), so there is
no second set of rules; errors that are not among the CLI's cheap user errors (their modules load
numpy) come back as `InputCheckFailed` with the same message.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from tasks.pipeline.models import resolve_model
from tasks.pipeline.sources import source_files
from tasks.store import ArtifactStore
from tasks.store.canonical import validate_dataset_name

if TYPE_CHECKING:
    from tasks.train.params import GanTrainingParams


class InputCheckFailed(ValueError):
    """A pre-flight check refused the input (the message is the stage's own)."""


def weighted_ref(text: str) -> str:
    """The ref of `NAME[@V][:WEIGHT]`, split as tasks.train.gan.parse_weighted_ref splits it (that
    module imports Prefect); the weight itself is checked by the flow."""
    ref, separator, _ = text.rpartition(":")
    return ref if separator else text


def names(*values: str | None) -> None:
    for value in values:
        if value is not None:
            validate_dataset_name(value)


def datasets(store: str | None, refs: Iterable[str]) -> None:
    opened = ArtifactStore.open(store)
    for ref in refs:
        opened.resolve(ref)


def models(store: str | None, refs: Iterable[str]) -> None:
    opened = ArtifactStore.open(store)
    for ref in refs:
        resolve_model(opened, ref)


def local_sources(sources: list[str], extensions: Collection[str]) -> None:
    source_files(sources, extensions)


def soundfonts(paths: Iterable[str]) -> None:
    from tasks.render.core import SoundfontNotFound, existing_soundfont

    for path in paths:
        try:
            existing_soundfont(path)
        except SoundfontNotFound as error:
            raise InputCheckFailed(str(error)) from None


def youtube_sources(sources: list[str]) -> None:
    """Local list files must exist (URLs and search queries are checked by the crawl)."""
    from tasks.download.core import InvalidSource, expand_sources

    try:
        expand_sources(sources)
    except InvalidSource as error:
        raise InputCheckFailed(str(error)) from None


def training_settings(settings: GanTrainingParams, store: str | None = None, parent: str | None = None) -> None:
    """A training run's settings as its flow checks them (`checked_config`: the preset and its
    overrides, the backend, the devices, a GPU preset without a GPU), against the networks of
    the fine-tune `parent` when one is given."""
    from musika_model.backends import BackendError
    from musika_model.devices import DeviceUnavailableError
    from tasks.train.config import TrainingInputError, checked_config, parent_networks

    try:
        parent_gan = parent_networks(ArtifactStore.open(store), parent)[1] if parent else None
        checked_config(settings, parent_gan)
    except (TrainingInputError, BackendError, DeviceUnavailableError) as error:
        raise InputCheckFailed(str(error)) from None
