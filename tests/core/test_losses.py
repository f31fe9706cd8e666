import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import CKASimilarityLoss
from tests.support import oracle
from tests.support.grads import gradients


def features(rng, n=16):
    x = rng.normal(size=(n, 12)).astype("float32")
    return [
        x,
        np.maximum(x @ rng.normal(size=(12, 8)), 0).astype("float32"),
        rng.normal(size=(n, 4, 4, 2)).astype("float32"),
        (x[:, :6] * 2.0 + rng.normal(size=(n, 6))).astype("float32"),
    ]


def value(x):
    return float(ops.convert_to_numpy(x))


def expected_penalty(feats, weight, pairs, unbiased=True):
    return 2 * weight * sum(oracle.cka(feats[i], feats[j], unbiased) for i, j in pairs)


def test_value_is_twice_weight_times_sum_over_unordered_pairs(rng):
    feats = features(rng)
    loss = CKASimilarityLoss(weight=0.5)
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    assert value(loss(feats)) == pytest.approx(expected_penalty(feats, 0.5, pairs), rel=1e-4)


def test_biased_estimator(rng):
    feats = features(rng)[:2]
    loss = CKASimilarityLoss(weight=1.0, unbiased=False)
    assert value(loss(feats)) == pytest.approx(
        expected_penalty(feats, 1.0, [(0, 1)], unbiased=False), rel=1e-4
    )


def test_groups_only_compare_within_a_group(rng):
    feats = features(rng)
    loss = CKASimilarityLoss(weight=1.0, groups=[[0, 1], [2, 3, 1]])
    pairs = [(0, 1), (2, 3), (2, 1), (3, 1)]
    assert loss.compared_pairs(4) == pairs
    assert value(loss(feats)) == pytest.approx(expected_penalty(feats, 1.0, pairs), rel=1e-4)


def test_adjacent_pairs(rng):
    feats = features(rng)
    loss = CKASimilarityLoss(weight=1.0, pairs="adjacent")
    assert loss.compared_pairs(4) == [(0, 1), (1, 2), (2, 3)]
    assert value(loss(feats)) == pytest.approx(
        expected_penalty(feats, 1.0, [(0, 1), (1, 2), (2, 3)]), rel=1e-4
    )


def test_num_samples_uses_the_first_k_samples(rng):
    feats = features(rng, n=32)
    loss = CKASimilarityLoss(weight=1.0, num_samples=8)
    first = [f[:8] for f in feats]
    pairs = loss.compared_pairs(4)
    assert value(loss(feats)) == pytest.approx(expected_penalty(first, 1.0, pairs), rel=1e-4)


def test_num_samples_larger_than_batch_uses_whole_batch(rng):
    feats = features(rng, n=6)
    assert value(CKASimilarityLoss(num_samples=64)(feats)) == pytest.approx(
        value(CKASimilarityLoss()(feats)), rel=1e-6
    )


def test_every_n_steps_computes_only_on_multiples(rng):
    feats = features(rng)
    loss = CKASimilarityLoss(weight=1.0, every_n_steps=5)
    full = value(CKASimilarityLoss(weight=1.0)(feats))
    got = [value(loss(feats, step=ops.convert_to_tensor(s, "int32"))) for s in range(7)]
    assert got[0] == pytest.approx(full, rel=1e-6) and got[5] == pytest.approx(full, rel=1e-6)
    assert got[1:5] == [0.0] * 4 and got[6] == 0.0


def test_every_n_steps_needs_the_step(rng):
    with pytest.raises(ValueError, match="step"):
        CKASimilarityLoss(every_n_steps=5)(features(rng))


def test_zero_weight_is_zero(rng):
    assert value(CKASimilarityLoss(weight=0.0)(features(rng))) == 0.0


def test_float16_features_give_a_finite_float32_penalty(rng):
    feats = [ops.cast(f * 100.0, "float16") for f in features(rng, n=64)]
    penalty = CKASimilarityLoss(weight=1.0)(feats)
    assert keras.backend.standardize_dtype(penalty.dtype) == "float32"
    assert np.isfinite(value(penalty))


def test_needs_at_least_two_features(rng):
    with pytest.raises(ValueError, match="at least 2"):
        CKASimilarityLoss()(features(rng)[:1])


