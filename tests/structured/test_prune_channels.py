import warnings

import keras
import numpy as np
import pytest

from keras_cka_sr import pruning, structured
from keras_cka_sr.app import zoo
from tests.structured.oracle import assert_pruned_equals_zeroed, randomize_batchnorm


@keras.saving.register_keras_serializable(package="tests_structured")
class Reverse(keras.layers.Layer):
    """A custom layer: the channels in reverse order."""

    def call(self, x):
        return keras.ops.flip(x, axis=-1)


def _x(shape, n=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


def _residual_model():
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inp)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    r = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(h)
    h = h + r  # a bare Keras op couples like Add
    c = keras.layers.Conv2D(4, 1, name="c3")(h)
    h = keras.layers.Concatenate(name="cat")([h, c])
    h = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = keras.layers.SeparableConv2D(6, 3, padding="same", name="sep")(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(h))


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale"])
@pytest.mark.parametrize("target", ["flops", "channels"])
def test_residual_concat_depthwise_separable_flatten_equal_the_zeroed_original(importance, target):
    model = _residual_model()
    randomize_batchnorm(model)
    pruned, report = structured.prune_channels(model, 0.5, target=target, importance=importance)
    assert_pruned_equals_zeroed(model, pruned, report, _x((8, 8, 3)))


def test_coupled_layers_form_one_group_and_the_output_is_kept():
    graph = structured.DependencyGraph(_residual_model())
    by_producers = {g.producers: g for g in graph.groups}
    assert set(by_producers) == {("c1", "c2"), ("c3",), ("sep",), ("head",)}
    assert by_producers[("c1", "c2")].layers == ("c1", "bn1", "c2", "c3", "dw", "sep")
    assert by_producers[("head",)].kept_reason == "model output"
    assert graph.barriers == []


@pytest.mark.parametrize("depth, shape", [(20, (28, 28, 1)), (32, (32, 32, 3))])
def test_zoo_resnets_equal_the_zeroed_original(depth, shape):
    model = zoo.build(f"resnet{depth}", shape, 10)
    randomize_batchnorm(model)
    pruned, report = structured.prune_channels(model, 0.5, round_to=4)
    assert abs(report.flops_removed - 0.5) < 0.06
    assert all(g.after % 4 == 0 for g in report.groups if g.kept_reason is None)
    assert_pruned_equals_zeroed(model, pruned, report, _x(shape))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["MobileNetV2", "DenseNet121", "EfficientNetB0"])
def test_keras_applications_equal_the_zeroed_original(name):
    build = getattr(keras.applications, name)
    model = build(input_shape=(32, 32, 3), weights=None, classes=10, classifier_activation=None)
    randomize_batchnorm(model)
    pruned, report = structured.prune_channels(model, 0.3, scope="global")
    assert 0.25 < report.flops_removed < 0.35
    assert_pruned_equals_zeroed(model, pruned, report, _x((32, 32, 3), n=2), atol=1e-4)


def test_sequential_mlp_equals_the_zeroed_original():
    model = keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(3),
        ]
    )
    pruned, report = structured.prune_channels(model, 0.5, target="channels")
    assert isinstance(pruned, keras.Sequential)
    assert [layer.units for layer in pruned.layers if hasattr(layer, "units")] == [16, 8, 3]
    assert_pruned_equals_zeroed(model, pruned, report, _x((12,)))


def test_nested_functional_backbone_equals_the_zeroed_original():
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", name="b1")(inp)
    r = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="b2")(h)
    backbone = keras.Model(inp, keras.layers.Add(name="badd")([h, r]), name="backbone")
    outer_in = keras.Input((8, 8, 3))
    h = backbone(outer_in)
    h = keras.layers.Conv2D(6, 1, name="neck")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(outer_in, keras.layers.Dense(2, name="head")(h))
    pruned, report = structured.prune_channels(model, 0.5, target="channels")
    assert pruned.get_layer("backbone").get_layer("b1").filters == 4
    assert {g.producers for g in report.groups} >= {("backbone/b1", "backbone/b2")}
    assert_pruned_equals_zeroed(model, pruned, report, _x((8, 8, 3)))


