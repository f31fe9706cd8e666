"""A pruned model saves and loads as `.keras` without Keras skipping any of its state."""

import warnings

import keras
import numpy as np

from keras_cka_sr import pruning


def test_a_pruned_model_saves_without_skipped_containers(tmp_path):
    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(4)(inp)))
    pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0, frequency=1))
    path = tmp_path / "pruned.keras"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned.save(path)
        loaded = keras.models.load_model(path)
    assert not [w for w in caught if "Skipping" in str(w.message)]
    x = np.ones((2, 8), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0))


def test_loading_plain_weights_into_a_pruned_model_reads_no_phantom_container(tmp_path):
    """The wrapper's (owner, attribute) list is not state: Keras once expected it in weight
    files ("Skipping nested container at '.../_targets/container'")."""
    inp = keras.Input((8,))
    plain = keras.Model(inp, keras.layers.Dense(2)(inp))
    path = tmp_path / "plain.weights.h5"
    plain.save_weights(path)
    pruned = pruning.prune_low_magnitude(plain)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pruned.load_weights(path)
        except ValueError:
            pass  # tfmot's contract: plain weights do not load into a pruned model
    assert not [w for w in caught if "_targets" in str(w.message)]


class _BuildsInFromConfig(keras.layers.Layer, pruning.PrunableLayer):
    """A composite layer that builds itself when made from its config, as keras_hub's
    TransformerDecoder does."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = keras.layers.Dense(units)

    def build(self, input_shape):
        self.inner.build(input_shape)

    def call(self, x):
        return self.inner(x)

    def get_prunable_weights(self):
        return [self.inner.kernel]

    def get_config(self):
        return {**super().get_config(), "units": self.units}

    @classmethod
    def from_config(cls, config):
        layer = cls(**config)
        layer.build((None, 8))
        return layer


def test_a_layer_that_builds_in_from_config_is_copied_without_a_second_build():
    inp = keras.Input((8,))
    model = keras.Model(inp, _BuildsInFromConfig(name="block")(inp))
    pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0, frequency=1))
    [wrapper] = pruning.collect_prunable_layers(pruned)
    assert wrapper.layer.built and [w.name for w in wrapper.pruned_weights] == ["kernel"]
