"""`prune_low_magnitude` and `strip_pruning`, with tfmot's signatures, for Keras 3 models."""

import warnings

import keras

from keras_cka_sr import _compat
from keras_cka_sr._numpy import to_numpy
from keras_cka_sr.pruning import registry
from keras_cka_sr.pruning.policy import PruningPolicy
from keras_cka_sr.pruning.schedules import default_schedule
from keras_cka_sr.pruning.transfer import copy_weights
from keras_cka_sr.pruning.wrapper import (
    PruneLowMagnitude,
    collect_prunable_layers,
    set_global_group,
)


def prune_low_magnitude(
    to_prune,
    pruning_schedule=None,
    block_size=(1, 1),
    block_pooling_type="AVG",
    sparsity_m_by_n=None,
    pruning_policy=None,
    global_ranking=False,
    min_density=0.0,
    **kwargs,
):
    """Wraps layers in `PruneLowMagnitude`, as `tfmot.sparsity.keras.prune_low_magnitude`.

    `to_prune` may be a Sequential or functional model (a copy is returned with every
    prunable layer wrapped, weights copied), a layer (returns its wrapper) or a list of
    layers (returns a list). Train with the `UpdatePruningStep` callback.
    The default schedule is tfmot's: `ConstantSparsity(0.5, begin_step=0, frequency=100)`.
    `pruning_policy` (a `PruningPolicy`, models only) checks the model first and wraps
    only the layers it allows. `global_ranking=True` (an extension of tfmot's API, as
    jaxpruner's global magnitude pruning) ranks the weights of all wrapped layers together
    at each pruning step: one threshold across layers, the schedule's sparsity reached over
    all of them, layers pruned unevenly (see `PruneLowMagnitude`); `min_density` keeps that
    share of every layer (a floor; global ranking can otherwise empty a layer, which
    `UpdatePruningStep` warns of).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> schedule = pruning.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=4, frequency=1)
        >>> pruned = pruning.prune_low_magnitude(model, schedule)
        >>> pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> _ = pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,
        ...                 callbacks=[pruning.UpdatePruningStep()])
        >>> round(pruning.sparsity_summary(pruned).sparsity, 2)
        0.8
    """
    if pruning_policy is not None:
        if not isinstance(pruning_policy, PruningPolicy):
            raise TypeError(
                "`pruning_policy` must be a PruningPolicy (e.g. PruneForLatencyOnXNNPack()); "
                f"got {type(pruning_policy).__name__}."
            )
        if not isinstance(to_prune, keras.Model):
            raise ValueError(
                "`pruning_policy` applies to models (it checks the model's graph); got "
                f"{type(to_prune).__name__}. Wrap the layers it would allow yourself."
            )
    params = dict(
        pruning_schedule=default_schedule() if pruning_schedule is None else pruning_schedule,
        block_size=block_size,
        block_pooling_type=block_pooling_type,
        sparsity_m_by_n=sparsity_m_by_n,
        global_ranking=global_ranking,
        min_density=min_density,
    )
    single_layer = isinstance(to_prune, keras.layers.Layer) and not isinstance(
        to_prune, keras.Model
    )
    if kwargs and not single_layer:
        raise TypeError(
            f"prune_low_magnitude got unexpected keyword arguments {sorted(kwargs)}; extra "
            "keyword arguments (e.g. `name`) are passed to the wrapper of a single layer only."
        )
    if isinstance(to_prune, (list, tuple)):
        return [
            layer if isinstance(layer, PruneLowMagnitude) else PruneLowMagnitude(layer, **params)
            for layer in to_prune
        ]
    if isinstance(to_prune, keras.Model):
        _check_graph_model(to_prune, "prune_low_magnitude")
        for layer in _compat.flatten_layers(to_prune, include_self=False):
            registry.check_copyable(layer)
        _check_no_layer_in_two_places(to_prune)
        if pruning_policy is not None:
            pruning_policy.ensure_model_supports_pruning(to_prune)

        def wrap(layer):
            if not isinstance(layer, keras.layers.Layer):
                return layer  # a bare op in the graph (`h + h2`): no weights, nothing to copy
            if isinstance(layer, PruneLowMagnitude):
                return _copy_layer(layer)
            if pruning_policy is not None and not pruning_policy.allow_pruning(layer):
                return _copy_layer(layer)
            if registry.has_prunable_rule(layer):
                return PruneLowMagnitude(_copy_layer(layer), **params)
            if not registry.supports(layer):
                raise ValueError(registry.unsupported_message(layer))
            return _copy_layer(layer)

        pruned = _clone_with_weights(to_prune, wrap)
        if pruning_policy is None:  # a policy may leave every layer dense (tfmot's tests)
            _check_nothing_to_prune(pruned, to_prune)
        set_global_group(pruned)
        if not _compat.is_plain_graph_model(to_prune):
            pruned._keras_cka_sr_origin = _Origin(to_prune)
        return pruned
    if isinstance(to_prune, keras.layers.Layer):
        return PruneLowMagnitude(to_prune, **params, **kwargs)
    raise ValueError(  # tfmot's text, word for word
        "`prune_low_magnitude` can only prune an object of the following types: "
        "keras.models.Sequential, keras functional model, keras.layers.Layer, list of "
        f"keras.layers.Layer. You passed an object of type: {type(to_prune).__name__}."
    )


