"""`PruneLowMagnitude`: the layer wrapper that masks weights by magnitude, as tfmot's.

Keras 3 differs from tf_keras in one way that shapes this wrapper: on JAX, writes to a
trainable variable inside `call` are dropped. So the wrapper never assigns the kernel in
the forward pass; it swaps the masked value `kernel * mask` in for the kernel while the
wrapped layer runs (pruned weights then also get zero gradient). The stored kernel is
made sparse outside the train step: by `UpdatePruningStep` at each epoch end (as tfmot)
and by `strip_pruning`. Masks, thresholds and the step counter are non-trainable
variables, which every backend keeps when they are assigned inside `call`.

The swap is the contract a prunable layer must meet: its `call` reads each prunable
weight through the instance attribute that holds the variable (`registry.check_maskable`
refuses LoRA-enabled and quantized layers, which compute with another tensor).
"""

import contextlib
import inspect
import warnings
import weakref

import keras
from keras import ops

from keras_cka_sr import _compat
from keras_cka_sr._control import cond
from keras_cka_sr._validation import check_bool, check_float, is_int
from keras_cka_sr.pruning import masks as mask_math
from keras_cka_sr.pruning import registry
from keras_cka_sr.pruning.schedules import PruningSchedule, default_schedule

MISSING_CALLBACK_MESSAGE = (
    "PruneLowMagnitude is training without the UpdatePruningStep callback. Pruning itself "
    "is unaffected (the step counter starts on its own, as the callback would start it), "
    "but the stored weights are masked only by `strip_pruning`, not at every epoch end. "
    "Add it as tfmot requires: `model.fit(..., callbacks=[keras_cka_sr.pruning."
    "UpdatePruningStep()])`; in a custom training loop call `callback.set_model(model)` "
    "and `callback.on_train_begin()` first."
)


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Prunes the wrapped layer's prunable weights to the sparsity the schedule gives.

    In training, once per forward pass, the step counter (starting at -1, taken as 0, so
    the first training step is step 1, as tfmot's `UpdatePruningStep` makes it) goes up
    by one, and when `pruning_schedule(step)` says so, each mask is recomputed from the
    masked weight: keep the largest |w|. A layer called twice in one forward pass (a
    shared layer) steps once, so its schedule follows train steps, i.e. batches (tfmot's
    wrapper steps on every call; with `gradient_accumulation_steps=k` the optimizer
    updates once per k batches, and the schedule still counts batches). The forward pass
    always uses `weight * mask`.
    Training without `UpdatePruningStep` warns (tfmot raises): an error inside a
    train step would leave a JAX model without its variables, and the callback is
    needed only to write the masked values into the stored weights at epoch ends.

    Args:
        layer: the layer to wrap (see `keras_cka_sr.pruning.registry`). Build a layer
            that takes several inputs (MultiHeadAttention) before wrapping it.
        pruning_schedule: a `PruningSchedule`.
        block_size: `(height, width)` of the blocks pruned together (rank-2 weights).
        block_pooling_type: "AVG" or "MAX", how a block's magnitude is pooled.
        sparsity_m_by_n: e.g. `(2, 4)`: 2 zeros in every 4 consecutive input-channel
            values, set once at step 1 (the schedule's sparsity is then not used).
        global_ranking: rank this layer's weights together with every other
            `global_ranking` wrapper of the model (one threshold across layers, the
            schedule's sparsity over their weights together, as jaxpruner's global
            magnitude pruning) instead of within the layer. The wrappers of one model
            must share one schedule. `prune_low_magnitude(model, ...,
            global_ranking=True)` groups them; `UpdatePruningStep` regroups them at
            train begin (e.g. after loading). Elementwise pruning only.
        min_density: with `global_ranking`, the share of this layer's weights (the
            largest) that every pruning step keeps whatever the global threshold: a floor
            against a layer pruned to 100% (its output then no longer depends on its input).
            The floor's weights are kept on top of the global count, so the sparsity over
            the ranked layers can end below the schedule's by at most the floors.
            Default 0: no floor (jaxpruner's and tfmot's behaviour).

    Examples:
        >>> wrapper = pruning.PruneLowMagnitude(keras.layers.Dense(4), pruning.ConstantSparsity(0.5, 0))
        >>> model = keras.Sequential([keras.Input((8,)), wrapper])
        >>> [tuple(m.shape) for m in wrapper.masks], wrapper.get_config()["global_ranking"]
        ([(8, 4)], False)
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        pruning_schedule: PruningSchedule | None = None,
        block_size: tuple[int, int] = (1, 1),
        block_pooling_type: str = "AVG",
        sparsity_m_by_n: tuple[int, int] | None = None,
        global_ranking: bool = False,
        min_density: float = 0.0,
        **kwargs,
    ) -> None:
        if not isinstance(layer, keras.layers.Layer) or isinstance(layer, keras.Model):
            raise ValueError(
                "`layer` must be a Keras layer (prune a model with prune_low_magnitude); "
                f"got {type(layer).__name__}."
            )
        if isinstance(layer, PruneLowMagnitude):
            raise ValueError(
                f"Layer {layer.layer.name!r} is already wrapped (by {layer.name!r}); a layer is "
                "pruned by one wrapper. Pass the wrapper as it is, or wrap `wrapper.layer` "
                "with the new schedule instead."
            )
        if not registry.supports(layer):
            raise ValueError(registry.unsupported_message(layer))
        registry.check_maskable(layer)
        if pruning_schedule is None:
            pruning_schedule = default_schedule()
        if isinstance(pruning_schedule, dict):
            pruning_schedule = keras.saving.deserialize_keras_object(pruning_schedule)
        if not isinstance(pruning_schedule, PruningSchedule):
            raise TypeError(
                "`pruning_schedule` must be a PruningSchedule (e.g. PolynomialDecay); "
                f"got {type(pruning_schedule).__name__}."
            )
        block_size = tuple(block_size)
        if len(block_size) != 2 or not all(is_int(b) and b >= 1 for b in block_size):
            raise ValueError(f"`block_size` must be two ints >= 1; got {block_size!r}.")
        block_size = tuple(int(b) for b in block_size)
        if block_pooling_type not in mask_math.POOLING_TYPES:
            raise ValueError(
                f"`block_pooling_type` must be one of {mask_math.POOLING_TYPES}; "
                f"got {block_pooling_type!r}."
            )
        if sparsity_m_by_n is not None:
            sparsity_m_by_n = mask_math.check_m_by_n(sparsity_m_by_n, name="sparsity_m_by_n")
            if block_size != (1, 1):
                raise ValueError("`sparsity_m_by_n` and `block_size` cannot be combined.")
        global_ranking = check_bool("global_ranking", global_ranking)
        min_density = check_float("min_density", min_density, 0.0, 1.0, max_inclusive=False)
        if min_density and not global_ranking:
            raise ValueError(
                f"`min_density={min_density:g}` is a floor for global ranking (a layer ranked on "
                "its own reaches the schedule's sparsity exactly): set global_ranking=True, or "
                "leave min_density at 0."
            )
        if global_ranking and (block_size != (1, 1) or sparsity_m_by_n is not None):
            raise ValueError(
                "`global_ranking=True` ranks single weights across layers; it cannot be "
                f"combined with block_size={block_size} or sparsity_m_by_n={sparsity_m_by_n}. "
                "Use global_ranking=False for block or m:n pruning."
            )
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        # Masks rank the float32 variables, not a mixed-precision policy's bfloat16/float16
        # copies (ties there leave a layer short of its sparsity); the inner layer autocasts
        # its own reads, and `_masked_weights` casts `weight * mask` for it.
        kwargs.setdefault("autocast", False)
        super().__init__(layer, **kwargs)
        _compat.inherit_input_shape(self, layer)
        self.pruning_schedule = pruning_schedule
        self.block_size = block_size
        self.block_pooling_type = block_pooling_type
        self.sparsity_m_by_n = sparsity_m_by_n
        self.global_ranking = global_ranking
        self.min_density = min_density
        self._group = _Group()  # the global_ranking wrappers it ranks with (set_global_group)
        self.callback_active = False
        self._stepped_in = None  # weakref to the forward pass that last stepped
        parameters = inspect.signature(layer.call).parameters
        self._inner_takes_training = "training" in parameters
        self._inner_first_argument = next(iter(parameters), None)

    def __call__(self, *args, **kwargs):
        # The inner layer's first argument passed by keyword (MultiHeadAttention's
        # `query=`) is this wrapper's `inputs`.
        if not args and self._inner_first_argument in kwargs:
            args = (kwargs.pop(self._inner_first_argument),)
        return super().__call__(*args, **kwargs)

    def build(self, input_shape=None):
        super().build(input_shape)
        registry.check_maskable(self.layer)
        self.pruned_weights = registry.prunable_weights(self.layer)
        if self.sparsity_m_by_n is not None:
            skipped = [w.path for w in self.pruned_weights if len(w.shape) not in (2, 4)]
            if skipped:
                # tfmot: M-by-N sparsity prunes rank-2 (Dense) and rank-4 (Conv2D) weights only.
                warnings.warn(
                    f"sparsity_m_by_n={self.sparsity_m_by_n} prunes rank-2 and rank-4 weights "
                    f"only (as tfmot); {skipped} stay dense.",
                    stacklevel=2,
                )
            self.pruned_weights = [w for w in self.pruned_weights if len(w.shape) in (2, 4)]
        if self.block_size != (1, 1):
            for weight in self.pruned_weights:
                mask_math.check_block_size(weight.shape, self.block_size, weight.path)
        self._targets = _Untracked([_locate(self.layer, w) for w in self.pruned_weights])
        self.masks, self.thresholds = [], []
        for weight in self.pruned_weights:
            # "kernel" for a Dense, "self_attention_query_kernel" inside a TransformerDecoder
            short = "_".join([*registry.holder_chain(self.layer, weight), weight.name])
            # Under tf.distribute every replica computes the same mask from the same
            # mirrored weight: the first replica's value is kept, with no all-reduce.
            self.masks.append(
                self.add_weight(
                    shape=weight.shape,
                    initializer="ones",
                    dtype=weight.dtype,
                    trainable=False,
                    name=f"{short}_mask",
                    aggregation="only_first_replica",
                    autocast=False,
                )
            )
            self.thresholds.append(
                self.add_weight(
                    shape=(),
                    initializer="zeros",
                    dtype=weight.dtype,
                    trainable=False,
                    name=f"{short}_threshold",
                    aggregation="only_first_replica",
                    autocast=False,
                )
            )
        self.pruning_step = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(-1),
            dtype="int32",
            trainable=False,
            name="pruning_step",
            aggregation="only_first_replica",
        )
        self.built = True

    def call(self, inputs, *args, training=None, **kwargs):
        registry.check_maskable(self.layer)  # e.g. enable_lora called after wrapping
        if training and self.pruned_weights:
            if not self.callback_active:
                warnings.warn(MISSING_CALLBACK_MESSAGE, stacklevel=2)
            if self._first_call_of_this_pass():
                step = ops.maximum(self.pruning_step, 0) + 1
                self.pruning_step.assign(step)
                self._update_masks(step)
        if self._inner_takes_training:
            kwargs["training"] = training
        with self._masked_weights():
            return self.layer(inputs, *args, **kwargs)

    def _first_call_of_this_pass(self):
        token = _compat.forward_pass_token()
        if token is None:
            return True
        if self._stepped_in is not None and self._stepped_in() is token:
            return False
        self._stepped_in = weakref.ref(token)
        return True

    def _update_masks(self, step):
        if self.sparsity_m_by_n is not None:
            due = ops.equal(step, 1)
        else:
            due, _ = self.pruning_schedule(step)

        def update():
            _, sparsity = self.pruning_schedule(step)
            if self.global_ranking:
                return self._global_masks(sparsity)
            new = [self._new_mask(w, m, sparsity) for w, m in zip(self.pruned_weights, self.masks)]
            return [t for t, _ in new], [m for _, m in new]

        def keep():
            # Read values, not variables: on TF, `convert_to_tensor` of a variable is the
            # variable, which a stateless call (e.g. CKAGradientMonitor) cannot assign.
            return (
                [ops.stop_gradient(ops.convert_to_tensor(t)) for t in self.thresholds],
                [ops.stop_gradient(ops.convert_to_tensor(m)) for m in self.masks],
            )

        with _compat.no_autocast():  # rank the float32 weights, not their bfloat16 copies
            thresholds, new_masks = cond(due, update, keep)
        for variable, value in zip(self.thresholds, thresholds):
            variable.assign(value)
        for variable, value in zip(self.masks, new_masks):
            variable.assign(value)

    def _global_masks(self, sparsity):
        """Masks from one threshold over the masked weights of every wrapper of the group.

        Each wrapper of the group computes the same threshold: a wrapper updated earlier
        in the forward pass zeroed only values below it, which leaves it unchanged."""
        if not self._group.members:
            raise ValueError(
                f"{self.name!r} has global_ranking=True but no group of layers to rank with: "
                "wrap the model with prune_low_magnitude(model, ..., global_ranking=True), "
                "or train with the UpdatePruningStep callback (it groups the layers)."
            )
        everything = [
            ops.reshape(ops.convert_to_tensor(w) * ops.convert_to_tensor(m), (-1,))
            for peer in self._group.members
            for w, m in zip(peer.pruned_weights, peer.masks)
        ]
        dtype = self.pruned_weights[0].dtype
        threshold, _ = mask_math.magnitude_mask(ops.concatenate(everything), sparsity)
        masks = []
        for w, m in zip(self.pruned_weights, (ops.convert_to_tensor(m) for m in self.masks)):
            masked = ops.convert_to_tensor(w) * m
            keep = ops.greater_equal(ops.abs(masked), threshold)
            if self.min_density:
                _, floor = mask_math.magnitude_mask(masked, 1.0 - self.min_density)
                keep = ops.logical_or(keep, ops.cast(floor, "bool"))
            masks.append(ops.cast(keep, w.dtype))
        return [ops.cast(threshold, dtype) for _ in self.pruned_weights], masks

    def _new_mask(self, weight, mask, sparsity):
        if self.sparsity_m_by_n is not None:
            return (
                ops.convert_to_tensor(999.0, weight.dtype),  # tfmot's placeholder threshold
                mask_math.m_by_n_mask(ops.convert_to_tensor(weight), self.sparsity_m_by_n),
            )
        masked = ops.convert_to_tensor(weight) * ops.convert_to_tensor(mask)
        return mask_math.block_magnitude_mask(
            masked, sparsity, self.block_size, self.block_pooling_type
        )

    @contextlib.contextmanager
    def _masked_weights(self):
        """Swap `weight * mask` in for each pruned weight while the inner layer runs."""
        compute_dtype = self.layer.compute_dtype
        saved = []
        try:
            for (owner, attr), weight, mask in zip(self._targets, self.pruned_weights, self.masks):
                value = ops.convert_to_tensor(weight) * ops.convert_to_tensor(mask)
                if self.layer.autocast and keras.backend.is_float_dtype(weight.dtype):
                    value = ops.cast(value, compute_dtype)
                saved.append((owner, attr, owner.__dict__[attr]))
                object.__setattr__(owner, attr, value)
            yield
        finally:
            for owner, attr, original in reversed(saved):
                object.__setattr__(owner, attr, original)

    @property
    def prunable_weights(self):
        """The weights this wrapper prunes (tfmot's name for `pruned_weights`)."""
        return self.pruned_weights

    def get_prunable_weights(self):
        """The weights this wrapper prunes, as tfmot's wrapper returns them."""
        return list(self.pruned_weights)

    @property
    def pruning_vars(self):
        """`(weight, mask, threshold)` for each pruned weight, as tfmot's wrapper has them."""
        return list(zip(self.pruned_weights, self.masks, self.thresholds))

    def apply_masks(self):
        """Writes `weight * mask` into the stored weights (outside a train step)."""
        for weight, mask in zip(self.pruned_weights, self.masks):
            weight.assign(ops.convert_to_tensor(weight) * ops.convert_to_tensor(mask))

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, *args, training=None, **kwargs):
        # This wrapper does not autocast, so its inputs reach here uncast: a composite layer
        # traced on float32 inputs under mixed_float16 adds float32 to float16.
        inputs, args, kwargs = _compat.cast_inputs_as_call_would(self.layer, (inputs, args, kwargs))
        return self.layer.compute_output_spec(inputs, *args, **kwargs)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Keras' Wrapper.from_config pops "layer" from the caller's dict, which breaks a
        # model config read twice (tfmot's serialization test); work on a copy.
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(
            config.pop("layer"), custom_objects=custom_objects
        )
        return cls(layer, **config)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pruning_schedule": keras.saving.serialize_keras_object(self.pruning_schedule),
                "block_size": list(self.block_size),
                "block_pooling_type": self.block_pooling_type,
                "sparsity_m_by_n": None
                if self.sparsity_m_by_n is None
                else list(self.sparsity_m_by_n),
                "global_ranking": self.global_ranking,
                "min_density": self.min_density,
            }
        )
        return config


