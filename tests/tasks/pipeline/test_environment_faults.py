"""Faults of the machine (full disk, I/O error, denied permission) stop a stage with the cause
named, and a build that clearly does not fit its store is refused before anything runs.

The first tests inject the fault: a writer that fails after some bytes, an fsspec filesystem
that fills up. The others mount a real tmpfs (we are root here and in CI; skipped with the
reason where mounting is not allowed) and let a real build fill it.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import pytest
import soundfile as sf
from fsspec.implementations.memory import MemoryFileSystem
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

import flows.midi_dataset
from flows.midi_dataset import build_midi_dataset
from tasks.normalize import stage as normalize
from tasks.normalize.params import LoudnessParams
from tasks.pipeline.batching import EnvironmentFault, ItemFailed, WorkItem, run_batch
from tasks.pipeline.environment import Fault, fault_kind
from tasks.pipeline.params import RunSettings
from tasks.pipeline.preflight import check_midi_space
from tasks.pipeline.sources import MIDI_EXTENSIONS, resolve_sources
from tasks.render import stage as render
from tasks.render.params import RenderParams
from tasks.store import ArtifactStore, object_key
from tests.helpers import piano_like, run_cli, write_piano_midi

MiB = 1 << 20

pytestmark = pytest.mark.usefixtures("prefect_api")  # its builds run real flows


def _wav_bytes(seconds: float, seed: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, piano_like(seconds, seed), 44100, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _items(count: int) -> list[WorkItem]:
    """Real store keys; each item is one second of audio (353 kB as float WAV)."""
    items = []
    for index in range(count):
        digest = f"sha256:{index:064x}"
        key = object_key("toy-audio", 1, {}, [digest])
        items.append(WorkItem(f"piece-{index}", key, (digest,), {}, {"seed": index}))
    return items


class FillingDisk:
    """Writes that fail with `error_number` once `capacity` bytes are written, as a full disk
    or a failing one does part way through a file."""

    def __init__(self, capacity: int, error_number: int) -> None:
        self.capacity = capacity
        self.error_number = error_number
        self.used = 0

    def write(self, path: Path, data: bytes) -> None:
        with open(path, "wb") as handle:
            for start in range(0, len(data), 64 * 1024):
                chunk = data[start:start + 64 * 1024]
                if self.used + len(chunk) > self.capacity:
                    raise OSError(self.error_number, os.strerror(self.error_number), str(path))
                handle.write(chunk)
                self.used += len(chunk)


def _staging_dirs(store_root: Path) -> list[str]:
    staging = store_root / "tmp"
    return sorted(os.listdir(staging)) if staging.exists() else []


@pytest.mark.parametrize(("error_number", "kind", "words"), [
    (errno.ENOSPC, "space", "out of space (ENOSPC)"),
    (errno.EIO, "io", "I/O error (EIO)"),
])
def test_a_fault_mid_write_stops_the_batch_naming_the_cause(tmp_path, error_number, kind, words):
    root = tmp_path / "store"
    store = ArtifactStore(str(root))
    disk = FillingDisk(capacity=int(1.5 * 353_000), error_number=error_number)
    items = _items(4)

    def compute(item: WorkItem, out_dir: Path) -> dict[str, Any]:
        disk.write(out_dir / "audio.wav", _wav_bytes(1.0, item.source["seed"]))
        return {}

    with pytest.raises(EnvironmentFault) as raised:
        run_batch(store, "toy-audio", 1, items, compute)
    fault = raised.value.fault
    message = str(raised.value)
    assert fault.kind == kind and fault.errno == error_number
    assert fault.path.startswith(str(root / "tmp")) and fault.path.endswith("audio.wav")
    assert message.startswith(f"toy-audio: {words} at {fault.path} (item piece-1)")
    assert "nothing was published" in message and "\n" not in message
    if kind == "space":
        assert "free on the filesystem mounted at" in message
        assert "roughly 1.0 MiB more needed for the 3 items left in this batch" in message
    assert isinstance(raised.value.__cause__, OSError)
    assert store.has(items[0].key) and not any(store.has(item.key) for item in items[1:])
    assert store.recorded_failure(items[1].key) is None, "a fault is no failure of the item"
    assert _staging_dirs(root) == []

    copy = pickle.loads(pickle.dumps(raised.value))  # Prefect keeps a failed task's exception
    assert str(copy) == message and copy.fault == fault


def test_ordinary_bad_items_stay_per_item_failures(tmp_path):
    root = tmp_path / "store"
    store = ArtifactStore(str(root))
    items = _items(4)

    def compute(item: WorkItem, out_dir: Path) -> dict[str, Any]:
        if item.source["seed"] == 1:
            raise ItemFailed("corrupt", "piece-1 is not audio")
        if item.source["seed"] == 2:
            (out_dir / "audio.wav").write_bytes(b"half")
            raise ValueError("cannot decode piece-2")
        if item.source["seed"] == 3:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/gone/piece-3.wav")
        (out_dir / "audio.wav").write_bytes(_wav_bytes(1.0, 0))
        return {}

    outcomes = run_batch(store, "toy-audio", 1, items, compute)
    assert [(o.status, o.reason) for o in outcomes] == [
        ("computed", None), ("failed", "corrupt"), ("failed", "error"), ("failed", "error")]
    assert "ValueError: cannot decode piece-2" in outcomes[2].message
    assert store.recorded_failure(items[1].key)["reason"] == "corrupt"
    assert _staging_dirs(root) == [], "the probe after ValueError leaves nothing behind"


class _FillingMemory(MemoryFileSystem):
    """An fsspec filesystem that takes `capacity` bytes of uploads, then raises `refusal()`."""

    protocol = "fillingmemory"
    store: ClassVar[dict] = {}
    pseudo_dirs: ClassVar[list] = [""]
    capacity: ClassVar[int] = 0
    used: ClassVar[int] = 0

    @staticmethod
    def refusal(path: str) -> OSError:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        return super()._strip_protocol(str(path).removeprefix("fillingmemory://"))

    def put_file(self, lpath: str, rpath: str, **kwargs: Any) -> None:
        size = os.path.getsize(lpath)
        if type(self).used + size > self.capacity:
            raise self.refusal(rpath)
        type(self).used += size
        super().put_file(lpath, rpath, **kwargs)


@pytest.mark.parametrize(("refusal", "kind"), [
    (_FillingMemory.refusal, "space"),
    # s3fs and gcsfs raise a denied request as a PermissionError with no errno
    (lambda path: PermissionError(f"Access Denied: {path}"), "permission"),
])
def test_an_fsspec_store_that_refuses_uploads_stops_the_batch(tmp_path, monkeypatch, refusal, kind):
    filesystem = type("Filling", (_FillingMemory,), {"store": {}, "pseudo_dirs": [""], "capacity": 500_000,
                                                     "used": 0, "refusal": staticmethod(refusal)})
    fsspec.register_implementation("fillingmemory", filesystem, clobber=True)
    staging = tmp_path / "local-staging"  # an fsspec store stages objects in the local temp folder
    staging.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging))
    store = ArtifactStore(f"fillingmemory://faults-{uuid.uuid4().hex}")
    items = _items(3)

    def compute(item: WorkItem, out_dir: Path) -> dict[str, Any]:
        (out_dir / "audio.wav").write_bytes(_wav_bytes(1.0, item.source["seed"]))
        return {}

    with pytest.raises(EnvironmentFault) as raised:
        run_batch(store, "toy-audio", 1, items, compute)
    assert raised.value.fault.kind == kind and raised.value.fault.free_bytes is None
    words = "out of space (ENOSPC)" if kind == "space" else "permission denied"
    assert str(raised.value).startswith(f"toy-audio: {words} at fillingmemory:///faults-")
    assert " free on " not in str(raised.value), "the free space of a remote store is unknown"
    assert store.has(items[0].key) and not store.has(items[1].key)
    assert os.listdir(staging) == [], "the local staging directory of the refused upload is removed"


def test_fault_kinds_of_errors():
    assert fault_kind(OSError(errno.EDQUOT, "Disk quota exceeded")) == "quota"
    assert fault_kind(OSError(errno.EROFS, "Read-only file system")) == "read-only"
    assert fault_kind(PermissionError(errno.EPERM, "Operation not permitted")) == "permission"
    assert fault_kind(FileNotFoundError(errno.ENOENT, "No such file")) is None
    assert fault_kind(ValueError("System error.")) is None
    described = Fault("read-only", "/data/store/tmp/x", errno.EROFS).describe("render", "a.mid")
    assert described.startswith("render: read-only filesystem (EROFS) at /data/store/tmp/x (item a.mid)")


# ---------------------------------------------------------------------------- a real tmpfs


@pytest.fixture()
def tmpfs(tmp_path) -> Iterator[Any]:
    """mount(size) -> a fresh tmpfs of that size; unmounted at teardown."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        target = tmp_path / f"tmpfs-{len(mounted)}"
        target.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no mount command on this machine")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        if subprocess.run(["umount", str(target)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=True)


