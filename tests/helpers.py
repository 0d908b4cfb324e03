"""Test data made in code: MIDI with pretty_midi, audio with numpy."""

from __future__ import annotations

import html
import http.server
import io
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pretty_midi
import soundfile as sf

if TYPE_CHECKING:
    from tasks.store import ArtifactStore


def write_piano_midi(path: Path, seconds: float = 4.0, seed: int = 0, program: int = 0) -> Path:
    """A short piano piece: a random walk melody over block chords, different for each seed."""
    rng = np.random.default_rng(seed)
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    piano = pretty_midi.Instrument(program=program, name="piano")
    pitch = 60 + int(rng.integers(-5, 6))
    step = 0.25
    time = 0.0
    while time + step <= seconds:
        pitch = int(np.clip(pitch + rng.integers(-3, 4), 48, 84))
        velocity = int(rng.integers(60, 100))
        piano.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=time, end=time + step * 0.9))
        if round(time / step) % 8 == 0:
            root = pitch - 12
            for offset in (0, 4, 7):
                end = min(time + 8 * step, seconds)
                piano.notes.append(pretty_midi.Note(velocity=55, pitch=root + offset, start=time, end=end))
        time += step
    midi.instruments.append(piano)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))
    return path


def piano_like(seconds: float, seed: int, sample_rate: int = 44100, gain: float = 1.0) -> np.ndarray:
    """(n, 2) float32: decaying harmonic notes (partials up to 20 kHz) at random times and
    strengths over a faint noise floor; each seed is a different piece."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(1.5 * sample_rate)) / sample_rate
    envelope = np.exp(-t / 0.5) * np.minimum(1.0, t / 0.004)
    notes = []
    for pitch in rng.choice(np.arange(40, 88), size=8, replace=False):
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        partials = [np.sin(2 * np.pi * k * f0 * t) / k**1.2 for k in range(1, 40) if k * f0 < min(20000, sample_rate / 2.2)]
        notes.append((envelope * np.sum(partials, axis=0)).astype(np.float32))
    total = int(seconds * sample_rate)
    mono = np.zeros(total, dtype=np.float32)
    onset = 0
    while onset < total:
        note = notes[rng.integers(0, len(notes))] * np.float32(0.15 * rng.uniform(0.2, 1.0))
        end = min(total, onset + note.shape[0])
        mono[onset:end] += note[: end - onset]
        onset += int(sample_rate * rng.uniform(0.1, 0.45))
    fade = int(0.2 * sample_rate)
    mono[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    mono += (10 ** (-70 / 20) * rng.normal(size=total)).astype(np.float32)
    return (np.stack([mono, np.roll(mono, 7)], axis=1) * np.float32(gain)).astype(np.float32)


def two_partials(seconds: float, rate: int = 44100, seed: int = 0) -> np.ndarray:
    """Two decaying partials per channel plus a little noise: (n, 2) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.exp(-3 * (t % 0.5))
    left = 0.3 * np.sin(2 * np.pi * 262 * t) + 0.1 * np.sin(2 * np.pi * 523 * t)
    right = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 659 * t)
    stereo = np.stack([left, right], axis=1) * envelope[:, None]
    return (stereo + 0.01 * rng.standard_normal(stereo.shape)).astype(np.float32)


def compilation(pieces: list[np.ndarray], sample_rate: int = 44100, gap_s: float = 2.0) -> np.ndarray:
    """Pieces separated (and led and followed) by digital silence."""
    gap = np.zeros((int(gap_s * sample_rate), pieces[0].shape[1]), dtype=np.float32)
    parts = [gap]
    for piece in pieces:
        parts += [piece, gap]
    return np.concatenate(parts)


def audio_bytes(audio: np.ndarray, sample_rate: int, file_format: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format=file_format, subtype=subtype)
    return buffer.getvalue()


def mp3_bytes(audio: np.ndarray, sample_rate: int, bitrate: str = "128k") -> bytes:
    """MP3 made by ffmpeg's LAME encoder (its low-pass near 16-17 kHz at 128 kb/s is what lossy
    uploads look like)."""
    encoded = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "wav", "-i", "pipe:0", "-c:a", "libmp3lame", "-b:a", bitrate,
         "-f", "mp3", "pipe:1"],
        input=audio_bytes(audio, sample_rate), capture_output=True, check=True,
    )
    return encoded.stdout


Reply = Callable[[http.server.BaseHTTPRequestHandler, bytes, str, int], bool]
"""A special handler: given the request, the file's body and type, and how many times its path has
been requested (this request included), True when it answered."""


