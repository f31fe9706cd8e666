"""One training run of the main job: a model, a sparse training method, with or without CKA-SR."""

import contextlib
import dataclasses
import math
import time

import keras
import numpy as np

from keras_cka_sr import cka, pruning, sparse
from keras_cka_sr._validation import check_float, check_int
from keras_cka_sr.app import recipes, zoo
from keras_cka_sr.app.builders import Registry
from keras_cka_sr.app.config import booleans, floats, ints, option, validate
from keras_cka_sr.callbacks import CKAGradientMonitor, CKAMonitor
from keras_cka_sr.losses import CKASimilarityLoss
from keras_cka_sr.models import attach_cka_loss

# method(config, data, base_model, train) -> the trained model; `train(model, epochs,
# initial_epoch=0, callbacks=())` compiles a fresh optimizer and fits (with CKA-SR when
# config.cka_weight > 0). See the built-in methods at the end of this module.
TRAINING_METHODS = Registry("method")
DISTRIBUTE = ("none", "mirrored", "data-parallel")
_MAGNITUDE_RANKED = ("gmp", "oneshot")
_MAGNITUDE_ALLOCATIONS = ("default", "uniform", "global")
_DISTRIBUTE_BACKEND = {"mirrored": "tensorflow", "data-parallel": "jax"}


@dataclasses.dataclass
class RunConfig:
    """One run of the main job. Each field is declared once, with its check and help; the
    command line (`keras-cka-sr train --help`) is generated from these declarations."""

    model: str = option("lenet5", "model of the zoo", choices=lambda: zoo.MODELS.names())
    method: str = option(
        "gmp",
        "sparse training method(s); one run per method",
        choices=lambda: TRAINING_METHODS.names(),
        grid=True,
        cli_default=["gmp"],
    )
    sparsity: float = option(
        0.95,
        "target sparsity (or sparsities), in (0, 1); dense runs ignore it",
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
        check=ints(cka.min_samples(True)),
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
    optimizer: str = option("adam", "optimizer", choices=recipes.OPTIMIZERS, recipe=True)
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
        choices=recipes.LR_SCHEDULES,
        recipe=True,
    )
    allocation: str = option(
        "default",
        "layer-wise density: default = erk for rst/set/rigl, global for snip/grasp/synflow/lth, "
        "uniform (each layer on its own) for gmp/oneshot, which also take global (one "
        "magnitude ranking across layers at every pruning step)",
        choices=lambda: ("default",) + sparse.ALLOCATIONS,
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
        256, "samples of the CKA probe batch", check=ints(cka.min_samples(True)), cli=False
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
        if self.method in _MAGNITUDE_RANKED and self.allocation not in _MAGNITUDE_ALLOCATIONS:
            raise ValueError(
                f"allocation={self.allocation!r} does not apply to method {self.method!r}: "
                "magnitude pruning ranks each layer on its own (default, uniform) or all "
                "layers together (global)."
            )
        needed = cka.min_samples(True)
        if self.cka_weight > 0 and self.batch_size < needed:
            raise ValueError(
                f"batch_size={self.batch_size} is below the {needed} samples the unbiased "
                "CKA estimator needs: every batch would add a penalty of 0, and a run with "
                f"cka_weight={self.cka_weight:g} would train without CKA-SR. Use a batch "
                f"size of at least {needed}, or cka_weight 0."
            )


@dataclasses.dataclass
class Plan:
    """What a run builds before it trains, built once by `plan` (which `check` and `run`
    share): the seeded model, its tap groups, the CKA-SR loss (None at beta 0), the steps
    per epoch and the CKA probe batch."""

    base: keras.Model
    groups: list
    loss: CKASimilarityLoss | None
    steps_per_epoch: int
    probe: np.ndarray


def plan(config, data) -> Plan:
    """Checks `config` against `data` and the backend, and builds the run's `Plan`.

    Raises (a `ValueError` naming what to change) whatever `run` would raise before
    training: distribution and backend, batch size, model on the data's shape, loss,
    optimizer and schedule, lottery rewind, dense first and last layers."""
    backend = _DISTRIBUTE_BACKEND.get(config.distribute)
    if backend is not None and keras.backend.backend() != backend:
        raise ValueError(
            f"distribute={config.distribute!r} runs on the {backend} backend; this is "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND={backend}."
        )
    if len(data.x_train) < config.batch_size:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the {len(data.x_train)} training samples."
        )
    if config.distribute == "data-parallel":
        _check_shardable(
            config.batch_size, {"training": len(data.x_train), "validation": len(data.x_val)}
        )
    keras.utils.set_random_seed(config.seed)
    base = zoo.build(config.model, data.input_shape, data.num_classes, config.resnet_width)
    groups = zoo.tap_groups(base)
    steps = steps_per_epoch(config, data)
    recipes.optimizer(
        config.optimizer,
        config.learning_rate,
        config.momentum,
        config.lr_schedule,
        steps,
        config.epochs,
        config.nesterov,
    )
    if config.method == "lth" and config.lth_rewind > steps * config.epochs:
        raise ValueError(
            f"lth_rewind={config.lth_rewind} is past the {steps * config.epochs} steps of a round."
        )
    if config.keep_first_last_dense and config.method != "dense":
        shapes = [
            w.shape
            for layer in base.layers
            if pruning.registry.has_prunable_rule(layer)
            for w in pruning.registry.prunable_weights(layer)
        ]
        sparse.layer_densities(shapes, config.sparsity, "uniform", sorted({0, len(shapes) - 1}))
    # A multiple of 8 samples, so that every replica gets an equal share of the probe.
    size = min(config.probe_size, len(data.x_val))
    probe = data.x_val[: size - size % 8 if size >= 8 else size]
    return Plan(base, groups, _cka_loss(config), steps, probe)


