"""The opt-in per-tensor cap of CKA-SR's gradient relative to the task's.

`cap_penalty_gradients` is the math. The train steps below compute the two gradients apart
(one forward pass, two backward passes) and apply the capped sum; `CKASRMixin` runs them
when it has a `penalty_grad_cap`. Each mirrors the Keras train step of its backend.

On TF and torch the second backward pass runs only when the penalty is not exactly 0: the
steps that `every_n_steps`, `start_step` or a small batch skip add an exact 0 with zero
gradient. JAX runs both on every step (see `_jax_train_step`).
"""

from collections.abc import Sequence

import keras
from keras import ops

from keras_cka_sr import _compat
from keras_cka_sr.layers import recording_penalties

_TINY = 1e-30


def penalty_scales(task_gradients: Sequence, penalty_gradients: Sequence, cap: float) -> list:
    """Per tensor, `min(1, cap * ||g_task|| / ||g_penalty||)` as a float32 scalar (1 where the
    penalty's gradient is 0, 0 where only the penalty reaches the tensor); None gradients are 0."""
    scales = []
    for task, penalty in zip(task_gradients, penalty_gradients, strict=True):
        if penalty is None:
            scales.append(ops.ones((), "float32"))
            continue
        penalty_norm = _norm(penalty)
        limit = cap * (0.0 if task is None else _norm(task))
        scales.append(
            ops.where(penalty_norm > limit, limit / ops.maximum(penalty_norm, _TINY), 1.0)
        )
    return scales


def cap_penalty_gradients(
    task_gradients: Sequence, penalty_gradients: Sequence, cap: float
) -> list:
    """`g_task + s * g_penalty` per tensor, with `s` from `penalty_scales`: on every tensor the
    penalty's gradient is at most `cap` times the task's (Frobenius norms)."""
    combined = []
    scales = penalty_scales(task_gradients, penalty_gradients, cap)
    for task, penalty, scale in zip(task_gradients, penalty_gradients, scales):
        if penalty is None:
            combined.append(task)
            continue
        capped = ops.cast(scale, penalty.dtype) * penalty
        combined.append(capped if task is None else task + capped)
    return combined


def _norm(gradient):
    return ops.sqrt(ops.sum(ops.square(ops.cast(gradient, "float32"))))


def _recorded_total(penalties, dtype):
    if not penalties:
        return ops.zeros((), dtype)
    return ops.cast(sum(penalties[1:], penalties[0]), dtype)


def train_step(model, *args):
    """A Keras train step with the penalty's gradient capped per tensor at
    `model.penalty_grad_cap` times the task's."""
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_train_step(model, *args)
    if backend == "tensorflow":
        return _tensorflow_train_step(model, *args)
    if backend == "torch":
        return _torch_train_step(model, *args)
    raise NotImplementedError(f"`penalty_grad_cap` is not supported on the {backend!r} backend.")


def _forward(model, x, y, sample_weight):
    """`(y_pred, task loss, penalty)` of a stateful (TF, torch) train step, both losses scaled
    as the optimizer scales them; updates the `loss` metric."""
    with recording_penalties() as penalties:
        y_pred = model(x, training=True)
    loss = _compat.compute_loss(model, x, y, y_pred, sample_weight)
    penalty = _recorded_total(penalties, loss.dtype)
    _compat.track_loss(model, loss, x)
    task = loss - penalty
    if model.optimizer is not None:
        task, penalty = model.optimizer.scale_loss(task), model.optimizer.scale_loss(penalty)
    return y_pred, task, penalty


def _tensorflow_train_step(model, data):
    import tensorflow as tf

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    with tf.GradientTape(persistent=True) as tape:
        y_pred, task, penalty = _forward(model, x, y, sample_weight)
    weights = model.trainable_weights
    if weights:
        task_grads = [
            tf.zeros_like(w) if g is None else g
            for w, g in zip(weights, tape.gradient(task, weights))
        ]

        def backward():
            grads = tape.gradient(penalty, weights)
            return [tf.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]

        penalty_grads = tf.cond(
            tf.not_equal(penalty, 0.0), backward, lambda: [tf.zeros_like(w) for w in weights]
        )
        gradients = cap_penalty_gradients(task_grads, penalty_grads, model.penalty_grad_cap)
        model.optimizer.apply_gradients(zip(gradients, weights))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _torch_train_step(model, data):
    import torch

    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    y_pred, task, penalty = _forward(model, x, y, sample_weight)
    weights = model.trainable_weights[:]
    if weights:
        values = [w.value for w in weights]
        active = penalty.requires_grad and bool(penalty.detach() != 0)
        task_grads = _torch_grad(task, values, retain_graph=active)
        penalty_grads = _torch_grad(penalty, values, retain_graph=False) if active else None
        if penalty_grads is None:
            penalty_grads = [None] * len(values)
        gradients = cap_penalty_gradients(task_grads, penalty_grads, model.penalty_grad_cap)
        with torch.no_grad():
            model.optimizer.apply(gradients, weights)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def _torch_grad(value, variables, retain_graph):
    import torch

    if not value.requires_grad:
        return [None] * len(variables)
    return list(torch.autograd.grad(value, variables, retain_graph=retain_graph, allow_unused=True))


def _jax_train_step(model, state, data):
    import jax

    trainable, non_trainable, optimizer_variables, metrics_variables = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)

    def losses(trainable):
        with recording_penalties() as penalties:
            loss, aux = model.compute_loss_and_updates(
                trainable,
                non_trainable,
                metrics_variables,
                x,
                y,
                sample_weight,
                training=True,
                optimizer_variables=optimizer_variables,
            )
        penalty = _recorded_total(penalties, loss.dtype)
        if model.optimizer is not None:
            mapping = list(zip(model.optimizer.variables, optimizer_variables))
            with keras.StatelessScope(state_mapping=mapping):
                penalty = model.optimizer.scale_loss(penalty)
        return (loss - penalty, penalty), aux

    (task, penalty), backward, aux = jax.vjp(losses, trainable, has_aux=True)
    one, zero = ops.ones_like(task), ops.zeros_like(task)
    (task_grads,) = backward((one, zero))
    # Both pullbacks on every step: under `lax.cond` the second one cost 7x a plain step on
    # ResNet-20 (CPU), against 1.4x unconditionally (benchmarks/penalty_cap_cost.py).
    (penalty_grads,) = backward((zero, one))
    gradients = cap_penalty_gradients(task_grads, penalty_grads, model.penalty_grad_cap)
    unscaled_loss, y_pred, non_trainable, metrics_variables = aux
    trainable, optimizer_variables = model.optimizer.stateless_apply(
        optimizer_variables, gradients, trainable
    )
    logs, metrics_variables = _compat.update_metrics_stateless(
        model, metrics_variables, unscaled_loss, x, y, y_pred, sample_weight
    )
    return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)