def test_hand_counted_macs():
    inp = keras.Input((10, 10, 3))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inp)  # 25 * 9 * 3 * 4 = 2700
    h = keras.layers.DepthwiseConv2D(3)(h)  # 9 positions * 9 * 4 = 324
    h = keras.layers.SeparableConv2D(5, 1)(h)  # 9 * 1 * 4 (depthwise) + 9 * 4 * 5 = 216
    h = keras.layers.Conv2D(6, 1, groups=1)(h)  # 9 * 5 * 6 = 270
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(2)(h)  # 54 * 2 = 108
    assert structured.count_macs(keras.Model(inp, out)) == 2700 + 324 + 216 + 270 + 108


def test_grouped_conv_is_a_barrier_counted_in_macs():
    inp = keras.Input((4, 4, 8))
    h = keras.layers.Conv2D(8, 1, name="c")(inp)
    h = keras.layers.Conv2D(8, 3, padding="same", groups=4, name="g")(h)  # 16 * 9 * 2 * 8
    h = keras.layers.Conv2D(4, 1, name="after")(h)  # 16 * 8 * 4
    model = keras.Model(inp, h)
    graph = structured.DependencyGraph(model)
    assert [(b.layer, b.reason) for b in graph.barriers] == [("g", "grouped (4 groups)")]
    assert structured.count_macs(model) == 16 * 8 * 8 + 16 * 9 * 2 * 8 + 16 * 8 * 4
    kept = {g.producers: g.kept_reason for g in graph.groups}
    assert kept[("c",)].startswith("read by g (Conv2D): grouped")


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: keras.layers.LayerNormalization(), "normalizes across the channels"),
        (lambda: keras.layers.Softmax(), "softmax mixes channels"),
        (lambda: keras.layers.Activation("softmax"), "softmax mixes channels"),
        (
            lambda: Reverse(),
            "does not understand",
        ),
    ],
)
def test_layers_that_mix_or_are_unknown_keep_the_channels_they_read(make, reason):
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, name="a")(inp)
    h = make()(h)
    h = keras.layers.Dense(8, name="b")(h)
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(h))
    pruned, report = structured.prune_channels(model, 0.5, target="channels")
    changes = {g.producers: g for g in report.groups}
    assert changes[("a",)].after == 8 and reason in changes[("a",)].kept_reason
    assert changes[("b",)].after == 4
    assert any(reason in r for _, _, r in report.barriers)
    assert_pruned_equals_zeroed(model, pruned, report, _x((6,)))


def test_l1_scores_sum_every_kernel_entry_a_channel_deletes():
    inp = keras.Input((5,))
    a = keras.layers.Dense(4, name="a")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, name="head")(a))
    graph = structured.DependencyGraph(model)
    from keras_cka_sr.structured.importance import group_scores

    (scores,) = [s for s in group_scores(graph, "l1").values()]
    wa = keras.ops.convert_to_numpy(model.get_layer("a").kernel).astype(np.float64)
    wh = keras.ops.convert_to_numpy(model.get_layer("head").kernel).astype(np.float64)
    np.testing.assert_allclose(scores, np.abs(wa).sum(0) + np.abs(wh).sum(1), rtol=1e-6)
    (l2,) = group_scores(graph, "l2").values()
    np.testing.assert_allclose(l2, np.sqrt((wa**2).sum(0) + (wh**2).sum(1)), rtol=1e-6)


