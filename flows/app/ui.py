"""`musika-piano app`: the Gradio page for listening to models.

Pick a store model (or the checkpoint folder given on the command line), set the length,
truncation, seed and number of samples, press Generate: each sample comes back as a
downloadable audio player and a mel spectrogram. The same generation is the HTTP endpoint
`/generate` (gradio_client: `Client(url).predict(model, seconds, truncation, seed,
num_samples, device, api_name="/generate")` -> (WAV files, mel images, summary)).

Offline by construction: analytics are off before gradio is imported, no share link, no
server-side rendering; the default theme's fonts are bundled with gradio.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.app import listening
from tasks.store import ArtifactStore

if TYPE_CHECKING:
    import gradio as gr

TITLE = "musika-piano: listen"
DEFAULT_SECONDS = 10.0
DEFAULT_TRUNCATION = 2.0
LONG_CPU_SECONDS = 60.0
KEPT_GENERATIONS = 4
SERVED_FILE_CACHE = (3600, 86400)
"""Gradio's copies of sent files: checked hourly, deleted after a day."""


def _import_gradio():
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio

    return gradio


class ModelCatalog:
    """The choices the page offers: the command line's folder (if any), then the store's models."""

    def __init__(self, store: ArtifactStore, folder_choice: listening.ModelChoice | None) -> None:
        self.store = store
        self.folder_choice = folder_choice
        self.choices: list[listening.ModelChoice] = []
        self.refresh()

    def refresh(self) -> list[listening.ModelChoice]:
        extra = [self.folder_choice] if self.folder_choice else []
        self.choices = extra + listening.store_model_choices(self.store)
        return self.choices

    def preselected(self) -> str | None:
        """The choice the page opens on: the command line's folder, else the store model
        published last (the list itself goes by name, newest version first)."""
        if self.folder_choice is not None:
            return self.folder_choice.value
        newest = max(self.choices, key=lambda choice: choice.created_at, default=None)
        return newest.value if newest is not None else None

    def find(self, value: str | None) -> listening.ModelChoice:
        return listening.find_choice(self.choices, value)

    def dropdown_choices(self) -> list[tuple[str, str]]:
        return [(choice.label, choice.value) for choice in self.choices]

    def details(self, value: str | None) -> str:
        if not self.choices:
            return (
                f"No playable model in the store `{self.store.root}`: import one with "
                "`musika-piano import-musika FOLDER` or train one, then press Refresh."
            )
        try:
            return self.find(value).details
        except listening.UnknownModel as error:
            return str(error)


