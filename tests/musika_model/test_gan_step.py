"""GAN training step pieces and one real step at tiny size."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from musika_model import gan_step, gan_training, networks, tf_step
from musika_model.config import GanConfig
from musika_model.train_config import using_dtype_policy

TINY_GAN = GanConfig(base_channels=16)


def test_hinge_losses():
    real = tf.constant([[2.0], [0.5], [-1.0]])
    fake = tf.constant([[-2.0], [0.0], [1.0]])
    loss_real, loss_fake = gan_step.critic_hinge_losses(real, fake)
    assert float(loss_real) == pytest.approx((0.0 + 0.5 + 2.0) / 3)
    assert float(loss_fake) == pytest.approx((0.0 + 1.0 + 2.0) / 3)
    assert float(gan_step.generator_hinge_loss(fake)) == pytest.approx(1.0 / 3)


def test_r1_penalty_of_a_linear_critic_is_the_squared_weight_norm():
    critic = keras.Sequential([keras.Input((4, 2)), keras.layers.Flatten(), keras.layers.Dense(1)])
    kernel = np.arange(8, dtype="float32").reshape(8, 1) / 10
    critic.layers[-1].kernel.assign(kernel)
    real = tf.random.normal((3, 4, 2))
    penalty, scores = tf_step.r1_penalty(critic, real)
    assert float(penalty) == pytest.approx(float((kernel**2).sum()), rel=1e-6)
    np.testing.assert_allclose(scores, critic(real), rtol=1e-6)


def test_r1_penalty_averages_per_sample_sums():
    critic = keras.Sequential(
        [keras.Input((2,)), keras.layers.Lambda(lambda x: tf.reduce_sum(x**2, 1, keepdims=True))]
    )
    real = tf.constant([[1.0, 0.0], [1.0, 1.0]])  # gradient 2x: per-sample sums 4 and 8
    penalty, _ = tf_step.r1_penalty(critic, real)
    assert float(penalty) == pytest.approx(6.0)


@pytest.mark.parametrize(
    "switch, real_mean, fake_mean, expected",
    [
        (-0.5, 2.0, -2.0, -0.5001),  # certainty 1 > 0.9: more R1
        (-0.5, 0.5, 0.0, -0.4999),  # certainty 0.25: less R1
        (-1.0, 2.0, -2.0, -1.0),  # clamped at -1
        (0.0, 0.0, 1.0, 0.0),  # negative margin -> certainty 0, clamped at 0
        (-0.5, 1.8, 0.0, -0.4999),  # certainty exactly 0.9 is not above the stable point
    ],
)
def test_switch_update(switch, real_mean, fake_mean, expected):
    real = tf.constant([[real_mean - 0.1], [real_mean + 0.1]])
    fake = tf.constant([[fake_mean], [fake_mean]])
    result = gan_step.updated_switch(tf.constant(switch), real, fake)
    assert float(result) == pytest.approx(expected, abs=1e-7)
    assert float(gan_step.r1_weight(result)) == pytest.approx(-10.0 * expected, abs=1e-6)


def test_channel_swap_exchanges_left_and_right_for_the_whole_batch():
    latents = tf.reshape(tf.range(2 * 3 * 128, dtype=tf.float32), (2, 3, 128))
    swapped = gan_step.swap_channels(latents)
    np.testing.assert_array_equal(swapped[..., :64], latents[..., 64:])
    np.testing.assert_array_equal(swapped[..., 64:], latents[..., :64])
    outcomes = []
    for counter in range(200):
        result = gan_step.random_channel_swap(latents, gan_step.step_seeds(1, counter)["swap"]).numpy()
        same, exchanged = np.array_equal(result, latents), np.array_equal(result, swapped)
        assert same != exchanged
        outcomes.append(exchanged)
    assert 70 < sum(outcomes) < 130


def test_ema_update():
    ema = [keras.Variable(np.zeros(3, "float32")), keras.Variable(np.ones(2, "float32"))]
    values = [keras.Variable(np.ones(3, "float32")), keras.Variable(np.zeros(2, "float32"))]
    gan_step.ema_update(ema, values)
    np.testing.assert_allclose(ema[0], np.full(3, 0.001), rtol=1e-5)
    np.testing.assert_allclose(ema[1], np.full(2, 0.999), rtol=1e-6)


def test_crop_offsets():
    assert gan_step.crop_offsets(GanConfig()) == [64, 192, 320]
    assert gan_step.crop_offsets(GanConfig(small=True)) == [32, 96, 160]


def test_coordinate_path_interpolates_anchors_and_keeps_the_style():
    gan = GanConfig()
    path = (
        gan_step.coordinate_path(2, gan, gan_step.step_seeds(3, 0))
        .numpy()
        .astype(np.float64)
    )
    assert path.shape == (2, 768, 128)
    np.testing.assert_allclose(
        path[:, :, 64:], np.broadcast_to(path[:, :1, 64:], path[:, :, 64:].shape), atol=1e-6
    )
    assert not np.allclose(path[0, 0, 64:], path[1, 0, 64:])
    steps = np.diff(path[:, :, :64], axis=1)
    left_step, right_step = steps[:, :1], steps[:, -1:]
    # a constant slope on each side of the centre anchor, which sits half-way between frames 383 and 384
    np.testing.assert_allclose(
        steps[:, :383], np.broadcast_to(left_step, steps[:, :383].shape), atol=1e-5
    )
    np.testing.assert_allclose(
        steps[:, 384:], np.broadcast_to(right_step, steps[:, 384:].shape), atol=1e-5
    )
    centre_from_left = path[:, 383, :64] + left_step[:, 0] / 2
    centre_from_right = path[:, 384, :64] - right_step[:, 0] / 2
    np.testing.assert_allclose(centre_from_left, centre_from_right, atol=1e-5)
    # 384 steps from each outer anchor to the centre one; anchors are standard normal vectors
    left_anchor = centre_from_left - 384 * left_step[:, 0]
    right_anchor = centre_from_left + 384 * right_step[:, 0]
    for anchor in (left_anchor, centre_from_left, right_anchor):
        assert np.all((anchor.std(axis=1) > 0.6) & (anchor.std(axis=1) < 1.5))
    np.testing.assert_allclose(path[:, 0, :64], left_anchor + left_step[:, 0] / 2, atol=5e-4)


def test_training_coordinates_are_crops_at_the_half_window_offsets():
    gan = GanConfig()
    seen = set()
    for seed in range(12):
        seeds = gan_step.step_seeds(seed, 5)
        window = gan_step.training_coordinates(2, gan, seeds).numpy()
        path = gan_step.coordinate_path(2, gan, seeds).numpy()
        assert window.shape == (2, 256, 128)
        starts = [
            o for o in gan_step.crop_offsets(gan) if np.array_equal(path[:, o : o + 256], window)
        ]
        assert len(starts) == 1
        seen.add(starts[0])
    assert seen == {64, 192, 320}


def test_make_optimizers_uses_the_original_betas():
    plain, _ = gan_step.make_optimizers()
    assert float(plain.beta_1) == 0.9 and float(plain.learning_rate) == pytest.approx(1e-4)
    mixed, _ = gan_step.make_optimizers(4e-5, "mixed_float16")
    assert isinstance(mixed, keras.optimizers.LossScaleOptimizer)
    assert float(mixed.inner_optimizer.beta_1) == 0.5
    assert float(mixed.learning_rate) == pytest.approx(4e-5)
    brain, _ = gan_step.make_optimizers(4e-5, "mixed_bfloat16")
    assert not isinstance(brain, keras.optimizers.LossScaleOptimizer)
    assert float(brain.beta_1) == 0.5
    with pytest.raises(ValueError, match="mixed_float8"):
        gan_step.make_optimizers(4e-5, "mixed_float8")


def test_one_training_step_updates_everything_from_one_forward_pass():
    keras.utils.set_random_seed(0)
    nets = networks.build_gan(TINY_GAN)
    training = gan_training.create_gan_training(nets, seed=7)
    real = tf.random.stateless_uniform((2, 256, 128), seed=(1, 2), minval=-1, maxval=1)

    # What the step must compute, from the same draws and the weights before the update.
    seeds = gan_step.step_seeds(7, 0)
    twin_real = gan_step.random_channel_swap(real, seeds["swap"])
    coordinates = gan_step.training_coordinates(2, TINY_GAN, seeds)
    expected_generator_loss = -float(tf.reduce_mean(nets.critic(nets.generator(coordinates))))
    expected_real_loss = float(tf.reduce_mean(tf.nn.relu(1.0 - nets.critic(twin_real))))

    before = {role: [np.array(w) for w in model.weights] for role, model in nets.as_dict().items()}
    losses = {key: float(value) for key, value in training.step(real).items()}

    assert all(np.isfinite(value) for value in losses.values())
    assert losses["generator"] == pytest.approx(expected_generator_loss, rel=1e-4, abs=1e-5)
    assert losses["critic_real"] == pytest.approx(expected_real_loss, rel=1e-4, abs=1e-5)
    assert losses["r1_penalty"] > 0
    assert losses["switch"] in (pytest.approx(-1.0), pytest.approx(-0.9999))
    assert float(training.switch) == pytest.approx(losses["switch"])
    assert losses["r1_weight"] == pytest.approx(-10 * losses["switch"])
    for role in ("generator", "critic"):
        changed = [
            not np.array_equal(a, np.array(b))
            for a, b in zip(before[role], nets.as_dict()[role].weights)
        ]
        assert sum(changed) >= len(changed) - 10, role  # noise scalars may stay put at 0
    for old_ema, new_generator, ema in zip(
        before["generator_ema"], nets.generator.weights, nets.generator_ema.weights
    ):
        np.testing.assert_allclose(
            np.array(ema), 0.999 * old_ema + 0.001 * np.array(new_generator), rtol=1e-5, atol=1e-7
        )
    assert int(training.generator_optimizer.iterations) == 1
    assert int(training.critic_optimizer.iterations) == 1
    assert losses["skipped_updates"] == 0
    assert int(training.draw_counter) == 1

    second = training.step(real)
    assert all(np.isfinite(float(value)) for value in second.values())
    assert int(training.generator_optimizer.iterations) == 2


def test_small_gan_step_runs():
    nets = networks.build_gan(GanConfig(base_channels=8, small=True))
    training = gan_training.create_gan_training(nets, seed=1, switch=-0.5)
    losses = training.step(tf.random.normal((2, 128, 128)))
    assert all(np.isfinite(float(value)) for value in losses.values())
    assert float(losses["switch"]) in (pytest.approx(-0.5001), pytest.approx(-0.4999))


@pytest.mark.slow
def test_mixed_precision_step_runs_with_float32_weights_and_outputs():
    with using_dtype_policy("mixed_float16"):
        nets = networks.build_gan(GanConfig(base_channels=8))
    training = gan_training.create_gan_training(nets, policy="mixed_float16", seed=2)
    losses = training.step(tf.random.normal((2, 256, 128)))
    assert all(np.isfinite(float(value)) for value in losses.values())
    assert all(
        keras.backend.standardize_dtype(w.dtype) == "float32" for w in nets.generator.weights
    )
    assert keras.backend.standardize_dtype(nets.generator.outputs[0].dtype) == "float32"
    for optimizer in (training.critic_optimizer, training.generator_optimizer):
        # dynamic loss scaling either applied the step or skipped it and lowered the scale
        assert int(optimizer.iterations) == 1 or float(optimizer.dynamic_scale) < 2.0**15


def _three_steps(
    gan: GanConfig, batches: list[tf.Tensor], jit_compile: bool
) -> tuple[list[dict], list[np.ndarray]]:
    """Three steps of freshly built networks (one seed: same weights, same draws)."""
    keras.utils.set_random_seed(11)
    nets = networks.build_gan(gan)
    training = gan_training.create_gan_training(nets, seed=5, jit_compile=jit_compile)
    losses = [{key: float(value) for key, value in training.step(batch).items()} for batch in batches]
    return losses, [np.array(w) for w in nets.generator.weights + nets.critic.weights]


@pytest.mark.slow
def test_the_xla_step_computes_what_the_graph_step_computes():
    """jit_compile=True compiles (the window crop has a static size) and matches the plain graph.

    Both draw the same numbers (`counter_random`), but XLA fuses and reorders float32
    arithmetic, so results agree to rounding, not bit for bit: measured, the losses differ by
    at most 4e-6 and the weights by 1.5e-6 over 3 steps. Bounds: losses within 2e-5 (absolute,
    and relative for large values), a few float32 ulps of sums over a batch. Weights within
    lr / 10 = 1e-5: Adam moves each weight by about lr per step in the direction of its
    gradient's sign, so if rounding had flipped any update's direction the two runs would
    differ by about 2 lr in that weight; a tenth of lr rules that out with margin.
    """
    gan = GanConfig(base_channels=16)
    rng = np.random.default_rng(3)
    batches = [tf.constant(rng.uniform(-1, 1, (3, gan.latent_length, 128)), tf.float32) for _ in range(3)]
    plain, plain_weights = _three_steps(gan, batches, jit_compile=False)
    compiled, compiled_weights = _three_steps(gan, batches, jit_compile=True)
    for step, (expected, found) in enumerate(zip(plain, compiled, strict=True), start=1):
        assert set(found) == set(expected) and len(expected) == 7
        for key in expected:
            assert found[key] == pytest.approx(expected[key], rel=2e-5, abs=2e-5), (step, key)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(plain_weights, compiled_weights, strict=True))
    assert worst <= gan_step.LEARNING_RATE / 10, worst


@pytest.mark.slow
def test_the_xla_step_compiles_for_small_windows_a_batch_of_one_and_mixed_float16():
    with using_dtype_policy("mixed_float16"):
        nets = networks.build_gan(GanConfig(base_channels=8, small=True))
    training = gan_training.create_gan_training(nets, policy="mixed_float16", seed=3, jit_compile=True)
    losses = {key: float(value) for key, value in training.step(tf.random.normal((1, 128, 128))).items()}
    assert all(np.isfinite(value) for value in losses.values())
    applied = int(training.critic_optimizer.iterations) + int(training.generator_optimizer.iterations)
    assert applied + losses["skipped_updates"] == 2
