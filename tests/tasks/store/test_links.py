"""How artifacts show a store file (tasks/store/links.py): a URL under MUSIKA_PIANO_PUBLIC_URL,
else the path or URI to copy, never a `file://` link."""

from __future__ import annotations

import uuid

import pytest

from tasks.store import ArtifactStore
from tasks.store.links import ENV_PUBLIC_URL, InvalidPublicUrl, StoreLink, store_link

REPORT = "datasets/piano/reports/000001.html"


def test_without_a_public_url_a_local_file_is_its_path_as_copyable_text(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_PUBLIC_URL, raising=False)
    link = store_link(ArtifactStore(tmp_path / "store"), REPORT)
    assert link == StoreLink(str(tmp_path / "store" / REPORT), is_url=False)
    assert link.markdown("report of piano@1") == f"report of piano@1: `{tmp_path}/store/{REPORT}`"


@pytest.mark.parametrize("base", ["http://127.0.0.1:8765", "http://127.0.0.1:8765/", " https://lab.example/store/ "])
def test_with_a_public_url_a_local_file_is_a_link_under_it(tmp_path, monkeypatch, base):
    monkeypatch.setenv(ENV_PUBLIC_URL, base)
    link = store_link(ArtifactStore(tmp_path / "store"), REPORT)
    expected = f"{base.strip().rstrip('/')}/{REPORT}"
    assert link == StoreLink(expected, is_url=True)
    assert link.markdown("report of piano@1") == f"[report of piano@1]({expected})"


def test_the_url_quotes_what_a_url_cannot_hold(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_PUBLIC_URL, "http://127.0.0.1:8765")
    link = store_link(ArtifactStore(tmp_path / "store"), "objects/ab/abc/sample one (1).wav")
    assert link.location == "http://127.0.0.1:8765/objects/ab/abc/sample%20one%20%281%29.wav"


def test_a_remote_store_keeps_its_uri_as_text_even_with_a_public_url(monkeypatch):
    monkeypatch.setenv(ENV_PUBLIC_URL, "http://127.0.0.1:8765")
    store = ArtifactStore(f"memory://links-{uuid.uuid4().hex[:8]}")
    link = store_link(store, REPORT)
    assert link == StoreLink(f"{store.root}/{REPORT}", is_url=False)
    assert link.location.startswith("memory://")


@pytest.mark.parametrize("value", ["127.0.0.1:8765", "file:///srv/store", "http://"])
def test_a_public_url_that_is_no_http_url_is_refused_naming_the_setting(tmp_path, monkeypatch, value):
    monkeypatch.setenv(ENV_PUBLIC_URL, value)
    with pytest.raises(InvalidPublicUrl, match=f"{ENV_PUBLIC_URL} must be .* got '{value}'"):
        store_link(ArtifactStore(tmp_path / "store"), REPORT)


def test_an_empty_public_url_counts_as_unset(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_PUBLIC_URL, "  ")
    assert not store_link(ArtifactStore(tmp_path / "store"), REPORT).is_url
