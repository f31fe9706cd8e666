"""`CKARegularization`: the layer that adds the CKA-SR penalty to a model's losses."""

import keras
from keras import ops



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
    """

    def __init__(self, loss, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        if not callable(loss):
            raise TypeError(
                "`loss` must be a CKASimilarityLoss, or a callable "
                f"`loss(features, step=...)`; got {type(loss).__name__}."
            )
        self.loss = loss
        self.step = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="step"
        )
        self.last_penalty = self.add_weight(
            shape=(), dtype="float32", initializer="zeros", trainable=False,
            name="last_penalty",
        )
        self.built = True

    def call(self, features, passthrough=None, training=None):
        if not isinstance(features, (list, tuple)) or len(features) < 2:
            raise ValueError(
                "CKARegularization must be called on a list of at least 2 tensors."
            )
        output = features[0] if passthrough is None else passthrough
        if not training:
            return output
        penalty = ops.cast(self.loss(list(features), step=self.step), "float32")
        self.add_loss(penalty)
        self.last_penalty.assign(ops.stop_gradient(penalty))
        self.step.assign(self.step + 1)
        return output

    def compute_output_spec(self, features, passthrough=None, training=None):
        source = features[0] if passthrough is None else passthrough
        return keras.KerasTensor(source.shape, dtype=source.dtype)

    def get_config(self):
        config = super().get_config()
        config["loss"] = keras.saving.serialize_keras_object(self.loss)
        return config

