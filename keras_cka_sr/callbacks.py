"""`CKAMonitor`: the CKA matrix of chosen layers on a fixed probe batch, every epoch."""

import keras
import numpy as np
from keras import ops

from keras_cka_sr import cka
from keras_cka_sr.models import feature_model


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class CKAMonitor(keras.callbacks.Callback):
    """Logs the mean inter-layer CKA (`logs[log_key]`) and keeps every epoch's matrix.

    Args:
        probe: a fixed batch of inputs (e.g. 256 validation images).
        layer_names: names of the layers to compare, or a list of lists (groups: only
            pairs within a group enter the mean, as CKA-SR's penalty).
        unbiased: the HSIC estimator (the CKA-SR loss's default is unbiased).
        log_key: the key added to the epoch logs.

    After training, `matrices` holds one `(L, L)` NumPy matrix per epoch, in the order
    of the flattened `layer_names`.
    """

    def __init__(self, probe, layer_names, unbiased=True, log_key="cka_mean"):
        super().__init__()
        if isinstance(layer_names, str) or not layer_names:
            raise ValueError(f"`layer_names` must be a non-empty list; got {layer_names!r}.")
        if all(isinstance(g, (list, tuple)) for g in layer_names):
            self.groups = [list(g) for g in layer_names]
        else:
            self.groups = [list(layer_names)]
        self.names = [n for g in self.groups for n in g]
        if len(self.names) < 2:
            raise ValueError(f"CKAMonitor needs at least 2 layers; got {self.names}.")
        self.probe = np.asarray(probe)
        self.unbiased = unbiased
        self.log_key = log_key
        self.matrices = []
        self._features = None

    def matrix(self, model=None):
        """The CKA matrix of the monitored layers on the probe batch, now."""
        model = model or self.model
        if self._features is None or self._features_of is not model:
            self._features = feature_model(model, self.names)
            self._features_of = model
        features = self._features.predict(self.probe, verbose=0, batch_size=len(self.probe))
        return ops.convert_to_numpy(cka.cka_matrix(list(features), unbiased=self.unbiased))

    def mean_within_groups(self, matrix):
        index = {n: i for i, n in enumerate(self.names)}
        values = [
            matrix[index[a], index[b]]
            for g in self.groups for i, a in enumerate(g) for b in g[i + 1:]
        ]
        return float(np.mean(values))

    def on_epoch_end(self, epoch, logs=None):
        matrix = self.matrix()
        self.matrices.append(matrix)
        if logs is not None:
            logs[self.log_key] = self.mean_within_groups(matrix)

    def get_config(self):
        return {
            "probe": self.probe.tolist(),
            "layer_names": self.groups,
            "unbiased": self.unbiased,
            "log_key": self.log_key,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
