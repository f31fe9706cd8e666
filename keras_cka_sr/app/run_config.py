"""`RunConfig`: one run of the main job, each option declared once (`config.option`).

This module imports no Keras: the command line is built from these declarations before
any backend starts (`keras-cka-sr train --help` answers in well under a second). The names
of models, methods and data sets come from their registries (`zoo.MODELS`,
`methods.TRAINING_METHODS`, `datasets.DATASETS`), which import Keras only when a builder runs.
"""

import dataclasses
import math

from keras_cka_sr._validation import check_float, check_int
from keras_cka_sr.app.config import booleans, floats, ints, option, validate
from keras_cka_sr.app.recipes import LR_SCHEDULES, OPTIMIZERS

DISTRIBUTE = ("none", "mirrored", "data-parallel")
# The unbiased HSIC estimator's fewest samples (`keras_cka_sr.cka.min_samples(True)`; a test
# keeps them equal: importing `cka` would import Keras).
UNBIASED_MIN_SAMPLES = 4
# "default" and `keras_cka_sr.sparse.ALLOCATIONS` (equal by a test, for the same reason).
ALLOCATIONS = ("default", "global", "uniform", "erk")
_MAGNITUDE_RANKED = ("gmp", "oneshot", "channels")
_MAGNITUDE_ALLOCATIONS = ("default", "uniform", "global")
BLOCK_CRITERIA = ("cka", "angular", "l1", "random")  # structured.blocks.CRITERIA + random
_STRUCTURED = ("channels", "blocks")


def _model_names():
    from keras_cka_sr.app import zoo

    return zoo.MODELS.names()


def _method_names():
    from keras_cka_sr.app import methods

    return methods.TRAINING_METHODS.names()


