"""Training recipes of the main job: optimizers, learning-rate schedules, weight decay.

The paper's CIFAR recipe as its official code runs it (`code/examples/Random_Pruning/CIFAR/
main.py` of github sccdnmj/Learning-Sparse-Neural-Networks-with-Identity-Layers): SGD with
Nesterov momentum 0.9, learning rate 0.1, weight decay 5e-4, batch 128, the learning rate x0.1
after epochs `epochs // 2` and `3 * epochs // 4` (`MultiStepLR`, stepped once per epoch). PyTorch's `weight_decay` adds `wd * w` to the
gradient before momentum (coupled L2); Keras' `weight_decay` shrinks weights apart from the
gradient (decoupled), which with momentum 0.9 is about 10x weaker at the same value. So
`add_weight_decay` puts an L2 penalty `wd / 2 * ||w||^2` on every trainable weight, whose
gradient is PyTorch's `wd * w`.
"""

from typing import TYPE_CHECKING

from keras_cka_sr._validation import check_bool, check_float, check_int

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine", "step")

if TYPE_CHECKING:  # Keras is imported where a function needs it: the CLI lists these names first
    import keras
# --recipe paper
PAPER = dict(
    optimizer="sgd",
    learning_rate=0.1,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    lr_schedule="step",
    batch_size=128,
)


def learning_rate(base: float, schedule: str, steps_per_epoch: int, epochs: int):
    """`constant`; `cosine` decay to 0 over the run's steps; `step`: the official code's
    `MultiStepLR(milestones=[epochs // 2, 3 * epochs // 4], gamma=0.1)`, stepped once per
    epoch: epoch `e` (0-based) trains at `base * 0.1 ** (number of milestones <= e)` (its
    160-epoch CIFAR runs drop after epochs 80 and 120)."""
    base = check_float("learning_rate", base, 0.0, min_inclusive=False)
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
    epochs = check_int("epochs", epochs, 1)
    import keras

    if schedule == "constant":
        return base
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(base, decay_steps=steps_per_epoch * epochs)
    if schedule == "step":
        milestones = (epochs // 2, (3 * epochs) // 4)
        starts = [0] + sorted(set(milestones) - {0})
        values = [base * 0.1 ** sum(m <= e for m in milestones) for e in starts]
        if len(values) == 1:
            return values[0]
        # Step t trains at schedule(t); PiecewiseConstantDecay's value i holds up to bound i.
        bounds = [e * steps_per_epoch - 1 for e in starts[1:]]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)
    raise ValueError(f"`lr_schedule` must be one of {LR_SCHEDULES}; got {schedule!r}.")


def optimizer(
    name: str,
    base_lr: float,
    momentum: float,
    schedule: str,
    steps_per_epoch: int,
    epochs: int,
    nesterov: bool = False,
) -> "keras.optimizers.Optimizer":
    """A fresh `adam` or `sgd` (with `momentum`, Nesterov's if `nesterov`) optimizer on the
    schedule. Keras' SGD keeps its momentum in units of
    learning rate x gradient, PyTorch's in gradients: the same update while the learning rate
    is constant; after a step decay Keras' carries the older, larger steps a little longer."""
    lr = learning_rate(base_lr, schedule, steps_per_epoch, epochs)
    momentum = check_float("momentum", momentum, 0.0, 1.0, max_inclusive=False)
    nesterov = check_bool("nesterov", nesterov)
    import keras

    if name == "adam":
        if nesterov:
            raise ValueError("`nesterov=True` is for the sgd optimizer; got optimizer 'adam'.")
        return keras.optimizers.Adam(lr)
    if name == "sgd":
        if nesterov and momentum == 0:
            raise ValueError("`nesterov=True` needs a momentum > 0; got momentum 0.")
        return keras.optimizers.SGD(lr, momentum=momentum, nesterov=nesterov)
    raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}; got {name!r}.")


def optimizer_for(config, steps_per_epoch: int, epochs: int) -> "keras.optimizers.Optimizer":
    """A fresh optimizer for a run of `config` (a `RunConfig`) training `epochs` epochs of
    `steps_per_epoch` steps: its optimizer, learning rate, momentum, Nesterov and schedule."""
    return optimizer(
        config.optimizer,
        config.learning_rate,
        config.momentum,
        config.lr_schedule,
        steps_per_epoch,
        epochs,
        nesterov=config.nesterov,
    )


def add_weight_decay(model: "keras.Model", weight_decay: float) -> None:
    """Coupled L2 weight decay (PyTorch's `weight_decay`) on every trainable weight of
    `model`, as a loss term; 0 removes it."""
    weight_decay = check_float("weight_decay", weight_decay, 0.0)
    import keras

    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    for variable in model.trainable_weights:
        variable.regularizer = regularizer
