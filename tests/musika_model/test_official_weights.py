"""Official Musika checkpoint import/export against docs/official-weights.md (TSV and §7 vectors)."""

from __future__ import annotations

import csv
import pickle
import shutil
from collections import defaultdict
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from musika_model import networks, official
from musika_model.config import AutoencoderConfig, GanConfig

TSV_PATH = Path(__file__).resolve().parents[1] / "data" / "musika-h5-layout.tsv"
AE_NETWORKS = {"enc": "encoder1", "dec": "decoder1", "enc2": "encoder2", "dec2": "decoder2"}


def _tsv_layout(
    network: str, base_channels: str
) -> list[tuple[str, list[tuple[int, str, tuple, str]]]]:
    """[(layer name, [(weight_index, weight_name, shape, dtype), ...]), ...] in layer_names order."""
    layers: dict[int, tuple[str, list]] = {}
    with open(TSV_PATH, newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["network"] != network or row["base_channels"] != base_channels:
                continue
            name, tensors = layers.setdefault(int(row["layer_index"]), (row["layer_name"], []))
            assert name == row["layer_name"]
            if row["weight_name"]:
                shape = tuple(int(v) for v in row["shape"].strip("()").split(",") if v)
                tensors.append((int(row["weight_index"]), row["weight_name"], shape, row["dtype"]))
    assert sorted(layers) == list(range(len(layers))), (
        f"TSV has no complete {network}/{base_channels}"
    )
    return [layers[index] for index in range(len(layers))]


def _read_raw(path: Path) -> tuple[dict, list[tuple[str, object, list[tuple[str, tuple, str]]]]]:
    """Root attributes and every group as stored, read with plain h5py."""
    with h5py.File(path, "r") as handle:
        attrs = {key: handle.attrs[key] for key in handle.attrs}
        groups = []
        for name in handle.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            raw_names = handle[name].attrs["weight_names"]
            tensors = []
            for weight_name in raw_names:
                weight_name = (
                    weight_name.decode() if isinstance(weight_name, bytes) else weight_name
                )
                dataset = handle[name][weight_name]
                tensors.append((weight_name, dataset.shape, str(dataset.dtype)))
            groups.append((name, raw_names, tensors))
        attrs["_top_level"] = "top_level_model_weights" in handle
        attrs["_top_level_names"] = handle["top_level_model_weights"].attrs["weight_names"]
    return attrs, groups


def _assert_file_matches_tsv(path: Path, network: str, base_channels: str) -> None:
    attrs, groups = _read_raw(path)
    expected = _tsv_layout(network, base_channels)
    assert [name for name, _, _ in groups] == [name for name, _ in expected]
    assert attrs["backend"] == "tensorflow"
    assert attrs["_top_level"] and attrs["_top_level_names"].shape == (0,)
    for (name, raw_names, tensors), (expected_name, expected_tensors) in zip(groups, expected):
        assert [(n, s, d) for _, n, s, d in expected_tensors] == tensors, f"{path.name}: {name}"
        if not expected_tensors:
            assert raw_names.dtype == np.float64 and raw_names.shape == (0,)


@pytest.fixture(scope="module")
def official_size_sets(tmp_path_factory) -> Path:
    """Official-width AE and a base_channels-64 GAN, written once by the writer under test."""
    folder = tmp_path_factory.mktemp("official64")
    autoencoder = networks.build_autoencoder(AutoencoderConfig())
    gan = networks.build_gan(GanConfig(base_channels=64))
    official.save_autoencoder_weights(folder, autoencoder)
    official.save_gan_weights(folder, gan.generator, gan.generator_ema, gan.critic)
    return folder


def test_layout_table_equals_the_tsv():
    cases = (
        [(key, "-") for key in AE_NETWORKS]
        + [(key, channels) for key in ("gen", "gen_ema", "critic") for channels in ("64", "128")]
        + [(f"{key}_small", "128") for key in ("gen", "gen_ema", "critic")]
    )
    for network, channels in cases:
        expected = _tsv_layout(network, channels)
        layout = official.LAYOUTS[network]
        assert list(layout.layer_names) == [name for name, _ in expected]
        assert [w.official for w in layout.weighted] == [name for name, t in expected if t]


@pytest.mark.parametrize(
    "file_name, network",
    [
        ("enc.h5", "enc"),
        ("dec.h5", "dec"),
        ("enc2.h5", "enc2"),
        ("dec2.h5", "dec2"),
        ("gen.h5", "gen"),
        ("gen_ema.h5", "gen_ema"),
        ("critic.h5", "critic"),
    ],
)
def test_written_files_have_the_official_layout(official_size_sets, file_name, network):
    channels = "-" if network in AE_NETWORKS else "64"
    _assert_file_matches_tsv(official_size_sets / file_name, network, channels)


@pytest.mark.parametrize("small", [False, True])
def test_written_base_channels_128_files_have_the_official_layout(tmp_path, small):
    gan = networks.build_gan(GanConfig(base_channels=128, small=small))
    official.save_gan_weights(tmp_path, gan.generator, gan.generator_ema, gan.critic)
    suffix = "_small" if small else ""
    for file_name, network in (
        ("gen.h5", "gen"),
        ("gen_ema.h5", "gen_ema"),
        ("critic.h5", "critic"),
    ):
        _assert_file_matches_tsv(tmp_path / file_name, network + suffix, "128")


def test_round_trip_restores_every_weight(official_size_sets):
    autoencoder = networks.build_autoencoder(AutoencoderConfig())
    gan = networks.build_gan(GanConfig(base_channels=64))
    official.load_autoencoder_weights(official_size_sets, autoencoder)
    official.load_gan_weights(official_size_sets, gan.generator, gan.generator_ema, gan.critic)
    models = {**autoencoder.as_dict(), **gan.as_dict()}
    files = {**official.AE_FILE_NAMES, **official.GAN_FILE_NAMES}
    for role, model in models.items():
        layout_key = {v: k for k, v in AE_NETWORKS.items()}.get(role) or official.gan_layout_key(
            role, False
        )
        stored = official.read_weight_file(official_size_sets / files[role])
        flat = [array for layer in stored for _, array in layer.tensors]
        assert len(flat) == len(model.weights), role
        by_layer = {w.local: w.official for w in official.LAYOUTS[layout_key].weighted}
        assert set(by_layer) == {layer.name for layer in model.layers if layer.weights}
        ordered = [
            v
            for w in official.LAYOUTS[layout_key].weighted
            for v in model.get_layer(w.local).weights
        ]
        for variable, array in zip(ordered, flat):
            np.testing.assert_array_equal(np.asarray(variable), array)


# --- §7 reference vectors --------------------------------------------------------------------


def _write_reference_file(path: Path, network: str, base_channels: str) -> None:
    """An official-layout file with the §7 weights, written from the TSV alone (not by our writer)."""
    layout = _tsv_layout(network, base_channels)
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array([name.encode() for name, _ in layout])
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.10.0"
        for name, tensors in sorted(layout):
            group = handle.create_group(name)
            group.attrs["weight_names"] = (
                np.array([t[1].encode() for t in tensors]) if tensors else np.asarray([])
            )
            for k, weight_name, shape, _ in tensors:
                if weight_name.endswith("noise_weight:0"):
                    values = np.zeros(shape, dtype=np.float32)
                else:
                    values = (np.random.default_rng(k).standard_normal(shape) * 0.02).astype(
                        np.float32
                    )
                group.create_dataset(weight_name, data=values)
        handle.create_group("top_level_model_weights").attrs["weight_names"] = np.asarray([])


def _sine_input(shape: tuple[int, ...]) -> np.ndarray:
    return (
        np.sin(0.1 * np.arange(int(np.prod(shape)), dtype=np.float64))
        .astype(np.float32)
        .reshape(shape)
    )


def _check_summary(values: np.ndarray, mean, std, sum_abs, low, high, first, last) -> None:
    values = values.astype(np.float64)
    assert values.mean() == pytest.approx(mean, abs=1e-6)
    assert values.std() == pytest.approx(std, rel=1e-5)
    assert np.abs(values).sum() == pytest.approx(sum_abs, rel=1e-5)
    assert values.min() == pytest.approx(low, abs=1e-6)
    assert values.max() == pytest.approx(high, abs=1e-6)
    np.testing.assert_allclose(values.ravel()[:5], first, atol=1e-6)
    np.testing.assert_allclose(values.ravel()[-5:], last, atol=1e-6)


def _load_reference(tmp_path: Path, network: str, model, base_channels: str = "-"):
    path = tmp_path / f"{network}.h5"
    _write_reference_file(path, network, base_channels)
    official.load_weight_file(path, model, network)
    return model


def test_reference_vectors_generator(tmp_path):
    model = _load_reference(
        tmp_path, "gen", networks.build_generator(GanConfig(base_channels=64)), "64"
    )
    output = np.asarray(model(_sine_input((2, 256, 128))))[:, None]  # official (2, 1, 256, 128)
    _check_summary(
        output,
        0.000885977246,
        0.0532044269,
        2767.4587,
        -0.222398952,
        0.209578648,
        [-0.00756531581, 0.019128833, 0.000894650817, -0.00707353512, -0.0966700763],
        [-0.00314913318, 0.0151835009, -0.01876547, 0.0144325327, -0.0296762474],
    )
    np.testing.assert_allclose(output.reshape(2, -1).sum(1), [33.7517048, 24.3117], rtol=1e-5)
    halves = output[:, 0].reshape(2, 2, 128, 128).sum(axis=(2, 3))
    np.testing.assert_allclose(
        halves, [[16.8142358, 16.9374689], [11.8599811, 12.4517189]], rtol=1e-5
    )


def test_reference_vectors_critic(tmp_path):
    model = _load_reference(
        tmp_path, "critic", networks.build_critic(GanConfig(base_channels=64)), "64"
    )
    output = np.asarray(model(_sine_input((2, 1, 256, 128))[:, 0]))
    np.testing.assert_allclose(output.ravel(), [-0.014480765, -0.0136060398], atol=1e-7)


def test_reference_vectors_encoder1(tmp_path):
    model = _load_reference(tmp_path, "enc", networks.build_encoder1())
    frames = np.transpose(_sine_input((2, 513, 128, 1))[..., 0], (0, 2, 1))
    mine = np.asarray(model(frames))
    output = np.concatenate([mine[:, :64], mine[:, 64:]], axis=0)[
        :, None
    ]  # official (4, 1, 64, 64)
    _check_summary(
        output,
        -0.00106146569,
        0.0192025838,
        248.722781,
        -0.0412861109,
        0.0505018234,
        [-0.0148923015, 0.0500984676, 0.0395225212, 0.00632059248, -0.0307913944],
        [-0.00702856388, 0.000818537257, 0.00783650763, -0.011556183, -0.00140344398],
    )
    np.testing.assert_allclose(
        output.reshape(4, -1).sum(1),
        [-4.34969079, -4.34648647, -4.34853024, -4.34634638],
        rtol=1e-5,
    )


def test_reference_vectors_decoder1(tmp_path):
    model = _load_reference(tmp_path, "dec", networks.build_decoder1())
    magnitude, phase = (
        np.asarray(t) for t in model(_sine_input((2, 1, 64, 64)).reshape(1, 128, 64))
    )
    _check_summary(
        magnitude,
        -0.000354847112,
        0.0614645388,
        3203.67748,
        -0.238829553,
        0.224310651,
        [-0.0407834873, 0.00241889874, 0.0267951377, 0.0361928046, 0.0259223618],
        [-0.00493380241, 0.0351714343, -0.0442173705, 0.0727732778, 0.0408840477],
    )
    _check_summary(
        phase,
        0.000632406871,
        0.0243698187,
        1263.58329,
        -0.118101478,
        0.0859201103,
        [0.0187991075, 0.0164150074, -0.0294013396, 0.00784901716, -0.00313963322],
        [0.0302394107, 0.0296761096, -0.0497241654, 0.00156273134, -0.032426849],
    )
    np.testing.assert_allclose(
        [magnitude[0, :64].sum(), magnitude[0, 64:].sum()], [-11.9544478, -11.346233], rtol=1e-5
    )
    np.testing.assert_allclose(
        [phase[0, :64].sum(), phase[0, 64:].sum()], [21.3344432, 20.1919216], rtol=1e-5
    )


def test_reference_vectors_encoder2(tmp_path):
    model = _load_reference(tmp_path, "enc2", networks.build_encoder2())
    mine = np.asarray(model(_sine_input((2, 1, 128, 64))[:, 0]))
    output = np.concatenate([mine[:, :4], mine[:, 4:]], axis=0)[:, None]  # official (4, 1, 4, 64)
    _check_summary(
        output,
        0.000196474264,
        0.0205385842,
        17.7810691,
        -0.0464975722,
        0.0360684879,
        [-0.0171500277, -0.0204624441, 0.00807632878, -0.013599081, 0.0011107293],
        [-0.00851195771, -0.000138976029, 0.00848076399, 0.0155985998, 0.0129343644],
    )
    np.testing.assert_allclose(
        output.reshape(4, -1).sum(1),
        [0.0504067178, 0.0502046795, 0.0502888988, 0.0502893502],
        rtol=1e-5,
    )


def test_reference_vectors_decoder2(tmp_path):
    model = _load_reference(tmp_path, "dec2", networks.build_decoder2())
    output = np.asarray(model(_sine_input((2, 1, 4, 64)).reshape(1, 8, 64)))[:, None]
    _check_summary(
        output,
        0.00180659398,
        0.022758717,
        162.696182,
        -0.0460696109,
        0.0485673212,
        [-0.0245975219, -0.0190260243, -0.0218456574, -0.0106484769, 0.0288136154],
        [0.0303344131, -0.0208791979, -0.00815068837, 0.0093591623, -0.0102655021],
    )
    np.testing.assert_allclose(
        [output[0, 0, :64].sum(), output[0, 0, 64:].sum()], [7.40149713, 7.39812073], rtol=1e-5
    )


# --- whole folders, optimizer state and switch ------------------------------------------------

TINY_AE = AutoencoderConfig.tiny(16)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A complete official-layout folder with a tiny AE and a base_channels-16 GAN."""
    folder = tmp_path_factory.mktemp("tiny")
    autoencoder = networks.build_autoencoder(TINY_AE)
    gan = networks.build_gan(GanConfig(base_channels=16))
    for weight in gan.generator_ema.weights:
        weight.assign(np.asarray(weight) + 0.5)  # gen_ema must not be confused with gen
    official.save_autoencoder_weights(folder, autoencoder)
    official.save_gan_weights(folder, gan.generator, gan.generator_ema, gan.critic)
    rng = np.random.default_rng(0)
    for file_name, model in (("opt_dec.npy", gan.generator), ("opt_disc.npy", gan.critic)):
        state = official.OptimizerState(
            iterations=1234,
            first_moments=[rng.normal(size=w.shape).astype("float32") for w in model.weights],
            second_moments=[rng.uniform(size=w.shape).astype("float32") for w in model.weights],
        )
        official.write_optimizer_state(folder / file_name, state)
    official.write_switch(folder / "switch.npy", -0.25)
    return folder, autoencoder, gan


def test_import_musika_infers_configs_and_loads_everything(tiny_checkpoint):
    folder, autoencoder, gan = tiny_checkpoint
    imported = official.import_musika(folder)
    assert imported.autoencoder.config == TINY_AE
    assert imported.gan.config == GanConfig(base_channels=16)
    for expected, loaded in ((autoencoder, imported.autoencoder), (gan, imported.gan)):
        for role, model in expected.as_dict().items():
            for a, b in zip(model.weights, loaded.as_dict()[role].weights):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert imported.switch == -0.25
    assert imported.generator_optimizer.iterations == 1234
    assert imported.critic_optimizer.shapes == [tuple(w.shape) for w in gan.critic.weights]
    metadata = imported.metadata()
    assert metadata["gan"]["config"]["base_channels"] == 16
    assert metadata["gan"]["r1_weight"] == 2.5
    assert metadata["autoencoder"]["parameters"]["encoder1"] == autoencoder.encoder1.count_params()


def test_import_musika_autoencoder_only(tiny_checkpoint, tmp_path):
    folder, _, _ = tiny_checkpoint
    for name in official.AE_FILE_NAMES.values():
        shutil.copy(folder / name, tmp_path / name)
    imported = official.import_musika(tmp_path)
    assert imported.gan is None and imported.switch is None
    assert imported.autoencoder.config == TINY_AE


def test_import_musika_small_gan(tmp_path):
    gan = networks.build_gan(GanConfig(base_channels=16, small=True))
    official.save_gan_weights(tmp_path, gan.generator, gan.generator_ema, gan.critic)
    imported = official.import_musika(tmp_path)
    assert imported.gan.config == GanConfig(base_channels=16, small=True)
    assert imported.autoencoder is None


def test_wrong_base_channels_is_reported_with_file_layer_and_shapes(tiny_checkpoint):
    folder, _, _ = tiny_checkpoint
    other = networks.build_gan(GanConfig(base_channels=24))
    with pytest.raises(official.WeightShapeError) as caught:
        official.load_gan_weights(folder, other.generator, other.generator_ema, other.critic)
    message = str(caught.value)
    assert "gen.h5" in message and "'00d'" in message
    assert "(256, 448)" in message and "(256, 672)" in message and "base_channels 16" in message


def test_small_file_into_full_size_generator_is_refused(tmp_path):
    small = networks.build_gan(GanConfig(base_channels=16, small=True))
    official.save_gan_weights(tmp_path, small.generator, small.generator_ema, small.critic)
    full = networks.build_gan(GanConfig(base_channels=16))
    with pytest.raises(official.WrongNetworkError, match="small generator"):
        official.load_gan_weights(tmp_path, full.generator, full.generator_ema, full.critic)


def test_file_of_another_network_is_named(tiny_checkpoint, tmp_path):
    folder, _, _ = tiny_checkpoint
    for name in (*official.AE_FILE_NAMES.values(), *official.GAN_FILE_NAMES.values()):
        shutil.copy(folder / name, tmp_path / name)
    shutil.copy(folder / "critic.h5", tmp_path / "gen.h5")
    with pytest.raises(
        official.WrongNetworkError, match=r"gen\.h5.*critic weights \(base_channels 16\)"
    ):
        official.import_musika(tmp_path)
    shutil.copy(folder / "gen.h5", tmp_path / "gen.h5")
    shutil.copy(folder / "enc2.h5", tmp_path / "enc.h5")
    with pytest.raises(official.WrongNetworkError, match=r"enc\.h5.*encoder2 weights \(enc2\.h5\)"):
        official.import_musika(tmp_path)
    model = networks.build_encoder1(TINY_AE)
    with pytest.raises(official.WrongNetworkError, match="decoder2"):
        official.load_weight_file(folder / "dec2.h5", model, "enc")


def test_truncated_file_is_reported(tiny_checkpoint, tmp_path):
    folder, _, _ = tiny_checkpoint
    data = (folder / "dec.h5").read_bytes()
    (tmp_path / "dec.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(official.CorruptWeightFileError, match=r"dec\.h5"):
        official.load_weight_file(tmp_path / "dec.h5", networks.build_decoder1(TINY_AE), "dec")
    (tmp_path / "noise.h5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(official.CorruptWeightFileError, match=r"noise\.h5"):
        official.read_weight_file(tmp_path / "noise.h5")


def test_missing_files_are_named(tiny_checkpoint, tmp_path):
    folder, _, _ = tiny_checkpoint
    for name in ("enc.h5", "enc2.h5", "dec.h5"):
        shutil.copy(folder / name, tmp_path / name)
    with pytest.raises(official.MissingWeightFileError, match=r"dec2\.h5"):
        official.import_musika(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(official.MissingWeightFileError, match="no Musika weights"):
        official.import_musika(empty)
    with pytest.raises(FileNotFoundError):
        official.read_switch(empty / "switch.npy")


def test_optimizer_state_has_the_official_size_and_numpy1_pickle(tmp_path):
    generator = networks.build_generator(GanConfig(base_channels=64))
    critic = networks.build_critic(GanConfig(base_channels=64))
    for model, file_name, official_size in (
        (generator, "opt_dec.npy", 34_611_566),
        (critic, "opt_disc.npy", 41_993_606),
    ):
        first = [np.zeros(w.shape, "float32") for w in model.weights]
        second = [np.zeros(w.shape, "float32") for w in model.weights]
        path = official.write_optimizer_state(
            tmp_path / file_name, official.OptimizerState(1, first, second)
        )
        assert path.stat().st_size == official_size
        loaded = np.load(path, allow_pickle=True)
        assert loaded.dtype == object and loaded.shape == (2 * len(model.weights) + 1,)
        assert isinstance(loaded[0], np.int64) and loaded[0] == 1
        head = path.read_bytes()[:4096]
        assert b"numpy.core.multiarray" in head and b"numpy._core" not in head


def test_optimizer_state_round_trip_and_shape_check(tiny_checkpoint):
    folder, _, gan = tiny_checkpoint
    state = official.read_optimizer_state(
        folder / "opt_dec.npy", [tuple(w.shape) for w in gan.generator.weights]
    )
    assert len(state.first_moments) == len(gan.generator.weights)
    assert state.second_moments[0].min() >= 0
    with pytest.raises(official.StateFileError, match="state for 60 tensors, the network has 30"):
        official.read_optimizer_state(
            folder / "opt_dec.npy", [tuple(w.shape) for w in gan.critic.weights]
        )
    wider = networks.build_generator(GanConfig(base_channels=24))
    with pytest.raises(
        official.StateFileError, match=r"tensor 0: state shape \(256, 448\), the network"
    ):
        official.read_optimizer_state(
            folder / "opt_dec.npy", [tuple(w.shape) for w in wider.weights]
        )


def test_optimizer_state_refuses_foreign_pickles(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    array = np.empty(3, dtype=object)
    array[0], array[1], array[2] = np.int64(1), Payload(), np.zeros(2, "float32")
    with open(tmp_path / "evil.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, np.lib.format.header_data_from_array_1_0(array)
        )
        pickle.dump(array, handle, protocol=3)
    with pytest.raises(official.StateFileError, match="refusing to unpickle builtins.print"):
        official.read_optimizer_state(tmp_path / "evil.npy")
    np.save(tmp_path / "plain.npy", np.zeros(3, "float32"))
    with pytest.raises(official.StateFileError, match="plain float32"):
        official.read_optimizer_state(tmp_path / "plain.npy")


def test_keras_adam_state_export_and_import():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    optimizer = keras.optimizers.Adam(1e-2)
    gradients = [keras.ops.ones(w.shape) for w in model.weights]
    optimizer.apply_gradients(zip(gradients, model.trainable_weights))
    state = official.optimizer_state_from_keras(optimizer, model.weights)
    assert state.iterations == 1
    np.testing.assert_allclose(state.first_moments[0], 0.1 * np.ones((3, 2)), rtol=1e-6)
    np.testing.assert_allclose(state.second_moments[1], 0.001 * np.ones(2), rtol=1e-6)
    restored = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2))
    official.apply_optimizer_state(restored, model.weights, state)
    again = official.optimizer_state_from_keras(restored, model.weights)
    assert again.iterations == 1
    for a, b in zip(
        state.first_moments + state.second_moments, again.first_moments + again.second_moments
    ):
        np.testing.assert_array_equal(a, b)


def test_switch_file(tmp_path):
    path = official.write_switch(tmp_path / "switch.npy", -0.01824639)
    assert path.stat().st_size == 132
    raw = np.load(path)
    assert raw.dtype == np.float32 and raw.shape == ()
    assert official.read_switch(path) == pytest.approx(-0.01824639)
    np.save(tmp_path / "bad.npy", np.float32(0.5))
    with pytest.raises(official.StateFileError, match="outside"):
        official.read_switch(tmp_path / "bad.npy")
    with pytest.raises(official.StateFileError):
        official.write_switch(tmp_path / "x.npy", -2.0)


def test_tsv_copy_is_complete():
    counts: dict[str, int] = defaultdict(int)
    with open(TSV_PATH, newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["weight_name"]:
                counts[(row["network"], row["base_channels"])] += 1
    assert counts[("gen", "64")] == 60 and counts[("critic", "64")] == 30
    assert counts[("dec", "-")] == 31 and counts[("critic_small", "128")] == 26
