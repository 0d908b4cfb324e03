"""Read and write the official Musika checkpoint files (Keras-2 HDF5 weights, optimizer state, R1 switch).

Weight files are read and written directly with h5py, following
docs/official-weights.md: GAN files (`gen.h5`, `gen_ema.h5`, `critic.h5`) are
matched by layer name, AE files (`enc.h5`, `dec.h5`, `enc2.h5`, `dec2.h5`) by the position of
their weighted layers, because only their positions are stable. Written files reproduce the
official layout exactly (root attributes, every layer group including the weightless ones,
`weight_names`, nested dataset paths, `top_level_model_weights`), so the original tools load
them with plain `load_weights`. The layer lists of the official files are package data
(`data/official_layout.txt`).

`opt_dec.npy` / `opt_disc.npy` are pickled numpy object arrays [iterations, m..., v...]; they
are read with an unpickler that only accepts numpy arrays and scalars, and written with the
numpy-1.x module paths so the original (numpy 1.20) tools can read them back.

No TensorFlow import happens here at module import; networks are only built by `import_musika`.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from .config import AutoencoderConfig, GanConfig

if TYPE_CHECKING:
    import keras

    from .networks import AutoencoderNetworks, GanNetworks


class OfficialWeightsError(Exception):
    """Base class of every error about official checkpoint files."""


class MissingWeightFileError(OfficialWeightsError, FileNotFoundError):
    """A file the checkpoint needs is not there."""


class CorruptWeightFileError(OfficialWeightsError):
    """A file cannot be read: truncated, not HDF5/npy, or missing parts of its own index."""


class WrongNetworkError(OfficialWeightsError):
    """The file holds another network than the one it is loaded into (or a different variant)."""


class WeightShapeError(OfficialWeightsError):
    """A tensor's shape differs from the network's, e.g. a checkpoint of another base_channels."""


class StateFileError(OfficialWeightsError):
    """An optimizer-state or switch file is malformed or does not fit the network."""


AE_FILE_NAMES = {
    "encoder1": "enc.h5",
    "decoder1": "dec.h5",
    "encoder2": "enc2.h5",
    "decoder2": "dec2.h5",
}
GAN_FILE_NAMES = {"generator": "gen.h5", "generator_ema": "gen_ema.h5", "critic": "critic.h5"}
GENERATOR_OPTIMIZER_FILE = "opt_dec.npy"
CRITIC_OPTIMIZER_FILE = "opt_disc.npy"
SWITCH_FILE = "switch.npy"

LAYOUT_FILE = "official_layout.txt"
"""Package data (musika_model/data/): the root `layer_names` of every official file in order, with
`official=local` naming where each weighted layer lives in our networks (format in its header)."""


def _read_layout_text() -> dict[str, str]:
    """{layout key: its whitespace-separated layer tokens}, in file order, from `LAYOUT_FILE`."""
    text = (resources.files(__package__) / "data" / LAYOUT_FILE).read_text(encoding="utf-8")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is None:
            raise ValueError(f"{LAYOUT_FILE}: layer names before the first [key] line: {line!r}")
        else:
            current.append(line)
    return {key: "\n".join(lines) for key, lines in sections.items()}


_LAYOUT_TEXT = _read_layout_text()


@dataclass(frozen=True)
class WeightedLayer:
    official: str
    local: str


@dataclass(frozen=True)
class FileLayout:
    """The layer list of one official file and where each weighted layer lives in our network."""

    key: str
    layer_names: tuple[str, ...]
    weighted: tuple[WeightedLayer, ...]


def _parse_layout(key: str, text: str) -> FileLayout:
    names: list[str] = []
    weighted: list[WeightedLayer] = []
    for token in text.split():
        official, _, local = token.partition("=")
        names.append(official)
        if local:
            weighted.append(WeightedLayer(official, local))
    return FileLayout(key, tuple(names), tuple(weighted))


LAYOUTS: dict[str, FileLayout] = {
    key: _parse_layout(key, text) for key, text in _LAYOUT_TEXT.items()
}
"""Keys: enc, dec, enc2, dec2, gen, gen_ema, critic, gen_small, gen_ema_small, critic_small."""

_AE_LAYOUT_KEYS = {"encoder1": "enc", "decoder1": "dec", "encoder2": "enc2", "decoder2": "dec2"}


def gan_layout_key(role: str, small: bool) -> str:
    """Layout key of a GAN file: role is 'generator', 'generator_ema' or 'critic'."""
    base = {"generator": "gen", "generator_ema": "gen_ema", "critic": "critic"}[role]
    return f"{base}_small" if small else base


# ---------------------------------------------------------------------------------------------
# Reading HDF5 weight files


@dataclass
class StoredLayer:
    """One layer group of a weight file: its name and tensors in `weight_names` order."""

    name: str
    tensors: list[tuple[str, np.ndarray]]


def _decode(value: Any) -> str:
    return value.decode("utf8") if hasattr(value, "decode") else str(value)


def _read_string_list(attrs: h5py.AttributeManager, name: str) -> list[str] | None:
    """A Keras string-list attribute, also when Keras split it into `name0`, `name1`, ..."""
    if name in attrs:
        return [_decode(item) for item in np.atleast_1d(attrs[name])]
    if f"{name}0" not in attrs:
        return None
    values: list[str] = []
    chunk = 0
    while f"{name}{chunk}" in attrs:
        values.extend(_decode(item) for item in np.atleast_1d(attrs[f"{name}{chunk}"]))
        chunk += 1
    return values


def read_weight_file(path: str | os.PathLike) -> list[StoredLayer]:
    """Every layer group of a Keras-2 HDF5 weight file, in `layer_names` order, tensors loaded.

    Raises MissingWeightFileError when the file does not exist and CorruptWeightFileError when
    it is not a readable weight file (truncated, not HDF5, index pointing at missing groups).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightFileError(f"weight file not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise CorruptWeightFileError(f"{path}: not a readable HDF5 file ({error})") from error
    layers: list[StoredLayer] = []
    with handle:
        try:
            names = _read_string_list(handle.attrs, "layer_names")
            if names is None:
                raise CorruptWeightFileError(
                    f"{path}: no 'layer_names' root attribute; not a Keras weight file"
                )
            for name in names:
                if name not in handle:
                    raise CorruptWeightFileError(
                        f"{path}: 'layer_names' lists '{name}' but the file has no such group"
                    )
                group = handle[name]
                weight_names = _read_string_list(group.attrs, "weight_names") or []
                tensors = []
                for weight_name in weight_names:
                    if weight_name not in group:
                        raise CorruptWeightFileError(
                            f"{path}: layer '{name}' lists tensor '{weight_name}' that is missing"
                        )
                    tensors.append((weight_name, np.asarray(group[weight_name][()])))
                layers.append(StoredLayer(name, tensors))
        except (OSError, KeyError, ValueError) as error:
            raise CorruptWeightFileError(f"{path}: unreadable content ({error})") from error
    return layers


def _weighted(stored: Sequence[StoredLayer]) -> list[StoredLayer]:
    return [layer for layer in stored if layer.tensors]


def _tensor_kind(weight_name: str) -> str:
    """'00d/kernel:0' -> 'kernel'."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _base_channels_of(layers_by_name: dict[str, StoredLayer]) -> int | None:
    """base_channels of a GAN file from the stem Dense (gen) or the final Dense (critic)."""
    if "00d" in layers_by_name:
        shape = layers_by_name["00d"].tensors[0][1].shape
        return shape[-1] // 28 if len(shape) == 2 else None
    if "7d" in layers_by_name:
        shape = layers_by_name["7d"].tensors[0][1].shape
        return shape[0] // 28 if len(shape) == 2 else None
    return None


def describe_weight_file(stored: Sequence[StoredLayer]) -> str:
    """What a weight file seems to hold, for error messages ('small generator weights (base_channels 64)')."""
    weighted = _weighted(stored)
    names = {layer.name for layer in weighted}
    by_name = {layer.name: layer for layer in weighted}
    for key, label in (
        ("gen", "generator"),
        ("gen_small", "small generator"),
        ("critic", "critic"),
        ("critic_small", "small critic"),
    ):
        if names == {layer.official for layer in LAYOUTS[key].weighted}:
            return f"{label} weights (base_channels {_base_channels_of(by_name)})"
    for role, key in _AE_LAYOUT_KEYS.items():
        if len(weighted) == len(LAYOUTS[key].weighted):
            return f"{role} weights ({AE_FILE_NAMES[role]})"
    return f"an unknown network with {len(weighted)} weighted layers"


# ---------------------------------------------------------------------------------------------
# Assigning file tensors to a Keras model


def _local_layer(model: keras.Model, name: str, path: Path, layout: FileLayout):
    try:
        return model.get_layer(name)
    except ValueError as error:
        raise WrongNetworkError(
            f"model '{model.name}' has no layer '{name}', which {path.name} ({layout.key}) needs: "
            "it is not the network this file belongs to"
        ) from error


def _match_tensors(
    path: Path, stored: StoredLayer, local_layer, where: str, stored_all: Sequence[StoredLayer]
) -> list[tuple[Any, np.ndarray]]:
    """Pair a stored layer's tensors with the local layer's variables, checking kind and shape."""
    variables = list(local_layer.weights)
    if len(variables) != len(stored.tensors):
        raise WrongNetworkError(
            f"{path}: {where}: file has {len(stored.tensors)} tensors "
            f"({', '.join(n for n, _ in stored.tensors)}), the network layer "
            f"'{local_layer.name}' has {len(variables)}; the file looks like "
            f"{describe_weight_file(stored_all)}"
        )
    pairs = []
    for variable, (weight_name, array) in zip(variables, stored.tensors):
        if _tensor_kind(weight_name) != variable.name:
            raise WrongNetworkError(
                f"{path}: {where}: tensor '{weight_name}' is a {_tensor_kind(weight_name)}, "
                f"expected a {variable.name}; the file looks like {describe_weight_file(stored_all)}"
            )
        expected = tuple(variable.shape)
        if tuple(array.shape) != expected:
            raise WeightShapeError(
                f"{path}: {where}: tensor '{weight_name}' has shape {tuple(array.shape)}, "
                f"the network expects {expected}; the file holds "
                f"{describe_weight_file(stored_all)}"
            )
        if array.dtype != np.float32:
            raise CorruptWeightFileError(
                f"{path}: {where}: tensor '{weight_name}' has dtype {array.dtype}, expected float32"
            )
        pairs.append((variable, array))
    return pairs


def load_weight_file(path: str | os.PathLike, model: keras.Model, layout_key: str) -> None:
    """Load one official weight file into `model` (all tensors checked before any is assigned).

    GAN layouts are matched by layer name, AE layouts by the position of the weighted layers.
    """
    path = Path(path)
    _assign_stored(path, read_weight_file(path), model, layout_key)


def _assign_stored(
    path: Path, stored: list[StoredLayer], model: keras.Model, layout_key: str
) -> None:
    layout = LAYOUTS[layout_key]
    weighted = _weighted(stored)
    pairs: list[tuple[Any, np.ndarray]] = []
    if layout_key in _AE_LAYOUT_KEYS.values():
        if len(weighted) != len(layout.weighted):
            raise WrongNetworkError(
                f"{path}: has {len(weighted)} weighted layers, {layout.key} has "
                f"{len(layout.weighted)}; the file looks like {describe_weight_file(stored)}"
            )
        for position, (stored_layer, expected) in enumerate(zip(weighted, layout.weighted)):
            local = _local_layer(model, expected.local, path, layout)
            where = (
                f"weighted layer #{position} '{stored_layer.name}' (official '{expected.official}')"
            )
            pairs.extend(_match_tensors(path, stored_layer, local, where, stored))
    else:
        by_name = {layer.name: layer for layer in weighted}
        expected_names = {layer.official for layer in layout.weighted}
        missing = [layer.official for layer in layout.weighted if layer.official not in by_name]
        unexpected = sorted(set(by_name) - expected_names)
        if missing or unexpected:
            raise WrongNetworkError(
                f"{path}: layers do not match {layout.key}: missing {missing[:6]}"
                f"{' ...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}"
                f"{' ...' if len(unexpected) > 6 else ''}; the file looks like "
                f"{describe_weight_file(stored)}"
            )
        for expected in layout.weighted:
            local = _local_layer(model, expected.local, path, layout)
            where = f"layer '{expected.official}'"
            pairs.extend(_match_tensors(path, by_name[expected.official], local, where, stored))
    for variable, array in pairs:
        variable.assign(array)


# ---------------------------------------------------------------------------------------------
# Writing HDF5 weight files


def _keras_version() -> str:
    try:
        return version("keras")
    except PackageNotFoundError:
        return "unknown"


def _string_array(values: Iterable[str]) -> np.ndarray:
    return np.array(list(values), dtype=h5py.string_dtype("utf-8"))


def _empty_weight_names() -> np.ndarray:
    return np.zeros((0,), dtype=np.float64)


def save_weight_file(path: str | os.PathLike, model: keras.Model, layout_key: str) -> Path:
    """Write `model`'s weights as an official-layout Keras-2 HDF5 file (atomically, via a temp file)."""
    path = Path(path)
    layout = LAYOUTS[layout_key]
    local_layers = {
        layer.official: _local_layer(model, layer.local, path, layout) for layer in layout.weighted
    }
    covered = {layer.local for layer in layout.weighted}
    uncovered = [
        layer.name for layer in model.layers if layer.weights and layer.name not in covered
    ]
    if uncovered:
        raise WrongNetworkError(
            f"model '{model.name}' has weighted layers {uncovered[:6]} that {layout.key} "
            f"({path.name}) has no place for"
        )
    temporary = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(temporary, "w") as handle:
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = _keras_version().encode("ascii")
        handle.attrs["layer_names"] = _string_array(layout.layer_names)
        for name in layout.layer_names:
            group = handle.create_group(name)
            local = local_layers.get(name)
            if local is None:
                group.attrs["weight_names"] = _empty_weight_names()
                continue
            weight_names = [f"{name}/{variable.name}:0" for variable in local.weights]
            group.attrs["weight_names"] = _string_array(weight_names)
            for weight_name, variable in zip(weight_names, local.weights):
                group.create_dataset(weight_name, data=np.asarray(variable, dtype=np.float32))
        top = handle.create_group("top_level_model_weights")
        top.attrs["weight_names"] = _empty_weight_names()
    os.replace(temporary, path)
    return path


# ---------------------------------------------------------------------------------------------
# Network sets


def load_autoencoder_weights(folder: str | os.PathLike, networks: AutoencoderNetworks) -> None:
    """Load enc.h5, dec.h5, enc2.h5 and dec2.h5 from `folder` into `networks`."""
    folder = Path(folder)
    _require_files(folder, AE_FILE_NAMES.values())
    for role, model in networks.as_dict().items():
        load_weight_file(folder / AE_FILE_NAMES[role], model, _AE_LAYOUT_KEYS[role])


def save_autoencoder_weights(
    folder: str | os.PathLike, networks: AutoencoderNetworks
) -> list[Path]:
    """Write the four AE networks as enc.h5, dec.h5, enc2.h5 and dec2.h5 into `folder`."""
    folder = Path(folder)
    return [
        save_weight_file(folder / AE_FILE_NAMES[role], model, _AE_LAYOUT_KEYS[role])
        for role, model in networks.as_dict().items()
    ]


def _is_small_gan_model(model: keras.Model, role: str) -> bool:
    names = {layer.name for layer in model.layers}
    return "0_smallc" in names if role != "critic" else "6c0" not in names


def load_gan_weights(
    folder: str | os.PathLike,
    generator: keras.Model,
    generator_ema: keras.Model,
    critic: keras.Model,
) -> None:
    """Load gen.h5, gen_ema.h5 and critic.h5 from `folder` (matched by layer name)."""
    folder = Path(folder)
    _require_files(folder, GAN_FILE_NAMES.values())
    models = {"generator": generator, "generator_ema": generator_ema, "critic": critic}
    for role, model in models.items():
        key = gan_layout_key(role, _is_small_gan_model(model, role))
        load_weight_file(folder / GAN_FILE_NAMES[role], model, key)


def save_gan_weights(
    folder: str | os.PathLike,
    generator: keras.Model,
    generator_ema: keras.Model,
    critic: keras.Model,
) -> list[Path]:
    """Write gen.h5, gen_ema.h5 and critic.h5 into `folder` in the official layout."""
    folder = Path(folder)
    models = {"generator": generator, "generator_ema": generator_ema, "critic": critic}
    return [
        save_weight_file(
            folder / GAN_FILE_NAMES[role],
            model,
            gan_layout_key(role, _is_small_gan_model(model, role)),
        )
        for role, model in models.items()
    ]


def _require_files(folder: Path, names: Iterable[str]) -> None:
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise MissingWeightFileError(f"{folder}: missing {', '.join(missing)}")


# ---------------------------------------------------------------------------------------------
# Configuration inference


def infer_gan_config(folder: str | os.PathLike) -> GanConfig:
    """base_channels, small and coord_depth of the GAN checkpoint in `folder`, from gen.h5's shapes."""
    path = Path(folder) / GAN_FILE_NAMES["generator"]
    return _gan_config_of(path, read_weight_file(path))


def _gan_config_of(path: Path, stored_all: list[StoredLayer]) -> GanConfig:
    stored = _weighted(stored_all)
    by_name = {layer.name: layer for layer in stored}
    if "00d" not in by_name:
        raise WrongNetworkError(
            f"{path}: no generator stem layer '00d'; the file looks like "
            f"{describe_weight_file(stored_all)}"
        )
    kernel = by_name["00d"].tensors[0][1]
    if kernel.ndim != 2 or kernel.shape[1] % 28 or kernel.shape[0] % 4:
        raise WeightShapeError(
            f"{path}: stem kernel '00d/kernel:0' has shape {kernel.shape}, expected "
            "(4 * coord_depth, 28 * base_channels)"
        )
    return GanConfig(
        base_channels=kernel.shape[1] // 28,
        small="0_smallc" in by_name,
        coord_depth=kernel.shape[0] // 4,
    )


def _ae_file_widths(
    path: Path, stored: list[StoredLayer], layout_key: str, positions: Sequence[int]
) -> list[int]:
    """Output widths (bias lengths) of the weighted layers at `positions` of an AE file."""
    weighted = _weighted(stored)
    expected = len(LAYOUTS[layout_key].weighted)
    if len(weighted) != expected:
        raise WrongNetworkError(
            f"{path}: has {len(weighted)} weighted layers, {layout_key} has {expected}; "
            f"the file looks like {describe_weight_file(stored)}"
        )
    widths = []
    for position in positions:
        tensors = weighted[position].tensors
        if len(tensors) != 2 or tensors[1][1].ndim != 1:
            raise WrongNetworkError(
                f"{path}: weighted layer #{position} '{weighted[position].name}' is not a conv "
                f"with bias; the file looks like {describe_weight_file(stored)}"
            )
        widths.append(int(tensors[1][1].shape[0]))
    return widths


def infer_autoencoder_config(folder: str | os.PathLike) -> AutoencoderConfig:
    """The AE widths of the four AE files in `folder`, read from their bias shapes."""
    folder = Path(folder)
    _require_files(folder, AE_FILE_NAMES.values())
    stored = {role: read_weight_file(folder / name) for role, name in AE_FILE_NAMES.items()}
    return _autoencoder_config_of(folder, stored)


def _autoencoder_config_of(folder: Path, stored: dict[str, list[StoredLayer]]) -> AutoencoderConfig:
    def widths(role: str, positions: Sequence[int]) -> list[int]:
        path = folder / AE_FILE_NAMES[role]
        return _ae_file_widths(path, stored[role], _AE_LAYOUT_KEYS[role], positions)

    (enc1_width,) = widths("encoder1", [0])
    dec1 = widths("decoder1", [0, 2, 4, 6])
    enc2 = widths("encoder2", [0, 1, 3, 5])
    dec2 = widths("decoder2", [0, 2, 6, 10, 12])
    return AutoencoderConfig(
        enc1_width=enc1_width,
        enc1_layers=len(LAYOUTS["enc"].weighted) - 1,
        dec1_widths=tuple(dec1),  # type: ignore[arg-type]
        enc2_widths=tuple(enc2),  # type: ignore[arg-type]
        dec2_widths=tuple(dec2),  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------------------------------------
# Optimizer state (opt_dec.npy, opt_disc.npy) and the R1 switch (switch.npy)


@dataclass
class OptimizerState:
    """Adam state in the original's legacy order: `iterations`, then m and v per weight tensor.

    The tensors follow `model.weights` order (= the stored order of the weight file).
    """

    iterations: int
    first_moments: list[np.ndarray]
    second_moments: list[np.ndarray]

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(moment.shape) for moment in self.first_moments]


_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and scalars and refuses every other global (no code execution)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


class _LegacyNumpyPickler(pickle._Pickler):
    """Protocol-3 pickler that names numpy's reconstructors by their numpy 1.x module path.

    numpy 2 pickles refer to `numpy._core.multiarray`, which numpy 1.x (the original tools)
    cannot import; `numpy.core.multiarray` is readable by both.
    """

    def save_global(self, obj, name=None):
        if getattr(obj, "__module__", None) == "numpy._core.multiarray":
            qualified = name or obj.__name__
            self.write(
                pickle.GLOBAL + b"numpy.core.multiarray\n" + qualified.encode("ascii") + b"\n"
            )
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _read_object_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise MissingWeightFileError(f"optimizer state file not found: {path}")
    try:
        with open(path, "rb") as handle:
            major, _ = np.lib.format.read_magic(handle)
            if major == 1:
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            if not dtype.hasobject:
                raise StateFileError(
                    f"{path}: holds a plain {dtype} array of shape {shape}, expected the pickled "
                    "list [iterations, m..., v...] of an optimizer state"
                )
            array = _NumpyOnlyUnpickler(handle).load()
    except (ValueError, EOFError, pickle.UnpicklingError, OSError) as error:
        raise StateFileError(f"{path}: not a readable optimizer state file ({error})") from error
    if not isinstance(array, np.ndarray) or array.ndim != 1:
        raise StateFileError(f"{path}: expected a 1-D object array, found {type(array).__name__}")
    return array


def read_optimizer_state(
    path: str | os.PathLike, expected_shapes: Sequence[tuple[int, ...]] | None = None
) -> OptimizerState:
    """Read `opt_dec.npy` / `opt_disc.npy`; with `expected_shapes` (model.weights order) check they fit."""
    path = Path(path)
    items = _read_object_npy(path)
    if len(items) % 2 != 1 or len(items) < 3:
        raise StateFileError(
            f"{path}: {len(items)} elements, expected 1 + 2n (iterations, n first and n second moments)"
        )
    counter = items[0]
    if not isinstance(counter, (int, np.integer)):
        raise StateFileError(
            f"{path}: element 0 must be the integer iteration count, found {counter!r}"
        )
    count = (len(items) - 1) // 2
    first = [np.asarray(item, dtype=np.float32) for item in items[1 : 1 + count]]
    second = [np.asarray(item, dtype=np.float32) for item in items[1 + count :]]
    for index, (m, v) in enumerate(zip(first, second)):
        if m.shape != v.shape:
            raise StateFileError(
                f"{path}: tensor {index}: first moment {m.shape} and second moment {v.shape} differ"
            )
    state = OptimizerState(int(counter), first, second)
    if expected_shapes is not None:
        _check_state_shapes(path, state, expected_shapes)
    return state


def _check_state_shapes(
    path: Path | str, state: OptimizerState, expected_shapes: Sequence[tuple[int, ...]]
) -> None:
    expected = [tuple(shape) for shape in expected_shapes]
    if len(expected) != len(state.first_moments):
        raise StateFileError(
            f"{path}: state for {len(state.first_moments)} tensors, the network has {len(expected)}"
        )
    for index, (found, wanted) in enumerate(zip(state.shapes, expected)):
        if found != wanted:
            raise StateFileError(
                f"{path}: tensor {index}: state shape {found}, the network weight is {wanted} "
                "(a checkpoint of another base_channels or network?)"
            )


def write_optimizer_state(path: str | os.PathLike, state: OptimizerState) -> Path:
    """Write the state like the original's `np.save(path, opt.get_weights())` (pickle protocol 3)."""
    path = Path(path)
    if len(state.first_moments) != len(state.second_moments):
        raise StateFileError(
            f"{path}: {len(state.first_moments)} first and {len(state.second_moments)} second moments"
        )
    items = [np.int64(state.iterations)]
    items += [np.ascontiguousarray(m, dtype=np.float32) for m in state.first_moments]
    items += [np.ascontiguousarray(v, dtype=np.float32) for v in state.second_moments]
    array = np.empty(len(items), dtype=object)
    for index, item in enumerate(items):
        array[index] = item
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, np.lib.format.header_data_from_array_1_0(array))
    _LegacyNumpyPickler(buffer, protocol=3).dump(array)
    _write_atomically(path, buffer.getbuffer())
    return path


