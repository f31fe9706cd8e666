"""Callbacks that drive pruning during `fit`, as tfmot's."""

import keras
from keras import ops

from keras_cka_sr import _compat
from keras_cka_sr.pruning import registry
from keras_cka_sr.pruning.wrapper import collect_prunable_layers


class UpdatePruningStep(keras.callbacks.Callback):
    """Use it when training a pruned model, as tfmot requires (without it: a warning).

    At train begin, a fresh model's step counters go from -1 to 0, so the first train
    step is pruning step 1 (as tfmot; the wrappers would start there on their own). At
    each epoch end, the stored weights are set to `weight * mask`.
    """

    def on_train_begin(self, logs=None):
        layers = collect_prunable_layers(self.model)
        for layer in layers:
            registry.check_maskable(layer.layer)  # before fit takes the model's state
            layer.callback_active = True
            if layer.built and int(ops.convert_to_numpy(layer.pruning_step)) == -1:
                layer.pruning_step.assign(0)

    def on_epoch_end(self, epoch=-1, logs=None, batch=None):
        # `batch`: tfmot's name for the first argument; its custom-loop recipe calls
        # `on_epoch_end(batch=-1)`.
        for layer in collect_prunable_layers(self.model):
            if layer.built:
                layer.apply_masks()

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class PruningSummaries(keras.callbacks.TensorBoard):
    """TensorBoard logs plus, per pruned weight, its sparsity and threshold.

    Written at each epoch begin under `<weight path>/sparsity` and
    `<weight path>/threshold` in the train writer of `log_dir` (needs TensorFlow
    and TensorBoard installed, as Keras' TensorBoard callback).
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        if not isinstance(log_dir, str) or not log_dir:
            raise ValueError(f"`log_dir` must be a non-empty path; got {log_dir!r}.")
        super().__init__(log_dir=log_dir, update_freq=update_freq, **kwargs)
        self._config = dict(log_dir=log_dir, update_freq=update_freq, **kwargs)

    def get_config(self):
        return dict(self._config)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        writer = _compat.tensorboard_train_writer(self)
        with writer.as_default():
            for layer in collect_prunable_layers(self.model):
                if not layer.built:
                    continue
                for weight, mask, threshold in zip(
                    layer.pruned_weights, layer.masks, layer.thresholds
                ):
                    sparsity = 1.0 - float(ops.convert_to_numpy(ops.mean(mask)))
                    self.summary.scalar(f"{weight.path}/sparsity", sparsity, step=epoch)
                    self.summary.scalar(
                        f"{weight.path}/threshold",
                        float(ops.convert_to_numpy(threshold)),
                        step=epoch,
                    )
        writer.flush()
