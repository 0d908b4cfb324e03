"""Reports written when the MIDI flow publishes, their link artifacts, and a publish that goes on
when its report cannot be written."""

from __future__ import annotations

import base64
import io
import re
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
)

from flows.midi_dataset import build_midi_dataset
from tasks.pipeline.params import RunSettings
from tasks.reports.report import publish_report, report_artifact_key
from tasks.store import ArtifactStore
from tasks.store.links import ENV_PUBLIC_URL


@pytest.fixture()
def published(tmp_path, monkeypatch) -> tuple[ArtifactStore, str, object]:
    """A 2-item MIDI dataset under a name of its own (artifact keys outlive a test), its
    artifacts made without a public URL (paths, not links: tests/flows/test_serve.py)."""
    from tests.helpers import write_piano_midi

    monkeypatch.delenv(ENV_PUBLIC_URL, raising=False)
    for index in range(2):
        write_piano_midi(tmp_path / "midi" / f"piece-{index}.mid", seconds=2.0, seed=index)
    store_root = tmp_path / "store"
    state = build_midi_dataset(
        name=f"reported-{uuid.uuid4().hex[:8]}",
        sources=[str(tmp_path / "midi")],
        run=RunSettings(store=str(store_root)),
        return_state=True,
    )
    return ArtifactStore(str(store_root)), state.result()["ref"], state


def report_path(store: ArtifactStore, ref: str) -> Path:
    version = store.resolve(ref)
    return Path(store.report_uri(version.name, version.version).removeprefix("file://"))


def link_artifacts(name: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[report_artifact_key(name)]))
        )


def test_publishing_a_midi_dataset_writes_its_report_and_links_it(published):
    store, ref, state = published
    report = report_path(store, ref)
    name = ref.split("@")[0]
    assert report.parent == Path(store.root.removeprefix("file://")) / f"datasets/{name}/reports"
    document = report.read_text()

    encoded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', document)
    # duration, loudness before/after, gain, true peak, note density, onset density
    assert len(encoded) == 6
    for data in encoded:
        assert Image.open(io.BytesIO(base64.b64decode(data))).format == "PNG"
    assert 'alt="loudness before/after histogram"' in document
    assert 'alt="onset density histogram (2 of 2 items)"' in document
    players = re.findall(r'<audio controls preload="none" src="([^"]+)"', document)
    assert len(players) == 2
    assert all((report.parent / unquote(src)).resolve().is_file() for src in players)
    for item in store.resolve(ref).items:
        assert item.item_id in document

    (artifact,) = link_artifacts(name)
    assert artifact.type == "markdown" and artifact.data == f"report of {ref}: `{report}`"
    assert artifact.flow_run_id == state.state_details.flow_run_id
    assert store.verify().problems == []  # a report is not an object: verify has nothing to say


def test_publish_report_task_rewrites_the_report_in_a_flow(published):
    store, ref, _ = published
    report = report_path(store, ref)
    report.unlink()

    @flow
    def report_again(root: str, wanted: str) -> str:
        return publish_report(root, wanted)

    assert report_again(store.root, ref) == report.as_uri()
    assert report.is_file() and len(link_artifacts(ref.split("@")[0])) == 2  # a second version


def test_a_report_that_fails_does_not_fail_the_publish(published, tmp_path, caplog):
    store, ref, _ = published
    report_path(store, ref).unlink()
    victim = store.resolve(ref).items[0].key
    audio = store.local_path(victim) / "audio.wav"
    # Same size, no WAV header: the re-run's cheap reuse check (sizes) keeps the object, and the
    # onset analysis of the report cannot read it.
    audio.write_bytes(bytes(audio.stat().st_size))

    state = build_midi_dataset(
        name=ref.split("@")[0],
        sources=[str(tmp_path / "midi")],
        run=RunSettings(store=store.root),
        return_state=True,
    )
    assert state.is_completed() and state.result()["ref"] == ref
    assert not report_path(store, ref).exists()
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any(f"no report written for {ref}: AudioFileError" in message for message in warnings)
