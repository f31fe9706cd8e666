"""Linear Centered Kernel Alignment (CKA) between layer representations.

Pure math on `keras.ops`, so it runs (and differentiates) on every Keras backend.

Two estimators of the Hilbert-Schmidt Independence Criterion (HSIC) are offered:

* biased (Kornblith et al. 2019): `HSIC_b(K, L) ∝ tr(K H L H)`, which for
  column-centered features gives `CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`;
* unbiased (Song et al. 2012, as used for minibatch CKA by Nguyen et al. 2021):
  with `K~`, `L~` the Gram matrices with zeroed diagonals,
  `HSIC_u = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))`.

Both are written as an inner product of (U- or double-) centered Gram matrices,
`HSIC(K, L) ∝ <C(K), C(L)>_F`, so each layer's Gram matrix is computed once and reused
for every pair. When features are narrower than the batch, the same quantities are
computed in feature space instead (`||X^T Y||_F^2` plus O(n d) corrections), which is
cheaper; `method="auto"` picks the cheaper form from the static shapes, or, when the
batch size is known only at run time (TF graphs), branches on it at run time.

Numerics: features are cast to at least float32 (float16 Grams overflow) and shifted
to a mean of the order of their spread before any product (column-centered in feature
space; minus the first sample in Gram space, where the Gram centering removes the
rest), so a large common offset does not cancel digits. Each Gram matrix (or, in
feature space, each feature matrix) is then scaled to that of unit-Frobenius-norm
centered features. CKA is invariant to shifts and scale, so the value is unchanged,
and the n x n products that follow stay O(1). A layer with zero variance (e.g. a dead
ReLU layer; numerically: centered norm below 1e-5 of the raw norm in float32, 1e-12 in
float64, the raw norm taken about the first sample in Gram space) has no defined CKA;
we define its CKA with anything, itself included, to be 0 (with zero gradient), so the
result is finite for finite input. Non-finite input (NaN or inf features) gives NaN, in
value and gradient alike. Feature sizes after the batch axis may be known only at run time.
"""

import math
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
from keras import backend, ops

from keras_cka_sr._control import cond

FORMS = ("auto", "gram", "feature")
# A tensor of the active backend or a NumPy array.
Tensor: TypeAlias = Any
DEFAULT_EPSILON = 1e-6
# Centered norm below this fraction of the raw norm: zero variance.
_ZERO_VARIANCE_RATIO = {"float32": 1e-5, "float64": 1e-12}


def linear_cka(
    x: Tensor, y: Tensor, unbiased: bool = False, epsilon: float = DEFAULT_EPSILON
) -> Tensor:
    """Linear CKA between two representations of the same `n` samples.

    Args:
        x: tensor of shape `(n, ...)`; trailing axes are flattened per sample.
        y: tensor of shape `(n, ...)`, same `n` as `x`.
        unbiased: use the unbiased HSIC estimator (needs `n >= 4`).
        epsilon: if `sqrt(HSIC(x, x) HSIC(y, y))` (of the unit-norm centered
            features) is below this, the CKA is defined as 0.

    Returns:
        A float32 (float64 for float64 inputs) scalar tensor.

    Examples:
        >>> x = np.random.default_rng(0).normal(size=(32, 5))
        >>> round(float(cka.linear_cka(x, 3.0 * x @ np.diag([1, 2, 3, 4, 5]))), 2) < 1.0
        True
        >>> round(float(cka.linear_cka(x, 2.0 * x, unbiased=False)), 4)  # scale-invariant
        1.0
    """
    m = pairwise_cka([x, y], [(0, 1)], unbiased=unbiased, epsilon=epsilon)
    return m[0]


