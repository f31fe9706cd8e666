"""tfmot 0.8.1 `sparsity/keras/pruning_impl_test.py`, ported (see README.md here).

tfmot's internal `Pruning` object has two public counterparts here: the mask functions
of `keras_cka_sr.pruning.masks` (`_update_mask`, `_maybe_update_block_mask`) and the
`PruneLowMagnitude` wrapper (`conditional_mask_update` + `weight_mask_op`).
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import pruning
from keras_cka_sr.pruning import masks as pruning_impl

block_size = (1, 1)
block_pooling_type = "AVG"
constant_sparsity = pruning.ConstantSparsity(0.5, 0, 100, 1)


def _sparsity(schedule, step=0):
    return schedule(ops.convert_to_tensor(step, "int32"))[1]


def testExtremelySparseMask():
    weight = ops.convert_to_tensor(np.linspace(1.0, 100.0, 100), "float32")
    extreme_sparsity = pruning.ConstantSparsity(0.9999, 0, 100, 1)
    assert np.count_nonzero(np.ones(100)) == 100

    _, mask = pruning_impl.block_magnitude_mask(
        weight, _sparsity(extreme_sparsity), block_size, block_pooling_type
    )

    # We should always have a single connection remaining.
    assert np.count_nonzero(ops.convert_to_numpy(mask)) == 1


def testUpdateSingleMask():
    weight = ops.convert_to_tensor(np.linspace(1.0, 100.0, 100), "float32")
    _, mask = pruning_impl.block_magnitude_mask(
        weight, _sparsity(constant_sparsity), block_size, block_pooling_type
    )
    assert np.count_nonzero(ops.convert_to_numpy(mask)) == 50


def testConstructsMaskAndThresholdCorrectly():
    # Sparsity math often returns values with small tolerances.
    # input matrix is [ 1.0, 2.0, ..., 8.0, 9.0, 10.0 ]
    threshold, mask = pruning_impl.magnitude_mask(
        ops.convert_to_tensor(np.arange(1, 11), "float32"), 0.200000018
    )

    assert 3 == ops.convert_to_numpy(threshold)
    # expected matrix is [ 0.0, 0.0, 1.0, 1.0 ... 1.0 ]
    np.testing.assert_array_equal(
        np.concatenate((np.zeros(2), np.ones(8))), ops.convert_to_numpy(mask)
    )


def _blockMasking(block_size, block_pooling_type, weight, expected_mask):
    weight = ops.convert_to_tensor(weight, "float32")
    _, new_mask = pruning_impl.block_magnitude_mask(
        weight, _sparsity(constant_sparsity), block_size, block_pooling_type
    )
    # Check if the mask is the same size as the weights
    assert tuple(new_mask.shape) == tuple(weight.shape)
    np.testing.assert_array_equal(ops.convert_to_numpy(new_mask), expected_mask)


def testBlockMaskingAvg():
    weight = [
        [0.1, 0.1, 0.2, 0.2],
        [0.1, 0.1, 0.2, 0.2],
        [0.3, 0.3, 0.4, 0.4],
        [0.3, 0.3, 0.4, 0.4],
    ]
    expected_mask = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0] * 4, [1.0] * 4]
    _blockMasking((2, 2), "AVG", weight, expected_mask)


def testBlockMaskingMax():
    weight = [
        [0.1, 0.0, 0.2, 0.0],
        [0.0, -0.1, 0.0, -0.2],
        [0.3, 0.0, 0.4, 0.0],
        [0.0, -0.3, 0.0, -0.4],
    ]
    expected_mask = [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0] * 4, [1.0] * 4]
    _blockMasking((2, 2), "MAX", weight, expected_mask)


class _OneWeight(keras.layers.Layer, pruning.PrunableLayer):
    """A layer holding tfmot's test weight, `linspace(1, 100, 100)`, and no computation."""

    def build(self, input_shape):
        self.w = self.add_weight(
            shape=(100,), initializer=keras.initializers.Constant(np.linspace(1.0, 100.0, 100))
        )

    def call(self, inputs):
        return inputs + ops.sum(self.w)

    def get_prunable_weights(self):
        return [self.w]


