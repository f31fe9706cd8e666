"""The channel-pruning oracle: the original model with the removed channels' weights zeroed
(every weight entry that reads or writes a removed channel, BatchNormalization included)
computes what the pruned model computes."""

import keras
import numpy as np

from keras_cka_sr import _compat, structured


def _layers(model, prefix=""):
    found = {}
    for layer in model.layers:
        if isinstance(layer, (keras.Sequential, keras.Model)) and hasattr(layer, "layers"):
            found.update(_layers(layer, prefix + layer.name + "/"))
        else:
            found[prefix + layer.name] = layer
    return found


def removed_indices(channel_map, kept_by_space):
    """Indices along an axis laid out as `channel_map` whose channel was removed."""
    removed, offset = [], 0
    for space, size in zip(channel_map.spaces, channel_map.sizes):
        kept = set(kept_by_space(space, size))
        removed += [offset + j for j in range(size) if j not in kept]
        offset += size
    return [p * channel_map.width + i for p in range(channel_map.repeat) for i in removed]


def zeroed_original(model, report, keep=()):
    graph = structured.DependencyGraph(model, keep)
    kept_of_producers = {g.producers: g.kept for g in report.groups}

    def kept_by_space(space, size):
        group = graph.group_of(space)
        return range(size) if group is None else kept_of_producers[group.producers]

    with _compat.trusted_deserialization():
        copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    layers = _layers(copy)
    zeroed = 0
    for sliced in graph.sliced:
        variable = next((v for v in layers[sliced.layer].weights if v.name == sliced.weight), None)
        if variable is None:
            continue
        value = keras.ops.convert_to_numpy(variable).copy()
        index = [slice(None)] * value.ndim
        index[sliced.axis] = removed_indices(sliced.map, kept_by_space)
        value[tuple(index)] = 0
        zeroed += len(index[sliced.axis])
        variable.assign(value)
    return copy, zeroed


def randomize_batchnorm(model, seed=0):
    """Moving statistics and affine terms away from the identity, so BN slicing matters."""
    rng = np.random.default_rng(seed)
    for layer in _layers(model).values():
        if isinstance(layer, keras.layers.BatchNormalization):
            for variable in layer.weights:
                shape = tuple(variable.shape)
                if variable.name == "moving_variance":
                    variable.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))
                else:
                    variable.assign(rng.normal(0.0, 0.5, shape).astype("float32"))


def assert_pruned_equals_zeroed(model, pruned, report, x, keep=(), atol=1e-5):
    zeroed, count = zeroed_original(model, report, keep)
    assert count > 0, "nothing was removed: the oracle would compare equal models"
    got = keras.ops.convert_to_numpy(pruned(x, training=False))
    want = keras.ops.convert_to_numpy(zeroed(x, training=False))
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=atol * scale)
    # and the zeroing changed the model: the comparison is not between equal outputs
    original = keras.ops.convert_to_numpy(model(x, training=False))
    assert not np.allclose(original, want, atol=atol * scale)