def build_app(
    catalog: ModelCatalog, devices: list[str], output_dir: Path, max_seconds: float
) -> gr.Blocks:
    """The page; `output_dir` receives the generated WAV and PNG files."""
    gr = _import_gradio()
    errors = listening.user_errors()

    def on_refresh(current: str | None):
        catalog.refresh()
        values = [choice.value for choice in catalog.choices]
        selected = current if current in values else catalog.preselected()
        dropdown = gr.update(choices=catalog.dropdown_choices(), value=selected)
        return dropdown, catalog.details(selected)

    def generate(
        model: str, seconds: float, truncation: float, seed: float, num_samples: float, device: str
    ) -> tuple[list[str], list[tuple[str, str]], str]:
        try:
            request = listening.validate_request(
                seconds, num_samples, truncation, seed, device, devices, max_seconds
            )
            choice = catalog.find(model)
            audio_seconds = request.seconds * request.num_samples
            if request.device == listening.CPU_DEVICE and audio_seconds > LONG_CPU_SECONDS:
                gr.Warning(
                    f"{request.num_samples} x {request.seconds:g} s on the CPU: this takes a while"
                )
            clips = listening.generate_clips(choice, request, output_dir)
            listening.remove_old_outputs(output_dir, KEPT_GENERATIONS)
        except errors as error:
            raise gr.Error(str(error), print_exception=False) from None
        wavs = [str(clip.wav_path) for clip in clips]
        mels = [(str(clip.mel_png_path), f"sample {index}") for index, clip in enumerate(clips, 1)]
        summary = (
            f"{len(clips)} x {clips[0].seconds:g} s from **{choice.short_name}**, "
            f"seed {request.seed}, truncation {request.truncation:g}, {request.device}"
        )
        return wavs, mels, summary

    def show_players(wavs: list[str] | None):
        wavs = wavs or []
        return [
            gr.update(value=wavs[index], visible=True, label=f"sample {index + 1}")
            if index < len(wavs) else gr.update(value=None, visible=False)
            for index in range(listening.MAX_NUM_SAMPLES)
        ]

    initial = catalog.preselected()
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=SERVED_FILE_CACHE) as app:
        gr.Markdown(f"# {TITLE}\nGenerate piano pieces with a Musika model and listen to them.")
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Row():
                    model = gr.Dropdown(
                        catalog.dropdown_choices(), value=initial, label="model", scale=5,
                        elem_id="model",
                    )
                    refresh = gr.Button("Refresh", scale=1, elem_id="refresh", size="sm")
                lineage = gr.Markdown(catalog.details(initial), elem_id="lineage")
            with gr.Column(scale=1):
                seconds = gr.Number(
                    DEFAULT_SECONDS, label=f"length (s, at most {max_seconds:g})",
                    minimum=0, maximum=max_seconds, elem_id="length",
                )
                truncation = gr.Slider(
                    listening.MIN_TRUNCATION, listening.MAX_TRUNCATION, value=DEFAULT_TRUNCATION,
                    step=0.1, label="truncation (bound on the latent noise)", elem_id="truncation",
                )
                seed = gr.Number(0, label="seed", precision=0, minimum=0, elem_id="seed")
                num_samples = gr.Slider(
                    1, listening.MAX_NUM_SAMPLES, value=1, step=1, label="number of samples",
                    elem_id="num-samples",
                )
                device = gr.Dropdown(devices, value=devices[0], label="device", elem_id="device")
        run = gr.Button("Generate", variant="primary", elem_id="generate")
        summary = gr.Markdown(elem_id="summary")
        with gr.Row():
            with gr.Column():
                players = [
                    gr.Audio(
                        type="filepath", visible=False, interactive=False, buttons=["download"]
                    )
                    for _ in range(listening.MAX_NUM_SAMPLES)
                ]
                files = gr.File(
                    label="WAV files", file_count="multiple", interactive=False, elem_id="files"
                )
            mels = gr.Gallery(
                label="mel spectrograms", columns=1, interactive=False, elem_id="mels",
                format="png",
            )

        refresh.click(on_refresh, inputs=model, outputs=[model, lineage], api_visibility="private")
        model.change(catalog.details, inputs=model, outputs=lineage, api_visibility="private")
        run.click(
            generate, inputs=[model, seconds, truncation, seed, num_samples, device],
            outputs=[files, mels, summary], api_name="generate", concurrency_limit=1,
        ).success(show_players, inputs=files, outputs=players, api_visibility="private")
    return app


def open_catalog(
    store: str | None, checkpoint: str | None, autoencoder: str | None, base_channels: int | None
) -> ModelCatalog:
    """The store and the command line's checkpoint folder, checked before the page starts.

    The folder's networks are loaded here, so a wrong folder or a base_channels mismatch
    stops the command with its message instead of failing later in the page.
    """
    opened = ArtifactStore.open(store)
    folder_choice = None
    if checkpoint is not None:
        folder_choice = listening.folder_model_choice(
            checkpoint, autoencoder, opened, base_channels
        )
        listening.load_networks(folder_choice)
    elif autoencoder is not None or base_channels is not None:
        raise listening.UnknownModel(
            "--autoencoder and --base-channels go with --checkpoint FOLDER"
        )
    return ModelCatalog(opened, folder_choice)


def launch_app(
    store: str | None,
    host: str = "127.0.0.1",
    port: int = 7860,
    checkpoint: str | None = None,
    autoencoder: str | None = None,
    base_channels: int | None = None,
    open_browser: bool = True,
    *,
    wait: bool = True,
    max_seconds: float = listening.MAX_SECONDS,
) -> Any:
    """Serve the page on host:port; blocks until interrupted unless `wait` is False, in which
    case the running `gr.Blocks` is returned (close it with `.close()`)."""
    catalog = open_catalog(store, checkpoint, autoencoder, base_channels)
    devices = listening.available_devices()
    output_dir = Path(tempfile.mkdtemp(prefix="musika-piano-app-"))
    atexit.register(shutil.rmtree, output_dir, ignore_errors=True)
    app = build_app(catalog, devices, output_dir, max_seconds)
    app.queue(default_concurrency_limit=1)
    app.launch(
        server_name=host, server_port=port, inbrowser=open_browser, share=False,
        prevent_thread_lock=not wait, allowed_paths=[str(output_dir)], ssr_mode=False,
        mcp_server=False, footer_links=["api"], quiet=not wait, show_error=True,
    )
    return app