def cka_matrix(
    features: Sequence,
    unbiased: bool = False,
    epsilon: float = DEFAULT_EPSILON,
    method: str = "auto",
) -> Tensor:
    """Pairwise linear CKA of a list of `L` representations: an `(L, L)` tensor.

    The matrix is symmetric with unit diagonal (0 on the diagonal of a layer with
    zero variance).

    Examples:
        >>> x = np.random.default_rng(0).normal(size=(32, 5)).astype("float32")
        >>> m = keras.ops.convert_to_numpy(cka.cka_matrix([x, 2 * x, x ** 2], unbiased=False))
        >>> m.shape, np.allclose(np.diag(m), 1.0, atol=1e-5), np.allclose(m, m.T, atol=1e-6)
        ((3, 3), True, True)
    """
    features = _check_features(features, min_count=1)
    count = len(features)
    pairs = [(i, j) for i in range(count) for j in range(i + 1, count)]
    features, dtype, method = _resolve(features, pairs, unbiased, method)

    def gram():
        return _gram_cka_matrix(features, unbiased, epsilon, dtype)

    def feature():
        hsic, self_hsic = _feature_hsic_terms(features, pairs, unbiased, dtype)
        diag = _normalize(self_hsic, self_hsic, self_hsic, epsilon)
        # Constant 0/1 maps place the diagonal and both triangles: no scatter needed.
        place_diag = np.zeros((count * count, count))
        place_diag[np.arange(count) * (count + 1), np.arange(count)] = 1.0
        flat = ops.matmul(ops.convert_to_tensor(place_diag, diag.dtype), diag)
        if pairs:
            off = _pair_cka(hsic, self_hsic, pairs, epsilon)
            place_off = np.zeros((count * count, len(pairs)))
            for k, (i, j) in enumerate(pairs):
                place_off[i * count + j, k] = place_off[j * count + i, k] = 1.0
            flat = flat + ops.matmul(ops.convert_to_tensor(place_off, off.dtype), off)
        return ops.reshape(flat, (count, count))

    return _by_method(method, features, pairs, gram, feature)


def pairwise_cka(
    features: Sequence,
    pairs: Sequence[tuple[int, int]],
    unbiased: bool = False,
    epsilon: float = DEFAULT_EPSILON,
    method: str = "auto",
) -> Tensor:
    """CKA for selected index pairs of `features`: a vector with one entry per pair.

    Each layer's centered Gram matrix (or feature statistics) is computed once,
    however many pairs it appears in.

    Examples:
        >>> x = np.random.default_rng(0).normal(size=(32, 5)).astype("float32")
        >>> values = cka.pairwise_cka([x, 2 * x, x], [(0, 1), (0, 2)], unbiased=False)
        >>> np.round(keras.ops.convert_to_numpy(values), 4).tolist()
        [1.0, 1.0]
    """
    features = _check_features(features, min_count=1)
    count = len(features)
    pairs = _check_pairs(pairs, count)
    features, dtype, method = _resolve(features, pairs, unbiased, method)

    def gram():
        matrix = _gram_cka_matrix(features, unbiased, epsilon, dtype)
        return ops.take(ops.reshape(matrix, (-1,)), [i * count + j for i, j in pairs], axis=0)

    def feature():
        hsic, self_hsic = _feature_hsic_terms(features, pairs, unbiased, dtype)
        return _pair_cka(hsic, self_hsic, pairs, epsilon)

    return _by_method(method, features, pairs, gram, feature)


def min_samples(unbiased: bool) -> int:
    """Fewest samples the estimator is defined for: 4 unbiased ((n-1)(n-2)(n-3) > 0), 2 biased.

    Examples:
        >>> cka.min_samples(unbiased=True), cka.min_samples(unbiased=False)
        (4, 2)
    """
    return 4 if unbiased else 2


def choose_method(
    feature_dims: Sequence[int], num_samples: int | None, pairs: Sequence[tuple[int, int]]
) -> str:
    """Return "gram" or "feature", whichever form costs fewer multiply-adds.

    Gram form: one `n x n` Gram per layer (`n^2 d_i`), then the `L x L` matrix of their
    inner products (`L^2 n^2`, whatever the pairs: it is one batched product). Feature
    form: a `d_i x d_j` cross-product per pair and per layer (`n d_i d_j`). An unknown
    `num_samples` returns "gram"; the CKA functions then choose at run time instead
    (a TF graph traced with batch `None` branches on the batch it gets).

    Examples:
        >>> cka.choose_method([16, 16], num_samples=1024, pairs=[(0, 1)])  # d << n
        'feature'
        >>> cka.choose_method([4096, 4096], num_samples=8, pairs=[(0, 1)])  # n << d
        'gram'
    """
    if num_samples is None:
        return "gram"
    return "feature" if num_samples > _feature_break_even(feature_dims, pairs) else "gram"