def prune_scope():
    """A custom-object scope for loading pruned models, as tfmot's `prune_scope`.

    Not needed here (the pruning classes are registered, so `.keras` files load
    anywhere); kept so that tfmot code runs unchanged.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> pruned = pruning.prune_low_magnitude(model)
        >>> with pruning.prune_scope():  # tfmot code loads pruned models inside it
        ...     copy = keras.models.model_from_json(pruned.to_json())
        >>> len(pruning.collect_prunable_layers(copy))
        3
    """
    return keras.saving.custom_object_scope({"PruneLowMagnitude": PruneLowMagnitude})


def strip_pruning(model: keras.Model) -> keras.Model:
    """Returns a plain Keras model (no wrappers) whose weights are the masked weights.

    The pruned model's stored weights are masked too (`weight * mask`), so it can keep
    training; the returned model is a copy and exports like any Keras model.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0))
        >>> plain = pruning.strip_pruning(pruned)
        >>> [type(layer).__name__ for layer in plain.layers]
        ['InputLayer', 'Dense', 'Dense', 'Dense']
    """
    if isinstance(model, PruneLowMagnitude):
        model.apply_masks()
        return model.layer
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; got {type(model).__name__}.")
    _check_graph_model(model, "strip_pruning")
    for wrapper in collect_prunable_layers(model):
        if wrapper.built:
            wrapper.apply_masks()

    def unwrap(layer):
        if isinstance(layer, PruneLowMagnitude):
            return _copy_layer(layer.layer)
        return _copy_layer(layer)

    stripped = _clone_with_weights(model, unwrap)
    origin = getattr(model, "_keras_cka_sr_origin", None)
    return stripped if origin is None else origin.rebuild(stripped)


def _check_nothing_to_prune(pruned, original):
    """Refuses a pruned model in which no layer was wrapped, naming the layers with weights."""
    if not collect_prunable_layers(pruned) and original.weights:
        holders = sorted({layer.name for layer in original.layers if layer.weights})
        raise ValueError(
            f"Model {original.name!r} has nothing to prune: no layer with a pruning rule "
            f"(or allowed by the policy) holds its weights; layers with weights: {holders}. "
            "Prunable built-ins: Dense, EinsumDense, Conv*, Embedding, MultiHeadAttention, RNNs "
            "and composite layers of those; a custom layer can implement `PrunableLayer`."
        )


def _check_no_layer_in_two_places(model):
    """Refuses a layer with weights that is both a layer of the graph and inside another
    layer, or inside two: pruning copies each graph layer, which would give it two copies
    (untied weights, two masks and schedules for what was one kernel)."""
    graph = {id(layer): layer for layer in _graph_layers(model)}
    where = dict.fromkeys(graph, f"the graph of {model.name!r}")
    for layer in graph.values():
        place = f"layer {layer.name!r}"
        for sub in _compat.flatten_layers(layer, include_self=False):
            first = where.setdefault(id(sub), place) if sub.weights else place
            if first != place:
                raise ValueError(
                    f"Layer {sub.name!r} is both in {first} and inside {place}: pruning copies "
                    "layers, so its weights would be untied and pruned by two wrappers. Prune "
                    "the model before tying the layer, or prune a list of layers that reaches "
                    "it once."
                )