def _write_atomically(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def read_switch(path: str | os.PathLike) -> float:
    """The R1 switch (a 0-d float32 in [-1, 0]; the R1 weight is -switch * 10)."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightFileError(f"switch file not found: {path}")
    try:
        value = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise StateFileError(f"{path}: not a readable .npy file ({error})") from error
    if value.size != 1 or value.dtype.kind != "f":
        raise StateFileError(
            f"{path}: expected a float scalar, found dtype {value.dtype} shape {value.shape}"
        )
    switch = float(value.reshape(()))
    if not -1.0 <= switch <= 0.0:
        raise StateFileError(f"{path}: switch {switch} is outside [-1, 0]")
    return switch


def write_switch(path: str | os.PathLike, value: float) -> Path:
    """Write the switch as the original does: a 0-d float32 .npy (132 bytes)."""
    path = Path(path)
    if not -1.0 <= value <= 0.0:
        raise StateFileError(f"switch {value} is outside [-1, 0]")
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(value, dtype=np.float32))
    _write_atomically(path, buffer.getbuffer())
    return path


def _adam_of(optimizer):
    """The Keras 3 Adam inside `optimizer` (unwrapping a LossScaleOptimizer)."""
    import keras

    adam = getattr(optimizer, "inner_optimizer", optimizer)
    if not isinstance(adam, keras.optimizers.Adam):
        raise TypeError(f"expected a Keras 3 Adam optimizer, got {type(adam).__name__}")
    return adam


def optimizer_state_from_keras(optimizer, variables: Sequence) -> OptimizerState:
    """The state of a Keras 3 Adam for `variables` (pass `model.weights`), in the legacy layout."""
    adam = _adam_of(optimizer)
    if not adam.built:
        adam.build(list(variables))
    first, second = [], []
    for variable in variables:
        index = adam._get_variable_index(variable)
        first.append(np.array(adam._momentums[index], dtype=np.float32))
        second.append(np.array(adam._velocities[index], dtype=np.float32))
    return OptimizerState(int(adam.iterations), first, second)


def apply_optimizer_state(optimizer, variables: Sequence, state: OptimizerState) -> None:
    """Load a legacy-layout state into a Keras 3 Adam for `variables` (pass `model.weights`).

    The learning rate and betas are not part of the state and stay as the optimizer has them.
    """
    adam = _adam_of(optimizer)
    _check_state_shapes("optimizer state", state, [tuple(v.shape) for v in variables])
    if not adam.built:
        adam.build(list(variables))
    for variable, m, v in zip(variables, state.first_moments, state.second_moments):
        index = adam._get_variable_index(variable)
        adam._momentums[index].assign(m)
        adam._velocities[index].assign(v)
    adam.iterations.assign(state.iterations)


# ---------------------------------------------------------------------------------------------
# Whole official folders


@dataclass
class ImportedMusika:
    """Networks and training state found in one official (or official-layout) folder."""

    folder: Path
    autoencoder: AutoencoderNetworks | None
    gan: GanNetworks | None
    switch: float | None
    generator_optimizer: OptimizerState | None
    critic_optimizer: OptimizerState | None

    def metadata(self) -> dict:
        """JSON-able summary: which sets were found, their configurations and sizes."""
        summary: dict[str, Any] = {"folder": str(self.folder)}
        if self.autoencoder is not None:
            summary["autoencoder"] = {
                "config": self.autoencoder.config.to_dict(),
                "parameters": {
                    role: int(model.count_params())
                    for role, model in self.autoencoder.as_dict().items()
                },
            }
        if self.gan is not None:
            summary["gan"] = {
                "config": self.gan.config.to_dict(),
                "parameters": {
                    role: int(model.count_params()) for role, model in self.gan.as_dict().items()
                },
                "switch": self.switch,
                "r1_weight": None if self.switch is None else -10.0 * self.switch,
                "iterations": (
                    None
                    if self.generator_optimizer is None
                    else self.generator_optimizer.iterations
                ),
            }
        return summary


def import_musika(folder: str | os.PathLike) -> ImportedMusika:
    """Build and load every network set present in `folder`.

    An AE set is present when any of enc.h5, dec.h5, enc2.h5, dec2.h5 exists (then all four are
    required); a GAN set when any of gen.h5, gen_ema.h5, critic.h5 exists (then all three are
    required). base_channels, small and the AE widths come from the files' shapes. opt_dec.npy,
    opt_disc.npy and switch.npy are read when present and checked against the networks.
    """
    from .networks import build_autoencoder, build_gan

    folder = Path(folder)
    if not folder.is_dir():
        raise MissingWeightFileError(f"checkpoint folder not found: {folder}")
    has_ae = any((folder / name).exists() for name in AE_FILE_NAMES.values())
    has_gan = any((folder / name).exists() for name in GAN_FILE_NAMES.values())
    if not has_ae and not has_gan:
        raise MissingWeightFileError(
            f"{folder}: no Musika weights (expected {', '.join(AE_FILE_NAMES.values())} "
            f"and/or {', '.join(GAN_FILE_NAMES.values())})"
        )

    autoencoder = None
    if has_ae:
        _require_files(folder, AE_FILE_NAMES.values())
        stored = {role: read_weight_file(folder / name) for role, name in AE_FILE_NAMES.items()}
        autoencoder = build_autoencoder(_autoencoder_config_of(folder, stored))
        for role, model in autoencoder.as_dict().items():
            _assign_stored(folder / AE_FILE_NAMES[role], stored[role], model, _AE_LAYOUT_KEYS[role])

    gan = None
    switch = generator_optimizer = critic_optimizer = None
    if has_gan:
        _require_files(folder, GAN_FILE_NAMES.values())
        stored = {role: read_weight_file(folder / name) for role, name in GAN_FILE_NAMES.items()}
        config = _gan_config_of(folder / GAN_FILE_NAMES["generator"], stored["generator"])
        gan = build_gan(config)
        for role, model in gan.as_dict().items():
            key = gan_layout_key(role, config.small)
            _assign_stored(folder / GAN_FILE_NAMES[role], stored[role], model, key)
        if (folder / SWITCH_FILE).exists():
            switch = read_switch(folder / SWITCH_FILE)
        if (folder / GENERATOR_OPTIMIZER_FILE).exists():
            generator_optimizer = read_optimizer_state(
                folder / GENERATOR_OPTIMIZER_FILE, [tuple(w.shape) for w in gan.generator.weights]
            )
        if (folder / CRITIC_OPTIMIZER_FILE).exists():
            critic_optimizer = read_optimizer_state(
                folder / CRITIC_OPTIMIZER_FILE, [tuple(w.shape) for w in gan.critic.weights]
            )
    return ImportedMusika(folder, autoencoder, gan, switch, generator_optimizer, critic_optimizer)
