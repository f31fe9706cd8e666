"""keras-cka-sr: CKA-SR (Ni et al., arXiv 2307.07389, 2023) sparsity regularization for Keras 3."""

from importlib import metadata as _metadata

from keras_cka_sr import _startup

_startup.quiet_if_run_as_module()

from keras_cka_sr import cka  # noqa: E402
from keras_cka_sr.callbacks import CKAGradientMonitor, CKAMonitor  # noqa: E402
from keras_cka_sr.layers import CKARegularization  # noqa: E402
from keras_cka_sr.losses import CKASimilarityLoss  # noqa: E402
from keras_cka_sr.models import CKASRMixin, CKASRModel, attach_cka_loss, feature_model  # noqa: E402
from keras_cka_sr.taps import block_taps  # noqa: E402

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
    "block_taps",
    "cka",
    "feature_model",
]
