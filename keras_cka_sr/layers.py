"""`CKARegularization`: the layer that adds the CKA-SR penalty to a model's losses."""

import contextlib
import threading

import keras
from keras import ops

from keras_cka_sr import _compat
from keras_cka_sr._tapping import check_feature_list
from keras_cka_sr.losses import CKASimilarityLoss

_recording = threading.local()


@contextlib.contextmanager
def recording_penalties():
    """Within it, each training call of a `CKARegularization` also appends its penalty
    (differentiable, as added to the losses) to the list this yields. Per thread, so each
    `tf.distribute` replica records its own.

    The hook `penalty_cap`'s train step uses to separate the penalty from the task loss in
    one forward pass (Keras sums all added losses into one); not exported from the package.
    """
    penalties = []
    outer = getattr(_recording, "penalties", None)
    _recording.penalties = penalties
    try:
        yield penalties
    finally:
        _recording.penalties = outer


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class CKARegularization(keras.layers.Layer):
    """Adds `loss(features)` to the model's losses in training; an identity otherwise.

    Call it on the list of tapped feature tensors. It returns the first one unchanged,
    or `passthrough` when given (so it can sit on the path to the model's output).
    The penalty is computed only when `training=True`: `predict`, `evaluate` and
    exported models pay nothing for it.

    It keeps two non-trainable variables: `step`, the count of training calls, fed to
    the loss for `every_n_steps`; and `last_penalty`, the penalty of the last training
    call (without gradient), which `CKASRModel` reports as the `cka_sr` metric.

    A training batch with fewer samples than the estimator needs (an epoch's ragged
    last batch, or a replica's share of it) adds a penalty of exactly 0 with zero
    gradient. Under `tf.distribute`, each replica computes the penalty on its local
    batch; `step` follows the first replica and `last_penalty` is the replicas' mean.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> penalty = keras_cka_sr.CKARegularization(keras_cka_sr.CKASimilarityLoss(weight=1e-3))
        >>> out = penalty([a, b], passthrough=b)  # b unchanged; the penalty is added in training
        >>> model = keras.Model(inp, keras.layers.Dense(3)(out))
        >>> len(model.losses)  # added when the model runs in training only
        0
    """

    pruning_refusal = (
        "the model already has CKA-SR attached. Prune first, then attach: "
        "`attach_cka_loss(prune_low_magnitude(model, ...), groups, loss)` (pruning copies the "
        "model as a plain functional model, which would drop the CKASRModel that reports and "
        "caps the penalty)."
    )

    def __init__(self, loss, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if not callable(loss):
            raise TypeError(
                "`loss` must be a CKASimilarityLoss, or a callable "
                f"`loss(features, step=...)`; got {type(loss).__name__}."
            )
        self.loss = loss
        self.step = self.add_weight(
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
            name="step",
            aggregation="only_first_replica",
        )
        self.last_penalty = self.add_weight(
            shape=(),
            dtype="float32",
            initializer="zeros",
            trainable=False,
            name="last_penalty",
            aggregation="mean",
        )
        self.built = True

    def call(self, features, passthrough=None, training=None):
        self._check_features(features)
        output = features[0] if passthrough is None else passthrough
        if not training:
            return output
        # A custom loss callable takes (features, step=...) only.
        skip = {"skip_small_batch": True} if isinstance(self.loss, CKASimilarityLoss) else {}
        penalty = ops.cast(self.loss(list(features), step=self.step, **skip), "float32")
        self.add_loss(penalty)
        recorded = getattr(_recording, "penalties", None)
        if recorded is not None and not _compat.in_symbolic_call():
            recorded.append(penalty)
        self.last_penalty.assign(ops.stop_gradient(penalty))
        self.step.assign(self.step + 1)
        return output

    def compute_output_spec(self, features, passthrough=None, training=None):
        # Runs when the model is built symbolically, before `fit` takes the model's
        # state: errors raised here leave the model usable on every backend.
        self._check_features(features)
        source = features[0] if passthrough is None else passthrough
        return keras.KerasTensor(source.shape, dtype=source.dtype)

    def _check_features(self, features):
        check_feature_list(features, "CKARegularization must be called on")
        compared_pairs = getattr(self.loss, "compared_pairs", None)
        if compared_pairs is not None:
            compared_pairs(len(features))  # raises for groups that name missing features

    def get_config(self):
        config = super().get_config()
        config["loss"] = keras.saving.serialize_keras_object(self.loss)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)
