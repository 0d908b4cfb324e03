"""Sizes and input/output shapes of the Musika networks, as JSON-able data (`musika-piano model info`)."""

from __future__ import annotations

from .config import AutoencoderConfig, GanConfig

OUTPUT_NAMES = {
    "encoder1": ["latents1"],
    "decoder1": ["magnitude", "phase"],
    "encoder2": ["latents"],
    "decoder2": ["latents1"],
    "generator": ["latents"],
    "critic": ["score"],
}
OFFICIAL_FILES = {
    "encoder1": "enc.h5",
    "decoder1": "dec.h5",
    "encoder2": "enc2.h5",
    "decoder2": "dec2.h5",
    "generator": "gen.h5 / gen_ema.h5",
    "critic": "critic.h5",
}


def _shape(tensor) -> list[int | None]:
    return [None if size is None else int(size) for size in tensor.shape]


def _describe(model, role: str) -> dict:
    return {
        "parameters": int(model.count_params()),
        "weight_tensors": len(model.weights),
        "inputs": [{"name": t.name, "shape": _shape(t)} for t in model.inputs],
        "outputs": [
            {"name": name, "shape": _shape(t)} for name, t in zip(OUTPUT_NAMES[role], model.outputs)
        ],
        "official_file": OFFICIAL_FILES[role],
    }


def describe_networks(
    base_channels: int = 128, small: bool = False, ae: AutoencoderConfig | None = None
) -> dict:
    """Parameter count, weight-tensor count and I/O shapes (batch axis = null) of all six networks.

    Builds the networks (this imports TensorFlow), so the numbers are those of the real models.
    """
    from . import networks

    if base_channels < 1:
        raise ValueError(f"base_channels must be positive, got {base_channels}")
    ae = ae or AutoencoderConfig()
    gan = GanConfig(base_channels=base_channels, small=small)
    models = {
        "encoder1": networks.build_encoder1(ae),
        "decoder1": networks.build_decoder1(ae),
        "encoder2": networks.build_encoder2(ae),
        "decoder2": networks.build_decoder2(ae),
        "generator": networks.build_generator(gan),
        "critic": networks.build_critic(gan),
    }
    described = {role: _describe(model, role) for role, model in models.items()}
    parameters = {role: entry["parameters"] for role, entry in described.items()}
    return {
        "gan": {
            **gan.to_dict(),
            "latent_length": gan.latent_length,
            "coord_length": gan.coord_length,
        },
        "autoencoder": {
            **{
                key: list(value) if isinstance(value, tuple) else value
                for key, value in ae.to_dict().items()
            },
            "official": ae.is_official,
        },
        "networks": described,
        "totals": {
            "autoencoder": sum(
                parameters[r] for r in ("encoder1", "decoder1", "encoder2", "decoder2")
            ),
            "gan": parameters["generator"] + parameters["critic"],
            "inference": parameters["generator"] + parameters["decoder2"] + parameters["decoder1"],
        },
    }
