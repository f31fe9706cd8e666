"""Attaching the CKA-SR penalty to an existing Keras model.

`attach_cka_loss` re-traces a functional (or Sequential) model's graph with the same
layer objects, flattening nested functional models, collects the outputs of the named
layers and routes them through a `CKARegularization` layer. The result is a
`CKASRModel`, which also reports the penalty as the `cka_sr` metric.
"""

import copy
import warnings
from collections.abc import Sequence

import keras

from keras_cka_sr import _compat, cka, penalty_cap
from keras_cka_sr._tapping import parse_layer_names, trace_taps, unique_name
from keras_cka_sr._validation import check_float, check_not_torch_compiled
from keras_cka_sr.layers import CKARegularization
from keras_cka_sr.losses import CKASimilarityLoss

SUBCLASSED_MODEL_HELP = """\
attach_cka_loss needs a functional or Sequential model (it re-traces the graph to tap
layer outputs); {name!r} is a subclassed `{cls}`. In a subclassed model, add the penalty
in `call` instead:

    class MyModel(keras_cka_sr.CKASRMixin, keras.Model):  # the mixin logs `cka_sr`
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            ...
            self.cka_sr = keras_cka_sr.CKARegularization(
                keras_cka_sr.CKASimilarityLoss(weight=1e-4))

        def call(self, x, training=False):
            f1 = self.block1(x)
            f2 = self.block2(f1)
            f3 = self.block3(f2)
            f3 = self.cka_sr([f1, f2, f3], passthrough=f3, training=training)
            return self.head(f3)

(or `self.add_loss(loss([f1, f2, f3]))` directly, with `every_n_steps=1`)."""


class CKASRMixin:
    """Adds the `cka_sr` metric to a Keras model: put it first in the bases.

    The metric is the mean, over the epoch's training steps, of the summed penalty of
    the model's `CKARegularization` layers (0 on the steps that `every_n_steps`
    skips). The penalty is training-only, so evaluation (and `fit`'s validation) does not
    report it: there is no `val_cka_sr`. Use it for subclassed models: `class
    MyModel(CKASRMixin, keras.Model)`.

    `penalty_grad_cap` (opt-in, a number > 0): in each train step, the penalty's gradient
    on every trainable tensor is scaled down to at most `penalty_grad_cap` times the task
    loss's gradient on it (norms per tensor; docs: "Safety"). The step then computes the
    two gradients apart: one forward and two backward passes. None: Keras' own train step.

    On the torch backend, `jit_compile=True` (torch.compile) is refused when `fit` starts.

    Examples:
        >>> class Net(keras_cka_sr.CKASRMixin, keras.Model):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b = keras.layers.Dense(8), keras.layers.Dense(8)
        ...         self.head = keras.layers.Dense(3)
        ...         self.cka_sr = keras_cka_sr.CKARegularization(
        ...             keras_cka_sr.CKASimilarityLoss(weight=1e-3))
        ...     def call(self, x, training=False):
        ...         a = self.a(x)
        ...         b = self.cka_sr([a, self.b(a)], passthrough=None, training=training)
        ...         return self.head(b)
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> net = Net()
        >>> net.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> sorted(net.fit(x, y, epochs=1, verbose=0).history)
        ['cka_sr', 'loss']
    """

    def __init__(self, *args, penalty_grad_cap=None, **kwargs):
        penalty_grad_cap = _check_cap(penalty_grad_cap)
        super().__init__(*args, **kwargs)
        self.penalty_grad_cap = penalty_grad_cap
        self.cka_tracker = keras.metrics.Mean(name="cka_sr")
        self._warned_no_penalty = False

    def fit(self, *args, **kwargs):
        """Keras' `fit`; then warns (once per model) when CKA-SR added nothing: a penalty of
        exactly 0 on every training step although its weight is > 0."""
        history = super().fit(*args, **kwargs)
        penalties = history.history.get(self.cka_tracker.name) if history else None
        weighted = any(getattr(x.loss, "weight", 1.0) > 0 for x in self.cka_layers())
        if penalties and weighted and not any(penalties) and not self._warned_no_penalty:
            self._warned_no_penalty = True
            needed = min(
                cka.min_samples(getattr(x.loss, "unbiased", True)) for x in self.cka_layers()
            )
            warnings.warn(
                f"CKA-SR added no penalty in this fit: it was 0 on every training step. A "
                f"batch of fewer than {needed} samples (a replica's share under tf.distribute "
                "counts) adds 0, and so do the steps before the loss's `start_step`: train "
                f"with batches of at least {needed} samples (or start the penalty earlier).",
                stacklevel=2,
            )
        return history

    def make_train_function(self, force=False):
        check_not_torch_compiled(self, "CKA-SR")
        return super().make_train_function(force=force)

    def train_step(self, *args):
        if self.penalty_grad_cap is None:
            return super().train_step(*args)
        return penalty_cap.train_step(self, *args)

    def test_step(self, *args):
        result = super().test_step(*args)  # JAX: (logs, state); TF, torch: logs
        logs = result[0] if isinstance(result, tuple) else result
        if isinstance(logs, dict):
            logs.pop(self.cka_tracker.name, None)  # training-only: always 0 here
        return result

    def cka_layers(self):
        """The `CKARegularization` layers of this model (nested ones included)."""
        return [
            layer
            for layer in _compat.flatten_layers(self, include_self=False)
            if isinstance(layer, CKARegularization)
        ]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        if training:
            layers = self.cka_layers()
            if layers:
                self.cka_tracker.update_state(
                    sum(keras.ops.convert_to_tensor(layer.last_penalty) for layer in layers)
                )
        return loss

    @property
    def metrics(self):
        metrics = list(super().metrics)
        if all(m is not self.cka_tracker for m in metrics):
            metrics.append(self.cka_tracker)
        return metrics


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class CKASRModel(CKASRMixin, keras.Model):
    """The functional model `attach_cka_loss` returns; logs the `cka_sr` metric.

    (Keras turns a `keras.Model` subclass built from inputs and outputs into a
    functional one, so subclassed models use `CKASRMixin` instead.)

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> loss = keras_cka_sr.CKASimilarityLoss(weight=1e-3)
        >>> trained = keras_cka_sr.attach_cka_loss(model, ["a", "b"], loss)
        >>> isinstance(trained, keras_cka_sr.CKASRModel)
        True
        >>> restored = keras.models.model_from_json(trained.to_json())  # serializable
        >>> type(restored).__name__
        'CKASRModel'
    """

    def get_config(self):
        config = super().get_config()
        if self.penalty_grad_cap is not None:
            config["penalty_grad_cap"] = self.penalty_grad_cap
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        cap = config.pop("penalty_grad_cap", None)
        model = super().from_config(config, custom_objects=custom_objects)
        model.penalty_grad_cap = _check_cap(cap)
        return model


