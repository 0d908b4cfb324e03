"""The Musika audio codec: stereo audio <-> (T, 128) latents through the two-level autoencoder.

Encoding, per channel: normalised log-power STFT -> level-1 encoder (frame-wise) -> level-2
encoder (one latent per 16 STFT frames, each group independent) -> (T, 64); the stereo
latent is L (dims 0-63) then R (64-127). One latent frame covers 4096 samples plus the
768-sample tail of its last STFT frame, so T latents decode to 4096 * T + 768 samples.

Length policy (nothing is dropped): any non-empty audio is encoded. It is zero-padded at the
end to a whole number of latent frames, T = ceil((n - 768) / 4096) (at least 1), and the
result says how much was padded (`EncodeResult.padded_samples`). There is no minimum length:
audio shorter than one AE chunk (128 STFT frames) gives fewer than 8 latents. Internally the
spectrogram is padded to whole 128-frame chunks and the extra latents are discarded, which
is exact because each latent depends only on its own 16 frames.

Long audio is processed in pieces of `piece_latents` latent frames (about 59 s by default)
in memory and from files alike, so `encode_file` (streaming, bounded memory) returns exactly
what `encode(load_audio(path))` returns. Decoding also runs in pieces, with one 8-latent
chunk of left context so the inverse STFT's overlap-add is complete at every seam.

Decoding is stochastic like the original (AddNoise is active); pass `seed` to make it
reproducible.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from musika_model.audio import (
    DEFAULT_BLOCK_FRAMES,
    EmptyAudioError,
    audio_info,
    iter_audio_blocks,
    resample,
    to_stereo_float,
)
from musika_model.config import (
    HOP,
    LATENT_DEPTH,
    N_FFT,
    SAMPLE_RATE,
    SAMPLES_PER_LATENT,
    STEREO_LATENT_WIDTH,
    STFT_FRAMES_PER_LATENT,
    AutoencoderConfig,
)
from musika_model.frontend import latents_for_samples, samples_for_latents

if TYPE_CHECKING:
    import keras

    from musika_model.networks import AutoencoderNetworks

FORMAT_NAME = "musika-piano-autoencoder"
FORMAT_VERSION = 1
CONFIG_FILE = "autoencoder.json"
NETWORK_NAMES = ("encoder1", "decoder1", "encoder2", "decoder2")
LATENTS_PER_CHUNK = 8
"""Latent frames per AE chunk (128 STFT frames)."""
FRAME_OVERLAP = N_FFT - HOP
"""768 samples: how far a latent's last STFT frame reaches past its 4096 samples."""
DEFAULT_ENCODE_PIECE_LATENTS = 640
DEFAULT_DECODE_PIECE_LATENTS = 256


class CodecError(Exception):
    """Base class of the codec's errors."""


class LatentShapeError(CodecError):
    """Latents that are not (T, 128) (or (B, T, 128)) with T >= 1."""


class NonFiniteLatentsError(CodecError):
    """Latents containing NaN or Inf."""


class AutoencoderFolderError(CodecError):
    """A folder that does not hold a loadable autoencoder."""


@dataclass(frozen=True)
class EncodeResult:
    """Latents of one piece of audio and how they line up with it.

    `num_samples` is the audio length at 44.1 kHz that was encoded; the latents decode to
    `samples_for_latents(len(latents))` = num_samples + padded_samples samples.
    """

    latents: np.ndarray
    num_samples: int
    padded_samples: int
    source_sample_rate: int

    @property
    def padded(self) -> bool:
        return self.padded_samples > 0

    @property
    def num_latents(self) -> int:
        return int(self.latents.shape[0])

    @property
    def duration(self) -> float:
        """Seconds of real (unpadded) audio."""
        return self.num_samples / SAMPLE_RATE


def check_latents(latents: np.ndarray, batched: bool = False) -> np.ndarray:
    """Validate (T, 128) latents (or (B, T, 128) when `batched`); returns them as float32."""
    latents = np.asarray(latents)
    expected = "(B, T, 128)" if batched else "(T, 128)"
    ndim = 3 if batched else 2
    if latents.ndim != ndim or latents.shape[-1] != STEREO_LATENT_WIDTH or latents.shape[-2] < 1:
        raise LatentShapeError(f"expected latents shaped {expected} with T >= 1, got {latents.shape}")
    if not np.issubdtype(latents.dtype, np.floating):
        raise LatentShapeError(f"expected floating-point latents, got dtype {latents.dtype}")
    if not np.isfinite(latents).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(latents))[0])
        raise NonFiniteLatentsError(f"latents contain NaN/Inf (first at index {bad})")
    return latents.astype(np.float32, copy=False)


