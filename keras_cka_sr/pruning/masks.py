"""Magnitude masks: pure `keras.ops` functions, traceable under jit on every backend.

These reproduce tfmot 0.8.1's rules:

* elementwise: keep `k = max(round(N (1 - s)), 1)` weights; the threshold is the k-th
  largest |w| and the mask keeps every |w| >= threshold, so ties at the threshold are
  all kept (the sparsity can then fall short of `s` by the number of ties);
* blocks (rank-2 weights): |w| is pooled (AVG or MAX) over non-overlapping blocks,
  SAME padding (an average counts only real elements), blocks are thresholded as
  above and the block mask is expanded back;
* m_by_n: `m` zeros in every `n` consecutive input-channel values; among equal
  magnitudes the lower index is kept (as `top_k`).

The threshold is found with `sort` and `take` at a traced index (`top_k` needs a static
k under jit).
"""

import math

import numpy as np
from keras import ops

from keras_cka_sr._numpy import to_numpy
from keras_cka_sr._validation import is_int

POOLING_TYPES = ("AVG", "MAX")


def keep_count(size, sparsity):
    """tfmot's count of kept weights, `max(round(size * (1 - sparsity)), 1)`, as int32."""
    kept = ops.round(ops.cast(size, "float32") * (1.0 - ops.cast(sparsity, "float32")))
    return ops.cast(ops.maximum(kept, 1.0), "int32")


def magnitude_mask(weights, sparsity):
    """Returns `(threshold, mask)` keeping the largest-magnitude weights."""
    magnitudes = ops.abs(weights)
    flat = ops.reshape(magnitudes, (-1,))
    size = int(flat.shape[0])
    k = keep_count(size, sparsity)
    ascending = ops.sort(flat)
    threshold = ops.take(ascending, ops.reshape(size - k, (1,)), axis=0)[0]
    mask = ops.cast(ops.greater_equal(magnitudes, threshold), weights.dtype)
    return ops.cast(threshold, weights.dtype), mask


def check_block_size(shape, block_size, name="weight"):
    """A `ValueError` unless blocks of `block_size` can prune a weight of `shape`: it must
    be rank 2 once squeezed and hold more than one block (one block is kept whole)."""
    shape = tuple(shape)
    rows, cols = squeezed = _squeezed_rank2(
        shape, f"{name!r} has shape {shape}. Use block_size=(1, 1) for it"
    )
    if math.ceil(rows / block_size[0]) * math.ceil(cols / block_size[1]) == 1:
        raise ValueError(
            f"block_size={tuple(block_size)} covers all of {name!r} (shape {shape}) in one "
            "block, and the one block is always kept: nothing would be pruned. Use a "
            f"block_size smaller than {squeezed} in at least one dimension."
        )


def _squeezed_rank2(shape, detail):
    """`shape` without its unit dimensions, which block pruning needs to be rank 2."""
    squeezed = tuple(d for d in shape if d != 1)
    if len(squeezed) != 2:
        raise ValueError(f"Block pruning needs a weight that is rank 2 once squeezed; {detail}.")
    return squeezed


def block_magnitude_mask(weights, sparsity, block_size, pooling_type="AVG"):
    """Magnitude mask over blocks of a weight that is rank 2 once squeezed."""
    block_h, block_w = block_size
    if (block_h, block_w) == (1, 1):
        return magnitude_mask(weights, sparsity)
    shape = tuple(weights.shape)
    rows, cols = squeezed = _squeezed_rank2(shape, f"got shape {shape}")
    magnitudes = ops.abs(ops.reshape(weights, squeezed))
    grid_r, grid_c = math.ceil(rows / block_h), math.ceil(cols / block_w)
    pad = ((0, grid_r * block_h - rows), (0, grid_c * block_w - cols))
    padded = ops.pad(magnitudes, pad)
    blocks = ops.reshape(padded, (grid_r, block_h, grid_c, block_w))
    if pooling_type == "MAX":
        pooled = ops.max(blocks, axis=(1, 3))
    elif pooling_type == "AVG":
        ones = ops.pad(ops.ones((rows, cols), magnitudes.dtype), pad)
        counts = ops.sum(ops.reshape(ones, (grid_r, block_h, grid_c, block_w)), axis=(1, 3))
        pooled = ops.sum(blocks, axis=(1, 3)) / counts
    else:
        raise ValueError(f"`pooling_type` must be one of {POOLING_TYPES}; got {pooling_type!r}.")
    threshold, block_mask = magnitude_mask(pooled, sparsity)
    expanded = ops.repeat(ops.repeat(block_mask, block_h, axis=0), block_w, axis=1)
    return threshold, ops.reshape(expanded[:rows, :cols], shape)


