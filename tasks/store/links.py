"""How a file of the store is shown in Prefect artifacts: a URL a browser opens, or text to copy.

Browsers refuse `file://` links from a web page (the Prefect UI), so a local store's files are
linked through `musika-piano serve` (tasks/store/serve.py) at `$MUSIKA_PIANO_PUBLIC_URL`: the
file at `<store root>/<rel>` is `<public url>/<rel>`. Without that setting a local file is shown
as its path, and a file of a remote store (s3://, gs://, ...) as its URI, both to copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from tasks.store.errors import StoreError
from tasks.store.objects import ObjectStore

ENV_PUBLIC_URL = "MUSIKA_PIANO_PUBLIC_URL"


class InvalidPublicUrl(StoreError, ValueError):
    """`$MUSIKA_PIANO_PUBLIC_URL` is set but is not an http(s) URL."""


def public_url() -> str | None:
    """`$MUSIKA_PIANO_PUBLIC_URL` without its trailing slash, or None when unset or empty."""
    configured = os.environ.get(ENV_PUBLIC_URL, "").strip()
    if not configured:
        return None
    parts = urlsplit(configured)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidPublicUrl(
            f"{ENV_PUBLIC_URL} must be the http(s) URL where `musika-piano serve` answers "
            f"(e.g. http://127.0.0.1:8765), got {configured!r}"
        )
    return configured.rstrip("/")


@dataclass(frozen=True)
class StoreLink:
    """A store file as an artifact shows it: `location` is a URL when `is_url`, else a path or
    URI to copy."""

    location: str
    is_url: bool

    def markdown(self, text: str) -> str:
        """A markdown link named `text`, or `text` followed by the location as code to copy."""
        return f"[{text}]({self.location})" if self.is_url else f"{text}: `{self.location}`"


def store_link(store: ObjectStore, rel: str) -> StoreLink:
    """The file at `rel` (a POSIX path under the store root) as artifacts show it: under the
    public URL for a local store when one is set, else its local path or remote URI."""
    if not store.is_local:
        return StoreLink(store.backend.uri(rel), is_url=False)
    base = public_url()
    if base is None:
        return StoreLink(str(store.backend.path(rel)), is_url=False)
    return StoreLink(f"{base}/{quote(rel)}", is_url=True)
