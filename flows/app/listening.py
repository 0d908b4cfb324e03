"""The generation app's logic, free of any UI: which models can be played, request checks,
network loading and clip generation.

A model choice is either a store model (`NAME@V` holding both a `gan` and an `autoencoder`
item, see `tasks.pipeline.models`) or a checkpoint folder given on the command line: an official folder
(gen/gen_ema/critic .h5 beside enc/dec .h5) or a checkpoint of this project's trainer plus an
autoencoder (a folder, or a store model holding one). Networks are loaded on first use and kept
in small LRU caches, so switching between models does not reload them. TensorFlow is imported
only when networks are loaded or devices listed.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musika_model.audio import write_pcm16_wav
from tasks.pipeline import models
from tasks.reports.spectrograms import mel_spectrogram_png
from tasks.store import ArtifactStore, DatasetVersion

if TYPE_CHECKING:
    import keras

    from musika_model.codec import Autoencoder

MAX_SECONDS = 300.0
MAX_NUM_SAMPLES = 16
MIN_TRUNCATION, MAX_TRUNCATION = 0.1, 4.0
MAX_SEED = 2**32 - 1
CPU_DEVICE = "cpu"
FOLDER_PREFIX = "folder:"
IMPORTED_FORMAT = "musika-official-h5"
OFFICIAL_AE_FILES = ("enc.h5", "enc2.h5", "dec.h5", "dec2.h5")
SAVED_AE_FILE = "autoencoder.json"
OUTPUT_PREFIX = "musika-app-"

_GENERATION_LOCK = threading.Lock()
"""Generation reseeds the networks' noise layers: one request at a time keeps seeds exact."""


class ListeningError(ValueError):
    """Base class of the app's user errors (bad request, unknown model or device)."""


class InvalidRequest(ListeningError):
    """Generation parameters out of bounds."""


class UnknownModel(ListeningError):
    """A model choice that is not (or no longer) available."""


class UnknownDevice(ListeningError):
    """A device that TensorFlow does not see."""


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "fix your input": bad requests, unknown models or store references,
    unreadable or mismatched checkpoints (these modules import no TensorFlow)."""
    from musika_model.checkpoints import CheckpointError
    from musika_model.codec import CodecError
    from musika_model.generation import GenerationError
    from musika_model.official import OfficialWeightsError
    from tasks.store import StoreError

    return (ListeningError, models.NotAModelError, StoreError, CheckpointError,
            OfficialWeightsError, CodecError, GenerationError)


@dataclass(frozen=True)
class ModelChoice:
    """One playable model: what the dropdown shows and where its networks are."""

    value: str
    """Dropdown value: `NAME@V` for store models, `folder:<path>` for a checkpoint folder."""
    label: str
    details: str
    """Markdown: kind, creation date, base_channels and lineage."""
    gan_folder: Path
    autoencoder_folder: Path
    base_channels: int | None
    """Asked for on the command line (checked against the checkpoint when loading)."""
    store_root: str | None = None
    gan_key: str | None = None
    autoencoder_key: str | None = None
    created_at: datetime | None = None
    """When a store model's version was published (None for a checkpoint folder)."""

    @property
    def short_name(self) -> str:
        """`NAME@V`, or the checkpoint folder's name."""
        return self.gan_folder.name if self.value.startswith(FOLDER_PREFIX) else self.value


@dataclass(frozen=True)
class GenerationRequest:
    """Checked generation parameters."""

    seconds: float
    num_samples: int
    truncation: float
    seed: int
    device: str = CPU_DEVICE


@dataclass(frozen=True)
class Clip:
    """One generated piece: a 44.1 kHz stereo 16-bit WAV and its mel-spectrogram PNG."""

    wav_path: Path
    mel_png_path: Path
    seconds: float


# --- choices -----------------------------------------------------------------------------------


def _gan_config(model: models.StoredModel) -> dict[str, Any]:
    """The GAN configuration recorded at import, or read from the checkpoint folder."""
    recorded = model.version.stats.get(models.GAN_ITEM, {}).get("config")
    if isinstance(recorded, dict) and "base_channels" in recorded:
        return recorded
    from musika_model.checkpoints import read_checkpoint_info

    _, gan_dir = model.require_gan()
    return read_checkpoint_info(gan_dir, verify_hashes=False).gan.to_dict()