def _graph_layers(model):
    """The layers that are nodes of `model`'s graph or of its nested graph models."""
    layers = []
    for layer in model.layers:
        if _compat.is_graph_model(layer):
            layers += _graph_layers(layer)
        else:
            layers.append(layer)
    return layers


class _Origin:
    """The class and config of the functional subclass (a keras_hub task model) a pruned
    model was cloned from. Keras' clone gives a plain `Functional`; `strip_pruning` builds
    the original class again from its config and copies the stripped weights into it. An
    attribute of the pruned model only: a pruned model saved and loaded strips to a plain
    `Functional` (then `copy_weights` into a model you build)."""

    def __init__(self, model):
        self.kind = type(model).__name__
        self.serialized = keras.saving.serialize_keras_object(model)

    def rebuild(self, stripped):
        try:
            model = keras.saving.deserialize_keras_object(self.serialized)
            return copy_weights(stripped, model)
        except (TypeError, ValueError, NotImplementedError, KeyError) as error:
            warnings.warn(
                f"strip_pruning returns a plain Functional model: the pruned model came from a "
                f"{self.kind}, which could not be built again from its config ({error}). "
                "Build one yourself and call `keras_cka_sr.pruning.copy_weights(stripped, it)`.",
                stacklevel=3,
            )
            return stripped


def _check_graph_model(model, what):
    if not _compat.is_graph_model(model):
        raise ValueError(
            f"{what} supports Sequential and functional models; {model.name!r} is a "
            f"subclassed {type(model).__name__}. Wrap its layers where you create them "
            "instead: `self.dense = prune_low_magnitude(keras.layers.Dense(...))`."
        )


def _copy_layer(layer):
    """A fresh layer of the same config, built like the original (weights set later)."""
    if not isinstance(layer, keras.layers.Layer):
        return layer  # a bare operation in the graph: nothing to copy
    try:
        copy = type(layer).from_config(layer.get_config())
    except (TypeError, ValueError, NotImplementedError) as error:
        warnings.warn(
            f"Layer {layer.name!r} ({type(layer).__name__}) cannot be rebuilt from its "
            f"config ({error}); the new model shares this layer object with the original "
            "(as tfmot's models do). Implement `get_config` to get a copy.",
            stacklevel=4,
        )
        return layer
    build_config = layer.get_build_config() if layer.built else None
    if build_config and not copy.built:  # some layers build in `from_config` (keras_hub's)
        copy.build_from_config(build_config)
    return copy


def _clone_with_weights(model, clone_function):
    """`keras.models.clone_model` with copied weights (wrappers: the inner layer's)."""
    pairs = []

    def record(layer):
        new = clone_function(layer)
        pairs.append((layer, new))
        return new

    input_tensors = None
    if _compat.is_functional(model):
        # Keras 3's clone names its new inputs after the symbolic tensors ("keras_tensor");
        # keep the input layers' names, which serving signatures and TFLite inputs use.
        input_tensors = keras.tree.map_structure(
            lambda x: keras.Input(
                batch_shape=x.shape, dtype=x.dtype, name=_compat.tensor_operation(x).name
            ),
            model.input,
        )
    # Uncompiled, as tfmot's: the user compiles the pruned (or stripped) model.
    clone = _compat.clone_model_uncompiled(
        model, input_tensors=input_tensors, clone_function=record, recursive=True
    )
    for old, new in pairs:
        if old is new:
            continue
        values = [to_numpy(w) for w in _weight_holder(old, new).weights]
        _weight_holder(new, old).set_weights(values)
        if isinstance(old, PruneLowMagnitude) and isinstance(new, PruneLowMagnitude):
            new.callback_active = old.callback_active
    return clone


def _weight_holder(layer, counterpart):
    """The layer whose weights pair with `counterpart`'s: a wrapper facing a plain layer
    (wrapping or stripping) gives its inner layer; two wrappers pair whole (masks too)."""
    if isinstance(layer, PruneLowMagnitude) and not isinstance(counterpart, PruneLowMagnitude):
        return layer.layer
    return layer