def check(config, data) -> None:
    """Everything `run` would build before training, without training (`plan`)."""
    plan(config, data)


def steps_per_epoch(config, data) -> int:
    """Training batches per epoch (the last one may be ragged)."""
    return math.ceil(len(data.x_train) / config.batch_size)


@dataclasses.dataclass
class RunResult:
    """What one run measured; `model` is the trained model (plain Keras, masks applied)."""

    config: dict
    test_accuracy: float
    val_accuracy: float
    sparsity: float
    small_weight_share: float
    cka_mean: float
    best_val_epoch: int  # 1-based, counted over the last training phase's epochs
    best_val_accuracy: float
    test_accuracy_best_val: float  # the checkpoint of best_val_epoch, as the official code
    cka_grad_ratio_max: float  # largest penalty/task gradient ratio over kernels and epochs; inf:
    # the task's gradient was 0 on a kernel (null in the JSON, as NaN is)
    cka_matrix: list
    cka_layers: list
    magnitude_histogram: dict
    sparsity_summary: dict  # pruning.sparsity_summary(final model).to_dict()
    history: dict
    finite: bool
    seconds: float
    model: keras.Model | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """Every field but the model (what the CLI writes as JSON)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"
        }


def run(config, data) -> RunResult:
    """Trains as `config` says on `data` (a `datasets.Dataset`).

    Training runs in the distribution's scope; the trained model is then copied into a
    plain single-device model (pruning wrappers stripped), which is evaluated, measured
    and returned in the result. The checkpoint of the best validation accuracy (of the last
    training phase: the fine-tuning of `oneshot`, the last round of `lth`) is evaluated on
    the test set too (`test_accuracy_best_val`), as the official code reports it; every
    other figure is the final model's.
    """
    start = time.time()
    with _distribution_scope(config.distribute):
        model, monitor, history, best = _train(config, data)
    final = _plain_copy(model)
    _, test_accuracy = final.evaluate(data.x_test, data.y_test, verbose=0, batch_size=256)
    test_accuracy_best_val = math.nan
    if best.weights is not None:
        final_weights = model.get_weights()
        model.set_weights(best.weights)
        _, test_accuracy_best_val = _plain_copy(model).evaluate(
            data.x_test, data.y_test, verbose=0, batch_size=256
        )
        model.set_weights(final_weights)
    stats = sparse.kernel_stats(final)
    matrix = monitor.matrix(final)
    losses = history.get("loss", [])
    finite = (
        bool(losses)
        and bool(np.all(np.isfinite(losses)))
        and all(np.all(np.isfinite(w)) for w in final.get_weights())
    )
    return RunResult(
        config=dataclasses.asdict(config),
        test_accuracy=float(test_accuracy),
        val_accuracy=history.get("val_accuracy", [math.nan])[-1],
        sparsity=stats["sparsity"],
        small_weight_share=stats["small_weight_share"],
        cka_mean=monitor.mean_within_groups(matrix),
        best_val_epoch=best.epoch,
        best_val_accuracy=best.accuracy,
        test_accuracy_best_val=float(test_accuracy_best_val),
        cka_grad_ratio_max=_largest(history.get("cka_grad_ratio", [])),
        cka_matrix=matrix.tolist(),
        cka_layers=monitor.names,
        magnitude_histogram=_log_histogram(stats["magnitudes"]),
        sparsity_summary=pruning.sparsity_summary(final).to_dict(),
        history=history,
        finite=finite,
        seconds=time.time() - start,
        model=final,
    )


def _largest(values):
    """The largest value, skipping NaN (where `max` would depend on their order); inf is
    kept: the task's gradient was 0 on some kernel. NaN when nothing is left."""
    kept = [v for v in values if not math.isnan(v)]
    return max(kept) if kept else math.nan


