import keras
import numpy as np
import pytest

from keras_cka_sr import structured
from keras_cka_sr.app import zoo
from tests.structured.oracle import randomize_batchnorm
from tests.support.models import transformer_encoder


def _x(shape, n=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def _zoo_blocks(depth=20):
    return [f"stage{s}_block{b}_add" for s in (1, 2, 3) for b in range(1, (depth - 2) // 6 + 1)]


def _with_branches_zeroed(model, adds):
    """The oracle: a copy of `model` whose residual branches closed by `adds` output zeros."""
    blocks = {b.add: b for b in structured.residual_blocks(model)}
    zeroed = keras.Model.from_config(model.get_config())
    zeroed.set_weights(model.get_weights())
    for add in adds:
        for name in blocks[add].branch:
            for variable in zeroed.get_layer(name).trainable_weights:
                variable.assign(np.zeros(variable.shape, "float32"))
    return zeroed


def test_zoo_resnet20_has_its_identity_blocks_and_not_the_projection_ones():
    model = zoo.build("resnet20", (28, 28, 1), 10)
    found = {b.add: b for b in structured.residual_blocks(model)}
    # the first block of stages 2 and 3 has a strided 1x1 projection: not an identity skip
    projections = {"stage2_block1_add", "stage3_block1_add"}
    assert set(found) == set(_zoo_blocks()) - projections
    assert found["stage1_block2_add"].branch == (
        "stage1_block2_conv1", "stage1_block2_bn1", "stage1_block2_relu1",
        "stage1_block2_conv2", "stage1_block2_bn2",
    )  # fmt: skip


def test_removed_blocks_equal_the_original_with_their_branch_zeroed():
    model = zoo.build("resnet20", (28, 28, 1), 10)
    randomize_batchnorm(model)
    remove = ["stage1_block2_add", "stage3_block3_add"]
    smaller = structured.remove_blocks(model, remove)
    zeroed = _with_branches_zeroed(model, remove)
    x = _x((28, 28, 1), n=4)
    got = keras.ops.convert_to_numpy(smaller(x, training=False))
    want = keras.ops.convert_to_numpy(zeroed(x, training=False))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert smaller.count_params() < model.count_params()
    assert structured.count_macs(smaller) < structured.count_macs(model)
    assert not any(layer.name.startswith("stage1_block2_conv") for layer in smaller.layers)


def test_transformer_sub_blocks_are_scored_and_removed_as_their_branch_zeroed():
    model = transformer_encoder()
    blocks = {b.add: b for b in structured.residual_blocks(model)}
    assert set(blocks) == {f"block{i}_{part}" for i in range(3) for part in ("attention", "ff")}
    assert blocks["block1_ff"].branch == ("ff1_in", "ff1_out")
    x = _x((6, 16), n=16)
    for criterion in ("cka", "angular", "l1"):
        scores = structured.block_scores(model, x, criterion)
        assert set(scores) == set(blocks) and all(np.isfinite(list(scores.values())))
    remove = ["block0_attention", "block2_ff"]
    smaller = structured.remove_blocks(model, remove)
    zeroed = _with_branches_zeroed(model, remove)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(smaller(x)), keras.ops.convert_to_numpy(zeroed(x)), atol=1e-5
    )
    assert structured.count_macs(smaller) < structured.count_macs(model)


def test_bare_op_residuals_are_blocks_too():
    inp = keras.Input((6,))
    h = keras.layers.Dense(6, name="d")(inp)
    out = inp + h
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(out))
    (block,) = structured.residual_blocks(model)
    assert block.branch == ("d",)
    smaller = structured.remove_blocks(model, [block.add])
    x = _x((6,))
    want = keras.ops.convert_to_numpy(model.get_layer("head")(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(smaller(x)), want, atol=1e-6)


def test_cka_and_angular_scores_match_numpy():
    model = zoo.build("resnet20", (28, 28, 1), 10)
    randomize_batchnorm(model)
    x = _x((28, 28, 1), n=16)
    scores = structured.block_scores(model, x, "cka")
    angular = structured.block_scores(model, x, "angular")
    add = model.get_layer("stage1_block2_add")
    probe = keras.Model(model.inputs[0], [add.input[0], add.output])
    before, after = [keras.ops.convert_to_numpy(t).reshape(16, -1).astype(np.float64)
                     for t in probe(x, training=False)]  # fmt: skip
    np.testing.assert_allclose(scores["stage1_block2_add"], cka_oracle(before, after), atol=1e-5)
    cosine = (
        (before * after).sum(1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    )
    expected = np.mean(np.arccos(np.clip(cosine, -1, 1)) / np.pi)
    np.testing.assert_allclose(angular["stage1_block2_add"], expected, atol=1e-6)
    assert set(scores) == set(angular) == set(structured.block_scores(model, x, "l1"))


def cka_oracle(x, y):
    """Linear CKA (biased HSIC), float64, from its formula."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    gram_x, gram_y = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(gram_x, gram_y) / np.sqrt(hsic(gram_x, gram_x) * hsic(gram_y, gram_y))


def test_bad_block_names_and_models_are_refused():
    model = zoo.build("resnet20", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="names no identity-shortcut residual block"):
        structured.remove_blocks(model, ["stage2_block1_add"])  # a projection block
    with pytest.raises(ValueError, match="`criterion` must be one of"):
        structured.block_scores(model, _x((28, 28, 1)), "cosine")
    with pytest.raises(TypeError, match="must be a Functional"):
        structured.residual_blocks(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
