"""Training the two-level Musika autoencoder from audio (the original's AE trainer is unreleased).

Stage 1 (level 1): random mono crops -> normalised log-power spectrogram S -> ENC -> DEC ->
magnitude M and phase P (in units of pi). Losses:
- magnitude: L1 between M and S (clipped to the decoder's [-1, 1] range);
- phase: the absolute phase of a crop depends on where it starts, which the magnitude-only
  encoder cannot know, so phase is trained through shift-invariant, wrap-safe terms:
  1 - cos of the error of the phase's time difference (instantaneous frequency) and of its
  frequency difference (group delay), weighted by the bins' linear amplitude;
- waveform: a multi-resolution STFT loss (spectral convergence + log-magnitude L1) between
  the crop and `frontend.inverse(M, P)`, which judges M and P together as audio;
- optionally an adversarial hinge term from a small critic on the re-analysed log spectrogram.

Stage 2 (level 2, level-1 encoder frozen): level-1 latents z1 -> ENC2 -> DEC2 -> z1'. Losses:
L1 between z1' and z1, plus the magnitude L1 of the frozen DEC decoding z1' against S, so
level-2 errors count where they are audible.

Everything random (crop positions, channels, initial weights, AddNoise) is seeded by
`AeTrainingConfig.seed`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from musika_model.audio import load_audio, to_stereo_float
from musika_model.config import AE_CHUNK_FRAMES, HOP, MU_RESCALE, SIGMA_RESCALE, AutoencoderConfig
from musika_model.frontend import samples_for_frames

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from musika_model.codec import Autoencoder

ProgressCallback = Callable[[int, dict[str, float]], None]
"""Called as (global step, losses of that step); stage-1 keys start with "stage1/", stage-2
keys with "stage2/"."""

STFT_RESOLUTIONS = (2048, 1024, 512, 256)
"""FFT sizes of the multi-resolution STFT loss (hop = size / 4, Hann window)."""


class AeTrainingError(ValueError):
    """Unusable training data or settings."""


@dataclass(frozen=True)
class AeTrainingConfig:
    """Steps, optimiser and loss weights of `train_autoencoder`."""

    stage1_steps: int = 2000
    stage2_steps: int = 1000
    learning_rate: float = 1e-3
    """Adam learning rate of stage 1 (and of the optional critic)."""
    stage2_learning_rate: float = 3e-4
    """Lower than stage 1: a high rate drives the tanh latents into saturation."""
    batch_size: int = 8
    crop_chunks: int = 1
    """Crop length in AE chunks of 128 STFT frames (0.74 s each)."""
    seed: int = 0
    magnitude_weight: float = 1.0
    phase_weight: float = 0.5
    stft_weight: float = 1.0
    adversarial_weight: float = 0.0
    """0 disables the critic."""
    latent_weight: float = 1.0
    stage2_magnitude_weight: float = 1.0
    spread_weight: float = 1.0
    spread_target: float = 0.3
    """Stage 2 penalises level-2 latent dimensions whose std (over batch and time) is below
    this, so the GAN gets latents that vary instead of near-constant ones."""
    log_every: int = 1
    """Call the progress callback every `log_every` steps (and on each stage's last step)."""

    def __post_init__(self) -> None:
        for name in ("stage1_steps", "stage2_steps"):
            if getattr(self, name) < 0:
                raise AeTrainingError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "crop_chunks", "log_every"):
            if getattr(self, name) < 1:
                raise AeTrainingError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_rate", "stage2_learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise AeTrainingError(f"{name} must be positive, got {value}")

    @property
    def crop_samples(self) -> int:
        return samples_for_frames(self.crop_chunks * AE_CHUNK_FRAMES)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AeTrainingResult:
    autoencoder: Autoencoder
    history: list[dict[str, float]] = field(default_factory=list)
    """One entry per logged step: {"step": ..., "<stage>/<loss>": ...}."""
    seconds: float = 0.0


class CropSampler:
    """Random mono crops of `crop_samples` samples from a set of stereo clips (seeded).

    A clip shorter than a crop is zero-padded at the end. Clips are drawn with probability
    proportional to their length, channels uniformly.
    """

    def __init__(self, clips: Sequence[np.ndarray], crop_samples: int, seed: int) -> None:
        if not clips:
            raise AeTrainingError("no training audio given")
        self.clips = clips
        self.crop_samples = crop_samples
        lengths = np.array([len(clip) for clip in clips], dtype=np.float64)
        if lengths.sum() == 0:
            raise AeTrainingError("all training clips are empty")
        self.weights = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> np.ndarray:
        out = np.zeros((size, self.crop_samples), np.float32)
        indices = self.rng.choice(len(self.clips), size=size, p=self.weights)
        for row, index in enumerate(indices):
            clip = self.clips[index]
            start = int(self.rng.integers(0, max(1, len(clip) - self.crop_samples + 1)))
            channel = int(self.rng.integers(0, clip.shape[1]))
            piece = clip[start : start + self.crop_samples, channel]
            out[row, : len(piece)] = piece
        return out