def _plain_copy(model):
    """`model` as a compiled plain Keras model (pruning wrappers stripped, masks applied)."""
    if pruning.collect_prunable_layers(model):
        plain = pruning.strip_pruning(model)
    else:
        plain = keras.models.clone_model(model)
        plain.set_weights(model.get_weights())
    plain.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    return plain


class _BestValidation(keras.callbacks.Callback):
    """Keeps the weights of `of` (the model a method returns) at the epoch of the best
    `val_accuracy` so far (the first such epoch on ties, as the official code's `>`)."""

    def __init__(self, of):
        super().__init__()
        self.of = of
        self.reset()

    def reset(self):
        self.weights, self.epoch, self.accuracy = None, 0, -math.inf

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy")
        if accuracy is not None and float(accuracy) > self.accuracy:
            self.weights = self.of.get_weights()
            self.epoch, self.accuracy = epoch + 1, float(accuracy)


def _check_shardable(batch_size, sizes):
    """keras.distribution.DataParallel splits every batch evenly over the devices."""
    devices = len(keras.distribution.list_devices())
    for what, size in sizes.items():
        for batch in {batch_size, size % batch_size} - {0}:
            if batch % devices:
                raise ValueError(
                    f"distribute='data-parallel' splits each batch over {devices} devices, but the "
                    f"{what} set of {size} samples in batches of {batch_size} has a batch of "
                    f"{batch}; choose a batch size (and --subset) that give batches divisible by "
                    f"{devices}."
                )


@contextlib.contextmanager
def _distribution_scope(distribute):
    """mirrored: tf.distribute.MirroredStrategy over the visible devices (each replica
    computes the penalty on its local batch); data-parallel: keras.distribution's
    DataParallel over the JAX devices (one global batch, sharded)."""
    if distribute == "mirrored":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy().scope():
            yield
    elif distribute == "data-parallel":
        with keras.distribution.DataParallel().scope():
            yield
    else:
        yield


def _train(config, data):
    """Builds the run's plan and trains by `config.method`; returns (trained model,
    CKAMonitor, history dict, the best-validation checkpoint of the last `train` call)."""
    built = plan(config, data)
    monitor = CKAMonitor(built.probe, built.groups)
    history = {}
    best = _BestValidation(None)

    def train(model, epochs, initial_epoch=0, callbacks=()):
        best.of = model
        best.reset()
        if built.loss is None:
            trained = model
        else:
            trained = attach_cka_loss(
                model, built.groups, built.loss, penalty_grad_cap=config.cka_grad_cap
            )
        recipes.add_weight_decay(trained, config.weight_decay)
        trained.compile(
            recipes.optimizer(
                config.optimizer,
                config.learning_rate,
                config.momentum,
                config.lr_schedule,
                built.steps_per_epoch,
                epochs,
                config.nesterov,
            ),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        all_callbacks = [keras.callbacks.TerminateOnNaN(), monitor, *callbacks, best]
        if pruning.collect_prunable_layers(model):
            all_callbacks.insert(0, pruning.UpdatePruningStep())
        if built.loss is not None and config.distribute == "none":
            size = min(64, len(data.x_train))
            all_callbacks.append(
                CKAGradientMonitor(
                    data.x_train[:size], data.y_train[:size], built.groups, built.loss
                )
            )
        result = trained.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            batch_size=config.batch_size,
            epochs=initial_epoch + epochs,
            initial_epoch=initial_epoch,
            callbacks=all_callbacks,
            verbose=config.verbose,
        )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)

    model = TRAINING_METHODS.get(config.method)(config, data, built.base, train)
    return model, monitor, history, best


def _cka_loss(config):
    if config.cka_weight == 0:
        return None
    return CKASimilarityLoss(
        weight=config.cka_weight,
        num_samples=config.cka_samples,
        every_n_steps=config.cka_every,
        start_step=config.cka_start,
    )


def _log_histogram(magnitudes, low=-8, high=1, bins=45):
    """Counts of |w| over log10-spaced bins; exact zeros are counted apart."""
    nonzero = magnitudes[magnitudes > 0]
    counts, edges = np.histogram(np.log10(nonzero), bins=bins, range=(low, high))
    return {
        "log10_edges": edges.tolist(),
        "counts": counts.tolist(),
        "zeros": int(np.sum(magnitudes == 0)),
    }