def _locate(layer, variable):
    """(object, attribute name) holding `variable` inside `layer` or its sublayers."""
    owners = _compat.flatten_layers(layer)
    for owner in owners:
        for attr, value in vars(owner).items():
            if value is variable:
                return owner, attr
    raise ValueError(
        f"Cannot find the attribute of layer {layer.name!r} that holds weight "
        f"{variable.path!r}; a PrunableLayer must keep its prunable weights as attributes."
    )


def set_global_group(model) -> list:
    """Groups the `global_ranking` wrappers of `model` to rank together (returns them).

    They must share one schedule (equal configs); a `ValueError` says which differ."""
    group = [layer for layer in collect_prunable_layers(model) if layer.global_ranking]
    if not group:
        return group
    first = keras.saving.serialize_keras_object(group[0].pruning_schedule)
    for layer in group[1:]:
        if keras.saving.serialize_keras_object(layer.pruning_schedule) != first:
            raise ValueError(
                "Layers pruned with global_ranking=True rank together and must share one "
                f"schedule; {group[0].name!r} has {group[0].pruning_schedule!r} and "
                f"{layer.name!r} has {layer.pruning_schedule!r}."
            )
    for layer in group:
        layer._group.members = tuple(group)
    return group


class _Untracked:
    """A list Keras does not track: the (owner layer, attribute) pairs the wrapper writes to
    are not state of the wrapper (a tracked list of them made `.keras` saving skip a nested
    container with a warning)."""

    def __init__(self, items):
        self._items = list(items)

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


class _Group:
    """A plain holder: a list of layers set on a layer would be tracked as its sublayers."""

    members = ()


def collect_prunable_layers(model):
    """The `PruneLowMagnitude` wrappers of a model (nested models included).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0))
        >>> [w.name for w in pruning.collect_prunable_layers(pruned)]
        ['prune_low_magnitude_a', 'prune_low_magnitude_b', 'prune_low_magnitude_head']
    """
    layers = [model] if isinstance(model, PruneLowMagnitude) else []
    return layers + [
        layer
        for layer in _compat.flatten_layers(model, include_self=False)
        if isinstance(layer, PruneLowMagnitude)
    ]