def static_feature_dims(features: Sequence) -> list[int] | None:
    """Each feature's size after the batch axis (flattened), or None if any is known only
    at run time.

    Examples:
        >>> cka.static_feature_dims([keras.KerasTensor((None, 4, 4, 2)), keras.KerasTensor((None, 7))])
        [32, 7]
        >>> cka.static_feature_dims([keras.KerasTensor((None, None, 3))]) is None
        True
    """
    shapes = [tuple(f.shape)[1:] for f in features]
    if any(d is None for shape in shapes for d in shape):
        return None
    return [int(math.prod(shape)) for shape in shapes]


def _feature_break_even(feature_dims, pairs) -> float:
    """The batch size above which the feature form is cheaper: with
    `A = sum d_i^2 + sum_pairs d_i d_j` and `B = sum d_i + L^2`, feature costs `n A` and
    Gram `n^2 B`."""
    dims = [int(d) for d in feature_dims]
    per_sample_feature = sum(d * d for d in dims) + sum(dims[i] * dims[j] for i, j in pairs)
    per_sample_squared_gram = sum(dims) + len(dims) ** 2
    return per_sample_feature / per_sample_squared_gram


# --------------------------------------------------------------------------- internals


def _check_features(features, min_count):
    if not isinstance(features, (list, tuple)):
        raise TypeError(
            "`features` must be a list or tuple of tensors of shape (n, ...); "
            f"got {type(features).__name__}."
        )
    if len(features) < min_count:
        raise ValueError(f"`features` must hold at least {min_count} tensors; got {len(features)}.")
    n = None
    for index, f in enumerate(features):
        shape = tuple(f.shape)
        if len(shape) < 1:
            raise ValueError(
                f"`features[{index}]` must have a batch axis, shape (n, ...); got a scalar."
            )
        if shape[0] is not None:
            if n is not None and shape[0] != n:
                raise ValueError(
                    "All features must share the batch size n; "
                    f"`features[{index}]` has n={shape[0]}, expected n={n}."
                )
            n = shape[0]
    return list(features)


def _check_pairs(pairs, count):
    checked = []
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(i, int) for i in pair):
            raise TypeError(f"`pairs` entries must be (int, int) tuples; got {pair!r}.")
        for i in pair:
            if not 0 <= i < count:
                raise ValueError(f"`pairs` index {i} is out of range for {count} features.")
        checked.append(tuple(pair))
    if not checked:
        raise ValueError("`pairs` must hold at least one (i, j) pair.")
    return checked


def _compute_dtype(x):
    return "float64" if backend.standardize_dtype(x.dtype) == "float64" else "float32"


def _flatten(x, dtype):
    """Cast and flatten to (n, d); d may be known only at run time (e.g. a sequence length)."""
    if backend.standardize_dtype(x.dtype) != dtype:
        x = ops.cast(x, dtype)
    shape = tuple(x.shape)
    if len(shape) == 2:
        return x
    if all(d is not None for d in shape[1:]):
        return ops.reshape(x, (-1, int(math.prod(shape[1:]))))
    return ops.reshape(x, (ops.shape(x)[0], -1))


def _flatten_center(x, dtype):
    """Cast, flatten to (n, d) and center columns; also returns n * ||column mean||^2."""
    x = _flatten(x, dtype)
    mean = ops.mean(x, axis=0, keepdims=True)
    n = ops.cast(ops.shape(x)[0], dtype)
    mean_part = ops.stop_gradient(n * ops.sum(ops.square(mean)))
    return x - mean, mean_part


def _inverse_norm2(sq, mean_part, dtype):
    """1 / ||X_c||^2, or 0 for zero variance.

    `sq = ||X_c||^2`; the raw squared norm is `sq + mean_part`, with `mean_part`
    `n ||mean||^2` (feature space) or `n ||first sample||^2` (Gram space: nearly the
    same wherever the test matters, as the variance is then tiny). Constant features leave
    only rounding noise after centering; scaling that up would invent structure, so
    they count as zero variance.
    """
    rel = _ZERO_VARIANCE_RATIO[dtype]
    ok = ops.logical_and(sq > _tiny(dtype), sq > (rel * rel) * (sq + mean_part))
    ok = _or_non_finite(ok, sq)
    return ops.where(ok, 1.0 / ops.where(ok, sq, ops.ones_like(sq)), ops.zeros_like(sq))


def _prepare(x, dtype):
    """Flatten to (n, d), cast, center columns and scale to unit Frobenius norm."""
    x, mean_part = _flatten_center(x, dtype)
    inv = _inverse_norm2(ops.sum(ops.square(x)), mean_part, dtype)
    return x * ops.sqrt(inv)


