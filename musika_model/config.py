"""Configuration of the 44.1 kHz Musika networks and their audio front end.

Plain dataclasses with no TensorFlow import, so data stages and the CLI can use the
constants (frame rates, window lengths) without paying for TensorFlow's start-up.
Values follow the original implementation (see docs/musika.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SAMPLE_RATE = 44100
HOP = 256
N_FFT = 4 * HOP
N_BINS = N_FFT // 2 + 1
MU_RESCALE = -25.0
SIGMA_RESCALE = 75.0

LATENT_DEPTH = 64
"""Latent values per channel per latent frame; a stereo latent frame has 2 * 64 = 128 values."""
STEREO_LATENT_WIDTH = 2 * LATENT_DEPTH
STFT_FRAMES_PER_LATENT = 16
SAMPLES_PER_LATENT = STFT_FRAMES_PER_LATENT * HOP
"""4096 samples = 92.88 ms per latent frame."""
AE_CHUNK_FRAMES = 128
"""STFT frames per level-1 encoder chunk ("shape" in the original)."""
AE_DECODER_WINDOW = 64
"""STFT frames per level-1 decoder window ("window" in the original)."""


@dataclass(frozen=True)
class AutoencoderConfig:
    """Widths of the two-level autoencoder.

    The defaults are the official network widths; `tiny()` scales every hidden width down
    for tests and the CPU demo. The latent depth (64) and the 513 frequency bins never change,
    so latents from any width have the same (T, 128) shape.
    """

    enc1_width: int = 1024
    enc1_layers: int = 5
    dec1_widths: tuple[int, int, int, int] = (768, 768, 512, 256)
    enc2_widths: tuple[int, int, int, int] = (256, 384, 512, 768)
    dec2_widths: tuple[int, int, int, int, int] = (768, 640, 512, 384, 256)

    @classmethod
    def tiny(cls, divisor: int = 16) -> AutoencoderConfig:
        """The official layout with every hidden width divided by `divisor` (at least 8 channels)."""

        def shrink(width: int) -> int:
            return max(8, width // divisor)

        default = cls()
        return cls(
            enc1_width=shrink(default.enc1_width),
            enc1_layers=default.enc1_layers,
            dec1_widths=tuple(shrink(w) for w in default.dec1_widths),  # type: ignore[arg-type]
            enc2_widths=tuple(shrink(w) for w in default.enc2_widths),  # type: ignore[arg-type]
            dec2_widths=tuple(shrink(w) for w in default.dec2_widths),  # type: ignore[arg-type]
        )

    @property
    def is_official(self) -> bool:
        return self == AutoencoderConfig()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AutoencoderConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class GanConfig:
    """Generator and critic hyper-parameters (`base_channels`, `small`) and the derived lengths."""

    base_channels: int = 128
    small: bool = False
    coord_depth: int = 64

    @property
    def latent_length(self) -> int:
        """GAN window in latent frames: 256 (23.78 s), or 128 with `small`."""
        return 128 if self.small else 256

    @property
    def coord_length(self) -> int:
        """Length of the interpolated coordinate sequence a window is cropped from (1.5 windows)."""
        return self.latent_length * 3 // 2

    def to_dict(self) -> dict:
        return {"base_channels": self.base_channels, "small": self.small, "coord_depth": self.coord_depth}

    @classmethod
    def from_dict(cls, data: dict) -> GanConfig:
        return cls(
            base_channels=int(data["base_channels"]),
            small=bool(data.get("small", False)),
            coord_depth=int(data.get("coord_depth", 64)),
        )