def test_an_error_without_errno_on_a_full_disk_is_told_by_the_probe(tmpfs):
    root = tmpfs("1m")
    store = ArtifactStore(str(root))
    items = _items(4)

    def compute(item: WorkItem, out_dir: Path) -> dict[str, Any]:
        # soundfile opening the path itself: libsndfile says only "System error" when the disk is full
        sf.write(out_dir / "audio.wav", piano_like(1.0, item.source["seed"]), 44100, subtype="FLOAT")
        return {}

    with pytest.raises(EnvironmentFault) as raised:
        run_batch(store, "toy-audio", 1, items, compute)
    fault = raised.value.fault
    assert fault.kind == "space" and fault.errno == errno.ENOSPC and fault.free_bytes < MiB
    assert "found by a test write after LibsndfileError" in str(raised.value)
    assert f"free on the filesystem mounted at {root}" in str(raised.value)
    assert store.has(items[0].key) and _staging_dirs(root) == []


def _flow_task_runs(state) -> list:
    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))


@pytest.fixture()
def midi_pieces(tmp_path) -> Path:
    folder = tmp_path / "midi"
    for index in range(4):
        write_piano_midi(folder / f"piece-{index}.mid", seconds=8.0, seed=index)
    return folder


def test_a_midi_build_that_fills_its_store_fails_naming_the_cause(tmpfs, midi_pieces, monkeypatch):
    """Each piece is about 8 s: 0.4 MB of render FLAC and 2.8 MB of normalized WAV; 8 MiB holds
    the renders and two normalized pieces. The pre-flight check would refuse this build up front
    (next test): switched off here, as when another program fills the disk during a run."""
    root = tmpfs("8m")
    monkeypatch.setattr(flows.midi_dataset, "check_midi_space", lambda *args: None)
    state = build_midi_dataset(name="full", sources=[str(midi_pieces)], run=RunSettings(store=str(root)),
                               return_state=True)
    assert state.is_failed()
    with pytest.raises(EnvironmentFault) as raised:
        state.result()
    message = str(raised.value)
    assert message.startswith(f"normalize: out of space (ENOSPC) at {root}/tmp/obj-")
    assert f"free on the filesystem mounted at {root}" in message
    assert re.search(r"; roughly \d+\.\d MiB more needed for the \d items? left in this batch\. ", message)
    assert "nothing was published" in message
    store = ArtifactStore(str(root))
    assert store.version_numbers("full") == []
    assert [name for name in _staging_dirs(root) if name.startswith("obj-")] == []