def _shifted_gram(x, dtype):
    """Gram matrix of the features minus their first sample, and ||first sample||^2.

    Double- and U-centering of a Gram matrix remove any constant row added to every
    sample, so the features need not be column-centered here: subtracting one sample
    is as accurate (the result has a mean of the order of the spread) and skips a
    pass over the features for their mean. The shift is a constant to autodiff; that
    is exact, as the CKA does not change along shifts (its gradient has zero column
    sums).
    """
    x = _flatten(x, dtype)
    first = ops.stop_gradient(x[0])
    x = x - first
    return ops.matmul(x, ops.transpose(x)), ops.vdot(first, first)


def _tiny(dtype):
    return 1e-30 if dtype == "float32" else 1e-300


def static_num_samples(features: Sequence) -> int | None:
    """The batch size if any feature's shape fixes it, else None (known at run time only).

    Examples:
        >>> cka.static_num_samples([keras.KerasTensor((None, 4)), keras.KerasTensor((8, 4))])
        8
        >>> cka.static_num_samples([keras.KerasTensor((None, 4))]) is None
        True
    """
    for f in features:
        shape = tuple(f.shape)
        if shape and shape[0] is not None:
            return int(shape[0])
    return None


def method_for_at_most(features: Sequence, pairs, method: str, num_samples: int | None) -> str:
    """The form to ask for when batches hold at most `num_samples` samples (a loss that uses
    only the first `num_samples`): where the Gram form is the cheaper one at `num_samples`,
    it is at every smaller batch, so "auto" needs no run-time branch (whose gradient is slow
    to trace in TF graphs). Otherwise `method` unchanged.

    Examples:
        >>> features = [keras.KerasTensor((None, 4096)), keras.KerasTensor((None, 4096))]
        >>> cka.method_for_at_most(features, [(0, 1)], "auto", num_samples=8)
        'gram'
    """
    if method != "auto" or num_samples is None:
        return method
    dims = static_feature_dims(features)
    if dims is None:
        return method
    return "gram" if choose_method(dims, num_samples, pairs) == "gram" else "auto"


def _resolve(features, pairs, unbiased, method):
    """Validates; returns the features as tensors, the compute dtype and the method."""
    if method not in FORMS:
        raise ValueError(f"`method` must be one of {FORMS}; got {method!r}.")
    n_static = static_num_samples(features)
    needed = min_samples(unbiased)
    if n_static is not None and n_static < needed:
        raise ValueError(
            f"The {'unbiased' if unbiased else 'biased'} HSIC estimator needs at least "
            f"{needed} samples; got a batch of n={n_static}. Use a larger batch"
            f"{', or unbiased=False' if unbiased else ''}."
        )
    features = [ops.convert_to_tensor(f) for f in features]
    dtype = "float64" if all(_compute_dtype(f) == "float64" for f in features) else "float32"
    if method == "auto":
        dims = static_feature_dims(features)
        if dims is None:
            method = "gram"  # feature widths known only at run time: n x n is the safe size
        else:
            method = "dynamic" if n_static is None else choose_method(dims, n_static, pairs)
    return features, dtype, method


def _by_method(method, features, pairs, gram, feature):
    """`gram()` or `feature()`; "dynamic" branches on the run-time batch size, so memory
    stays O(n d) where the feature form is cheaper (only the taken branch runs)."""
    if method == "gram":
        return gram()
    if method == "feature":
        return feature()
    dims = static_feature_dims(features)
    n = ops.cast(ops.shape(features[0])[0], "float32")
    return cond(n > _feature_break_even(dims, pairs), feature, gram)


def _gram_cka_matrix(features, unbiased, epsilon, dtype):
    """(L, L) CKA from the L centered, unit-scaled Gram matrices, batched as (L, n, n).

    HSIC (times a positive constant common to all entries, which cancels) is the
    inner product of two centered Grams.
    """
    grams, offsets = zip(*[_shifted_gram(f, dtype) for f in features])
    k = ops.stack(grams)
    n = ops.cast(ops.shape(k)[-1], dtype)
    # ||X_c||^2 = tr(H K H) for the Gram K of the shifted features.
    sq = ops.trace(k, axis1=1, axis2=2) - ops.sum(k, axis=(1, 2)) / n
    k = k * _inverse_norm2(sq, n * ops.stack(offsets), dtype)[:, None, None]
    flat = ops.reshape(_center_gram(k, unbiased), (len(features), -1))
    inner = ops.matmul(flat, ops.transpose(flat))
    diag = ops.diagonal(inner)
    return _normalize(inner, diag[:, None], diag[None, :], epsilon)


