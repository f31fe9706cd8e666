"""Property tests of the CKA math (hypothesis): bounds, symmetry and the invariances."""

import numpy as np
import pytest
from keras import ops

from keras_cka_sr import cka

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# 15 examples. Shapes (n, d1, d2) come from a fixed list that has the edge cases (the
# unbiased minimum n = 4, width 1, d > n, n > d): on JAX every new shape compiles each op
# afresh, and free shapes cost ~90 s per run there; values, seeds and flags stay free.
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)
SHAPES = [
    (4, 1, 1),
    (4, 12, 3),
    (5, 2, 7),
    (8, 8, 8),
    (12, 3, 1),
    (17, 11, 5),
    (24, 1, 12),
    (24, 12, 12),
]
shapes = st.sampled_from(SHAPES)
seeds = st.integers(0, 2**31 - 1)
methods = st.sampled_from(["gram", "feature"])


def pair(shape, seed):
    n, d1, d2 = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d1))
    # y shares part of x's structure, so the CKA is away from 0 as well as near it.
    y = np.tanh(x @ rng.normal(size=(d1, d2))) + 0.5 * rng.normal(size=(n, d2))
    return x.astype("float32"), y.astype("float32")


def value(x, y, **kwargs):
    return float(ops.convert_to_numpy(cka.linear_cka(x, y, **kwargs)))


def orthogonal(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return (q * np.sign(np.diag(r))).astype("float32")


@SETTINGS
@given(shape=shapes, seed=seeds, method=methods)
def test_biased_cka_lies_in_zero_one(shape, seed, method):
    x, y = pair(shape, seed)
    features = [x, y]
    got = float(ops.convert_to_numpy(cka.cka_matrix(features, method=method))[0, 1])
    assert -1e-5 <= got <= 1 + 1e-5


@SETTINGS
@given(shape=shapes, seed=seeds, unbiased=st.booleans())
def test_symmetric(shape, seed, unbiased):
    x, y = pair(shape, seed)
    assert value(x, y, unbiased=unbiased) == pytest.approx(value(y, x, unbiased=unbiased), abs=1e-5)


@SETTINGS
@given(shape=shapes, seed=seeds, unbiased=st.booleans(), scale=st.floats(1e-3, 1e3))
def test_invariant_to_isotropic_scaling(shape, seed, unbiased, scale):
    x, y = pair(shape, seed)
    base = value(x, y, unbiased=unbiased)
    assert value(x * np.float32(scale), y, unbiased=unbiased) == pytest.approx(base, abs=1e-4)


@SETTINGS
@given(shape=shapes, seed=seeds, unbiased=st.booleans())
def test_invariant_to_orthogonal_transforms(shape, seed, unbiased):
    x, y = pair(shape, seed)
    q = orthogonal(x.shape[1], seed + 1)
    base = value(x, y, unbiased=unbiased)
    assert value(x @ q, y, unbiased=unbiased) == pytest.approx(base, abs=1e-4)


@SETTINGS
@given(shape=shapes, seed=seeds, unbiased=st.booleans(), shift=st.integers(-100, 100))
def test_invariant_to_constant_shifts(shape, seed, unbiased, shift):
    x, y = pair(shape, seed)
    # On a 2^-10 grid with integer offsets, x + offset is exact in float32: any difference
    # comes from the computation, not from rounding the shifted input.
    x = np.round(x * 1024) / 1024
    offset = np.round(np.random.default_rng(seed + 2).normal(size=x.shape[1]) * shift).astype(
        "float32"
    )
    base = value(x, y, unbiased=unbiased)
    assert value(x + offset, y, unbiased=unbiased) == pytest.approx(base, abs=1e-4)
