"""keras-cka-sr: CKA-SR (Ni et al., arXiv 2307.07389, 2023) sparsity regularization for Keras 3.

The public names load on first use, so `import keras_cka_sr` does not import Keras (and
its backend) until one is needed: the command line silences the backend's start-up log that
way (see the main job's start-up).
"""

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING

try:
    __version__ = _metadata.version("keras-cka-sr")
except _metadata.PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0+unknown"

_HOMES = {
    "CKAGradientMonitor": "keras_cka_sr.callbacks",
    "CKAMonitor": "keras_cka_sr.callbacks",
    "CKARegularization": "keras_cka_sr.layers",
    "CKASRMixin": "keras_cka_sr.models",
    "CKASRModel": "keras_cka_sr.models",
    "CKASimilarityLoss": "keras_cka_sr.losses",
    "attach_cka_loss": "keras_cka_sr.models",
    "feature_model": "keras_cka_sr.models",
}
_SUBMODULES = ("cka", "pruning", "sparse")

if TYPE_CHECKING:  # what the lazy names are, for type checkers and the API reference
    from keras_cka_sr import cka
    from keras_cka_sr.callbacks import CKAGradientMonitor, CKAMonitor
    from keras_cka_sr.layers import CKARegularization
    from keras_cka_sr.losses import CKASimilarityLoss
    from keras_cka_sr.models import CKASRMixin, CKASRModel, attach_cka_loss, feature_model

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


def __getattr__(name):
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"keras_cka_sr.{name}")
    else:
        raise AttributeError(f"module 'keras_cka_sr' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