def m_by_n_mask(weights, m_by_n):
    """`m` zeros in every `n` consecutive values along the input-channel axis.

    Dense kernels `(in, out)` are grouped along `in` for each output; Conv2D kernels
    `(h, w, in, out)` along `in` for each `(out, h, w)`, as tfmot/TFLite.
    """
    zeros, group = check_m_by_n(m_by_n)
    rows = _input_channels_last(weights)
    count, channels = rows.shape
    pad = -channels % group
    padded = ops.pad(ops.abs(rows), ((0, 0), (0, pad)))
    blocks = ops.reshape(padded, (-1, group))
    a = ops.expand_dims(blocks, 2)  # value i
    b = ops.expand_dims(blocks, 1)  # value j
    earlier = ops.convert_to_tensor([[j < i for j in range(group)] for i in range(group)])
    # Rank of each value in its group, ties broken toward the lower index.
    rank = ops.sum(
        ops.cast(ops.logical_or(b > a, ops.logical_and(b == a, earlier)), "int32"), axis=2
    )
    keep = ops.cast(rank < group - zeros, weights.dtype)
    mask = ops.reshape(keep, (count, channels + pad))[:, :channels]
    shape = tuple(weights.shape)
    if len(shape) == 2:
        return ops.transpose(mask)
    return ops.transpose(ops.reshape(mask, (shape[3], shape[0], shape[1], shape[2])), (1, 2, 3, 0))


def is_pruned_m_by_n(weights, m_by_n=(2, 4), last_channel="C_OUT") -> bool:
    """True if every `n` consecutive input-channel values hold at least `m` zeros (a
    shorter last group: at most `n - m` non-zeros), as tfmot's `is_pruned_m_by_n`.

    `last_channel="C_OUT"`: a Keras kernel (Dense `(in, out)`, Conv2D `(h, w, in, out)`);
    `"C_IN"`: input channels already last (TFLite's layout). A host-side check of values.
    """
    zeros, group = check_m_by_n(m_by_n, strict=False)
    if last_channel == "C_OUT":
        rows = to_numpy(_input_channels_last(weights))
    elif last_channel == "C_IN":
        values = np.asarray(to_numpy(weights))
        rows = values.reshape(-1, values.shape[-1])
    else:
        raise ValueError(f"`last_channel` must be 'C_OUT' or 'C_IN'; got {last_channel!r}.")
    pad = -rows.shape[1] % group
    padded = np.pad(rows != 0, ((0, 0), (0, pad)))
    return bool(np.all(padded.reshape(-1, group).sum(axis=1) <= group - zeros))


def check_m_by_n(m_by_n, strict=True, name="m_by_n") -> tuple[int, int]:
    """(m, n) as ints; 0 < m < n (`strict`, to make a mask) or 0 <= m <= n (to check one)."""
    bounds = "0 < m < n" if strict else "0 <= m <= n"
    expected = f"`{name}` must be two ints (m, n) with {bounds}, m zeros in every n values"
    if not isinstance(m_by_n, (tuple, list)) or not all(is_int(v) for v in m_by_n):
        raise TypeError(f"{expected}; got {m_by_n!r}.")
    valid = len(m_by_n) == 2
    if valid:
        m, n = (int(v) for v in m_by_n)
        valid = 0 < m < n if strict else 0 <= m <= n
    if not valid:
        raise ValueError(f"{expected}; got {m_by_n!r}.")
    return m, n


def _input_channels_last(weights):
    """A Dense `(in, out)` or Conv2D `(h, w, in, out)` kernel as rows of input channels."""
    shape = tuple(weights.shape)
    if len(shape) == 2:
        return ops.transpose(weights)
    if len(shape) == 4:
        return ops.reshape(ops.transpose(weights, (3, 0, 1, 2)), (-1, shape[2]))
    raise ValueError(f"m_by_n sparsity needs a rank-2 or rank-4 kernel; got shape {shape}.")