@pytest.mark.xfail(
    strict=True,
    reason="README differences table: block pruning squeezes unit dimensions, as tfmot's "
    "own mask code does, instead of refusing every weight that is not rank 2",
)
def testBlockMaskingWithHigherDimensionsRaisesError():
    # Weights as in testBlockMasking, but with one extra dimension.
    weight = [
        [
            [0.1, 0.1, 0.2, 0.2],
            [0.1, 0.1, 0.2, 0.2],
            [0.3, 0.3, 0.4, 0.4],
            [0.3, 0.3, 0.4, 0.4],
        ]
    ]
    expected_mask = [[[0.0] * 4, [0.0] * 4, [1.0] * 4, [1.0] * 4]]

    # Block masking should only be used with 2 Dimensional weights.
    with pytest.raises(ValueError):
        _blockMasking((2, 2), "AVG", weight, expected_mask)


@keras.saving.register_keras_serializable(package="tfmot_suite")
class _LinearSparsity(pruning.PruningSchedule):
    """tfmot's `linear_sparsity(step)`: prune on every step, sparsity from a table."""

    def __call__(self, step):
        sparsity_val = ops.convert_to_tensor([0.0, 0.1, 0.1, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5])
        # Keras 3: the wrapper's first training call is step 1; tfmot's bare Pruning object
        # here reads a global step that starts at 0.
        return ops.convert_to_tensor(True), ops.take(sparsity_val, step - 1)

    def get_config(self):
        return {}


@pytest.mark.filterwarnings("ignore:.*UpdatePruningStep")
def testConditionalMaskUpdate():
    layer = pruning.PruneLowMagnitude(
        _OneWeight(),
        pruning_schedule=_LinearSparsity(),
        block_size=block_size,
        block_pooling_type=block_pooling_type,
    )
    x = np.zeros((1, 1), "float32")
    layer(x)

    non_zero_count = []
    for _ in range(10):
        layer(x, training=True)  # conditional_mask_update, one step
        layer.apply_masks()  # weight_mask_op
        non_zero_count.append(np.count_nonzero(ops.convert_to_numpy(layer.layer.w)))

    # Weights pruned at steps 1,3,5
    expected_non_zero_count = [100, 90, 90, 70, 70, 50, 50, 50, 50, 50]
    assert expected_non_zero_count == non_zero_count


def _sparsity_m_by_n_masking(weight, m_by_n=(2, 4)):
    return pruning_impl.m_by_n_mask(ops.convert_to_tensor(weight, "float32"), m_by_n)


@pytest.mark.parametrize(
    "weights, expected_mask, m_by_n",
    [
        pytest.param(
            [[0.74, 0.68], [-0.89, -0.45], [-1.68, 1.24], [0.31, -0.6]],
            [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]],
            (2, 4),
            id="_2d_2by4",
        ),
        pytest.param(
            [[[[-0.36, -0.77], [-0.43, -0.18], [0.12, 1.36], [0.77, 0.96]]]],
            [[[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]],
            (2, 4),
            id="_4d_2by4",
        ),
        pytest.param(
            [[[[-0.36, -0.77], [-0.43, -0.18], [0.12, 1.36], [0.77, 0.96]]]],
            [[[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]]],
            (1, 2),
            id="_4d_1by2",
        ),
        pytest.param(
            [[1.92, -0.21], [-0.19, 0.57], [1.1, -0.42]],
            [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
            (2, 4),
            id="_2d_2by4_pad",
        ),
        pytest.param(
            [[[[-0.37, 1.85], [0.82, 0.07], [1.17, 0.5]]]],
            [[[[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]]],
            (2, 4),
            id="_4d_2by4_pad",
        ),
    ],
)
def testSparsityMbyNMaskingSimple(weights, expected_mask, m_by_n):
    mask = _sparsity_m_by_n_masking(weights, m_by_n)
    np.testing.assert_array_equal(ops.convert_to_numpy(mask), expected_mask)


@pytest.mark.parametrize("weights_shape", [[4], [4, 4, 4]], ids=["_1d", "_3d"])
def testSparsityMbyNMaskingSimpleRaises(weights_shape):
    with pytest.raises(ValueError):
        _sparsity_m_by_n_masking(np.ones(weights_shape))
