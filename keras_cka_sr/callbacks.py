"""`CKAMonitor`: the CKA matrix of chosen layers on a fixed probe batch, every epoch."""

import keras
import numpy as np
from keras import ops

from keras_cka_sr import cka
from keras_cka_sr.losses import PAIRS, compared_pairs
from keras_cka_sr.models import feature_model, parse_layer_names


class CKAMonitor(keras.callbacks.Callback):
    """Logs the mean inter-layer CKA (`logs[log_key]`) and keeps every epoch's matrix.

    Args:
        probe: a fixed batch of inputs (e.g. 256 validation images).
        layer_names: names of the layers to compare, or a list of lists (groups: only
            pairs within a group enter the mean, as in CKA-SR's penalty).
        unbiased: the HSIC estimator (the CKA-SR loss's default is unbiased).
        pairs: "all" pairs within a group or "adjacent" ones, as `CKASimilarityLoss`,
            so the logged mean is over the pairs the penalty sums.
        log_key: the key added to the epoch logs.

    After training, `matrices` holds one `(L, L)` NumPy matrix per epoch, in the order
    of `names` (the unique layer names, in order of first appearance).
    """

    def __init__(self, probe, layer_names, unbiased=True, pairs="all", log_key="cka_mean"):
        super().__init__()
        self.names, groups = parse_layer_names(layer_names)
        if pairs not in PAIRS:
            raise ValueError(f"`pairs` must be one of {PAIRS}; got {pairs!r}.")
        self.groups = groups
        self.pairs = pairs
        self.compared = compared_pairs(groups, len(self.names), pairs)
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
        """The mean of `matrix` over the compared pairs (those the penalty sums)."""
        return float(np.mean([matrix[i, j] for i, j in self.compared]))

    def on_epoch_end(self, epoch, logs=None):
        matrix = self.matrix()
        self.matrices.append(matrix)
        if logs is not None:
            logs[self.log_key] = self.mean_within_groups(matrix)

    def get_config(self):
        """The arguments except the probe batch (data, not configuration)."""
        layer_names = (
            self.names
            if self.groups is None
            else [[self.names[i] for i in group] for group in self.groups]
        )
        return {
            "layer_names": layer_names,
            "unbiased": self.unbiased,
            "pairs": self.pairs,
            "log_key": self.log_key,
        }