def test_groups_out_of_range(rng):
    with pytest.raises(ValueError, match="feature 7"):
        CKASimilarityLoss(groups=[[0, 7]])(features(rng))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"weight": -1.0}, ValueError, r"`weight` must be a finite number >= 0.0; got -1.0"),
        ({"weight": "big"}, TypeError, "weight"),
        ({"weight": float("nan")}, ValueError, r"`weight` .* got nan"),
        ({"weight": float("inf")}, ValueError, r"`weight` .* got inf"),
        ({"weight": True}, TypeError, "weight"),
        ({"unbiased": 1}, TypeError, "unbiased"),
        ({"pairs": "nearest"}, ValueError, "pairs"),
        ({"num_samples": 3}, ValueError, r"`num_samples` must be an int >= 4; got 3"),
        ({"num_samples": 8.0}, TypeError, "num_samples"),
        ({"every_n_steps": 0}, ValueError, "every_n_steps"),
        ({"every_n_steps": np.float32(5)}, TypeError, "every_n_steps"),
        ({"epsilon": float("nan")}, ValueError, "epsilon"),
        ({"groups": [[0]]}, ValueError, "at least 2"),
        ({"groups": [[0, 0]]}, ValueError, "more than once"),
        ({"groups": [0, 1]}, ValueError, "groups"),
        ({"method": "fast"}, ValueError, "method"),
        ({"epsilon": -1.0}, ValueError, "epsilon"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        CKASimilarityLoss(**kwargs)


def test_biased_allows_num_samples_two():
    assert CKASimilarityLoss(unbiased=False, num_samples=2).num_samples == 2


def test_config_round_trip():
    loss = CKASimilarityLoss(
        weight=3e-4, groups=[[0, 1], [2, 3]], pairs="adjacent", num_samples=8, every_n_steps=5
    )
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, CKASimilarityLoss)
    assert restored.get_config() == loss.get_config()


def test_penalty_gradient_reaches_every_tapped_weight(rng):
    """Finite differences through a 3-layer network: d penalty / d W_k for each layer."""
    x = rng.normal(size=(10, 6)).astype("float32")
    ws = [rng.normal(size=s).astype("float32") * 0.5 for s in [(6, 5), (5, 5), (5, 4)]]
    loss = CKASimilarityLoss(weight=1.0)

    def penalty(w1, w2, w3):
        f1 = ops.tanh(ops.matmul(x, w1))
        f2 = ops.tanh(ops.matmul(f1, w2))
        f3 = ops.matmul(f2, w3)
        return loss([f1, f2, f3])

    grads = gradients(penalty, ws)
    h = 1e-2
    for k, grad in enumerate(grads):
        assert np.abs(grad).max() > 1e-4, f"no gradient reaches layer {k}"
        v = rng.normal(size=grad.shape).astype("float32")
        plus = [w.copy() for w in ws]
        minus = [w.copy() for w in ws]
        plus[k] += h * v
        minus[k] -= h * v
        numeric = (value(penalty(*plus)) - value(penalty(*minus))) / (2 * h)
        assert float(np.sum(grad * v)) == pytest.approx(numeric, rel=2e-2, abs=1e-4)


def test_numpy_scalars_are_numbers():
    loss = CKASimilarityLoss(
        weight=np.float32(1e-3),
        unbiased=np.bool_(True),
        num_samples=np.int64(8),
        every_n_steps=np.int32(5),
        epsilon=np.float64(1e-6),
        groups=[[np.int32(0), np.int64(1)]],
    )
    config = loss.get_config()
    assert config["weight"] == 1e-3 and type(config["weight"]) is float
    assert type(config["num_samples"]) is int and type(config["every_n_steps"]) is int
    assert config["groups"] == [[0, 1]] and all(type(i) is int for i in config["groups"][0])
    assert type(config["unbiased"]) is bool