def test_taylor_scores_match_finite_differences():
    inp = keras.Input((5,))
    a = keras.layers.Dense(4, activation="tanh", name="a")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, name="head")(a))
    x, y = _x((5,), n=16), np.arange(16) % 3
    from keras_cka_sr.structured.importance import group_scores

    (scores,) = group_scores(structured.DependencyGraph(model), "taylor", (x, y)).values()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def total_loss():
        return float(keras.ops.convert_to_numpy(loss(y, model(x))))

    expected = np.zeros(4)
    for layer, axis in (("a", 1), ("head", 0)):
        kernel = model.get_layer(layer).kernel
        base = keras.ops.convert_to_numpy(kernel).astype(np.float64)
        for index in np.ndindex(base.shape):
            eps = 1e-2
            plus, minus = base.copy(), base.copy()
            plus[index] += eps
            minus[index] -= eps
            kernel.assign(plus.astype("float32"))
            up = total_loss()
            kernel.assign(minus.astype("float32"))
            down = total_loss()
            kernel.assign(base.astype("float32"))
            expected[index[axis]] += abs(base[index] * (up - down) / (2 * eps))
    np.testing.assert_allclose(scores, expected, rtol=2e-2, atol=1e-4)


def test_round_to_and_keep():
    model = _residual_model()
    with pytest.warns(UserWarning, match="reached 42.9% of channels removed, not the 60.0%"):
        _, report = structured.prune_channels(
            model, 0.6, target="channels", round_to=4, keep=["c3"]
        )
    changes = {g.producers: g for g in report.groups}
    assert changes[("c1", "c2")].after == 4
    assert changes[("c3",)].after == 4 and "keep" in changes[("c3",)].kept_reason
    assert changes[("sep",)].after == 4  # 6 - floor(3.6) = 3, rounded up to 4


def test_a_target_overshot_by_coarse_steps_warns_with_the_figures():
    model = zoo.build("resnet20", (28, 28, 1), 10)
    with pytest.warns(UserWarning, match=r"removed 60\.6% of flops, more than the 50\.0% asked"):
        _, report = structured.prune_channels(model, 0.5, round_to=8)
    assert report.flops_removed == pytest.approx(0.606, abs=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _, report = structured.prune_channels(model, 0.5)  # steps of 1 channel: within 0.05
    assert report.flops_removed == pytest.approx(0.5, abs=0.02)


def test_global_scope_prunes_unevenly_by_normalized_scores():
    inp = keras.Input((6,))
    a = keras.layers.Dense(8, name="a")(inp)
    b = keras.layers.Dense(8, name="b")(a)
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(b))
    kernel = keras.ops.convert_to_numpy(model.get_layer("a").kernel)
    kernel[:, :4] *= 100.0  # four channels of a dominate their group's mean
    model.get_layer("a").kernel.assign(kernel)
    _, report = structured.prune_channels(model, 0.25, target="channels", scope="global")
    changes = {g.producers: g for g in report.groups}
    assert changes[("a",)].after < changes[("b",)].after
    assert set(changes[("a",)].kept) >= {0, 1, 2, 3}


def test_report_counts_params_and_serializes():
    import json

    model = _residual_model()
    pruned, report = structured.prune_channels(model, 0.5)
    assert report.params_before == model.count_params()
    assert report.params_after == pruned.count_params() < model.count_params()
    assert report.macs_after == structured.count_macs(pruned)
    json.dumps(report.to_dict(), allow_nan=False)
    assert "MACs" in str(report) and "head" in str(report)


def test_pruned_model_round_trips_through_config_and_keras_file(tmp_path):
    model = _residual_model()
    pruned, _ = structured.prune_channels(model, 0.5)
    x = _x((8, 8, 3))
    again = keras.Model.from_config(pruned.get_config())
    assert [v.shape for v in again.weights] == [v.shape for v in pruned.weights]
    pruned.save(tmp_path / "small.keras")
    loaded = keras.models.load_model(tmp_path / "small.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(pruned(x)), atol=1e-6
    )


def test_pruned_model_trains():
    model = zoo.build("resnet20", (28, 28, 1), 10)
    pruned, _ = structured.prune_channels(model, 0.5)
    pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = pruned.fit(_x((28, 28, 1), n=16), np.arange(16) % 10, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TFLite needs TensorFlow")
@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_pruned_model_exports_to_tflite(tmp_path):
    import tensorflow as tf

    model = zoo.build("resnet20", (28, 28, 1), 10)
    pruned, _ = structured.prune_channels(model, 0.5)
    converter = tf.lite.TFLiteConverter.from_keras_model(pruned)
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    x = _x((28, 28, 1), n=1)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, pruned(x, training=False), atol=1e-4)


