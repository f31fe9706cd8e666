import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import cka
from tests.support import oracle
from tests.support.grads import gradients


def related(rng, n, shape_x, shape_y):
    """Two representations of the same n samples that share some structure."""
    z = rng.normal(size=(n, 5))
    x = z @ rng.normal(size=(5, int(np.prod(shape_x)))) + 0.5 * rng.normal(
        size=(n, int(np.prod(shape_x)))
    )
    y = np.tanh(
        x[:, : min(x.shape[1], 7)] @ rng.normal(size=(min(x.shape[1], 7), int(np.prod(shape_y))))
    )
    y = y + 0.3 * rng.normal(size=y.shape)
    return (
        x.reshape((n,) + shape_x).astype("float32"),
        y.reshape((n,) + shape_y).astype("float32"),
    )


def value(x):
    return float(ops.convert_to_numpy(x))


def test_oracle_biased_forms_agree(rng):
    x, y = related(rng, 50, (12,), (9,))
    assert oracle.cka(x, y) == pytest.approx(oracle.cka_biased_features(x, y), rel=1e-10)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("method", ["gram", "feature", "auto"])
@pytest.mark.parametrize(
    "n,shape_x,shape_y",
    [(4, (3,), (5,)), (7, (20,), (6,)), (32, (4, 4, 3), (2, 2, 8)), (256, (16,), (8, 8, 2))],
)
def test_linear_cka_matches_numpy_oracle(rng, n, shape_x, shape_y, unbiased, method):
    x, y = related(rng, n, shape_x, shape_y)
    expected = oracle.cka(x, y, unbiased=unbiased)
    got = cka.pairwise_cka([x, y], [(0, 1)], unbiased=unbiased, method=method)
    np.testing.assert_allclose(ops.convert_to_numpy(got)[0], expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_matrix_matches_oracle_and_is_symmetric_with_unit_diagonal(rng, unbiased):
    x, y = related(rng, 40, (6, 6, 2), (10,))
    z = rng.normal(size=(40, 3)).astype("float32")
    feats = [x, y, z, x * 3.0]
    m = ops.convert_to_numpy(cka.cka_matrix(feats, unbiased=unbiased))
    assert m.shape == (4, 4)
    np.testing.assert_allclose(m, m.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-5)
    for i in range(4):
        for j in range(4):
            expected = oracle.cka(feats[i], feats[j], unbiased=unbiased)
            np.testing.assert_allclose(m[i, j], expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("unbiased", [False, True])
def test_cka_with_itself_is_one(rng, unbiased):
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    assert value(cka.linear_cka(x, x, unbiased=unbiased)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("unbiased", [False, True])
def test_invariant_to_isotropic_scaling_and_orthogonal_transforms(rng, unbiased):
    x, y = related(rng, 24, (10,), (6,))
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    base = value(cka.linear_cka(x, y, unbiased=unbiased))
    scaled = value(cka.linear_cka(1e3 * x, 1e-3 * y, unbiased=unbiased))
    rotated = value(cka.linear_cka((x @ q).astype("float32"), y, unbiased=unbiased))
    assert scaled == pytest.approx(base, abs=1e-5)
    assert rotated == pytest.approx(base, abs=1e-5)


@pytest.mark.parametrize("unbiased", [False, True])
def test_invariant_to_constant_shift(rng, unbiased):
    x, y = related(rng, 24, (10,), (6,))
    assert value(cka.linear_cka(x + 100.0, y, unbiased=unbiased)) == pytest.approx(
        value(cka.linear_cka(x, y, unbiased=unbiased)), abs=1e-4
    )


@pytest.mark.parametrize("method", ["gram", "feature"])
@pytest.mark.parametrize("unbiased", [False, True])
def test_features_with_a_large_mean_keep_float32_accuracy(rng, unbiased, method):
    # Mean 3000x the spread, as after a large bias: centering must not cancel digits.
    x, y = related(rng, 16, (40,), (12,))
    x = (x + 3000.0 * rng.normal(size=(1, 40))).astype("float32")
    # The oracle's raw-Gram formulas cancel digits even in float64 here; CKA is shift
    # invariant, so it is given the same features centered in float64.
    x64 = x.astype("float64")
    expected = oracle.cka(x64 - x64.mean(axis=0), y, unbiased=unbiased)
    got = cka.pairwise_cka([x, y], [(0, 1)], unbiased=unbiased, method=method)
    np.testing.assert_allclose(ops.convert_to_numpy(got)[0], expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("method", ["gram", "feature"])
@pytest.mark.parametrize("unbiased", [False, True])
def test_zero_variance_layer_gives_zero_not_nan(rng, unbiased, method):
    x = rng.normal(size=(8, 5)).astype("float32")
    dead = np.full((8, 2, 2, 3), 0.7, dtype="float32")  # e.g. a dead ReLU layer plus bias
    m = ops.convert_to_numpy(cka.cka_matrix([x, dead], unbiased=unbiased, method=method))
    assert np.all(np.isfinite(m))
    np.testing.assert_allclose(m, [[1.0, 0.0], [0.0, 0.0]], atol=1e-6)


def test_zero_variance_gradient_is_finite(rng):
    x = rng.normal(size=(8, 5)).astype("float32")
    dead = np.zeros((8, 4), dtype="float32")
    grads = gradients(lambda a, b: cka.linear_cka(a, b, unbiased=True), [x, dead])
    assert all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("unbiased", [False, True])
def test_low_precision_inputs_are_accumulated_in_float32(rng, dtype, unbiased):
    # 64 x 512 normal features: HSIC computed in float16 overflows to inf.
    x = rng.normal(size=(64, 512)).astype("float32") * 30.0
    y = x + rng.normal(size=(64, 512)).astype("float32") * 30.0
    low = cka.linear_cka(ops.cast(x, dtype), ops.cast(y, dtype), unbiased=unbiased)
    assert keras.backend.standardize_dtype(low.dtype) == "float32"
    ref = oracle.cka(x, y, unbiased=unbiased)
    assert np.isfinite(value(low))
    assert value(low) == pytest.approx(ref, abs=1e-2)


def test_unbiased_needs_four_samples(rng):
    x = rng.normal(size=(3, 5)).astype("float32")
    with pytest.raises(ValueError, match="at least 4 samples"):
        cka.linear_cka(x, x, unbiased=True)


def test_biased_accepts_two_samples(rng):
    x = rng.normal(size=(2, 5)).astype("float32")
    assert np.isfinite(value(cka.linear_cka(x, x * 2.0)))


def test_mismatched_batch_sizes_are_rejected(rng):
    with pytest.raises(ValueError, match="batch size"):
        cka.linear_cka(np.ones((5, 3), "float32"), np.ones((6, 3), "float32"))


def test_features_must_be_a_list():
    with pytest.raises(TypeError, match="features"):
        cka.cka_matrix(np.ones((5, 3), "float32"))


def test_unknown_method_is_rejected(rng):
    x = rng.normal(size=(8, 3)).astype("float32")
    with pytest.raises(ValueError, match="method"):
        cka.cka_matrix([x, x], method="fast")


@pytest.mark.parametrize(
    "dims,n,expected",
    [
        ([16 * 32 * 32, 16 * 32 * 32], 128, "gram"),
        ([64, 64, 64], 128, "feature"),
        ([10, 10], None, "gram"),
    ],
)
def test_choose_method_picks_the_cheaper_form(dims, n, expected):
    pairs = [(i, j) for i in range(len(dims)) for j in range(i + 1, len(dims))]
    assert cka.choose_method(dims, n, pairs) == expected


def test_choose_method_costs_the_gram_path_as_the_l_by_l_product_it_computes():
    """10 layers of width 40, n=64, 9 adjacent pairs. In units of n: Gram form
    10*64*40 + 10^2*64 = 32000, feature form (10 + 9)*40^2 = 30400: feature wins.
    Costing only the pairs' inner products ((9 + 10)*64) would pick Gram (26816)."""
    pairs = [(i, i + 1) for i in range(9)]
    assert cka.choose_method([40] * 10, 64, pairs) == "feature"


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("method", ["gram", "feature"])
def test_gradient_matches_finite_differences(rng, unbiased, method):
    x, y = related(rng, 12, (6,), (4,))
    fn = lambda a, b: cka.pairwise_cka([a, b], [(0, 1)], unbiased=unbiased, method=method)[0]  # noqa: E731
    gx, gy = gradients(fn, [x, y])
    h = 1e-2
    for target, grad in ((0, gx), (1, gy)):
        v = rng.normal(size=grad.shape).astype("float32")
        args_plus, args_minus = [x.copy(), y.copy()], [x.copy(), y.copy()]
        args_plus[target] += h * v
        args_minus[target] -= h * v
        numeric = (value(fn(*args_plus)) - value(fn(*args_minus))) / (2 * h)
        assert float(np.sum(grad * v)) == pytest.approx(numeric, rel=2e-2, abs=1e-4)