@pytest.mark.parametrize("unbiased,n", [(True, 3), (True, 2), (False, 1)])
def test_static_batch_below_the_estimator_minimum_raises_in_a_direct_call(rng, unbiased, n):
    with pytest.raises(ValueError, match=f"at least {4 if unbiased else 2} samples; got n={n}"):
        CKASimilarityLoss(unbiased=unbiased)(features(rng, n=n))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_small_batch_is_skipped_with_zero_value_and_zero_gradient(rng, n):
    x = rng.normal(size=(n, 6)).astype("float32")
    w = rng.normal(size=(6, 5)).astype("float32")
    loss = CKASimilarityLoss(weight=1.0, num_samples=8)

    def penalty(w):
        h = ops.tanh(ops.matmul(x, w))
        return loss([h, ops.matmul(h, ops.transpose(w)[:5, :5])], skip_small_batch=True)

    assert value(penalty(w)) == 0.0
    (grad,) = gradients(penalty, [w])
    assert np.all(grad == 0.0)


def test_batch_at_the_minimum_is_computed(rng):
    feats = features(rng, n=4)
    pairs = CKASimilarityLoss().compared_pairs(4)
    got = value(CKASimilarityLoss(weight=1.0)(feats, skip_small_batch=True))
    assert got == pytest.approx(expected_penalty(feats, 1.0, pairs), rel=1e-4)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("method", ["gram", "feature"])
def test_non_finite_features_give_a_non_finite_penalty_and_gradient(rng, bad, method):
    """Value and gradient agree: never a finite value (or 0) with a NaN gradient."""
    x = rng.normal(size=(16, 6)).astype("float32")
    x[3, 2] = bad
    w = rng.normal(size=(6, 5)).astype("float32")
    loss = CKASimilarityLoss(weight=1.0, method=method)

    def penalty(w):
        h = ops.matmul(x, w)
        return loss([h, ops.tanh(h)])

    assert not np.isfinite(value(penalty(w)))
    (grad,) = gradients(penalty, [w])
    assert not np.all(np.isfinite(grad))


def test_finite_features_keep_finite_gradients_when_a_layer_is_constant(rng):
    """The zero-variance rule still gives 0 with a zero, finite gradient."""
    x = rng.normal(size=(16, 6)).astype("float32")
    w = rng.normal(size=(6, 5)).astype("float32")

    def penalty(w):
        h = ops.matmul(x, w)
        return CKASimilarityLoss(weight=1.0)([h, h * 0.0 + 1.0])

    assert value(penalty(w)) == 0.0
    (grad,) = gradients(penalty, [w])
    assert np.all(np.isfinite(grad)) and np.all(grad == 0.0)


def test_start_step_is_a_warm_up(rng):
    feats = features(rng)
    loss = CKASimilarityLoss(weight=1.0, start_step=3, every_n_steps=2)
    full = value(CKASimilarityLoss(weight=1.0)(feats))
    got = [value(loss(feats, step=ops.convert_to_tensor(s, "int32"))) for s in range(8)]
    assert got[:4] == [0.0] * 4 and got[5] == 0.0 and got[7] == 0.0
    assert got[4] == pytest.approx(full, rel=1e-6) and got[6] == pytest.approx(full, rel=1e-6)


def test_start_step_needs_the_step_and_is_validated(rng):
    with pytest.raises(ValueError, match="start_step=3 need"):
        CKASimilarityLoss(start_step=3)(features(rng))
    with pytest.raises(ValueError, match="start_step"):
        CKASimilarityLoss(start_step=-1)


@pytest.mark.parametrize(("num_samples", "branches"), [(8, 1), (None, 2)])
def test_a_run_time_batch_branches_on_its_size_only_when_num_samples_does_not_bound_it(
    num_samples, branches
):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("graph ops are inspected on the TensorFlow backend")
    import tensorflow as tf

    # Width 16, two layers: the feature form is the cheaper one above n = 768 / 36 ~ 21,
    # so at most 8 samples always take the Gram form.
    loss = CKASimilarityLoss(weight=1.0, num_samples=num_samples)
    spec = tf.TensorSpec((None, 16), "float32")
    graph = tf.function(lambda a, b: loss([a, b])).get_concrete_function(spec, spec).graph

    def count_branches(g):
        inner = sum(count_branches(f.graph) for f in g._functions.values() if hasattr(f, "graph"))
        return inner + sum(op.type in ("If", "StatelessIf") for op in g.get_operations())

    # One branch guards the estimator's minimum batch (n >= 4); a second picks the form.
    assert count_branches(graph) == branches