def test_a_subclassed_model_is_refused_with_what_to_do():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(TypeError, match="rebuild it with `keras.Model"):
        structured.prune_channels(net, 0.5)


def test_a_model_wrapped_for_pruning_is_refused():
    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(8)(inp)))
    wrapped = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0))
    with pytest.raises(ValueError, match="strip_pruning"):
        structured.prune_channels(wrapped, 0.5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(fraction=0.0), ValueError, "`fraction` must be"),
        (dict(fraction=1.0), ValueError, "`fraction` must be"),
        (dict(fraction=0.5, target="params"), ValueError, "`target` must be one of"),
        (dict(fraction=0.5, importance="l3"), ValueError, "`importance` must be one of"),
        (dict(fraction=0.5, scope="model"), ValueError, "`scope` must be one of"),
        (dict(fraction=0.5, round_to=0), ValueError, "`round_to` must be"),
        (dict(fraction=0.5, importance="taylor"), ValueError, "needs `data=\\(x, y\\)`"),
        (dict(fraction=0.5, keep=["nope"]), ValueError, "`keep` names layers"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, match):
    with pytest.raises(error, match=match):
        structured.prune_channels(_residual_model(), **kwargs)


def test_nothing_prunable_says_so():
    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    with pytest.raises(ValueError, match="Nothing to prune"):
        structured.prune_channels(model, 0.5)


def test_an_unreachable_flops_target_warns_with_what_it_reached():
    inp = keras.Input((6,))
    h = keras.layers.Dense(2, name="a")(inp)
    model = keras.Model(inp, keras.layers.Dense(40, name="head")(h))
    with pytest.warns(UserWarning, match="reached 50.0% of flops removed, not the 90.0%"):
        structured.prune_channels(model, 0.9)


def test_unknown_spatial_size_refuses_a_flops_target_but_prunes_channels():
    inp = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(8, 3, name="c")(inp)
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(h)))
    with pytest.raises(ValueError, match='use `target="channels"`'):
        structured.prune_channels(model, 0.5)
    _, report = structured.prune_channels(model, 0.5, target="channels")
    assert report.macs_before is None and report.channels_removed == 0.5


def test_a_layer_called_twice_in_the_graph_is_shared_and_kept():
    inp = keras.Input((6,))
    shared = keras.layers.Dense(6, name="shared")
    h = shared(shared(inp))
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(keras.layers.Dense(8, name="a")(h)))
    graph = structured.DependencyGraph(model)
    assert [b.reason for b in graph.barriers] == ["called more than once (shared)"]


def test_graphs_built_elsewhere_on_the_same_layers_do_not_make_them_shared():
    from keras_cka_sr import feature_model

    model = _residual_model()
    feature_model(model, ["c1", "c2"])  # new nodes on the model's layers, in another graph
    model.compile("sgd", "mse")
    model.fit(_x((8, 8, 3)), np.zeros((4, 3)), epochs=1, verbose=0)
    assert structured.DependencyGraph(model).barriers == []


def test_lora_and_quantized_layers_are_barriers():
    inp = keras.Input((6,))
    a = keras.layers.Dense(8, name="a")(inp)
    lora = keras.layers.Dense(8, name="lora")
    h = lora(a)
    lora.enable_lora(2)
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(keras.layers.Dense(8, name="b")(h)))
    pruned, report = structured.prune_channels(model, 0.5, target="channels")
    assert ("lora", "Dense", "quantized or LoRA weights") in report.barriers
    assert_pruned_equals_zeroed(model, pruned, report, _x((6,)))


def test_mixed_precision_model_keeps_its_policy_and_float32_weights():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _residual_model()
        pruned, report = structured.prune_channels(model, 0.5)
    finally:
        keras.config.set_dtype_policy("float32")
    assert pruned.get_layer("c1").dtype_policy.name == "mixed_float16"
    assert all(v.dtype == "float32" for v in pruned.trainable_weights)
    assert_pruned_equals_zeroed(model, pruned, report, _x((8, 8, 3)), atol=1e-2)
