"""One training run of the main job: a model, a sparse training method, with or without CKA-SR."""

import contextlib
import dataclasses
import math
import time

import keras
import numpy as np

from keras_cka_sr import cka, pruning, sparse_training, zoo
from keras_cka_sr._validation import check_bool, check_float, check_int
from keras_cka_sr.callbacks import CKAGradientMonitor, CKAMonitor
from keras_cka_sr.losses import CKASimilarityLoss
from keras_cka_sr.models import attach_cka_loss

METHODS = ("dense", "rst", "gmp", "oneshot")
DISTRIBUTE = ("none", "mirrored", "data-parallel")
_DISTRIBUTE_BACKEND = {"mirrored": "tensorflow", "data-parallel": "jax"}


@dataclasses.dataclass
class RunConfig:
    """One run of the main job; every field is checked at construction."""

    model: str = "lenet5"
    method: str = "gmp"
    sparsity: float = 0.95
    cka_weight: float = 1e-4
    cka_samples: int = 8
    cka_every: int = 5
    cka_start: int = 0
    rescale: bool = True
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    probe_size: int = 256
    resnet_width: int = 16
    verbose: int = 1
    distribute: str = "none"

    def __post_init__(self):
        if self.model not in zoo.NAMES:
            raise ValueError(f"`model` must be one of {zoo.NAMES}; got {self.model!r}.")
        if self.method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}; got {self.method!r}.")
        if self.distribute not in DISTRIBUTE:
            raise ValueError(f"`distribute` must be one of {DISTRIBUTE}; got {self.distribute!r}.")
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
        self.cka_weight = check_float("cka_weight", self.cka_weight, 0.0)
        self.cka_samples = check_int("cka_samples", self.cka_samples, cka.min_samples(True))
        self.cka_every = check_int("cka_every", self.cka_every, 1)
        self.cka_start = check_int("cka_start", self.cka_start, 0)
        self.rescale = check_bool("rescale", self.rescale)
        self.epochs = check_int("epochs", self.epochs, 2 if self.method == "oneshot" else 1)
        self.batch_size = check_int("batch_size", self.batch_size, 1)
        self.learning_rate = check_float(
            "learning_rate", self.learning_rate, 0.0, min_inclusive=False
        )
        self.seed = check_int("seed", self.seed, 0)
        self.probe_size = check_int("probe_size", self.probe_size, cka.min_samples(True))
        self.resnet_width = check_int("resnet_width", self.resnet_width, 1)
        self.verbose = check_int("verbose", self.verbose, 0, 2)


def check(config, data):
    """Everything `run` would build before training, without training: model (on the
    data's input shape), loss, schedule, distribution. Raises what `run` would raise."""
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
    model = zoo.build(config.model, data.input_shape, data.num_classes, config.resnet_width)
    zoo.tap_groups(model)
    _cka_loss(config)
    _schedule(config, math.ceil(len(data.x_train) / config.batch_size))


