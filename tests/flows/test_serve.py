"""`musika-piano serve` and the links of Prefect artifacts: without MUSIKA_PIANO_PUBLIC_URL the
artifacts show store paths to copy, with it they link into the server, and the report's link,
read from the Prefect API, opens in a browser where its audio plays."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from musika_model.audio import write_wav
from tasks.pipeline.artifact_keys import artifact_key
from tasks.pipeline.batching import ItemOutcome
from tasks.pipeline.publishing import publish_dataset_version
from tasks.reports.report import report_artifact_key
from tasks.store import ArtifactStore
from tasks.store.layout import report_rel, version_rel
from tasks.store.links import ENV_PUBLIC_URL
from tasks.store.serve import StoreServer
from tests.e2e.prefect_helpers import api, running_server
from tests.helpers import piano_like, run_cli

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
PLAY_AUDIO = """async audio => {
    audio.muted = true;
    await audio.play();
    const started = performance.now();
    while (audio.currentTime < 0.3 && !audio.error && performance.now() - started < 10000) {
        await new Promise(resolve => setTimeout(resolve, 50));
    }
    return {time: audio.currentTime, ready: audio.readyState, error: audio.error && audio.error.code,
            duration: audio.duration};
}"""
"""Play an <audio> (muted, as autoplay allows) until 0.3 s have played, an error or 10 s: what it reached."""


@flow
def publish_items(store_root: str, name: str, keys: list[str]) -> dict:
    """A normalize version of `keys` through the task every dataset flow publishes with (its
    table, location and report artifacts)."""
    outcomes = [ItemOutcome(item_id=f"clip-{index}", key=key, stage="normalize", status="computed",
                            stats={"duration_s": 2.0}) for index, key in enumerate(keys)]
    return publish_dataset_version(store_root, name, "normalize", {}, outcomes, [], {"sources": []})


def publish(store_root: Path) -> tuple[ArtifactStore, str]:
    """Two 2 s clips published as a new dataset (artifact keys outlive a test: a name of its own);
    returns the store and the version's ref."""
    store = ArtifactStore(store_root)
    keys = []
    for seed in range(2):
        with store.publish_object("normalize", 1, {"test": "serve"}, [f"sha256:{seed:064x}"],
                                  item=f"clip-{seed}") as staged:
            write_wav(staged.dir / "audio.wav", piano_like(2.0, seed), 44100)
        keys.append(staged.key)
    result = publish_items(str(store_root), f"served-{uuid.uuid4().hex[:8]}", keys)
    return store, result["ref"]


def artifact_text(key: str) -> str:
    """The newest artifact of `key` as the UI shows it: its data and description."""
    with get_client(sync_client=True) as client:
        (artifact, *_) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return f"{artifact.data}\n{artifact.description or ''}"


def artifacts_of(name: str) -> dict[str, str]:
    keys = {"table": artifact_key(name), "location": f"{artifact_key(name)}-location",
            "report": report_artifact_key(name)}
    return {kind: artifact_text(key) for kind, key in keys.items()}


@pytest.fixture()
def store_server(tmp_path) -> Iterator[StoreServer]:
    """The server of a fresh store folder, in a thread, on a free port."""
    (tmp_path / "store").mkdir()
    server = StoreServer(tmp_path / "store")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_without_a_public_url_artifacts_show_store_paths_to_copy(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_PUBLIC_URL, raising=False)
    store, ref = publish(tmp_path / "store")
    name, version = ref.split("@")[0], int(ref.split("@")[1])
    shown = artifacts_of(name)
    assert not any("file:" in text or MARKDOWN_LINK.search(text) for text in shown.values())
    manifest = store.backend.path(version_rel(name, version))
    report = store.backend.path(report_rel(name, version))
    assert f"Manifest: `{manifest}`" in shown["table"]
    assert f"{ref}: `{manifest}`" in shown["location"]
    assert f"report of {ref}: `{report}`" in shown["report"]
    assert manifest.is_file() and report.is_file()


