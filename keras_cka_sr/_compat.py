"""The one module that touches private Keras APIs. Each use says why there is no public
route. All of them are present in Keras 3.15.1, the version CI tests."""

import keras
from keras import tree

# No public class: `keras.Model(inputs, outputs)` returns an instance of it, and only it
# has a graph of layer calls to re-trace (Keras 3.0+).
from keras.src.models.functional import Functional


def is_functional(model) -> bool:
    """True for a model built from inputs and outputs (not a Sequential or subclassed model)."""
    return isinstance(model, Functional)


def is_graph_model(model) -> bool:
    """True for functional and Sequential models: those whose layer calls can be re-traced."""
    return isinstance(model, (Functional, keras.Sequential))


def is_plain_graph_model(model) -> bool:
    """True for a model whose class is `Functional` or `Sequential` itself, not a subclass
    (a keras_hub task model is a functional subclass)."""
    return type(model) in (Functional, keras.Sequential)


def flatten_layers(layer, include_self=True):
    """Every layer nested in `layer` (sublayers of layers too, depth first).

    `Model.layers` lists only the top level and misses sublayers such as a wrapper's inner
    layer or MultiHeadAttention's projections; `Layer._flatten_layers` is what Keras'
    own trackers use (Keras 3.0+).
    """
    return list(layer._flatten_layers(include_self=include_self))


def direct_sublayers(layer):
    """The layers `layer` tracks directly (not their sublayers), in tracking order."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def structure_inputs(model, inputs):
    """New input tensors packed in the structure `model` was built with (dict, list...).

    `Functional._inputs_struct` keeps it; `model.inputs` is flat (Keras 3.0+).
    """
    return tree.pack_sequence_as(model._inputs_struct, inputs)


def run_graph(model, inputs, call_fn):
    """Re-runs a functional model's graph on `inputs`, calling each layer through
    `call_fn(layer, *args, **kwargs)`, with the model's own layer objects.

    `keras.models.clone_model(call_function=...)` does the same publicly but builds a new
    model, and does not support Sequential models, which `attach_cka_loss` takes nested
    inside functional ones (`_run_through_graph(call_fn=...)`: Keras 3.4+).
    """
    inputs = model._standardize_inputs(inputs)
    return model._run_through_graph(inputs, operation_fn=lambda op: op, call_fn=call_fn)


def inherit_input_shape(wrapper, layer):
    """Gives `wrapper` the `input_shape=` that `layer` was constructed with, so that
    `Sequential([wrapper])` builds as `Sequential([layer])` would.

    Keras keeps the argument only as `Layer._input_shape_arg`, which `Sequential` reads;
    passing `input_shape` to the wrapper instead would warn a second time (Keras 3.0+).
    """
    shape = getattr(layer, "_input_shape_arg", None)
    if shape is not None and getattr(wrapper, "_input_shape_arg", None) is None:
        wrapper._input_shape_arg = shape


def producers(operation) -> list:
    """The operations (layers, or Keras ops such as `x + y`) whose outputs `operation` takes,
    over all its calls. Keras 3 keeps the call graph in `Operation._inbound_nodes` and
    `Node.parent_nodes`; there is no public accessor (Keras 3.0+)."""
    found = []
    for node in operation._inbound_nodes:
        for parent in node.parent_nodes:
            if parent.operation not in found:
                found.append(parent.operation)
    return found


def consumers(operation) -> list:
    """The operations that take `operation`'s outputs (`Operation._outbound_nodes`)."""
    found = []
    for node in operation._outbound_nodes:
        if node.operation not in found:
            found.append(node.operation)
    return found


def clone_model_uncompiled(model, **kwargs):
    """`keras.models.clone_model` without the compile step Keras 3 adds for a compiled model
    (it reads the public-looking but undocumented `Trainer.compiled` flag)."""
    compiled = getattr(model, "compiled", False)
    model.compiled = False
    try:
        return keras.models.clone_model(model, **kwargs)
    finally:
        model.compiled = compiled


def tensor_operation(tensor):
    """The operation that made a symbolic tensor (`KerasTensor._keras_history`)."""
    return tensor._keras_history.operation


def forward_pass_token():
    """An object that identifies the forward pass being run, or None outside one.

    A layer called several times in one forward pass (a shared layer) sees the same object
    each time; the next pass gets a new one. Under JAX's `stateless_call` (how the JAX
    trainer runs the model: it calls `Model.call` directly, with no outer `__call__`) the
    token is the `StatelessScope`; otherwise the `CallContext` that the outermost
    `Layer.__call__` opens. Neither has a public getter (Keras 3.0+).
    """
    from keras.src.backend.common import global_state, stateless_scope

    scope = stateless_scope.get_stateless_scope()
    if scope is not None:
        return scope
    return global_state.get_global_attribute("current_call_ctx")


def tensorboard_train_writer(callback):
    """The summary writer of a `keras.callbacks.TensorBoard` for training logs.

    TensorBoard has no public accessor; a writer of our own on the same folder would
    split the run's events over two files (Keras 3.0+).
    """
    return callback._train_writer