@dataclass(frozen=True)
class Request:
    path: str
    time: float
    headers: dict[str, str]


@dataclass
class MediaServer:
    """A loopback HTTP server of in-memory files; ``special`` paths answer in broken ways."""

    base: str = ""
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    special: dict[str, Reply] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def count(self, path: str) -> int:
        return sum(request.path == path for request in self.requests)

    def add_page(self, path: str, title: str, media: Sequence[str]) -> None:
        """An HTML page with one <audio> tag per media path: several make a playlist for yt-dlp."""
        tags = "".join(f'<audio controls src="{html.escape(src)}"></audio>' for src in media)
        body = f"<html><head><title>{html.escape(title)}</title></head><body>{tags}</body></html>"
        self.files[path] = (body.encode("utf-8"), "text/html; charset=utf-8")


def truncated_reply(handler: http.server.BaseHTTPRequestHandler, body: bytes, content_type: str, count: int) -> bool:
    """Announce the whole body, send a third of it, hang up."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body[: len(body) // 3])
    handler.wfile.flush()
    handler.close_connection = True
    return True


def slow_reply(seconds: float) -> Reply:
    """Answer normally, but only after ``seconds`` of silence."""

    def reply(handler: http.server.BaseHTTPRequestHandler, body: bytes, content_type: str, count: int) -> bool:
        time.sleep(seconds)
        return False

    return reply


@contextmanager
def media_server() -> Iterator[MediaServer]:
    """Serve a MediaServer's files on 127.0.0.1 (a free port) until the block ends."""
    state = MediaServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path
            if path.startswith("http://"):  # absolute form: the server is being used as a proxy
                path = "/" + path.split("/", 3)[3]
            state.requests.append(Request(path, time.monotonic(), dict(self.headers)))
            if path not in state.files:
                self.send_error(404, "File not found")
                return
            body, content_type = state.files[path]
            special = state.special.get(path)
            if special is not None and special(self, body, content_type, state.count(path)):
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class QuietServer(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            """Clients that give up (timeouts, truncated reads) close the socket mid-reply."""

    httpd = QuietServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def write_official_tiny_model(folder: Path, base_channels: int = 16, seed: int = 0, gan: bool = True) -> Path:
    """An official-layout folder with a randomly initialised tiny autoencoder and (with `gan`) a
    small GAN of `base_channels`: importable with `tasks.checkpoint_import.stage.import_official_checkpoint`."""
    import keras

    from musika_model.config import AutoencoderConfig, GanConfig
    from musika_model.networks import build_autoencoder, build_gan
    from musika_model.official import save_autoencoder_weights, save_gan_weights

    keras.utils.set_random_seed(seed)
    save_autoencoder_weights(folder, build_autoencoder(AutoencoderConfig.tiny()))
    if gan:
        networks = build_gan(GanConfig(base_channels=base_channels, small=True))
        save_gan_weights(folder, networks.generator, networks.generator_ema, networks.critic)
    return folder


def run_cli(*argv: str) -> tuple[int, str, str]:
    """`musika-piano ARGV` in-process: (exit code, stdout, stderr). Plain StringIO redirects, not
    capsys: Prefect's console log handler keeps the stream it first saw, and capsys closes its
    streams after each test."""
    from contextlib import redirect_stderr, redirect_stdout

    from flows.cli.commands import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def publish_audio_dataset(
    store: ArtifactStore, name: str, seconds: dict[str, float], with_duration_stat: bool = True
) -> str:
    """A normalize-stage dataset of synthetic piano audio, one item per (item id, seconds)."""
    from musika_model.audio import write_wav

    items = []
    for seed, (item_id, length) in enumerate(seconds.items()):
        with store.publish_object("normalize", 1, {"test": name}, [f"sha256:{seed:064x}"], item=item_id) as staged:
            write_wav(staged.dir / "audio.wav", piano_like(length, seed), 44100)
        stats = {"duration_s": length} if with_duration_stat else {}
        items.append({"item_id": item_id, "key": staged.key, "stats": stats})
    return store.publish_dataset(name, stage="normalize", params={}, items=items).ref


def publish_latents_dataset(store: ArtifactStore, name: str) -> str:
    """An encode-stage dataset: objects holding latents.npy, no audio."""
    with store.publish_object("encode", 1, {}, ["sha256:" + "e" * 64], item="a") as staged:
        np.save(staged.dir / "latents.npy", np.zeros((4, 128), np.float32))
    return store.publish_dataset(name, stage="encode", params={}, items=[{"item_id": "a", "key": staged.key}]).ref
