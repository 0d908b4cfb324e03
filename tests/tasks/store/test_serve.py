"""The store's read-only HTTP server (tasks/store/serve.py) on a real socket: the store's files
with their content types, HEAD, byte ranges, and every way out of the store refused."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from musika_model.audio import write_wav
from tasks.store import ArtifactStore
from tasks.store.layout import object_rel, report_rel, version_rel
from tasks.store.serve import StoreServer, byte_range
from tests.helpers import piano_like

SECRET = b"outside the store: never served"


@dataclass(frozen=True)
class Served:
    root: Path
    server: StoreServer
    files: dict[str, str]
    """Kind of file -> its path under the root."""

    def request(self, method: str, target: str, headers: dict[str, str] | None = None
                ) -> tuple[http.client.HTTPResponse, bytes]:
        connection = http.client.HTTPConnection(*self.server.server_address[:2], timeout=10)
        try:
            connection.request(method, target, headers=headers or {})
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    def bytes_of(self, kind: str) -> bytes:
        return (self.root / self.files[kind]).read_bytes()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """A store with one object (a WAV, a PNG, latents), a dataset version listing it and its
    report, a secret file beside the root, and the server on a free port."""
    base = tmp_path_factory.mktemp("serve")
    (base / "secret.txt").write_bytes(SECRET)
    store = ArtifactStore(base / "store")
    with store.publish_object("normalize", 1, {"test": "serve"}, ["sha256:" + "a" * 64], item="a") as staged:
        write_wav(staged.dir / "audio.wav", piano_like(1.0, seed=0), 44100)
        (staged.dir / "mel.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
        np.save(staged.dir / "latents.npy", np.arange(512, dtype=np.float32).reshape(4, 128))
    version = store.publish_dataset("served", stage="normalize", params={},
                                    items=[{"item_id": "a", "key": staged.key}])
    store.write_report(version.name, version.version, "<!doctype html><title>served@1</title>")
    root = store.backend.path("")
    folder = object_rel(staged.key)
    (root / "objects" / "link-out").symlink_to(base / "secret.txt")
    files = {"wav": f"{folder}/audio.wav", "png": f"{folder}/mel.png", "npy": f"{folder}/latents.npy",
             "json": version_rel("served", 1), "html": report_rel("served", 1)}
    server = StoreServer(root)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(root, server, files)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("kind", "content_type"), [
    ("html", "text/html; charset=utf-8"), ("wav", "audio/wav"), ("png", "image/png"),
    ("json", "application/json"), ("npy", "application/octet-stream"),
])
def test_get_answers_each_file_whole_with_its_content_type(served, kind, content_type):
    response, body = served.request("GET", "/" + served.files[kind])
    assert response.status == 200
    assert response.getheader("Content-Type") == content_type
    assert response.getheader("Accept-Ranges") == "bytes"
    assert body == served.bytes_of(kind)
    assert int(response.getheader("Content-Length")) == len(body)


def test_head_sends_the_headers_of_get_and_no_body(served):
    response, body = served.request("HEAD", "/" + served.files["wav"])
    assert response.status == 200 and body == b""
    assert response.getheader("Content-Type") == "audio/wav"
    assert int(response.getheader("Content-Length")) == len(served.bytes_of("wav"))
    missing, body = served.request("HEAD", "/datasets/served/reports/000009.html")
    assert missing.status == 404 and body == b""


@pytest.mark.parametrize(("header", "first", "last"), [
    ("bytes=0-1", 0, 1), ("bytes=100-4099", 100, 4099), ("bytes=1000-", 1000, None), ("bytes=-44", -44, None),
])
def test_a_range_request_gets_206_with_exactly_those_bytes(served, header, first, last):
    data = served.bytes_of("wav")
    response, body = served.request("GET", "/" + served.files["wav"], {"Range": header})
    start = first % len(data)
    end = len(data) - 1 if last is None else last
    assert response.status == 206
    assert body == data[start:end + 1]
    assert response.getheader("Content-Range") == f"bytes {start}-{end}/{len(data)}"
    assert response.getheader("Content-Type") == "audio/wav"


def test_a_range_past_the_end_is_416_and_a_range_it_does_not_parse_gets_the_whole_file(served):
    data = served.bytes_of("wav")
    response, _ = served.request("GET", "/" + served.files["wav"], {"Range": f"bytes={len(data)}-"})
    assert response.status == 416 and response.getheader("Content-Range") == f"bytes */{len(data)}"
    for header in ("bytes=0-1,5-9", "lines=1-2", "bytes=9-2x"):
        response, body = served.request("GET", "/" + served.files["wav"], {"Range": header})
        assert (response.status, body) == (200, data)


def test_several_requests_share_one_kept_alive_connection(served):
    connection = http.client.HTTPConnection(*served.server.server_address[:2], timeout=10)
    try:
        for header in ("bytes=0-99", "bytes=100-199"):
            connection.request("GET", "/" + served.files["wav"], headers={"Range": header})
            response = connection.getresponse()
            assert response.status == 206 and len(response.read()) == 100
    finally:
        connection.close()


@pytest.mark.parametrize("target", [
    "/datasets/../../secret.txt",
    "/objects/../../secret.txt",
    "/%2e%2e/secret.txt",
    "/datasets/%2E%2E/%2e%2e/secret.txt",
    "/datasets/..%2f..%2fsecret.txt",
    "/objects//secret.txt",
    "/objects/./link-out",
    "/objects/..%5c..%5csecret.txt",
    "/datasets/../",
    "/objects/link-out%00.wav",
    "/objects/link-out",  # a symlink inside the store that leads out of it
    "http://example.com/objects/link-out",
])
def test_paths_that_leave_the_store_are_forbidden(served, target):
    response, body = served.request("GET", target)
    assert response.status == 403
    assert SECRET not in body


@pytest.mark.parametrize("target", [
    "/",
    "/secret.txt",
    "//secret.txt",  # http.server itself makes a leading // one /
    "/datasets/served/versions/000002.json",
    "/datasets/served/reports/",
    "/datasets/served",
    "/tmp/anything",
    "/manifest.json",
    "/objects/%ff",
])
def test_missing_files_folders_and_the_rest_of_the_root_are_not_found(served, target):
    response, body = served.request("GET", target)
    assert response.status == 404
    assert SECRET not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head_are_allowed(served, method):
    before = served.bytes_of("json")
    response, _ = served.request(method, "/" + served.files["json"])
    assert response.status == 405 and response.getheader("Allow") == "GET, HEAD"
    assert served.bytes_of("json") == before


def test_a_query_string_does_not_change_the_file(served):
    response, body = served.request("GET", "/" + served.files["png"] + "?v=2")
    assert response.status == 200 and body == served.bytes_of("png")


@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 10, None), ("bytes=2-4", 10, (2, 4)), ("bytes=2-40", 10, (2, 9)), ("bytes=-3", 10, (7, 9)),
    ("bytes=-30", 10, (0, 9)), ("bytes=-", 10, None), ("bytes=0-0", 1, (0, 0)),
])
def test_byte_range_reads_single_ranges(header, size, expected):
    assert byte_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=5-2", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_byte_range_refuses_what_cannot_be_satisfied(header, size):
    with pytest.raises(ValueError):
        byte_range(header, size)