def compute_loss(model, x, y, y_pred, sample_weight):
    """The training loss as Keras' own train steps compute it: `Trainer._compute_loss` also
    serves `compute_loss` overrides written before its `training` argument (Keras 3.3)."""
    return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)


def track_loss(model, loss, x):
    """Updates the `loss` metric as Keras' TF and torch train steps do: the tracker is
    `Trainer._loss_tracker` and the loss is unscaled for `tf.distribute` (Keras 3.0+)."""
    from keras.src.losses.loss import unscale_loss_for_distribution

    batch = next(i for i in tree.flatten(x) if i is not None)
    model._loss_tracker.update_state(
        unscale_loss_for_distribution(loss), sample_weight=keras.ops.shape(batch)[0]
    )


def update_metrics_stateless(model, metrics_variables, loss, x, y, y_pred, sample_weight):
    """`(logs, new metrics variables)` after a JAX train step: the loss tracker and the
    compiled metrics updated statelessly (`JAXTrainer._update_metrics_variables`, 3.0+)."""
    return model._update_metrics_variables(metrics_variables, loss, x, y, y_pred, sample_weight)


def in_symbolic_call() -> bool:
    """True while Keras runs a layer on placeholders to infer shapes (building a subclassed
    model inside its first train step; `SymbolicScope`, no public getter, Keras 3.0+)."""
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    return in_symbolic_scope()


# Per-variable optimizer state that is not a moment of the gradient: the weights' moving
# average (use_ema) and the gradient-accumulation buffers.
_NOT_MOMENTS = ("_trainable_variables", "_model_variables_moving_average", "_accumulated_gradients")


def optimizer_slots(optimizer, variable) -> list:
    """The optimizer's per-variable state of `variable`: SGD's momentum, Adam's moments
    (and AMSGrad's), RMSprop's velocity... Keras 3 has no public map from a model variable
    to its optimizer variables; `add_optimizer_variables` returns one list per kind, in
    the order of `_trainable_variables`, which each optimizer keeps as an attribute
    (`momentums`, `_momentums`, `_velocities`, ...). Empty before the optimizer is built
    (Keras 3.0+). A `LossScaleOptimizer` (mixed precision wraps the optimizer in one) keeps
    no slots: its `inner_optimizer` holds them."""
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        return optimizer_slots(inner, variable)
    trainable = getattr(optimizer, "_trainable_variables", None)
    if not trainable or not optimizer.built:
        return []
    index = optimizer._get_variable_index(variable)
    slots = []
    for name, value in vars(optimizer).items():
        if name in _NOT_MOMENTS or not isinstance(value, list) or len(value) != len(trainable):
            continue
        if not all(v is None or isinstance(v, keras.Variable) for v in value):
            continue
        slot = value[index]
        if slot is not None and tuple(slot.shape) == tuple(variable.shape):
            slots.append(slot)
    return slots


def no_autocast():
    """A context in which variables read at their own dtype, whatever mixed-precision scope
    encloses it: `AutocastScope(None)` (Keras 3.0+). A layer with `autocast=False` does not
    always clear the scope: `Layer.__call__` opens one at the layer's compute dtype when
    none is open yet (seen on JAX under `mixed_bfloat16`)."""
    from keras.src.backend import AutocastScope

    return AutocastScope(None)


def cast_inputs_as_call_would(layer, structure):
    """`structure` with its floating Keras tensors cast as `layer.__call__` casts its inputs
    (to the layer's input dtype, under its `autocast` and the private `_convert_input_args`
    flag): what `layer.compute_output_spec`, which skips that step, must be given."""
    if not getattr(layer, "_convert_input_args", True):
        return structure

    def cast(x):
        if not keras.backend.is_keras_tensor(x):
            return x
        return layer.dtype_policy.convert_input(x, layer.autocast, layer.input_dtype)

    return tree.map_structure(cast, structure)


def graph_nodes(model) -> list:
    """A functional model's call nodes in execution order (inputs first), each with
    `operation`, `input_tensors`, `outputs` and `arguments`.

    `Function._nodes_by_depth` is how Keras itself re-runs the graph (deepest first); there
    is no public accessor (Keras 3.0+).
    """
    by_depth = model._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]]


def node_scalar_arguments_only(node) -> bool:
    """True when every non-tensor argument of a Keras op's call node is a Python number,
    so the op acts on each channel alike (`SymbolicArguments.args/kwargs`, Keras 3.0+)."""
    import numbers

    values = list(node.arguments.args) + list(node.arguments.kwargs.values())
    return all(
        isinstance(v, keras.KerasTensor) or isinstance(v, numbers.Number) or v is None
        for v in tree.flatten(values)
    )


def trusted_deserialization():
    """A scope in which `from_config` rebuilds `Lambda` layers holding Python lambdas: for
    a model's config made in this process (not loaded from a file), which safe mode guards
    against (`serialization_lib.SafeModeScope`, Keras 3.0+)."""
    from keras.src.saving.serialization_lib import SafeModeScope

    return SafeModeScope(safe_mode=False)


def producer_node(tensor):
    """The call node that made a symbolic tensor (`KerasTensor._keras_history`, then the
    operation's `_inbound_nodes`; Keras 3.0+)."""
    operation, node_index, _ = tensor._keras_history
    return operation._inbound_nodes[node_index]