def test_a_build_that_clearly_does_not_fit_is_refused_before_any_task_runs(tmpfs, midi_pieces):
    root = tmpfs("2m")
    state = build_midi_dataset(name="tiny", sources=[str(midi_pieces)], run=RunSettings(store=str(root)),
                               return_state=True)
    assert state.is_failed()
    with pytest.raises(EnvironmentFault) as raised:
        state.result()
    message = str(raised.value)
    assert message.startswith(f"pre-flight: not enough space for this build in the store at {root}: roughly ")
    assert "needed for its 4 new items (from the MIDI files' lengths, a rough estimate)" in message
    assert f"the filesystem mounted at {root} has 2.0 MiB free" in message
    assert "Nothing was run" in message
    assert _flow_task_runs(state) == []
    assert not (root / "objects").exists()


def test_items_in_the_store_need_no_space(tmpfs, midi_pieces):
    """Only what the store lacks counts: with every object there 2 MiB is enough; with one
    normalized object gone, that one item is refused."""
    root = tmpfs("2m")
    store = ArtifactStore(str(root))
    render_items = render.plan_render_items(resolve_sources([str(midi_pieces)], MIDI_EXTENSIONS).files,
                                            RenderParams())
    normalize_items = normalize.plan_normalize_items(render_items, LoudnessParams())
    for module, items in ((render, render_items), (normalize, normalize_items)):
        for item in items:  # what an earlier build left, in small
            with store.publish_object(module.STAGE, module.STAGE_VERSION, item.params, list(item.inputs),
                                      item=item.item_id) as staged:
                (staged.dir / "placeholder").write_bytes(b"x")
            assert staged.key == item.key
    logs: list[str] = []
    check_midi_space(store, render_items, normalize_items, 20.0, RunSettings(), logs.append)
    assert logs == ["pre-flight: every item is in the store already (or recorded as failed), nothing new to write"]

    store.delete_object(normalize_items[0].key)
    with pytest.raises(EnvironmentFault, match=r"roughly 3\.\d MiB needed for its 1 new item \(from the MIDI"):
        check_midi_space(store, render_items, normalize_items, 20.0, RunSettings(), logs.append)


def test_the_command_line_says_a_machine_fault_in_one_line_with_exit_code_3(tmpfs, midi_pieces):
    root = tmpfs("2m")
    code, _, err = run_cli("--store", str(root), "dataset", "midi", str(midi_pieces), "--name", "tiny")
    lines = [line for line in err.splitlines() if line.startswith("musika-piano:")]
    assert code == 3
    assert len(lines) == 1 and lines[0].startswith("musika-piano: pre-flight: not enough space for this build")