def _describe_parent_checkpoint(parent: Any) -> str:
    if isinstance(parent, dict):
        where = parent.get("ref") or parent.get("folder") or "?"
        counters = [f"{name} {parent[name]}" for name in ("epoch", "step") if name in parent]
        kind = f" ({parent['kind']})" if parent.get("kind") else ""
        return f"{where}{kind}" + (f", {', '.join(counters)}" if counters else "")
    return str(parent)


def _parent_datasets(lineage: dict[str, Any]) -> list[str]:
    """The training datasets (with their mixture weights when recorded), else the parents
    other than the parent checkpoint's model."""
    weighted = [entry for entry in lineage.get("datasets") or [] if isinstance(entry, dict)]
    if weighted:
        return [
            f"{entry.get('ref', '?')} (weight {entry['weight']:g})"
            if isinstance(entry.get("weight"), (int, float)) else str(entry.get("ref", "?"))
            for entry in weighted
        ]
    parent = lineage.get("parent_checkpoint")
    parent_ref = parent.get("ref") if isinstance(parent, dict) else parent
    return [str(ref) for ref in lineage.get("parents") or [] if ref != parent_ref]


def _lineage_lines(lineage: dict[str, Any]) -> list[str]:
    lines = []
    if datasets := _parent_datasets(lineage):
        lines.append(f"- parent datasets: {', '.join(datasets)}")
    if lineage.get("parent_checkpoint"):
        parent = _describe_parent_checkpoint(lineage["parent_checkpoint"])
        lines.append(f"- parent checkpoint: {parent}")
    if lineage.get("sources"):
        lines.append(f"- sources: {', '.join(map(str, lineage['sources']))}")
    return lines or ["- lineage: none recorded"]


def _model_kind(version: DatasetVersion) -> str:
    """"imported", or "trained" (with the run's kind, e.g. pretrain or finetune, if recorded)."""
    if version.params.get("format") == IMPORTED_FORMAT:
        return "imported"
    run_kind = version.params.get("kind")
    return f"trained ({run_kind})" if isinstance(run_kind, str) else "trained"


def _store_choice(model: models.StoredModel, store_root: str) -> ModelChoice:
    version = model.version
    gan = _gan_config(model)
    kind = _model_kind(version)
    created = version.created_at[:16].replace("T", " ")
    small = ", small" if gan.get("small") else ""
    label = f"{version.ref} · {kind} · base_channels {gan['base_channels']}{small} · {created}"
    details = "\n".join([
        f"**{version.ref}** ({kind} model, stage `{version.stage}`)",
        f"- created: {version.created_at}",
        f"- base_channels: {gan['base_channels']}{small}",
        *_lineage_lines(version.lineage.to_dict()),
    ])
    ae_key, ae_dir = model.require_autoencoder()
    gan_key, gan_dir = model.require_gan()
    return ModelChoice(
        value=version.ref, label=label, details=details, gan_folder=gan_dir,
        autoencoder_folder=ae_dir, base_channels=None, store_root=store_root,
        gan_key=gan_key, autoencoder_key=ae_key,
        created_at=datetime.fromisoformat(version.created_at),
    )


def store_model_choices(store: ArtifactStore) -> list[ModelChoice]:
    """Every store model version with both a GAN and an autoencoder, newest version first."""
    return [
        _store_choice(model, store.root)
        for model in models.list_models(store)
        if model.gan_key is not None and model.autoencoder_key is not None
    ]


def _is_autoencoder_folder(folder: Path) -> bool:
    return (folder / SAVED_AE_FILE).is_file() or all(
        (folder / name).is_file() for name in OFFICIAL_AE_FILES
    )