# --- the built-in methods -------------------------------------------------------------------


def _allocation(config, default):
    return default if config.allocation == "default" else config.allocation


def _static(base, config):
    return pruning.prune_low_magnitude(base, pruning.StaticMask(config.sparsity))


@TRAINING_METHODS.register("dense")
def _dense(config, data, base, train):
    train(base, config.epochs)
    return base


@TRAINING_METHODS.register("gmp")
def _gmp(config, data, base, train):
    """Gradual magnitude pruning (Zhu & Gupta 2017): cubic schedule over the first 75% of
    training, masks updated 4 times per epoch; each layer ranked on its own, or all layers
    together with allocation "global"."""
    steps = steps_per_epoch(config, data)
    schedule = pruning.PolynomialDecay(
        0.0,
        config.sparsity,
        begin_step=0,
        end_step=int(0.75 * steps * config.epochs),
        frequency=max(1, steps // 4),
    )
    model = pruning.prune_low_magnitude(
        base, schedule, global_ranking=config.allocation == "global"
    )
    train(model, config.epochs)
    return model


@TRAINING_METHODS.register("oneshot")
def _oneshot(config, data, base, train):
    """Dense for half the epochs, pruned once by magnitude, fine-tuned for the rest."""
    dense_epochs = config.epochs // 2
    train(base, dense_epochs)
    schedule = pruning.ConstantSparsity(config.sparsity, begin_step=1, end_step=1, frequency=1)
    model = pruning.prune_low_magnitude(
        base, schedule, global_ranking=config.allocation == "global"
    )
    train(model, config.epochs - dense_epochs, initial_epoch=dense_epochs)
    return model


def _at_initialization(method):
    def build(config, data, base, train):
        model = _static(base, config)
        n = min(config.score_samples, len(data.x_train))
        sparse.prune_at_initialization(
            model,
            method,
            config.sparsity,
            data.x_train[:n],
            data.y_train[:n],
            allocation=_allocation(config, "erk" if method == "random" else "global"),
            keep_first_last_dense=config.keep_first_last_dense,
            rounds=config.synflow_rounds,
            batch_size=config.batch_size,
            # Random masks only: SNIP/GraSP/SynFlow keep large weights, and rescaling their
            # masks measured harmful (docs: "Sparse training methods").
            rescale=config.rescale and method == "random",
            seed=config.seed,
        )
        train(model, config.epochs)
        return model

    build.__doc__ = f"Masks fixed at initialization by {method} scores, then training."
    return build


TRAINING_METHODS.register("rst")(_at_initialization("random"))
TRAINING_METHODS.register("snip")(_at_initialization("snip"))
TRAINING_METHODS.register("grasp")(_at_initialization("grasp"))
TRAINING_METHODS.register("synflow")(_at_initialization("synflow"))


def _dynamic(method):
    def build(config, data, base, train):
        model = _static(base, config)
        sparse.prune_at_initialization(
            model,
            "random",
            config.sparsity,
            allocation=_allocation(config, "erk"),
            keep_first_last_dense=config.keep_first_last_dense,
            rescale=config.rescale,
            seed=config.seed,
        )
        callback = sparse.DynamicSparsity(
            method,
            update_frequency=config.dst_every,
            drop_fraction=config.drop_fraction,
            x=data.x_train,
            y=data.y_train,
            batch_size=config.batch_size,
            seed=config.seed,
        )
        train(model, config.epochs, callbacks=[callback])
        return model

    build.__doc__ = f"Random ERK masks updated by {method.upper()} during training."
    return build


TRAINING_METHODS.register("set")(_dynamic("set"))
TRAINING_METHODS.register("rigl")(_dynamic("rigl"))


@TRAINING_METHODS.register("lth")
def _lth(config, data, base, train):
    """Lottery ticket: lth_rounds rounds of iterative magnitude pruning, each of `epochs`
    epochs, rewinding to step lth_rewind (so lth_rounds + 1 times the training)."""
    model = _static(base, config)

    def train_round(model, round_index, callbacks):
        keras.utils.set_random_seed(config.seed * 1000 + round_index)
        train(model, config.epochs, callbacks=callbacks)

    sparse.lottery_ticket(
        model,
        train_round,
        config.sparsity,
        rounds=config.lth_rounds,
        rewind_step=config.lth_rewind,
        allocation=_allocation(config, "global"),
        keep_first_last_dense=config.keep_first_last_dense,
    )
    return model
