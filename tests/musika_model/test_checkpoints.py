"""Importing official-layout Musika weight folders into the store (`musika-piano import-musika`)."""

from __future__ import annotations

import json

import pytest

from flows.cli.commands import main
from musika_model.config import AutoencoderConfig, GanConfig
from musika_model.networks import build_autoencoder, build_gan
from musika_model.official import save_autoencoder_weights, save_gan_weights, write_switch
from tasks.store import ArtifactStore


@pytest.fixture(scope="module")
def official_folder(tmp_path_factory):
    """A folder in the official file layout, written from tiny networks."""
    folder = tmp_path_factory.mktemp("official")
    save_autoencoder_weights(folder, build_autoencoder(AutoencoderConfig.tiny()))
    gan = build_gan(GanConfig(base_channels=16))
    save_gan_weights(folder, gan.generator, gan.generator_ema, gan.critic)
    write_switch(folder / "switch.npy", -0.25)
    return folder


def test_import_publishes_each_network_set_once(official_folder, tmp_path, capsys):
    store = ArtifactStore(str(tmp_path / "store"))
    argv = ["--store", store.root, "import-musika", str(official_folder), "--name", "tiny-official", "--json"]
    assert main(argv) == 0
    version = json.loads(capsys.readouterr().out)
    assert version["ref"] == "tiny-official@1" and version["created"]
    items = {item["item_id"]: item for item in version["items"]}
    assert set(items) == {"autoencoder", "gan"}
    assert items["gan"]["stats"]["config"]["base_channels"] == 16
    assert items["gan"]["stats"]["switch"] == pytest.approx(-0.25)
    gan_files = {p.name for p in store.local_path(items["gan"]["key"]).iterdir()}
    assert {"gen.h5", "gen_ema.h5", "critic.h5", "switch.npy"} <= gan_files
    ae_dir = store.local_path(items["autoencoder"]["key"])
    assert (ae_dir / "dec.h5").read_bytes() == (official_folder / "dec.h5").read_bytes()

    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["created"] is False


def test_a_truncated_weight_file_is_refused_and_nothing_is_published(official_folder, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in official_folder.iterdir():
        data = file.read_bytes()
        (broken / file.name).write_bytes(data[: len(data) // 2] if file.name == "enc2.h5" else data)
    store = ArtifactStore(str(tmp_path / "store"))
    assert main(["--store", store.root, "import-musika", str(broken)]) == 2
    assert "enc2.h5" in capsys.readouterr().err
    assert store.list_datasets() == [] and store.object_keys() == []