def _autoencoder_for(
    checkpoint: Path, autoencoder: str | None, store: ArtifactStore | None
) -> tuple[Path, str]:
    """The autoencoder folder for a checkpoint folder, and how to describe it."""
    if autoencoder is None:
        if _is_autoencoder_folder(checkpoint):
            return checkpoint, "the checkpoint folder's enc/dec .h5"
        raise UnknownModel(
            f"{checkpoint} holds no autoencoder (no {', '.join(OFFICIAL_AE_FILES)} or "
            f"{SAVED_AE_FILE}): pass --autoencoder FOLDER or a store model NAME@V"
        )
    folder = Path(autoencoder).expanduser()
    if folder.is_dir():
        if not _is_autoencoder_folder(folder):
            raise UnknownModel(
                f"autoencoder folder {folder} has neither {SAVED_AE_FILE} nor all of "
                f"{', '.join(OFFICIAL_AE_FILES)}"
            )
        return folder.resolve(), str(folder.resolve())
    if store is None:
        raise UnknownModel(f"--autoencoder {autoencoder!r} is not a folder and no store is open")
    model = models.resolve_model(store, autoencoder)
    _, ae_dir = model.require_autoencoder()
    return ae_dir, f"store model {model.ref}"


def folder_model_choice(
    checkpoint: str | Path,
    autoencoder: str | None = None,
    store: ArtifactStore | None = None,
    base_channels: int | None = None,
) -> ModelChoice:
    """A checkpoint folder as a choice; checked cheaply here (no networks are built).

    `base_channels`, when given, is checked against the checkpoint when it is loaded.
    """
    from musika_model.checkpoints import read_checkpoint_info

    info = read_checkpoint_info(Path(checkpoint).expanduser(), verify_hashes=False)
    ae_folder, ae_text = _autoencoder_for(info.folder, autoencoder, store)
    small = ", small" if info.gan.small else ""
    counters = f", epoch {info.epoch}, step {info.step}" if info.training else ""
    lineage = info.training.lineage if info.training else {}
    label = (
        f"{info.folder.name} · folder ({info.kind}) · "
        f"base_channels {info.gan.base_channels}{small}"
    )
    details = "\n".join([
        f"**{info.folder}** ({info.kind} checkpoint folder{counters})",
        f"- base_channels: {info.gan.base_channels}{small}",
        f"- autoencoder: {ae_text}",
        *_lineage_lines(lineage),
    ])
    return ModelChoice(
        value=f"{FOLDER_PREFIX}{info.folder}", label=label, details=details,
        gan_folder=info.folder, autoencoder_folder=ae_folder, base_channels=base_channels,
    )


def find_choice(choices: Sequence[ModelChoice], value: str | None) -> ModelChoice:
    """The choice whose dropdown value is `value`."""
    if not value:
        raise UnknownModel("no model selected: pick one in the model list")
    for choice in choices:
        if choice.value == value:
            return choice
    raise UnknownModel(f"model {value!r} is not available (refresh the model list)")


# --- loading -----------------------------------------------------------------------------------


def _modified_ns(folder: Path) -> int:
    """Newest modification time in a folder: a rewritten checkpoint is loaded again."""
    return max((path.stat().st_mtime_ns for path in folder.iterdir()), default=0)


@lru_cache(maxsize=4)
def _folder_generator(folder: str, modified_ns: int, base_channels: int | None) -> keras.Model:
    from musika_model.checkpoints import load_generator

    return load_generator(folder, base_channels=base_channels)


@lru_cache(maxsize=2)
def _folder_autoencoder(folder: str, modified_ns: int) -> Autoencoder:
    from musika_model.codec import Autoencoder

    if (Path(folder) / SAVED_AE_FILE).is_file():
        return Autoencoder.load(folder)
    return Autoencoder.from_official(folder)


def load_networks(choice: ModelChoice) -> tuple[keras.Model, Autoencoder]:
    """The EMA generator and the autoencoder of a choice, from the caches when loaded before.

    Raises musika_model.checkpoints.CheckpointMismatchError when the choice asks for other
    base_channels than its checkpoint has.
    """
    if choice.gan_key is not None and choice.autoencoder_key is not None:
        generator = models.load_generator(choice.store_root, choice.gan_key, choice.base_channels)
        autoencoder = models.load_autoencoder(choice.store_root, choice.autoencoder_key)
        return generator, autoencoder
    generator = _folder_generator(
        str(choice.gan_folder), _modified_ns(choice.gan_folder), choice.base_channels
    )
    autoencoder = _folder_autoencoder(
        str(choice.autoencoder_folder), _modified_ns(choice.autoencoder_folder)
    )
    return generator, autoencoder


# --- requests ----------------------------------------------------------------------------------