def run(config, data):
    """Trains as `config` says on `data` (a `datasets.Dataset`); returns a result dict.

    Training runs in the distribution's scope; the trained model is then copied into a
    plain single-device model (pruning wrappers stripped), which is evaluated, measured
    and returned.
    """
    start = time.time()
    with _distribution_scope(config.distribute):
        model, monitor, history = _train(config, data)
    if pruning.collect_prunable_layers(model):
        final = pruning.strip_pruning(model)
    else:
        final = keras.models.clone_model(model)
        final.set_weights(model.get_weights())
    final.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    _, test_accuracy = final.evaluate(data.x_test, data.y_test, verbose=0, batch_size=256)
    stats = sparse_training.kernel_stats(final)
    matrix = monitor.matrix(final)
    losses = history.get("loss", [])
    finite = (
        bool(losses)
        and bool(np.all(np.isfinite(losses)))
        and all(np.all(np.isfinite(w)) for w in final.get_weights())
    )
    return {
        "config": dataclasses.asdict(config),
        "test_accuracy": float(test_accuracy),
        "val_accuracy": history.get("val_accuracy", [math.nan])[-1],
        "sparsity": stats["sparsity"],
        "small_weight_share": stats["small_weight_share"],
        "cka_mean": monitor.mean_within_groups(matrix),
        # The largest ratio of the penalty's gradient to the task's over kernels and epochs.
        "cka_grad_ratio_max": max(history.get("cka_grad_ratio", [math.nan])),
        "cka_matrix": matrix.tolist(),
        "cka_layers": monitor.names,
        "magnitude_histogram": _log_histogram(stats["magnitudes"]),
        "history": history,
        "finite": finite,
        "seconds": time.time() - start,
        "model": final,
    }


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
    """Builds and trains the model; returns (trained model, CKAMonitor, history dict)."""
    keras.utils.set_random_seed(config.seed)
    base = zoo.build(config.model, data.input_shape, data.num_classes, config.resnet_width)
    groups = zoo.tap_groups(base)
    steps_per_epoch = math.ceil(len(data.x_train) / config.batch_size)
    # A multiple of 8 samples, so that every replica gets an equal share of the probe.
    size = min(config.probe_size, len(data.x_val))
    probe = data.x_val[: size - size % 8 if size >= 8 else size]
    monitor = CKAMonitor(probe, groups)
    history = {}

    def train(model, epochs, initial_epoch=0):
        trained = _with_cka(model, groups, config)
        trained.compile(
            keras.optimizers.Adam(config.learning_rate),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        callbacks = [keras.callbacks.TerminateOnNaN(), monitor]
        if pruning.collect_prunable_layers(model):
            callbacks.insert(0, pruning.UpdatePruningStep())
        loss = _cka_loss(config)
        if loss is not None and config.distribute == "none":
            size = min(64, len(data.x_train))
            callbacks.append(
                CKAGradientMonitor(data.x_train[:size], data.y_train[:size], groups, loss)
            )
        result = trained.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            batch_size=config.batch_size,
            epochs=initial_epoch + epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=config.verbose,
        )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)

    if config.method == "dense":
        model = base
        train(model, config.epochs)
    elif config.method in ("gmp", "rst"):
        model = pruning.prune_low_magnitude(base, _schedule(config, steps_per_epoch))
        if config.method == "rst":
            sparse_training.set_random_masks(
                model, config.sparsity, seed=config.seed, rescale=config.rescale
            )
        train(model, config.epochs)
    else:  # oneshot: dense half, prune once at the first fine-tuning step, fine-tune
        dense_epochs = config.epochs // 2
        train(base, dense_epochs)
        model = pruning.prune_low_magnitude(base, _schedule(config, steps_per_epoch))
        train(model, config.epochs - dense_epochs, initial_epoch=dense_epochs)

    return model, monitor, history


def _cka_loss(config):
    if config.cka_weight == 0:
        return None
    return CKASimilarityLoss(
        weight=config.cka_weight,
        num_samples=config.cka_samples,
        every_n_steps=config.cka_every,
        start_step=config.cka_start,
    )


def _schedule(config, steps_per_epoch):
    """The pruning schedule of `config.method` (None for dense)."""
    if config.method == "gmp":
        return pruning.PolynomialDecay(
            0.0,
            config.sparsity,
            begin_step=0,
            end_step=int(0.75 * steps_per_epoch * config.epochs),
            frequency=max(1, steps_per_epoch // 4),
        )
    if config.method == "rst":
        return sparse_training.StaticMask(config.sparsity)
    if config.method == "oneshot":
        return pruning.ConstantSparsity(config.sparsity, begin_step=1, end_step=1, frequency=1)
    return None


def _with_cka(model, groups, config):
    loss = _cka_loss(config)
    return model if loss is None else attach_cka_loss(model, groups, loss)


def _log_histogram(magnitudes, low=-8, high=1, bins=45):
    """Counts of |w| over log10-spaced bins; exact zeros are counted apart."""
    nonzero = magnitudes[magnitudes > 0]
    counts, edges = np.histogram(np.log10(nonzero), bins=bins, range=(low, high))
    return {
        "log10_edges": edges.tolist(),
        "counts": counts.tolist(),
        "zeros": int(np.sum(magnitudes == 0)),
    }