def _save_weights(model: keras.Model, path: Path) -> None:
    arrays = {f"w{index:04d}": weight.numpy() for index, weight in enumerate(model.weights)}
    names = np.array([weight.path for weight in model.weights])
    np.savez(path, names=names, **arrays)


def _load_weights(model: keras.Model, path: Path) -> None:
    """Assign weights saved by `_save_weights`, checking count, names and shapes first."""
    if not path.is_file():
        raise AutoencoderFolderError(f"{path.parent}: missing {path.name}")
    with np.load(path) as stored:
        names = [str(name) for name in stored["names"]]
        arrays = [stored[f"w{index:04d}"] for index in range(len(names))]
    if len(arrays) != len(model.weights):
        raise AutoencoderFolderError(
            f"{path}: {len(arrays)} weights do not fit {model.name}, which has "
            f"{len(model.weights)}; was it saved with another config?"
        )
    for name, array, weight in zip(names, arrays, model.weights, strict=True):
        if name != weight.path or array.shape != tuple(weight.shape):
            raise AutoencoderFolderError(
                f"{path}: stored weight {name} {array.shape} does not fit {weight.path} "
                f"{tuple(weight.shape)}; was it saved with another config?"
            )
    for array, weight in zip(arrays, model.weights, strict=True):
        weight.assign(array)