def test_with_a_public_url_every_artifact_links_into_serve_and_the_links_answer(
    store_server, monkeypatch
):
    monkeypatch.setenv(ENV_PUBLIC_URL, store_server.url + "/")
    store, ref = publish(store_server.root)
    name, version = ref.split("@")[0], int(ref.split("@")[1])
    shown = artifacts_of(name)
    links = {kind: MARKDOWN_LINK.findall(text) for kind, text in shown.items()}
    assert links == {
        "table": [("Manifest", f"{store_server.url}/{version_rel(name, version)}")],
        "location": [(ref, f"{store_server.url}/{version_rel(name, version)}")],
        "report": [(f"report of {ref}", f"{store_server.url}/{report_rel(name, version)}")],
    }
    for rel, [(_, url)] in ((version_rel(name, version), links["location"]), (report_rel(name, version), links["report"])):
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == store.backend.path(rel).read_bytes()


def test_serve_refuses_a_taken_port_a_remote_store_and_a_bad_public_url_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_PUBLIC_URL, raising=False)
    (tmp_path / "store").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_cli("--store", str(tmp_path / "store"), "serve", "--port", str(port))
    assert (code, err) == (2, f"musika-piano: port {port} on 127.0.0.1 is in use; pick another with --port\n")

    code, _, err = run_cli("--store", "memory://remote-store", "serve")
    assert code == 2 and err.startswith("musika-piano: serve needs a local store") and err.count("\n") == 1

    monkeypatch.setenv(ENV_PUBLIC_URL, "127.0.0.1:8765")
    code, _, err = run_cli("--store", str(tmp_path / "store"), "serve", "--port", "0")
    assert code == 2 and err.startswith(f"musika-piano: {ENV_PUBLIC_URL} must be") and err.count("\n") == 1


@pytest.fixture()
def serve_process(tmp_path) -> Iterator[tuple[Path, str]]:
    """`musika-piano serve --port 0` of a fresh store in a process of its own: (store root, the
    URL it printed)."""
    root = tmp_path / "store"
    root.mkdir()
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop(ENV_PUBLIC_URL, None)
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main())",
         "--store", str(root), "serve", "--port", "0"],
        cwd=PROJECT_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        first = process.stdout.readline()
        found = re.search(r"read-only at (http://127\.0\.0\.1:\d+)/", first)
        assert found, f"serve printed {first!r} (exit code {process.poll()})"
        assert f"{ENV_PUBLIC_URL}={found.group(1)}" in process.stdout.readline()
        yield root, found.group(1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(timeout=10) == 0  # Ctrl-C stops it cleanly
        finally:
            process.kill()
            process.stdout.close()


@pytest.mark.slow  # ~10 s: a report with players, the serve command's start, a headless Chromium
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium "
                    "(scripts/setup.sh --tests installs it)")
