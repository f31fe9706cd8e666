"""Training recipes of the main job: optimizers, learning-rate schedules, weight decay.

The paper's CIFAR recipe (its reference code is PyTorch): SGD, learning rate 0.1, momentum
0.9, weight decay 5e-4, cosine or step decay. PyTorch's `weight_decay` adds `wd * w` to the
gradient before momentum (coupled L2); Keras' `weight_decay` shrinks weights apart from the
gradient (decoupled), which with momentum 0.9 is about 10x weaker at the same value. So
`add_weight_decay` puts an L2 penalty `wd / 2 * ||w||^2` on every trainable weight, whose
gradient is PyTorch's `wd * w`.
"""

import keras

from keras_cka_sr._validation import check_float, check_int

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine", "step")
# --recipe paper
PAPER = dict(
    optimizer="sgd", learning_rate=0.1, momentum=0.9, weight_decay=5e-4, lr_schedule="cosine"
)


def learning_rate(base: float, schedule: str, total_steps: int):
    """`constant`; `cosine` decay to 0 over `total_steps`; `step`: x0.1 at 50% and 75% of
    the steps (the reference's 160-epoch CIFAR schedule drops at epochs 80 and 120)."""
    base = check_float("learning_rate", base, 0.0, min_inclusive=False)
    total_steps = check_int("total_steps", total_steps, 1)
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(base, decay_steps=total_steps)
    if schedule == "step":
        bounds = sorted({max(1, total_steps // 2), max(2, (3 * total_steps) // 4)})
        values = [base * 0.1**i for i in range(len(bounds) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)
    raise ValueError(f"`lr_schedule` must be one of {LR_SCHEDULES}; got {schedule!r}.")


def optimizer(
    name: str, base_lr: float, momentum: float, schedule: str, total_steps: int
) -> keras.optimizers.Optimizer:
    """A fresh `adam` or `sgd` (with `momentum`) optimizer on the schedule."""
    lr = learning_rate(base_lr, schedule, total_steps)
    momentum = check_float("momentum", momentum, 0.0, 1.0, max_inclusive=False)
    if name == "adam":
        return keras.optimizers.Adam(lr)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=momentum)
    raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}; got {name!r}.")


def add_weight_decay(model: keras.Model, weight_decay: float) -> None:
    """Coupled L2 weight decay (PyTorch's `weight_decay`) on every trainable weight of
    `model`, as a loss term; 0 removes it."""
    weight_decay = check_float("weight_decay", weight_decay, 0.0)
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    for variable in model.trainable_weights:
        variable.regularizer = regularizer