def _check_cap(cap):
    """`penalty_grad_cap`: None, or a finite number > 0 (as a float)."""
    return None if cap is None else check_float("penalty_grad_cap", cap, 0.0, min_inclusive=False)


def attach_cka_loss(
    model: keras.Model,
    layer_names: Sequence[str] | Sequence[Sequence[str]],
    loss: CKASimilarityLoss | None = None,
    name: str | None = None,
    penalty_grad_cap: float | None = None,
) -> "CKASRModel":
    """Returns a model that adds `loss` on the outputs of the named layers to training.

    Args:
        model: a functional or Sequential Keras model. Nested functional/Sequential
            models are looked into; a layer wrapped by a `keras.layers.Wrapper` (e.g. a
            pruning wrapper) is found by its own name or by the wrapped layer's name.
        layer_names: a list of >= 2 layer names, or a list of lists of names (one list
            per stage; only layers within a list are compared: this sets the loss's
            `groups`).
        loss: a `CKASimilarityLoss` (default: `CKASimilarityLoss()`).
        name: name of the returned model (default: the model's name + "_cka_sr").
        penalty_grad_cap: opt-in: cap the penalty's gradient on each trainable tensor at
            this multiple of the task loss's (see `CKASRMixin`); None does not cap.

    Returns:
        A `CKASRModel` with the same inputs and outputs, built from the same layer
        objects (weights are shared, not copied).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> loss = keras_cka_sr.CKASimilarityLoss(weight=1e-3, num_samples=8, every_n_steps=1)
        >>> trained = keras_cka_sr.attach_cka_loss(model, [["a", "b"]], loss)
        >>> trained.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> history = trained.fit(x, y, batch_size=16, epochs=1, verbose=0)
        >>> bool(history.history["cka_sr"][0] > 0)  # beta x the CKA between a and b
        True
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model; got {type(model).__name__}.")
    if not _compat.is_graph_model(model):
        raise TypeError(SUBCLASSED_MODEL_HELP.format(name=model.name, cls=type(model).__name__))
    _check_cap(penalty_grad_cap)
    if loss is None:
        loss = CKASimilarityLoss()
    if not callable(loss):
        raise TypeError(f"`loss` must be a CKASimilarityLoss; got {type(loss).__name__}.")
    names, groups = parse_layer_names(layer_names)
    if groups is not None:
        if not isinstance(loss, CKASimilarityLoss):
            raise TypeError(
                "Grouped `layer_names` (a list of lists) need a CKASimilarityLoss `loss` "
                f"to set its groups on; got {type(loss).__name__}."
            )
        if loss.groups is not None and loss.groups != groups:
            raise ValueError(
                f"`layer_names` sets groups {groups}, but `loss` already has groups "
                f"{loss.groups}; give one or the other."
            )
        loss = copy.copy(loss)
        loss.groups = groups

    structured_inputs, outputs, tapped = trace_taps(model, names)
    features = [tapped[n] for n in names]
    flat_outputs = keras.tree.flatten(outputs)
    flat_outputs[0] = CKARegularization(loss, name=unique_name(model, "cka_regularization"))(
        features, passthrough=flat_outputs[0]
    )
    outputs = keras.tree.pack_sequence_as(outputs, flat_outputs)
    return CKASRModel(
        inputs=structured_inputs,
        outputs=outputs,
        name=name or f"{model.name}_cka_sr",
        penalty_grad_cap=penalty_grad_cap,
    )


def feature_model(
    model: keras.Model, layer_names: Sequence[str], with_outputs: bool = False
) -> keras.Model:
    """A functional model from `model`'s inputs to the outputs of the named layers.

    Same layer objects (shared weights); nested models and wrapped layers are resolved
    as in `attach_cka_loss`. Useful to compute CKA between layers (`CKAMonitor`).
    `with_outputs=True` puts `model`'s own (flattened) outputs first, then the features.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> features = keras_cka_sr.feature_model(model, ["a", "b"])
        >>> [tuple(f.shape) for f in features(np.zeros((4, 8), "float32"))]
        [(4, 16), (4, 16)]
    """
    if not isinstance(model, keras.Model) or not _compat.is_graph_model(model):
        raise TypeError(
            f"`model` must be a functional or Sequential keras.Model; got {type(model).__name__}."
        )
    if isinstance(layer_names, str) or not layer_names:
        raise TypeError(f"`layer_names` must be a non-empty list of names; got {layer_names!r}.")
    names = list(layer_names)
    inputs, outputs, tapped = trace_taps(model, names)
    features = [tapped[n] for n in names]
    if with_outputs:
        features = keras.tree.flatten(outputs) + features
    return keras.Model(inputs, features, name=f"{model.name}_features")