def _load_clips(audio: Sequence[np.ndarray | str | Path]) -> list[np.ndarray]:
    clips = []
    for index, item in enumerate(audio):
        if isinstance(item, (str, Path)):
            clips.append(load_audio(item))
        else:
            clips.append(to_stereo_float(item, f"training clip {index}"))
    return clips


# --------------------------------------------------------------------------- losses


def _amplitude(spectrogram: tf.Tensor) -> tf.Tensor:
    """Linear amplitude of a normalised log-power spectrogram."""
    import tensorflow as tf

    db = spectrogram * SIGMA_RESCALE + MU_RESCALE
    return tf.pow(10.0, db / 20.0)


def phase_difference_loss(
    phase: tf.Tensor, true_phase: tf.Tensor, spectrogram: tf.Tensor
) -> tf.Tensor:
    """Amplitude-weighted 1 - cos error of the phase's time and frequency differences.

    `phase` and `true_phase` are in units of pi, shaped (..., frames, bins). The loss is
    unchanged by a constant phase offset and by wrapping.
    """
    import tensorflow as tf

    weight = _amplitude(spectrogram)
    weight = weight / (tf.reduce_mean(weight, axis=[-2, -1], keepdims=True) + 1e-8)

    def term(axis: int) -> tf.Tensor:
        predicted = _slice_pair(phase, axis, False) - _slice_pair(phase, axis, True)
        target = _slice_pair(true_phase, axis, False) - _slice_pair(true_phase, axis, True)
        pair_weight = tf.minimum(_slice_pair(weight, axis, True), _slice_pair(weight, axis, False))
        error = 1.0 - tf.cos(math.pi * (predicted - target))
        return tf.reduce_mean(pair_weight * error)

    return 0.5 * (term(-2) + term(-1))


def _slice_pair(tensor: tf.Tensor, axis: int, first: bool) -> tf.Tensor:
    """All but the last (first=True) or all but the first element along `axis` (-1 or -2)."""
    if axis == -1:
        return tensor[..., :-1] if first else tensor[..., 1:]
    return tensor[..., :-1, :] if first else tensor[..., 1:, :]