def test_the_report_link_of_the_artifact_opens_in_a_browser_and_its_audio_plays(serve_process, monkeypatch):
    from playwright.sync_api import sync_playwright

    root, url = serve_process
    monkeypatch.setenv(ENV_PUBLIC_URL, url)
    _, ref = publish(root)
    [(_, link)] = MARKDOWN_LINK.findall(artifact_text(report_artifact_key(ref.split("@")[0])))
    assert link.startswith(url + "/datasets/")

    answers: list[tuple[str, int]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("response", lambda response: answers.append((response.url, response.status)))
            page.goto(link, wait_until="load")
            assert ref in page.title()
            players = page.locator("audio")
            assert players.count() == 2
            played = players.first.evaluate(PLAY_AUDIO)
        finally:
            browser.close()
    assert played["error"] is None and played["ready"] >= 2
    assert played["time"] >= 0.3 and abs(played["duration"] - 2.0) < 0.05
    audio_answers = [status for address, status in answers if address.endswith("/audio.wav")]
    assert audio_answers and set(audio_answers) <= {200, 206} and 206 in audio_answers
    assert all(address.startswith(url) for address, _ in answers)  # nothing from anywhere else


PUBLISH_IN_A_PROCESS = ("import sys; from pathlib import Path; from tests.flows.test_serve import publish; "
                        "print(publish(Path(sys.argv[1]))[1])")
"""`publish` into the store at argv[1], against the Prefect API of the environment: prints the ref."""


@pytest.fixture()
def prefect_server_with_ui(tmp_path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `prefect server start` with its UI (v2, the default at /, and v1): (its URL, the
    environment of a process that uses it)."""
    with running_server(tmp_path, timeout=90, PREFECT_SERVER_ANALYTICS_ENABLED="false",
                        PREFECT_UI_STATIC_DIRECTORY=str(tmp_path / "prefect-ui"),  # not the copy in site-packages
                        ) as (api_url, environment):
        yield api_url.removesuffix("/api"), environment


def open_in_the_same_tab_or_a_new_one(link: Locator) -> Page:
    """Click `link` (a playwright Locator) as a user does and return the page it opened: a new
    one for target=_blank (Prefect's v1 UI), else the same (v2)."""
    page = link.page
    if link.get_attribute("target") == "_blank":
        with page.context.expect_page() as opened:
            link.click()
        return opened.value
    link.click()
    return page


@pytest.mark.slow  # ~30 s: `prefect server start`, a flow run in a process of its own, `serve`, Chromium
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium "
                    "(scripts/setup.sh --tests installs it)")
def test_from_the_prefect_ui_the_report_artifact_opens_and_its_audio_plays(prefect_server_with_ui, serve_process):
    from playwright.sync_api import sync_playwright

    server, environment = prefect_server_with_ui
    root, url = serve_process
    published = subprocess.run(
        [sys.executable, "-c", PUBLISH_IN_A_PROCESS, str(root)],
        cwd=PROJECT_ROOT, env={**environment, ENV_PUBLIC_URL: url}, capture_output=True, text=True, timeout=180,
        check=False,
    )
    assert published.returncode == 0, published.stderr[-3000:]
    ref = published.stdout.strip().splitlines()[-1]
    name, version = ref.split("@")[0], int(ref.split("@")[1])
    report_url = f"{url}/{report_rel(name, version)}"
    [artifact] = api(f"{server}/api", "POST", "/artifacts/filter",
                     {"artifacts": {"key": {"any_": [report_artifact_key(name)]}}})
    run = api(f"{server}/api", "GET", f"/flow_runs/{artifact['flow_run_id']}")
    assert (run["state_type"], artifact["type"]) == ("COMPLETED", "markdown"), (run, artifact)

    uis = {"v2": f"{server}/v2/artifacts/artifact/{artifact['id']}",  # the UI / opens
           "v1": f"{server}/artifacts/artifact/{artifact['id']}"}  # the run's "View at" links
    seen: dict[str, dict] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for ui, artifact_page in uis.items():
                context = browser.new_context()  # its own cache: the report answers 200 each time
                # offline: the v2 UI asks amplitude.com for a config whatever the analytics setting
                context.route(lambda address: address.startswith("http")
                              and not address.startswith((f"{server}/", f"{url}/")), lambda route: route.abort())
                answers: list[tuple[str, int]] = []
                context.on("response", lambda response, answers=answers: answers.append((response.url, response.status)))
                page = context.new_page()
                page.goto(artifact_page, wait_until="load")
                link = page.get_by_role("link", name=f"report of {ref}", exact=True)
                link.wait_for(timeout=30_000)
                assert link.count() == 1 and link.get_attribute("href") == report_url, ui
                report = open_in_the_same_tab_or_a_new_one(link)
                report.wait_for_url(report_url, wait_until="load", timeout=30_000)
                assert ref in report.title(), (ui, report.title())
                players = report.locator("audio")
                seen[ui] = {"players": players.count(), "played": players.first.evaluate(PLAY_AUDIO),
                            "fetched": report.evaluate("performance.getEntriesByType('resource').map(e => e.name)"),
                            "tabs": len(context.pages), "audio": [status for address, status in answers
                                                                  if address.startswith(url) and address.endswith("/audio.wav")],
                            "report": [status for address, status in answers if address == report_url]}
                context.close()
        finally:
            browser.close()
    for ui, found in seen.items():
        played = found["played"]
        assert found["players"] == 2 and found["report"] == [200], (ui, found)
        assert played["error"] is None and played["ready"] >= 2 and played["time"] >= 0.3, (ui, played)
        assert abs(played["duration"] - 2.0) < 0.05, (ui, played)
        assert found["audio"] and set(found["audio"]) <= {200, 206} and 206 in found["audio"], (ui, found)
        assert all(address.startswith(url) for address in found["fetched"]), (ui, found)  # the report: serve only
    assert seen["v1"]["tabs"] == 2 and seen["v2"]["tabs"] == 1, seen  # v1 opens a tab, v2 follows in its own