def _feature_hsic_terms(features, pairs, unbiased, dtype):
    """Scaled HSIC for each pair and for each layer with itself, in feature space.

    Scaled means multiplied by a positive constant common to all pairs (it cancels in
    CKA): `n(n-3) HSIC_u` or `(n-1)^2 HSIC_b`.
    """
    xs = [_prepare(f, dtype) for f in features]
    stats = [_feature_stats(x) for x in xs]
    self_hsic = ops.stack([_feature_hsic(x, x, s, s, unbiased) for x, s in zip(xs, stats)])
    if not pairs:
        return None, self_hsic
    hsic = ops.stack([_feature_hsic(xs[i], xs[j], stats[i], stats[j], unbiased) for i, j in pairs])
    return hsic, self_hsic


def _center_gram(k, unbiased):
    """Double-centering (biased) or U-centering (unbiased) of Gram matrices (..., n, n)."""
    n_int = ops.shape(k)[-1]
    n = ops.cast(n_int, k.dtype)
    if not unbiased:
        row = ops.mean(k, axis=-1, keepdims=True)
        col = ops.mean(k, axis=-2, keepdims=True)
        return k - row - col + ops.mean(k, axis=(-2, -1), keepdims=True)
    off_diag = 1.0 - ops.eye(n_int, dtype=k.dtype)
    k = k * off_diag
    row = ops.sum(k, axis=-1, keepdims=True)
    col = ops.sum(k, axis=-2, keepdims=True)
    total = ops.sum(row, axis=-2, keepdims=True)
    u = k - (row + col) / (n - 2.0) + total / ((n - 1.0) * (n - 2.0))
    return u * off_diag


def _feature_stats(x):
    """Per-layer O(n d) terms of the feature-space form: squared row norms."""
    return ops.sum(ops.square(x), axis=1)


def _feature_hsic(x, y, kx, ky, unbiased):
    """Scaled HSIC from column-centered features, without forming n x n Grams.

    For centered X, K1 = 0, so with k = diag(K): tr(K~L~) = ||X'Y||^2 - k.l,
    1'K~1 = -sum(k) and 1'K~L~1 = k.l.
    """
    cross = ops.sum(ops.square(ops.matmul(ops.transpose(x), y)))
    if not unbiased:
        return cross
    n = ops.cast(ops.shape(x)[0], x.dtype)
    kl = ops.sum(kx * ky)
    return cross - kl + ops.sum(kx) * ops.sum(ky) / ((n - 1.0) * (n - 2.0)) - 2.0 * kl / (n - 2.0)


def _normalize(hsic, self_a, self_b, epsilon):
    """hsic / sqrt(self_a self_b), defined as 0 where the denominator is tiny.

    Negative self terms can only come from rounding (they are squared norms of
    centered Grams); they are clamped to 0, which also guards the square root. NaN
    (from non-finite features) is not tiny: it propagates, so value and gradient agree.
    """
    prod = _clamp_negative(self_a) * _clamp_negative(self_b)
    ok = _or_non_finite(prod > epsilon * epsilon, prod)
    denom = ops.sqrt(ops.where(ok, prod, ops.ones_like(prod)))
    return ops.where(ok, hsic / denom, ops.zeros_like(hsic))


def _or_non_finite(ok, x):
    """`ok`, or `x` is NaN/inf: non-finite input takes the computing branch and propagates.

    (Not `not (x <= t)`: TF's graph optimizer rewrites that to `x > t`, which drops NaN.)
    """
    return ops.logical_or(ok, ops.logical_not(ops.isfinite(x)))


def _clamp_negative(x):
    """max(x, 0) that keeps NaN (backends disagree on NaN in `maximum`)."""
    return ops.where(x < 0.0, ops.zeros_like(x), x)


def _pair_cka(hsic, self_hsic, pairs, epsilon):
    first = ops.take(self_hsic, [i for i, _ in pairs], axis=0)
    second = ops.take(self_hsic, [j for _, j in pairs], axis=0)
    return _normalize(hsic, first, second, epsilon)
