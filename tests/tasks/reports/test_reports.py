"""Reports of evaluation, model, latents and unknown-stage versions built in a real store, the
plots behind them, and the `report` command."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile
from PIL import Image

from tasks.reports import plots
from tasks.reports.page import MAX_CLIPS_PER_SUBJECT
from tasks.reports.report import build_report, write_report
from tasks.store import ArtifactStore
from tests.helpers import run_cli

SR = 44100
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def decoded_images(document: str) -> list[Image.Image]:
    """Every inlined image of a report, opened as PNG (fails on anything else)."""
    images = []
    for encoded in DATA_URI.findall(document):
        picture = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert picture.format == "PNG"
        picture.load()
        images.append(picture)
    return images


def audio_sources(document: str, report: Path) -> list[Path]:
    """The files the report's <audio> elements point at, resolved against the report's folder."""
    sources = re.findall(r'<audio controls preload="none" src="([^"]+)"', document)
    return [(report.parent / unquote(source)).resolve() for source in sources]


def tone(seconds: float, frequency: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    mono = 0.3 * np.sin(2 * np.pi * frequency * t) * np.exp(-t)
    return np.stack([mono, mono], axis=1).astype(np.float32)


# ---- evaluation versions, built per the evaluate stage's contract -------------------------------

METRICS = {
    "onset_density": {"label": "Onset density", "unit": "1/s", "better": "closer"},
    "silence_ratio": {"label": "Silent clips", "unit": "", "better": "lower"},
}


def publish_subject(
    store: ArtifactStore,
    subject: str,
    kind: str,
    frequencies: list[float],
    summary: dict,
    flags: list[str],
    reconstruction: list[dict] | None,
) -> tuple[dict, list[Path]]:
    """The item of `subject` for the version, and the sample files its object holds."""
    clips = []
    with store.publish_object("evaluate", 1, {"subject": subject}, [], item=subject) as staged:
        for index, frequency in enumerate(frequencies):
            file = f"samples/sample-{index:02d}.wav"
            (staged.dir / "samples").mkdir(exist_ok=True)
            soundfile.write(staged.dir / file, tone(1.5, frequency), SR, subtype="FLOAT")
            clips.append(
                {
                    "file": file,
                    "seed": index,
                    "onset_density": 2.0 + index,
                    "flags": ["silent"] if index == 1 else [],
                }
            )
        if not frequencies:
            clips.append({"file": None, "seed": None, "onset_density": 3.0, "flags": []})
        metrics = {
            "subject": subject,
            "kind": kind,
            "summary": summary,
            "clips": clips,
            "flags": flags,
        }
        if reconstruction is not None:
            metrics["reconstruction"] = reconstruction
        (staged.dir / "metrics.json").write_text(json.dumps(metrics))
    item = {
        "item_id": "reference" if kind == "reference" else subject,
        "key": staged.key,
        "stats": summary,
    }
    return item, [store.local_path(staged.key) / clip["file"] for clip in clips if clip["file"]]


class Evaluation(NamedTuple):
    store: ArtifactStore
    ref: str
    players: list[Path]
    """The sample files the report must play: each subject's clips, at most
    MAX_CLIPS_PER_SUBJECT per subject (the reference has none)."""


@pytest.fixture()
def evaluation(tmp_path) -> Evaluation:
    store = ArtifactStore(tmp_path / "store")
    subjects = [
        publish_subject(
            store,
            "piano@3",
            "reference",
            [],
            {"onset_density": 3.0, "silence_ratio": 0.0},
            [],
            None,
        ),
        publish_subject(
            store,
            "demo-gan@2",
            "model",
            [220.0, 330.0],
            {"onset_density": 2.5, "silence_ratio": 0.5},
            ["demo-gan@2: 1/2 samples silent"],
            [{"seconds": 2.0, "lsd_db": 9.0}, {"seconds": 8.0, "lsd_db": 7.5}],
        ),
        publish_subject(
            store,
            "other-gan@1",
            "model",
            [440.0, 550.0],
            {"onset_density": 4.5, "silence_ratio": None},
            [],
            None,
        ),
    ]
    items = [item for item, _ in subjects]
    players = [path.resolve() for _, files in subjects for path in files[:MAX_CLIPS_PER_SUBJECT]]
    assert players, "the fixture must give the report clips to play"
    table = [
        {
            "subject": "piano@3",
            "kind": "reference",
            "onset_density": 3.0,
            "silence_ratio": 0.0,
            "frechet_distance": 0.0,
        },
        {
            "subject": "demo-gan@2",
            "kind": "model",
            "onset_density": 2.5,
            "silence_ratio": 0.5,
            "frechet_distance": 12.5,
        },
        {
            "subject": "other-gan@1",
            "kind": "model",
            "onset_density": 4.5,
            "silence_ratio": None,
            "frechet_distance": 30.25,
        },
    ]
    version = store.publish_dataset(
        "eval-piano",
        stage="evaluate",
        params={
            "checkpoints": ["demo-gan@2", "other-gan@1"],
            "reference": "piano@3",
            "settings": {"seconds": 1.5, "samples": 2},
        },
        items=items,
        stats={"metrics": METRICS, "table": table},
    )
    return Evaluation(store, version.ref, players)


def test_evaluation_report_has_bars_table_flags_and_players(evaluation):
    store, ref, players = evaluation
    location = write_report(store, ref)
    report = Path(location.removeprefix("file://"))
    assert (
        report
        == Path(store.root.removeprefix("file://")) / "datasets/eval-piano/reports/000001.html"
    )
    document = report.read_text()

    images = decoded_images(document)
    # a bar chart per metric and one of the Frechet distance, a mel image per player, 1 LSD plot
    assert len(images) == len(METRICS) + 1 + len(players) + 1
    for caption in (
        "onset_density by subject",
        "silence_ratio by subject",
        "frechet_distance by subject",
        "reconstruction error",
    ):
        assert f'alt="{caption}"' in document
    sources = audio_sources(document, report)
    assert len(sources) == len(players) == 4  # two clips of each model, none of the reference
    assert sorted(sources) == sorted(players)  # each model's clips, each once
    assert all(source.is_file() for source in sources)
    assert "demo-gan@2: 1/2 samples silent" in document
    assert document.count(">silent<") == 2  # the silent second clip of each model
    # onset density is "closer" to the reference 3.0: demo-gan (2.5) beats other-gan (4.5)
    assert '<td class="best num">2.5</td>' in document
    assert '<td class="best num">12.5</td>' in document  # the lower Frechet distance
    assert "<script" not in document and "http://" not in document and "https://" not in document


def test_report_command_copies_the_report_out_and_its_audio_still_plays(evaluation, tmp_path):
    store, ref, players = evaluation
    output = tmp_path / "out" / "eval.html"
    output.parent.mkdir()
    code, out, _ = run_cli("--store", store.root, "report", ref, "--output", str(output), "--json")
    assert code == 0
    assert json.loads(out)["report"].endswith("datasets/eval-piano/reports/000001.html")
    copied = output.read_text()
    base = re.search(r'<base href="file://([^"]+)">', copied).group(1)
    sources = audio_sources(copied, Path(base) / "x.html")  # resolved as a browser does under <base>
    assert len(sources) == len(players) == 4
    assert sorted(sources) == sorted(players)
    assert all(path.is_file() for path in sources)


def test_report_command_refuses_bad_input_in_one_line(evaluation, tmp_path):
    store, ref, _ = evaluation
    missing_folder = str(tmp_path / "no" / "r.html")
    for argv, message in (
        (("report", "nothing@1"), "no dataset named 'nothing'"),
        (("report", "eval-piano@7"), "has no version 7"),
        (("report", ref, "--output", missing_folder), "does not exist"),
        (("report", ref, "--output", str(tmp_path)), "is a folder"),
    ):
        code, out, err = run_cli("--store", store.root, *argv)
        assert (code, out) == (2, "") and message in err and err.count("\n") == 1, argv


# ---- a version of a stage without its own report ------------------------------------------------


def test_unknown_stage_gets_a_generic_report(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    with store.publish_object("mystery", 1, {}, [], item="only") as staged:
        (staged.dir / "data.bin").write_bytes(b"1234")
    version = store.publish_dataset(
        "odd",
        stage="mystery",
        params={"knob": 3, "note": "<script>alert(1)</script> & more"},
        items=[{"item_id": "only-item", "key": staged.key, "stats": {"weight_kg": 4.25}}],
        stats={"total_weight": {"kg": 4.25}},
        failures=[{"item_id": "lost", "stage": "mystery", "reason": "gone: not found"}],
    )
    document = build_report(store, version)
    for expected in (
        "odd@1 (mystery)",
        "only-item",
        "weight_kg",
        "4.25",
        "total_weight.kg",
        "gone: not found",
        "knob",
    ):
        assert expected in document
    assert decoded_images(document) == []
    # values are text: the templates escape them
    assert "<script" not in document and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in document


def test_reports_go_through_the_backend_of_a_remote_store_and_survive_verify_and_gc():
    store = ArtifactStore(f"memory://reports-{uuid.uuid4().hex}/store")
    with store.publish_object("mystery", 1, {}, [], item="only") as staged:
        (staged.dir / "data.bin").write_bytes(b"1234")
    version = store.publish_dataset(
        "remote", stage="mystery", params={}, items=[{"item_id": "only", "key": staged.key}]
    )
    location = write_report(store, version.ref)
    assert location.startswith("memory://") and location.endswith("remote/reports/000001.html")
    assert store.has_report("remote", 1)
    assert store.verify().problems == []
    store.gc(min_age_seconds=0)
    assert store.has_report("remote", 1) and store.has(staged.key)


# ---- latents versions ---------------------------------------------------------------------------


def test_latents_report_shows_frames_and_per_item_spread(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    items = []
    for index, frames in enumerate((40, 75, 120)):
        latents = np.tanh(rng.standard_normal((frames, 128))).astype(np.float32)
        with store.publish_object("encode", 1, {}, [], item=f"i{index}") as staged:
            np.save(staged.dir / "latents.npy", latents)
        items.append(
            {
                "item_id": f"i{index}",
                "key": staged.key,
                "stats": {
                    "latent_frames": frames,
                    "mean": float(latents.mean()),
                    "std": float(latents.std()),
                },
            }
        )
    version = store.publish_dataset("piano-latents", stage="encode", params={}, items=items)
    document = build_report(store, version)
    images = decoded_images(document)
    assert len(images) == 3
    assert 'alt="latent frames histogram"' in document and 'alt="latents of i0"' in document


# ---- model versions from a real tiny training run -----------------------------------------------


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory) -> tuple[ArtifactStore, str, int]:
    """Two epochs of a tiny GAN with a tiny autoencoder (so the checkpoint has wav samples),
    published into the store the way a model version is: a `gan` item of stage "checkpoint";
    with the number of samples the trainer generates per checkpoint."""
    from musika_model.codec import Autoencoder
    from musika_model.config import AutoencoderConfig
    from musika_model.train_config import preset
    from musika_model.training import Trainer
    from musika_model.training_data import LatentSource

    config = preset("tiny", iterations_per_epoch=1)
    rng = np.random.default_rng(0)
    latents = [
        np.tanh(rng.standard_normal((config.gan.latent_length + 20, 128))).astype(np.float32)
    ]
    run_dir = tmp_path_factory.mktemp("run")
    result = Trainer(
        config,
        [LatentSource("piano", latents)],
        run_dir,
        autoencoder=Autoencoder.build(AutoencoderConfig.tiny()),
        lineage={"datasets": ["piano-latents@1"]},
    ).train()
    store = ArtifactStore(tmp_path_factory.mktemp("store"))
    checkpoint = result.last_checkpoint
    with store.publish_object("train", 1, {"run": checkpoint.name}, [], item="gan") as staged:
        shutil.copytree(checkpoint, staged.dir, dirs_exist_ok=True)
    version = store.publish_dataset(
        "tiny-gan",
        stage="checkpoint",
        params={"preset": "tiny"},
        items=[{"item_id": "gan", "key": staged.key, "stats": {"epoch": result.epoch}}],
    )
    return store, version.ref, config.sample_count


@pytest.mark.slow
def test_model_report_of_a_real_training_run_has_loss_curves_and_samples(trained_model):
    store, ref, sample_count = trained_model
    report = Path(write_report(store, ref).removeprefix("file://"))
    document = report.read_text()
    assert 'alt="loss curves"' in document
    checkpoint = store.local_path(store.resolve(ref).items[0].key)
    state = json.loads((checkpoint / "training_state.json").read_text())
    assert len(state["history"]) == 2
    for name in ("critic_real", "critic_fake", "generator", "r1_penalty"):
        assert f"<th>{name}</th>" in document  # the per-epoch table beside the curves
    # the wav of each sample the trainer made (with the autoencoder), up to the report's limit
    wavs = sorted(path.resolve() for path in (checkpoint / "samples").glob("*.wav"))
    assert len(wavs) == sample_count >= 1
    samples = audio_sources(document, report)
    assert len(samples) == min(sample_count, MAX_CLIPS_PER_SUBJECT)
    assert set(samples) <= set(wavs) and len(set(samples)) == len(samples)
    assert all(path.is_file() and path.suffix == ".wav" for path in samples)
    # the loss curves plus one mel image per sample
    assert len(decoded_images(document)) == 1 + len(samples)


def test_imported_official_model_shows_its_network_summary(tmp_path):
    from tasks.checkpoint_import.stage import import_official_checkpoint
    from tests.helpers import write_official_tiny_model

    store = ArtifactStore(tmp_path / "store")
    version = import_official_checkpoint(
        store, write_official_tiny_model(tmp_path / "official"), "official-tiny"
    )
    document = build_report(store, version)
    assert "Model official-tiny@1" in document
    assert "autoencoder (key" in document and "gan (key" in document
    assert document.index("gan (key") < document.index("autoencoder (key")  # the GAN's section first
    for name, value in version.items[1].stats.items():
        if isinstance(value, (int, str)):
            assert f">{value}<" in document, name


def test_a_model_trained_here_shows_its_gan_training_before_its_autoencoders(tmp_path):
    """A version holds the autoencoder item first (as training publishes it): its GAN's section,
    what the model plays, still comes first."""
    from musika_model.checkpoints import STATE_FILE
    from tasks.pipeline.models import AUTOENCODER_ITEM, GAN_ITEM
    from tasks.train.autoencoder import HISTORY_FILE

    store = ArtifactStore(tmp_path / "store")
    with store.publish_object("train-autoencoder", 1, {}, [], item=AUTOENCODER_ITEM) as staged:
        history = [{"step": step, "stage1/reconstruction": 1.0 / step} for step in (1, 2)]
        (staged.dir / HISTORY_FILE).write_text(json.dumps(history))
    autoencoder = {"item_id": AUTOENCODER_ITEM, "key": staged.key}
    with store.publish_object("gan-checkpoint", 1, {}, [], item=GAN_ITEM) as staged:
        history = [{"epoch": epoch, "generator": 1.0 / epoch, "lr": 1e-4} for epoch in (1, 2)]
        (staged.dir / STATE_FILE).write_text(json.dumps({"epoch": 2, "step": 8, "history": history}))
    gan = {"item_id": GAN_ITEM, "key": staged.key}
    version = store.publish_dataset("piano-gan", stage="checkpoint", params={}, items=[autoencoder, gan])
    document = build_report(store, version)
    assert document.index("<h2>GAN training</h2>") < document.index("<h2>Autoencoder training</h2>")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium "
                    "(scripts/setup.sh --tests installs it)")
def test_a_wide_table_scrolls_inside_its_box_not_the_page(tmp_path):
    from playwright.sync_api import sync_playwright

    store = ArtifactStore(tmp_path / "store")
    with store.publish_object("mystery", 1, {}, [], item="wide") as staged:
        (staged.dir / "data.bin").write_bytes(b"1234")
    version = store.publish_dataset("wide", stage="mystery", params={"token": "x" * 400},
                                    items=[{"item_id": "wide", "key": staged.key, "stats": {"id": "y" * 400}}])
    report = Path(write_report(store, version.ref).removeprefix("file://"))
    document = report.read_text()
    assert document.count("<table>") == document.count('<div class="table-scroll"><table>') > 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto(report.as_uri())
            page_scrolls = page.evaluate(
                "document.documentElement.scrollWidth > document.documentElement.clientWidth")
            boxes = page.evaluate("[...document.querySelectorAll('table')].map(table => "
                                  "table.parentElement.scrollWidth > table.parentElement.clientWidth)")
        finally:
            browser.close()
    assert not page_scrolls
    assert any(boxes)  # the tables of 400-character values scroll in their boxes


# ---- plots --------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    picture = Image.open(io.BytesIO(data))
    assert picture.format == "PNG"
    return picture.size


def test_histogram_skips_non_finite_values_and_draws_empty_series():
    assert plots.finite_values([1, float("nan"), None, float("-inf"), True, "x", 2.5]) == [1.0, 2.5]
    assert png_size(plots.histogram_png({"a": [1.0, float("nan"), 2.0], "b": [3.0]}, "t", "x"))
    assert png_size(plots.histogram_png({"a": []}, "nothing", "x"))
    assert png_size(plots.histogram_png({"a": [5.0, 5.0]}, "one value", "x"))


def test_bar_and_line_charts_accept_missing_values():
    wide = plots.bar_chart_png(
        {f"model-{i}@1": (None if i == 2 else i) for i in range(12)}, "m", "unit", reference=3.0
    )
    narrow = plots.bar_chart_png({"a@1": 1.0}, "m", "unit")
    assert png_size(wide)[0] > png_size(narrow)[0]  # the figure widens with the subjects
    curves = plots.line_chart_png(
        {"loss": ([1, 2, 3], [0.5, float("nan"), 0.25])},
        "t",
        "epoch",
        "loss",
        secondary=("lr", [1, 2, 3], [1e-4, 1e-4, 5e-5]),
        markers=[(2.0, "divergence at step 8")],
    )
    assert png_size(curves)


def test_array_image_refuses_what_is_not_2d():
    assert png_size(plots.array_image_png(np.zeros((4, 6)), "t", "x", "y", "v"))
    with pytest.raises(ValueError, match="2-D"):
        plots.array_image_png(np.zeros(5), "t", "x", "y", "v")