class Autoencoder:
    """The four AE networks (`musika_model.networks.AutoencoderNetworks`) plus compiled
    encode/decode paths.

    Build one with `Autoencoder.build(config)` (random weights), `Autoencoder.load(folder)`
    (this project's format, see `save`) or `Autoencoder.from_official(folder)` (the official
    enc.h5 / dec.h5 / enc2.h5 / dec2.h5; `save_official` writes that layout).
    """

    def __init__(self, networks: AutoencoderNetworks) -> None:
        import tensorflow as tf

        self.networks = networks
        self._encode_piece_fn = tf.function(
            self._encode_piece_graph,
            input_signature=[tf.TensorSpec((2, None), tf.float32)],
        )
        self._decode_piece_fns = {
            jit_compile: tf.function(
                self._decode_piece_graph,
                input_signature=[tf.TensorSpec((None, None, STEREO_LATENT_WIDTH), tf.float32)],
                jit_compile=jit_compile,
            )
            for jit_compile in (False, True)
        }
        """The decoding graph plain and through XLA (compiled once per piece shape on first use)."""

    @property
    def config(self) -> AutoencoderConfig:
        return self.networks.config

    @property
    def encoder1(self) -> keras.Model:
        return self.networks.encoder1

    @property
    def decoder1(self) -> keras.Model:
        return self.networks.decoder1

    @property
    def encoder2(self) -> keras.Model:
        return self.networks.encoder2

    @property
    def decoder2(self) -> keras.Model:
        return self.networks.decoder2

    # ----------------------------------------------------------------- construction

    @classmethod
    def build(cls, config: AutoencoderConfig | None = None) -> Autoencoder:
        """Fresh networks with random weights (official widths by default)."""
        from musika_model.networks import build_autoencoder

        return cls(build_autoencoder(config or AutoencoderConfig()))

    @classmethod
    def from_official(cls, folder: str | Path) -> Autoencoder:
        """The autoencoder in a folder of official-layout enc.h5, dec.h5, enc2.h5, dec2.h5.

        The widths are read from the files, so this also loads `save_official` output of a
        non-official config. Raises `musika_model.official.OfficialWeightsError` subclasses.
        """
        from musika_model import official
        from musika_model.networks import build_autoencoder

        networks = build_autoencoder(official.infer_autoencoder_config(folder))
        official.load_autoencoder_weights(folder, networks)
        return cls(networks)

    def save_official(self, folder: str | Path) -> list[Path]:
        """Write the networks as official-layout enc.h5, dec.h5, enc2.h5, dec2.h5."""
        from musika_model import official

        return official.save_autoencoder_weights(folder, self.networks)

    def save(self, folder: str | Path) -> Path:
        """Write one `<network>.npz` per network and `autoencoder.json` (format, config).

        Each npz holds the network's weights in `model.weights` order with their paths, so
        loading checks every name and shape. The JSON is written last: a folder with it is
        complete.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name in NETWORK_NAMES:
            _save_weights(getattr(self, name), folder / f"{name}.npz")
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": self.config.to_dict()}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Autoencoder:
        """An autoencoder written by `save`."""
        folder = Path(folder)
        meta_path = folder / CONFIG_FILE
        if not meta_path.is_file():
            raise AutoencoderFolderError(f"{folder}: no {CONFIG_FILE}; not a saved autoencoder")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as error:
            raise AutoencoderFolderError(f"{meta_path}: invalid JSON ({error})") from error
        if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
            raise AutoencoderFolderError(
                f"{meta_path}: expected format {FORMAT_NAME!r} version {FORMAT_VERSION}, got "
                f"{meta.get('format')!r} version {meta.get('version')!r}"
            )
        try:
            config = AutoencoderConfig.from_dict(meta["config"])
        except (KeyError, TypeError) as error:
            raise AutoencoderFolderError(f"{meta_path}: bad config ({error})") from error
        autoencoder = cls.build(config)
        for name in NETWORK_NAMES:
            _load_weights(getattr(autoencoder, name), folder / f"{name}.npz")
        return autoencoder

    # ----------------------------------------------------------------- graphs

    def _encode_piece_graph(self, wave):
        """(2, 4096 m + 768) waveform -> (m, 128) latents."""
        import tensorflow as tf

        from musika_model.frontend import spectrogram

        frames_per_chunk = LATENTS_PER_CHUNK * STFT_FRAMES_PER_LATENT
        spec = spectrogram(wave)  # (2, 16 m, 513)
        frames = tf.shape(spec)[1]
        latents = frames // STFT_FRAMES_PER_LATENT
        chunks = (frames + frames_per_chunk - 1) // frames_per_chunk
        spec = tf.pad(spec, [[0, 0], [0, chunks * frames_per_chunk - frames], [0, 0]],
                      constant_values=-1.0)
        spec = tf.reshape(spec, (2 * chunks, frames_per_chunk, spec.shape[-1]))
        level2 = self.encoder2(self.encoder1(spec, training=False), training=False)
        level2 = tf.reshape(level2, (2, chunks * LATENTS_PER_CHUNK, LATENT_DEPTH))[:, :latents]
        return tf.concat([level2[0], level2[1]], axis=-1)

    def _decode_piece_graph(self, latents):
        """(B, t, 128) latents, t a multiple of 8 -> (B, 2, 4096 t + 768) waveform."""
        import tensorflow as tf

        from musika_model.frontend import inverse

        batch, length = tf.shape(latents)[0], tf.shape(latents)[1]
        channels = tf.concat([latents[..., :LATENT_DEPTH], latents[..., LATENT_DEPTH:]], axis=0)
        chunks = tf.reshape(channels, (-1, LATENTS_PER_CHUNK, LATENT_DEPTH))
        magnitude, phase = self.decoder1(self.decoder2(chunks, training=False), training=False)
        frames = length * STFT_FRAMES_PER_LATENT
        magnitude = tf.reshape(magnitude, (2, batch, frames, magnitude.shape[-1]))
        phase = tf.reshape(phase, (2, batch, frames, phase.shape[-1]))
        wave = inverse(magnitude, phase)  # (2, B, n)
        return tf.transpose(wave, (1, 0, 2))

    # ----------------------------------------------------------------- encode

    def _encode_stream(
        self, blocks: Iterable[np.ndarray], piece_latents: int
    ) -> tuple[np.ndarray, int, int]:
        """Encode consecutive (k, 2) float32 44.1 kHz blocks; returns (latents, n, padding)."""
        if piece_latents < 1:
            raise ValueError(f"piece_latents must be positive, got {piece_latents}")
        piece_samples = piece_latents * SAMPLES_PER_LATENT + FRAME_OVERLAP
        pieces: list[np.ndarray] = []
        pending = np.zeros((0, 2), np.float32)
        total = 0
        for block in blocks:
            total += len(block)
            pending = np.concatenate([pending, block]) if len(pending) else block
            while len(pending) >= piece_samples:
                pieces.append(self._encode_piece(pending[:piece_samples]))
                pending = pending[piece_latents * SAMPLES_PER_LATENT :]
        if total == 0:
            raise EmptyAudioError("no audio samples to encode")
        padding = 0
        if not pieces or len(pending) > FRAME_OVERLAP:
            count = latents_for_samples(len(pending))
            padding = samples_for_latents(count) - len(pending)
            tail = np.concatenate([pending, np.zeros((padding, 2), np.float32)])
            pieces.append(self._encode_piece(tail))
        return np.concatenate(pieces), total, padding

    def _encode_piece(self, audio: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        wave = tf.constant(np.ascontiguousarray(audio.T))
        return self._encode_piece_fn(wave).numpy()

    def encode(
        self,
        audio: np.ndarray,
        sample_rate: int = SAMPLE_RATE,
        piece_latents: int = DEFAULT_ENCODE_PIECE_LATENTS,
    ) -> EncodeResult:
        """Encode (n, 2) or (n,) audio (float or integer PCM, any sample rate) to latents.

        Mono is duplicated to both channels. Raises the `musika_model.audio` errors for bad
        audio (empty, NaN/Inf, wrong layout or dtype).
        """
        stereo = to_stereo_float(audio, "audio")
        if len(stereo) == 0:
            raise EmptyAudioError("audio holds no samples")
        stereo = resample(stereo, sample_rate)
        step = piece_latents * SAMPLES_PER_LATENT
        blocks = (stereo[start : start + step] for start in range(0, len(stereo), step))
        latents, total, padding = self._encode_stream(blocks, piece_latents)
        return EncodeResult(latents, total, padding, int(sample_rate))

    def encode_file(
        self,
        path: str | Path,
        piece_latents: int = DEFAULT_ENCODE_PIECE_LATENTS,
        block_frames: int = DEFAULT_BLOCK_FRAMES,
    ) -> EncodeResult:
        """Encode an audio file, streaming it in blocks (memory bounded by the piece size).

        Equals `encode(load_audio(path))`. Raises the `musika_model.audio` errors (a missing
        file or another fault of the machine: its OSError).
        """
        info = audio_info(path)
        blocks = iter_audio_blocks(path, SAMPLE_RATE, block_frames)
        latents, total, padding = self._encode_stream(blocks, piece_latents)
        return EncodeResult(latents, total, padding, info.sample_rate)

    # ----------------------------------------------------------------- decode

    def decode(
        self,
        latents: np.ndarray,
        num_samples: int | None = None,
        seed: int | None = None,
        piece_latents: int = DEFAULT_DECODE_PIECE_LATENTS,
        jit_compile: bool = False,
    ) -> np.ndarray:
        """(T, 128) latents -> (n, 2) float32 audio in [-1, 1], n = 4096 T + 768.

        `num_samples` trims the result (e.g. `EncodeResult.num_samples` drops the padding).
        `seed` makes the decoders' noise reproducible; without it each call differs slightly.
        `jit_compile` decodes through XLA (on a CPU slower, `python -m benchmarks.run model`).
        """
        latents = check_latents(latents)
        return self.decode_batch(latents[None], num_samples, seed, piece_latents, jit_compile)[0]

    def decode_batch(
        self,
        latents: np.ndarray,
        num_samples: int | None = None,
        seed: int | None = None,
        piece_latents: int = DEFAULT_DECODE_PIECE_LATENTS,
        jit_compile: bool = False,
    ) -> np.ndarray:
        """(B, T, 128) latents of equal length -> (B, n, 2) audio; see `decode`."""
        latents = check_latents(latents, batched=True)
        length = latents.shape[1]
        full = samples_for_latents(length)
        if num_samples is not None and not 1 <= num_samples <= full:
            raise ValueError(f"num_samples must be in [1, {full}] for {length} latents, got {num_samples}")
        if piece_latents < LATENTS_PER_CHUNK or piece_latents % LATENTS_PER_CHUNK:
            raise ValueError(f"piece_latents must be a positive multiple of 8, got {piece_latents}")
        if seed is not None:
            from musika_model.layers import set_noise_seed

            set_noise_seed(self.decoder2, seed)
            set_noise_seed(self.decoder1, seed + 1)
        padded_length = math.ceil(length / LATENTS_PER_CHUNK) * LATENTS_PER_CHUNK
        padded = np.pad(latents, ((0, 0), (0, padded_length - length), (0, 0)), mode="edge")
        pieces = self._decode_pieces(padded, piece_latents, self._decode_piece_fns[jit_compile])
        audio = np.concatenate(list(pieces), axis=-1)
        audio = audio[:, :, : num_samples or full]
        return np.ascontiguousarray(np.transpose(audio, (0, 2, 1)))

    def _decode_pieces(
        self, latents: np.ndarray, piece_latents: int, decode_piece: Callable
    ) -> Iterator[np.ndarray]:
        """Waveform pieces (B, 2, k) of padded latents, each seam rebuilt with left context."""
        import tensorflow as tf

        length = latents.shape[1]
        context = LATENTS_PER_CHUNK
        for start in range(0, length, piece_latents):
            stop = min(start + piece_latents, length)
            begin = max(0, start - context)
            wave = decode_piece(tf.constant(latents[:, begin:stop])).numpy()
            keep_from = (start - begin) * SAMPLES_PER_LATENT
            keep_to = None if stop == length else (stop - begin) * SAMPLES_PER_LATENT
            yield wave[:, :, keep_from:keep_to]
