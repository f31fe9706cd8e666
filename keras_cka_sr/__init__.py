"""keras-cka-sr: CKA-SR (Ni et al., arXiv 2307.07389, 2023) sparsity regularization for Keras 3."""

from keras_cka_sr import cka
from keras_cka_sr.layers import CKARegularization
from keras_cka_sr.losses import CKASimilarityLoss
from keras_cka_sr.models import CKASRMixin, CKASRModel, attach_cka_loss

__version__ = "0.1.0"

__all__ = [
    "CKARegularization",
    "CKASRMixin",
    "CKASRModel",
    "CKASimilarityLoss",
    "attach_cka_loss",
    "cka",
]
