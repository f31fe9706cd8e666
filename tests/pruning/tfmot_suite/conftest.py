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


def pytest_collection_modifyitems(items):
    """tfmot's tests build layers the Keras 2 way (`Dense(10, input_shape=(10,))`), kept as
    ported; Keras 3 warns of it on every such layer. Nothing else is filtered here."""
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(
                pytest.mark.filterwarnings("ignore:Do not pass an `input_shape`:UserWarning")
            )
