"""The generation page served for real on 127.0.0.1: its HTTP API through gradio_client and
the page itself in a headless Chromium (Playwright)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from flows.app.listening import user_errors
from flows.app.ui import build_app, launch_app, open_catalog
from flows.cli.commands import main
from tasks.checkpoint_import.stage import import_official_checkpoint
from tasks.store import ArtifactStore
from tests.helpers import write_official_tiny_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SAMPLE_RATE = 44100


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> tuple[str, Path]:
    """A store root holding the tiny model as `tiny@1`, and the official folder it came from."""
    root = tmp_path_factory.mktemp("app")
    folder = write_official_tiny_model(root / "tiny")
    import_official_checkpoint(ArtifactStore(root / "store"), folder, "tiny")
    return str(root / "store"), folder


@pytest.fixture(scope="module")
def app_url(model_folder) -> Iterator[str]:
    """The page, offering the checkpoint folder and the store model, on a free local port."""
    store, folder = model_folder
    port = _free_port()
    app = launch_app(store, "127.0.0.1", port, checkpoint=str(folder), base_channels=16,
                     open_browser=False, wait=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def test_http_api_generates_audio_of_the_asked_length(app_url):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    assert "/generate" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    wavs, mels, summary = client.predict(
        "tiny@1", 2.0, 2.0, 5, 2, "cpu", api_name="/generate"
    )
    assert len(wavs) == 2 and len(mels) == 2
    for wav in wavs:
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.frames) == (SAMPLE_RATE, 2, 2 * SAMPLE_RATE)
    assert all(Path(mel["image"]).read_bytes().startswith(b"\x89PNG") for mel in mels)
    assert "2 x 2 s from **tiny@1**, seed 5" in summary
    with pytest.raises(AppError, match="length must be more than 0 s, got 0 s"):
        client.predict("tiny@1", 0, 2.0, 5, 1, "cpu", api_name="/generate")
    with pytest.raises(AppError, match="greater than maximum value 16"):
        client.predict("tiny@1", 2.0, 2.0, 5, 40, "cpu", api_name="/generate")


@pytest.mark.slow  # ~25 s alone (first generation traces the networks), ~8 s after the API test
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium "
                    "(scripts/setup.sh --tests installs it)")
def test_page_in_a_browser_generates_refuses_zero_seconds_and_refreshes_models(
    app_url, model_folder
):
    from playwright.sync_api import expect, sync_playwright

    hosts: set[str] = set()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
            page.goto(app_url, wait_until="networkidle")
            expect(page.locator("#lineage")).to_contain_text("official checkpoint folder")

            page.locator("#model input").click()
            page.get_by_role("option", name="tiny@1").click()
            expect(page.locator("#lineage")).to_contain_text("imported model")
            page.locator("#length input").fill("2")
            page.locator("#generate").click()

            # the player's <audio> sits in a shadow root (selectors pierce it; querySelector not)
            player = page.wait_for_selector("audio[src^='blob:']", state="attached",
                                            timeout=60_000)
            page.wait_for_function("audio => Math.abs(audio.duration - 2) < 0.05", arg=player,
                                   timeout=15_000)
            mel = page.locator("#mels img").first
            expect(mel).to_have_attribute("src", re.compile(r"/gradio_api/file=.*\.png$"))
            page.wait_for_function("image => image.complete && image.naturalWidth > 200",
                                   arg=mel.element_handle())
            expect(page.locator("#summary")).to_contain_text("1 x 2 s from tiny@1")

            page.locator("#length input").fill("0")
            page.locator("#generate").click()
            expect(page.get_by_text("length must be more than 0 s")).to_be_visible()

            store = ArtifactStore(model_folder[0])
            items = [item.to_dict() for item in store.resolve("tiny@1").items]
            store.publish_dataset("tiny-copy", stage="train", params={}, items=items)
            page.locator("#refresh").click()
            page.locator("#model input").click()
            expect(page.get_by_role("option", name="tiny-copy@1")).to_be_visible()
        finally:
            browser.close()
    assert hosts == {app_url.split("/")[2]}  # nothing fetched from anywhere but the app


def test_checkpoint_with_other_base_channels_stops_the_command_as_a_user_error(model_folder, capsys):
    store, folder = model_folder
    code = main(["--store", store, "app", "--checkpoint", str(folder), "--base-channels", "32", "--no-browser"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("musika-piano: ") and err.count("\n") == 1
    assert "base_channels=16" in err and "base_channels=32" in err


def test_the_page_opens_on_the_store_model_published_last(model_folder, tmp_path):
    """The model list goes by name; the page opens on the newest model, not on the first."""
    _, folder = model_folder
    store = ArtifactStore(tmp_path / "store")
    for name in ("a-older", "b-newer"):
        import_official_checkpoint(store, folder, name)
    catalog = open_catalog(store.root, None, None, None)
    newest = max(catalog.choices, key=lambda choice: store.resolve(choice.value).created_at).value
    assert newest != catalog.choices[0].value
    page = build_app(catalog, ["cpu"], tmp_path / "generated", 10.0)
    shown = {block.elem_id: block for block in page.blocks.values() if getattr(block, "elem_id", None)}
    assert shown["model"].value == newest
    assert f"**{newest}**" in shown["lineage"].value


def test_autoencoder_without_checkpoint_is_refused(model_folder):
    store, _ = model_folder
    with pytest.raises(user_errors(), match="go with --checkpoint FOLDER"):
        open_catalog(store, None, "tiny@1", None)


def test_a_taken_port_is_one_line_naming_the_flag(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "--port", str(port), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err == f"musika-piano: port {port} on 127.0.0.1 is in use; pick another with --port\n"
