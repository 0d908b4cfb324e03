"""A read-only HTTP view of a local store, so that artifact links open in a browser
(`musika-piano serve`; the links: tasks/store/links.py).

`GET`/`HEAD` of `/<rel>` answer the file `<root>/<rel>` for paths under `datasets/` (version
manifests, reports) and `objects/` (audio, images, latents); nothing else of the root (staging,
quarantine) is served, no folder is listed (404) and every other method is refused (405). A path
with a `.`, `..` or empty segment (also percent-encoded, `%2e%2e`) or a backslash is refused
with 403, as is a file whose real path (symlinks followed) leaves its served folder. Byte ranges
(`Range: bytes=...`) are answered with 206: browsers' <audio> elements ask for them to seek and
play."""

from __future__ import annotations

import mimetypes
import os
import re
import socket
import sys
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from tasks.store.layout import DATASETS_DIR, OBJECTS_DIR

SERVED_DIRS = frozenset({DATASETS_DIR, OBJECTS_DIR})
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".png": "image/png",
    ".npy": "application/octet-stream",
    ".npz": "application/octet-stream",
    ".txt": "text/plain; charset=utf-8",
}
"""The store's file types; others get what `mimetypes` guesses, else application/octet-stream."""
CHUNK_BYTES = 1 << 16
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class Refused(Exception):
    """A request path the server does not answer: `status` is 403 or 404."""

    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status.phrase)
        self.status = status


def content_type(path: Path) -> str:
    known = CONTENT_TYPES.get(path.suffix.lower())
    return known or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def resolve_request_path(root: Path, target: str) -> Path:
    """The regular file of `root` that the request target `target` (path and query, as in the
    request line) names; `root` must be resolved already. Raises `Refused`."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    if path == "/":
        raise Refused(HTTPStatus.NOT_FOUND)
    if not path.startswith("/"):  # absolute-form (`GET http://...`) or garbage
        raise Refused(HTTPStatus.FORBIDDEN)
    segments = unquote(path[1:], errors="strict").split("/")
    folder = segments[-1] == ""  # `.../`: no listings
    if folder:
        segments.pop()
    if any(segment in ("", ".", "..") or "\\" in segment or "\0" in segment for segment in segments):
        raise Refused(HTTPStatus.FORBIDDEN)
    if folder or segments[0] not in SERVED_DIRS:
        raise Refused(HTTPStatus.NOT_FOUND)
    real = Path(os.path.realpath(root.joinpath(*segments)))
    if not real.is_relative_to(root / segments[0]):
        raise Refused(HTTPStatus.FORBIDDEN)
    if not real.is_file():
        raise Refused(HTTPStatus.NOT_FOUND)
    return real


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte of a single `Range: bytes=...` header over a file of `size`
    bytes; None when the whole file is to be sent (no header, a malformed one, several ranges).
    Raises ValueError when the range is not satisfiable (416)."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    start, end = match.groups()
    if not start and not end:
        return None
    if not start:  # the last `end` bytes
        suffix = int(end)
        if suffix == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(size - suffix, 0), size - 1
    first = int(start)
    last = min(int(end), size - 1) if end else size - 1
    if first >= size or (end and int(end) < first):
        raise ValueError(f"range {header} outside {size} bytes")
    return first, last


class StoreRequestHandler(BaseHTTPRequestHandler):
    """Answers GET and HEAD from `server.root` (a `StoreServer`)."""

    server: StoreServer
    server_version = "musika-piano-serve"
    protocol_version = "HTTP/1.1"  # keep-alive: a player's range requests reuse one connection

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _refuse_method(self) -> None:
        self.close_connection = True  # any request body stays unread
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _status_only(self, status: HTTPStatus, send_body: bool, **headers: str) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _answer(self, send_body: bool) -> None:
        try:
            path = resolve_request_path(self.server.root, self.path)
        except Refused as refusal:
            self._status_only(refusal.status, send_body)
            return
        except UnicodeDecodeError:  # percent-encoded bytes that are no UTF-8
            self._status_only(HTTPStatus.NOT_FOUND, send_body)
            return
        try:
            with open(path, "rb") as handle:
                self._answer_file(handle, content_type(path), send_body)
        except (FileNotFoundError, PermissionError):  # gone (gc) or unreadable since the check
            self._status_only(HTTPStatus.NOT_FOUND, send_body)

    def _answer_file(self, handle: BinaryIO, media_type: str, send_body: bool) -> None:
        status = os.fstat(handle.fileno())
        size = status.st_size
        try:
            span = byte_range(self.headers.get("Range"), size)
        except ValueError:
            self._status_only(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, send_body,
                              Content_Range=f"bytes */{size}")
            return
        first, last = span if span is not None else (0, size - 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if span is not None else HTTPStatus.OK)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        if span is not None:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Last-Modified", self.date_time_string(int(status.st_mtime)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if send_body:
            handle.seek(first)
            self._send_file(handle, last - first + 1)

    def _send_file(self, source: BinaryIO, length: int) -> None:
        """`length` bytes of `source`; should the file end early, the connection is closed, so
        the client sees a short answer rather than waiting for the rest."""
        remaining = length
        while remaining > 0:
            chunk = source.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                self.close_connection = True
                return
            self.wfile.write(chunk)
            remaining -= len(chunk)

    def log_message(self, format: str, *args: object) -> None:
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")


class StoreServer(ThreadingHTTPServer):
    """The store's HTTP server: one thread per connection, daemon threads."""

    daemon_threads = True

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0,
                 log: Callable[[str], object] | None = None) -> None:
        """Bind `host:port` (port 0: any free port) for the local store at `root`; `log` gets
        one line per request. Run it with `serve_forever`."""
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.root = root.resolve()
        self.log = log
        super().__init__((host, port), StoreRequestHandler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A browser that drops a connection (it does for audio it has buffered) is no error."""
        if not isinstance(sys.exception(), (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        """The base URL the server answers at (with the port the system chose for port 0)."""
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in str(host) else host
        return f"http://{shown}:{port}"