def available_devices() -> list[str]:
    """"cpu", then "gpu:N" for every GPU TensorFlow sees."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return [CPU_DEVICE, *(f"gpu:{index}" for index in range(len(gpus)))]


def _tf_device_name(device: str) -> str:
    match = re.fullmatch(r"gpu:(\d+)", device)
    return f"/GPU:{match.group(1)}" if match else "/CPU:0"


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InvalidRequest(f"{what} must be a finite number, got {value!r}")
    return number


def _integer(value: Any, what: str) -> int:
    number = _number(value, what)
    if number != int(number):
        raise InvalidRequest(f"{what} must be a whole number, got {value!r}")
    return int(number)


def validate_request(
    seconds: Any,
    num_samples: Any,
    truncation: Any,
    seed: Any,
    device: str = CPU_DEVICE,
    devices: Sequence[str] = (CPU_DEVICE,),
    max_seconds: float = MAX_SECONDS,
) -> GenerationRequest:
    """Check UI or API input; InvalidRequest/UnknownDevice say what is wrong and the bounds."""
    length = _number(seconds, "length")
    if length <= 0:
        raise InvalidRequest(f"length must be more than 0 s, got {length:g} s")
    if length > max_seconds:
        raise InvalidRequest(f"length must be at most {max_seconds:g} s, got {length:g} s")
    count = _integer(num_samples, "number of samples")
    if not 1 <= count <= MAX_NUM_SAMPLES:
        raise InvalidRequest(f"number of samples must be 1 to {MAX_NUM_SAMPLES}, got {count}")
    bound = _number(truncation, "truncation")
    if not MIN_TRUNCATION <= bound <= MAX_TRUNCATION:
        raise InvalidRequest(
            f"truncation must be between {MIN_TRUNCATION:g} and {MAX_TRUNCATION:g}, got {bound:g}"
        )
    seed_value = _integer(seed, "seed")
    if not 0 <= seed_value <= MAX_SEED:
        raise InvalidRequest(f"seed must be between 0 and {MAX_SEED}, got {seed_value}")
    if device not in devices:
        raise UnknownDevice(f"device {device!r} is not available (available: {', '.join(devices)})")
    return GenerationRequest(length, count, bound, seed_value, device)


# --- generation --------------------------------------------------------------------------------


def _file_stem(choice: ModelChoice) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", choice.short_name).strip("-") or "model"


def generate_clips(
    choice: ModelChoice, request: GenerationRequest, output_dir: str | Path | None = None
) -> list[Clip]:
    """Generate `request.num_samples` clips with the choice's networks on `request.device`.

    Each call writes into a new folder under `output_dir` (default: the system temp dir):
    `<model>-seed<S>-<i>.wav` (16-bit PCM, what browsers and editors play) and its mel PNG.
    """
    import tensorflow as tf

    from musika_model.config import SAMPLE_RATE
    from musika_model.generation import generate

    generator, autoencoder = load_networks(choice)
    with _GENERATION_LOCK, tf.device(_tf_device_name(request.device)):
        pieces = generate(
            generator, autoencoder, request.seconds, request.num_samples,
            request.truncation, request.seed,
        )
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=OUTPUT_PREFIX, dir=output_dir))
    stem = f"{_file_stem(choice)}-seed{request.seed}"
    clips = []
    for index, audio in enumerate(pieces, start=1):
        wav_path = folder / f"{stem}-{index}.wav"
        write_pcm16_wav(wav_path, audio, SAMPLE_RATE)
        png_path = wav_path.with_suffix(".png")
        title = f"{choice.short_name} · seed {request.seed} · sample {index}"
        png_path.write_bytes(mel_spectrogram_png(audio, SAMPLE_RATE, title=title))
        clips.append(Clip(wav_path, png_path, len(audio) / SAMPLE_RATE))
    return clips


def remove_old_outputs(output_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest generation folders under `output_dir`; returns the
    deleted ones. (The app's server keeps its own copies of what it has sent.)"""
    folders = sorted(
        (path for path in Path(output_dir).glob(f"{OUTPUT_PREFIX}*") if path.is_dir()),
        key=lambda path: path.stat().st_mtime_ns, reverse=True,
    )
    for folder in folders[keep:]:
        shutil.rmtree(folder, ignore_errors=True)
    return folders[keep:]
