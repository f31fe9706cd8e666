"""keras-cka-sr: CKA-SR (Ni et al., arXiv 2307.07389, 2023) sparsity regularization for Keras 3."""

from importlib import metadata as _metadata

from keras_cka_sr import cka
from keras_cka_sr.callbacks import CKAGradientMonitor, CKAMonitor
from keras_cka_sr.layers import CKARegularization
from keras_cka_sr.losses import CKASimilarityLoss
from keras_cka_sr.models import CKASRMixin, CKASRModel, attach_cka_loss, feature_model

try:
    __version__ = _metadata.version("keras-cka-sr")
except _metadata.PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "CKAGradientMonitor",
    "CKAMonitor",
    "CKARegularization",
    "CKASRMixin",
    "CKASRModel",
    "CKASimilarityLoss",
    "attach_cka_loss",
    "cka",
    "feature_model",
]
