"""Pruning policies: which layers `prune_low_magnitude(model, pruning_policy=...)` wraps
and which models it accepts, with tfmot's API and semantics."""

import abc

import keras

from keras_cka_sr import _compat

L = keras.layers


class PruningPolicy(abc.ABC):
    """Says which layers of a model to prune, and checks the model supports it.

    Subclass it for your own policy; pass it as `prune_low_magnitude(model,
    pruning_policy=...)`.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> class OnlyHead(pruning.PruningPolicy):
        ...     def allow_pruning(self, layer):
        ...         return layer.name == "head"
        ...     def ensure_model_supports_pruning(self, model):
        ...         pass
        >>> pruned = pruning.prune_low_magnitude(model, pruning_policy=OnlyHead())
        >>> [w.layer.name for w in pruning.collect_prunable_layers(pruned)]
        ['head']
    """

    @abc.abstractmethod
    def allow_pruning(self, layer):
        """True when the pruning wrapper should be applied to `layer`."""

    @abc.abstractmethod
    def ensure_model_supports_pruning(self, model):
        """Raises a `ValueError` when `model` contains a layer the policy does not support."""


class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only 1x1 `Conv2D` layers, in models that XNNPACK's sparse inference can run:
    from a 3x3 stride-2 `valid` `Conv2D` after `ZeroPadding2D(1)` in every input branch to a
    `GlobalAveragePooling2D` in every output branch, with only supported layers between
    (Elsen et al. 2019, "Fast Sparse ConvNets"; tfmot's policy, same rules and messages).

    Examples:
        >>> inp = keras.Input((32, 32, 3))
        >>> x = keras.layers.ZeroPadding2D(1)(inp)
        >>> x = keras.layers.Conv2D(8, 3, strides=2, padding="valid")(x)
        >>> x = keras.layers.Conv2D(16, 1, name="pointwise")(x)
        >>> model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
        >>> policy = pruning.PruneForLatencyOnXNNPack()
        >>> pruned = pruning.prune_low_magnitude(model, pruning_policy=policy)
        >>> [w.layer.name for w in pruning.collect_prunable_layers(pruned)]  # 1x1 convs only
        ['pointwise']
    """

    def allow_pruning(self, layer):
        """Allows to prune only 1x1 Conv2D layers."""
        return isinstance(layer, L.Conv2D) and tuple(layer.kernel_size) == (1, 1)

    def _get_producers(self, layer):
        return set(_compat.producers(layer))

    def _get_consumers(self, layer):
        def unpack(layer):
            return unpack(layer.layers[0]) if isinstance(layer, keras.Sequential) else layer

        return [unpack(op) for op in _compat.consumers(layer)]

    def _lookup_layers(self, source_layers, stop_fn, next_fn):
        """Traverses the model and returns layers satisfying `stop_fn` criteria."""
        to_visit = set(source_layers)
        used_layers = set(source_layers)
        found_layers = set()
        while to_visit:
            layer = to_visit.pop()
            if stop_fn(layer):
                found_layers.add(layer)
            else:
                next_layers = next_fn(layer)
                if not next_layers:
                    return set()
                for next_layer in next_layers:
                    if next_layer not in used_layers:
                        used_layers.add(next_layer)
                        to_visit.add(next_layer)
        return found_layers

    def _start_layer_stop_fn(self, layer):
        """Whether the layer starts a subgraph of sparse inference."""
        if isinstance(layer, L.Conv2D):
            producers = list(self._get_producers(layer))
            return (
                layer.built
                and tuple(layer.kernel.shape[:3]) == (3, 3, 3)
                and tuple(layer.strides) == (2, 2)
                and layer.padding.lower() == "valid"
                and len(producers) == 1
                and isinstance(producers[0], L.ZeroPadding2D)
                and tuple(map(tuple, producers[0].padding)) == ((1, 1), (1, 1))
            )
        return False

    def _end_layer_stop_fn(self, layer):
        """Whether the layer ends a subgraph of sparse inference."""
        return isinstance(layer, L.GlobalAveragePooling2D)

    def _check_layer_support(self, layer):
        """Whether XNNPACK's sparse subgraph supports the layer (its compatibility rules)."""
        from keras_cka_sr.pruning.wrapper import PruneLowMagnitude

        if isinstance(
            layer, (L.Add, L.Multiply, L.ZeroPadding2D, L.ReLU, L.LeakyReLU, L.ELU, L.Dropout)
        ):
            return True
        if isinstance(layer, L.DepthwiseConv2D):
            padding = layer.padding.lower()
            producers = list(self._get_producers(layer))
            zero_padding = (
                producers[0]
                if len(producers) == 1 and isinstance(producers[0], L.ZeroPadding2D)
                else None
            )
            pads = tuple(map(tuple, zero_padding.padding)) if zero_padding else None
            kernel, strides = tuple(layer.kernel_size), tuple(layer.strides)
            case_1 = kernel == (3, 3) and strides == (1, 1) and padding == "same"
            case_2 = (
                kernel == (3, 3)
                and strides in ((1, 1), (2, 2))
                and padding == "valid"
                and pads == ((1, 1), (1, 1))
            )
            case_3 = kernel == (5, 5) and strides == (1, 1) and padding == "same"
            case_4 = (
                kernel == (5, 5)
                and strides in ((1, 1), (2, 2))
                and padding == "valid"
                and pads == ((2, 2), (2, 2))
            )
            return (
                layer.depth_multiplier == 1
                and tuple(layer.dilation_rate) == (1, 1)
                and (case_1 or case_2 or case_3 or case_4)
            )
        if isinstance(layer, L.Conv2D):
            return (
                layer.groups == 1
                and tuple(layer.dilation_rate) == (1, 1)
                and tuple(layer.kernel_size) == (1, 1)
                and tuple(layer.strides) == (1, 1)
            )
        if isinstance(layer, L.GlobalAveragePooling2D):
            return bool(layer.keepdims)
        if isinstance(layer, L.BatchNormalization):
            axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
            return list(axis) in ([3], [-1])
        if isinstance(layer, L.UpSampling2D):
            return layer.interpolation == "bilinear"
        if isinstance(layer, L.Activation):
            name = getattr(layer.activation, "__name__", "")
            return name in ("relu", "relu6", "leaky_relu", "elu", "sigmoid")
        if isinstance(layer, PruneLowMagnitude):
            return self._check_layer_support(layer.layer)
        # Keras 3 records `x + y`, `x - y`, `x * y` on symbolic tensors as ops (tfmot:
        # TFOpLambda layers of tf.math.add etc.).
        return type(layer).__name__ in ("Add", "Subtract", "Multiply", "Identity")

    def ensure_model_supports_pruning(self, model):
        """Ensures that the model contains only supported layers."""
        if not _compat.is_graph_model(model):
            raise ValueError("Subclassed models are not supported currently.")
        if not model.built:
            raise ValueError("Unbuilt models are not supported currently.")
        input_layers = {_compat.tensor_operation(t) for t in model.inputs}
        start_layers = self._lookup_layers(
            input_layers, self._start_layer_stop_fn, self._get_consumers
        )
        if not start_layers:
            raise ValueError(
                "Could not find `Conv2D 3x3` layer with stride 2x2, `input filters == 3` "
                "and `VALID` padding and preceding `ZeroPadding2D` with `padding == 1` in "
                "all input branches of the model"
            )
        output_layers = {_compat.tensor_operation(t) for t in model.outputs}
        end_layers = self._lookup_layers(
            output_layers, self._end_layer_stop_fn, self._get_producers
        )
        if not end_layers:
            raise ValueError(
                "Could not find a `GlobalAveragePooling2D` layer in all output branches"
            )

        def visit_fn(layer):
            if layer not in end_layers and not self._check_layer_support(layer):
                raise ValueError(
                    f"Layer {layer.__class__.__name__} is not supported for the "
                    f"{self.__class__.__name__} pruning policy"
                )
            return layer in end_layers

        self._lookup_layers(
            sum([self._get_consumers(layer) for layer in start_layers], []),
            visit_fn,
            self._get_consumers,
        )
