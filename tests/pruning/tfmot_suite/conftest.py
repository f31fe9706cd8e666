import pytest

from keras_cka_sr import pruning


@pytest.fixture
def params():
    """tfmot's tests' `self.params`."""
    return {
        "pruning_schedule": pruning.ConstantSparsity(0.5, 0),
        "block_size": (1, 1),
        "block_pooling_type": "AVG",
    }