@dataclasses.dataclass
class RunConfig:
    """One run of the main job. Each field is declared once, with its check and help; the
    command line (`keras-cka-sr train --help`) is generated from these declarations."""

    model: str = option("lenet5", "model of the zoo", choices=_model_names)
    method: str = option(
        "gmp",
        "sparse training method(s); one run per method",
        choices=_method_names,
        grid=True,
        cli_default=["gmp"],
    )
    sparsity: float = option(
        0.95,
        "target sparsity (or sparsities), in (0, 1); for channels and blocks the fraction "
        "of FLOPs removed; dense runs ignore it",
        parse=floats(0.0, 1.0, min_inclusive=False, max_inclusive=False),
        grid=True,
        cli_default=[0.95],
    )
    cka_weight: float = option(
        1e-4, "beta; 0 disables CKA-SR", check=floats(0.0), grid=True, cli_default=[1e-4]
    )
    cka_samples: int = option(
        8,
        "samples-to-cal: first k samples of a batch (unbiased HSIC: k >= 4)",
        check=ints(UNBIASED_MIN_SAMPLES),
    )
    cka_every: int = option(5, "batches-to-cal: penalty every N batches", check=ints(1))
    cka_start: int = option(0, "warm-up: no penalty before this training step", check=ints(0))
    cka_grad_cap: float | None = option(
        None,
        "cap the penalty's gradient on each weight tensor at this multiple of the task "
        "loss's (two backward passes per step)",
        check=floats(0.0, min_inclusive=False, optional=True),
    )
    rescale: bool = option(
        True,
        "random masks (rst, set, rigl): keep the unscaled initialization instead of scaling "
        "kept weights by 1/sqrt(layer density)",
        check=booleans(),
    )
    epochs: int = option(10, "training epochs (per lottery round for lth)", check=ints(1))
    batch_size: int = option(64, "training batch size", check=ints(1), recipe=True)
    learning_rate: float = option(
        1e-3,
        "learning rate",
        check=floats(0.0, min_inclusive=False),
        flag="--lr",
        recipe=True,
    )
    optimizer: str = option("adam", "optimizer", choices=OPTIMIZERS, recipe=True)
    momentum: float = option(
        0.9, "sgd momentum", check=floats(0.0, 1.0, max_inclusive=False), recipe=True
    )
    nesterov: bool = option(False, "sgd: Nesterov momentum", check=booleans(), recipe=True)
    weight_decay: float = option(
        0.0, "coupled L2 weight decay, PyTorch's weight_decay", check=floats(0.0), recipe=True
    )
    lr_schedule: str = option(
        "constant",
        "learning-rate schedule; step = x0.1 after epochs epochs//2 and 3*epochs//4",
        choices=LR_SCHEDULES,
        recipe=True,
    )
    allocation: str = option(
        "default",
        "layer-wise density: default = erk for rst/set/rigl, global for snip/grasp/synflow/lth, "
        "uniform (each layer on its own) for gmp/oneshot, which also take global (one "
        "magnitude ranking across layers at every pruning step)",
        choices=ALLOCATIONS,
    )
    keep_first_last_dense: bool = option(
        False, "leave the first and last pruned layer dense", check=booleans()
    )
    score_samples: int = option(
        256, "snip, grasp: training samples the scores are computed on", check=ints(1)
    )
    synflow_rounds: int = option(100, "synflow: pruning rounds", check=ints(1))
    dst_every: int = option(50, "set, rigl: steps between mask updates", check=ints(1))
    drop_fraction: float = option(
        0.3,
        "set, rigl: share of active weights updated at first (cosine decay to 0 at 75%)",
        check=floats(0.0, 1.0, min_inclusive=False),
    )
    prune_steps: int = option(
        3,
        "channels, blocks: remove channels (blocks) in this many steps after the dense half "
        "of the epochs, fine-tuning between them (the rest of the epochs, shared out)",
        check=ints(1),
    )
    channel_round_to: int = option(
        1,
        "channels: kept channel counts are multiples of this (8 measured faster under JAX jit "
        "on CPU; the FLOPs removed can then exceed --sparsity, and the run says so)",
        check=ints(1),
    )
    block_criterion: str = option(
        "cka",
        "blocks: which residual blocks go first: cka (highest CKA between a block's input "
        "and output on the probe), angular (smallest angular distance), l1 (smallest summed "
        "|w| of the residual branch), random; one run per criterion",
        choices=BLOCK_CRITERIA,
        grid=True,
        cli_default=["cka"],
    )
    lth_rounds: int = option(
        3, "lth: pruning rounds (each trains --epochs epochs; one dense round first)", check=ints(1)
    )
    lth_rewind: int = option(
        0, "lth: rewind to the weights after this many steps of the first round", check=ints(0)
    )
    seed: int = option(
        0,
        "one run per seed and setting; the table gives mean ± std and paired 95% intervals",
        check=ints(0),
        flag="--seeds",
        grid=True,
        cli_default=[0, 1, 2],
    )
    probe_size: int = option(
        256, "samples of the CKA probe batch", check=ints(UNBIASED_MIN_SAMPLES), cli=False
    )
    resnet_width: int = option(16, "first-stage filters of the ResNets (paper: 16)", check=ints(1))
    verbose: int = option(
        1,
        "Keras' fit output: 0 silent, 1 progress bar, 2 one line per epoch",
        check=ints(0, 2),
        choices=(0, 1, 2),
        cli_default=2,
    )
    distribute: str = option(
        "none",
        "mirrored: tf.distribute.MirroredStrategy (TF backend); data-parallel: "
        "keras.distribution.DataParallel (JAX backend)",
        choices=DISTRIBUTE,
    )

    def __post_init__(self):
        validate(self)
        if self.method == "dense":
            self.sparsity = check_float("sparsity", self.sparsity, 0.0, 1.0, max_inclusive=False)
        else:
            self.sparsity = check_float(
                f"sparsity (method {self.method!r})",
                self.sparsity,
                0.0,
                1.0,
                min_inclusive=False,
                max_inclusive=False,
            )
        self.epochs = check_int("epochs", self.epochs, 2 if self.method == "oneshot" else 1)
        if self.method in _STRUCTURED and self.epochs - self.epochs // 2 < self.prune_steps:
            raise ValueError(
                f"epochs={self.epochs} leaves {self.epochs - self.epochs // 2} fine-tuning "
                f"epochs for prune_steps={self.prune_steps} (method {self.method!r} trains dense "
                f"for half the epochs, then prunes and fine-tunes at least one epoch per "
                f"step): use --epochs {2 * self.prune_steps} or more, or fewer --prune-steps."
            )
        if self.channel_round_to != 1 and self.method != "channels":
            raise ValueError(
                f"channel_round_to={self.channel_round_to} applies to method 'channels' only "
                f"(it rounds kept channel counts); method {self.method!r} has none to round. "
                "Leave it at 1."
            )
        if self.method in _MAGNITUDE_RANKED and self.allocation not in _MAGNITUDE_ALLOCATIONS:
            raise ValueError(
                f"allocation={self.allocation!r} does not apply to method {self.method!r}: "
                "magnitude pruning ranks each layer on its own (default, uniform) or all "
                "layers together (global)."
            )
        if self.keep_first_last_dense and self.method in ("dense", "blocks") + _MAGNITUDE_RANKED:
            raise ValueError(
                f"keep_first_last_dense does not apply to method {self.method!r}: "
                + {
                    "dense": "a dense run prunes nothing.",
                    "blocks": "it removes whole residual blocks, not weights.",
                }.get(
                    self.method,
                    "it ranks every layer alike (or all layers in one global ranking). Use a "
                    "method with layer-wise densities (rst, snip, grasp, synflow, set, rigl, "
                    "lth), or leave the flag off.",
                )
            )
        needed = UNBIASED_MIN_SAMPLES
        if self.cka_weight > 0 and self.batch_size < needed:
            raise ValueError(
                f"batch_size={self.batch_size} is below the {needed} samples the unbiased "
                "CKA estimator needs: every batch would add a penalty of 0, and a run with "
                f"cka_weight={self.cka_weight:g} would train without CKA-SR. Use a batch "
                f"size of at least {needed}, or cka_weight 0."
            )


def steps_per_epoch(config: RunConfig, data) -> int:
    """Training batches per epoch of `config` on `data` (the last one may be ragged)."""
    return math.ceil(len(data.x_train) / config.batch_size)