def multi_resolution_stft_loss(predicted: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Mean over resolutions of spectral convergence + L1 of log magnitudes (B, n) waveforms."""
    import tensorflow as tf

    total = 0.0
    for size in STFT_RESOLUTIONS:
        def magnitude(wave: tf.Tensor, size: int = size) -> tf.Tensor:
            spec = tf.signal.stft(wave, size, size // 4, size, pad_end=False)
            return tf.abs(spec)

        p, t = magnitude(predicted), magnitude(target)
        convergence = tf.norm(t - p) / (tf.norm(t) + 1e-7)
        log_l1 = tf.reduce_mean(tf.abs(tf.math.log(p + 1e-5) - tf.math.log(t + 1e-5)))
        total += convergence + log_l1
    return total / len(STFT_RESOLUTIONS)


def _spectrogram_critic(seed: int) -> keras.Model:
    """A small critic on (B, frames, 513) log spectrograms, bins as channels."""
    import keras

    initializer = keras.initializers.HeUniform(seed=seed)
    inputs = keras.Input((None, 513))
    x = inputs
    for index, width in enumerate((64, 64, 64)):
        x = keras.layers.Conv1D(width, 5, strides=2, padding="same",
                                kernel_initializer=initializer, name=f"critic_conv{index}")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    scores = keras.layers.Conv1D(1, 3, padding="same", kernel_initializer=initializer,
                                 name="critic_out")(x)
    return keras.Model(inputs, scores, name="ae_critic")


# --------------------------------------------------------------------------- trainer


class AeTrainer:
    """The compiled stage-1 and stage-2 update steps for one autoencoder and config.

    `stage1_step(wave)` / `stage2_step(wave)` take a (batch_size, crop_samples) float32
    batch of mono crops and return the step's losses as scalar tensors.
    """

    def __init__(self, autoencoder: Autoencoder, config: AeTrainingConfig) -> None:
        import keras
        import tensorflow as tf

        self.ae = autoencoder
        self.config = config
        self.edge = samples_for_frames(1) - HOP  # 768 samples without full window overlap
        self.stage1_optimizer = keras.optimizers.Adam(config.learning_rate)
        self.stage2_optimizer = keras.optimizers.Adam(config.stage2_learning_rate)
        # Optimiser slots are created here rather than on the first traced step, which would
        # make tf.function trace every step twice.
        self.level1_variables = (autoencoder.encoder1.trainable_variables
                                 + autoencoder.decoder1.trainable_variables)
        self.level2_variables = (autoencoder.encoder2.trainable_variables
                                 + autoencoder.decoder2.trainable_variables)
        self.stage1_optimizer.build(self.level1_variables)
        self.stage2_optimizer.build(self.level2_variables)
        self.critic = None
        if config.adversarial_weight > 0:
            self.critic = _spectrogram_critic(config.seed)
            self.critic_optimizer = keras.optimizers.Adam(config.learning_rate, beta_1=0.5)
            self.critic_optimizer.build(self.critic.trainable_variables)
        spec = tf.TensorSpec((config.batch_size, config.crop_samples), tf.float32)
        self.stage1_step = tf.function(self._stage1_step, input_signature=[spec])
        self.stage2_step = tf.function(self._stage2_step, input_signature=[spec])

    def _analyse(self, wave):
        """Spectrogram and true phase as (B * chunks, 128, 513) chunks."""
        import tensorflow as tf

        from musika_model.frontend import phase_map, spectrogram

        def chunks(tensor):
            return tf.reshape(tensor, (-1, AE_CHUNK_FRAMES, tensor.shape[-1]))

        return chunks(spectrogram(wave)), chunks(phase_map(wave))

    def _stage1_step(self, wave):
        import tensorflow as tf

        from musika_model.frontend import inverse, spectrogram

        config = self.config
        spec, true_phase = self._analyse(wave)
        level1 = self.level1_variables
        with tf.GradientTape() as tape:
            latents = self.ae.encoder1(spec, training=True)
            magnitude, phase = self.ae.decoder1(latents, training=True)
            magnitude_loss = tf.reduce_mean(tf.abs(magnitude - tf.clip_by_value(spec, -1.0, 1.0)))
            phase_loss = phase_difference_loss(phase, true_phase, spec)
            frames = config.crop_chunks * AE_CHUNK_FRAMES
            rebuilt = inverse(
                tf.reshape(magnitude, (-1, frames, magnitude.shape[-1])),
                tf.reshape(phase, (-1, frames, phase.shape[-1])),
            )
            interior = slice(self.edge, -self.edge)
            stft_loss = multi_resolution_stft_loss(rebuilt[:, interior], wave[:, interior])
            total = (config.magnitude_weight * magnitude_loss + config.phase_weight * phase_loss
                     + config.stft_weight * stft_loss)
            if self.critic is not None:
                fake_scores = self.critic(spectrogram(rebuilt), training=True)
                adversarial_loss = -tf.reduce_mean(fake_scores)
                total += config.adversarial_weight * adversarial_loss
        gradients = tape.gradient(total, level1)
        self.stage1_optimizer.apply_gradients(zip(gradients, level1, strict=True))
        losses = {"magnitude": magnitude_loss, "phase": phase_loss, "stft": stft_loss,
                  "total": total}
        if self.critic is not None:
            losses["adversarial"] = adversarial_loss
            losses["critic"] = self._critic_step(spectrogram(wave), spectrogram(rebuilt))
        return losses

    def _critic_step(self, real, fake):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            real_scores = self.critic(real, training=True)
            fake_scores = self.critic(tf.stop_gradient(fake), training=True)
            loss = 0.5 * (tf.reduce_mean(tf.nn.relu(1.0 - real_scores))
                          + tf.reduce_mean(tf.nn.relu(1.0 + fake_scores)))
        variables = self.critic.trainable_variables
        gradients = tape.gradient(loss, variables)
        self.critic_optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return loss

    def _stage2_step(self, wave):
        import tensorflow as tf

        config = self.config
        spec, _ = self._analyse(wave)
        latents1 = self.ae.encoder1(spec, training=False)
        level2 = self.level2_variables
        with tf.GradientTape() as tape:
            latents2 = self.ae.encoder2(latents1, training=True)
            rebuilt1 = self.ae.decoder2(latents2, training=True)
            latent_loss = tf.reduce_mean(tf.abs(rebuilt1 - latents1))
            magnitude, _ = self.ae.decoder1(rebuilt1, training=False)
            magnitude_loss = tf.reduce_mean(tf.abs(magnitude - tf.clip_by_value(spec, -1.0, 1.0)))
            spread = tf.math.reduce_std(tf.reshape(latents2, (-1, latents2.shape[-1])), axis=0)
            spread_loss = tf.reduce_mean(tf.nn.relu(config.spread_target - spread))
            total = (config.latent_weight * latent_loss
                     + config.stage2_magnitude_weight * magnitude_loss
                     + config.spread_weight * spread_loss)
        gradients = tape.gradient(total, level2)
        self.stage2_optimizer.apply_gradients(zip(gradients, level2, strict=True))
        return {"latent": latent_loss, "magnitude": magnitude_loss, "spread": spread_loss,
                "total": total}


def _check_finite_losses(stage: str, step: int, losses: dict[str, float]) -> None:
    bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
    if bad:
        raise FloatingPointError(f"{stage} step {step}: non-finite losses {bad}")


def train_autoencoder(
    audio: Sequence[np.ndarray | str | Path],
    ae_config: AutoencoderConfig | None = None,
    config: AeTrainingConfig | None = None,
    progress: ProgressCallback | None = None,
    autoencoder: Autoencoder | None = None,
) -> AeTrainingResult:
    """Train (or continue training `autoencoder`) on 44.1 kHz clips or audio files.

    `audio` holds (n, 2)/(n,) arrays at 44.1 kHz or paths of files (any format and rate);
    all of it is held in memory. A new autoencoder uses `ae_config`, by default the tiny
    widths (the official widths are impractical to train on a CPU). Runs stage 1 then stage 2
    and returns the autoencoder with its loss history. Raises FloatingPointError naming the
    stage and step if a loss becomes NaN/Inf.
    """
    import keras

    from musika_model.codec import Autoencoder

    config = config or AeTrainingConfig()
    keras.utils.set_random_seed(config.seed)
    if autoencoder is None:
        autoencoder = Autoencoder.build(ae_config or AutoencoderConfig.tiny())
    elif ae_config is not None and ae_config != autoencoder.config:
        raise AeTrainingError(
            f"ae_config {ae_config} differs from the given autoencoder's {autoencoder.config}"
        )
    sampler = CropSampler(_load_clips(audio), config.crop_samples, config.seed)
    trainer = AeTrainer(autoencoder, config)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    step = 0
    stages = (("stage1", config.stage1_steps, trainer.stage1_step),
              ("stage2", config.stage2_steps, trainer.stage2_step))
    for stage, steps, run in stages:
        for stage_step in range(1, steps + 1):
            step += 1
            losses = {name: float(value) for name, value in run(sampler.batch(config.batch_size)).items()}
            _check_finite_losses(stage, stage_step, losses)
            if stage_step % config.log_every == 0 or stage_step == steps:
                entry = {"step": float(step), **{f"{stage}/{k}": v for k, v in losses.items()}}
                history.append(entry)
                if progress is not None:
                    progress(step, {k: v for k, v in entry.items() if k != "step"})
    return AeTrainingResult(autoencoder, history, time.perf_counter() - started)


# --------------------------------------------------------------------------- evaluation


def reconstruction_metrics(autoencoder: Autoencoder, audio: np.ndarray, seed: int = 0) -> dict:
    """How well `audio` (44.1 kHz) survives encode -> decode, plus latent statistics.

    - `log_spectral_distance_db`: RMS over bins of the dB difference (1024-point STFT, power
      floored at -80 dB below the clip's peak), averaged over frames;
    - `mr_stft`: the multi-resolution STFT loss between original and decoded audio;
    - `latent_std`, `latent_saturated`: spread of the latents and the fraction with |z| > 0.99.
    """
    import tensorflow as tf

    from musika_model.frontend import stft

    result = autoencoder.encode(audio)
    decoded = autoencoder.decode(result.latents, num_samples=result.num_samples, seed=seed)
    original = to_stereo_float(audio)
    edge = samples_for_frames(1)
    reference = tf.constant(original[edge:-edge].T)
    rebuilt = tf.constant(decoded[edge:-edge].T)

    def power_db(wave):
        return 10.0 * np.log10(np.abs(stft(wave).numpy()) ** 2 + 1e-12)

    ref_db, out_db = power_db(reference), power_db(rebuilt)
    floor = ref_db.max() - 80.0
    ref_db, out_db = np.maximum(ref_db, floor), np.maximum(out_db, floor)
    lsd = float(np.mean(np.sqrt(np.mean((ref_db - out_db) ** 2, axis=-1))))
    latents = result.latents
    return {
        "log_spectral_distance_db": lsd,
        "mr_stft": float(multi_resolution_stft_loss(rebuilt, reference)),
        "latent_mean": float(latents.mean()),
        "latent_std": float(latents.std()),
        "latent_time_std": float(latents.std(axis=0).mean()),
        "latent_saturated": float(np.mean(np.abs(latents) > 0.99)),
        "latent_finite": bool(np.isfinite(latents).all()),
    }
