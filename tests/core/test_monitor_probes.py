"""The monitors take the probe a model takes (arrays, dicts, lists) and refuse a probe too
small for the estimator when they are made, not after an epoch of training."""

import warnings

import keras
import numpy as np
import pytest

from keras_cka_sr import CKAGradientMonitor, CKAMonitor, CKASimilarityLoss, attach_cka_loss

L = keras.layers


def _two_input_model():
    image = keras.Input((6,), name="image")
    extra = keras.Input((2,), name="extra")
    h = L.Dense(8, activation="relu", name="tap_a")(L.Concatenate()([image, extra]))
    h = L.Dense(8, activation="relu", name="tap_b")(h)
    return keras.Model({"image": image, "extra": extra}, L.Dense(3, name="logits")(h))


def _data(n=32):
    rng = np.random.default_rng(0)
    x = {
        "image": rng.normal(size=(n, 6)).astype("float32"),
        "extra": rng.normal(size=(n, 2)).astype("float32"),
    }
    return x, rng.integers(0, 3, size=n)


def test_a_dict_probe_trains_with_both_monitors():
    model = _two_input_model()
    loss = CKASimilarityLoss(1e-2)
    trained = attach_cka_loss(model, ["tap_a", "tap_b"], loss)
    trained.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    monitor = CKAMonitor({k: v[:16] for k, v in x.items()}, ["tap_a", "tap_b"])
    gradients = CKAGradientMonitor(
        {k: v[:16] for k, v in x.items()}, y[:16], ["tap_a", "tap_b"], loss
    )
    history = trained.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[monitor, gradients])
    assert len(monitor.matrices) == 2 and np.all(np.isfinite(history.history["cka_mean"]))
    assert np.all(np.isfinite(history.history["cka_grad_ratio"]))


def test_a_list_probe_is_the_model_input_structure():
    image = keras.Input((6,))
    extra = keras.Input((2,))
    h = L.Dense(8, name="tap_a")(L.Concatenate()([image, extra]))
    model = keras.Model([image, extra], L.Dense(8, name="tap_b")(h))
    x, _ = _data()
    monitor = CKAMonitor([x["image"], x["extra"]], ["tap_a", "tap_b"])
    assert monitor.matrix(model).shape == (2, 2)


@pytest.mark.parametrize("size", [0, 3])
def test_a_probe_too_small_for_the_unbiased_estimator_is_refused_at_once(size):
    x, y = _data()
    with pytest.raises(ValueError, match=f"`probe` has {size} samples; .* at least 4"):
        CKAMonitor(x["image"][:size], ["tap_a", "tap_b"])
    with pytest.raises(ValueError, match=f"`x` has {size} samples"):
        CKAGradientMonitor(x["image"][:size], y[:size], ["tap_a", "tap_b"], CKASimilarityLoss(1e-3))
    assert CKAMonitor(x["image"][:3], ["tap_a", "tap_b"], unbiased=False).probe.shape == (3, 6)


def test_inputs_with_different_sample_counts_are_refused():
    x, _ = _data()
    with pytest.raises(ValueError, match=r"same number of samples in every input; got \[8, 16\]"):
        CKAMonitor({"image": x["image"][:8], "extra": x["extra"][:16]}, ["tap_a", "tap_b"])


def test_a_fit_whose_every_batch_is_too_small_for_the_penalty_warns_once():
    model = _two_input_model()
    trained = attach_cka_loss(model, ["tap_a", "tap_b"], CKASimilarityLoss(1e-2))
    trained.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(n=9)
    with pytest.warns(UserWarning, match="CKA-SR added no penalty in this fit.*at least 4"):
        trained.fit(x, y, batch_size=3, epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained.fit(x, y, batch_size=3, epochs=1, verbose=0)  # once per model
        trained.fit(x, y, batch_size=8, epochs=1, verbose=0)  # the penalty acts: quiet
