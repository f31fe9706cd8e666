"""One training run of the main job: a model, a sparse training method, with or without CKA-SR."""

import dataclasses
import math
import time

import keras
import numpy as np

from keras_cka_sr import pruning, sparse_training, zoo
from keras_cka_sr.callbacks import CKAMonitor
from keras_cka_sr.losses import CKASimilarityLoss
from keras_cka_sr.models import attach_cka_loss

METHODS = ("dense", "rst", "gmp", "oneshot")


@dataclasses.dataclass
class RunConfig:
    model: str = "lenet5"
    method: str = "gmp"
    sparsity: float = 0.95
    cka_weight: float = 1e-4
    cka_samples: int = 8
    cka_every: int = 5
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    probe_size: int = 256
    resnet_width: int = 16
    verbose: int = 1

    def __post_init__(self):
        if self.model not in zoo.NAMES:
            raise ValueError(f"`model` must be one of {zoo.NAMES}; got {self.model!r}.")
        if self.method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}; got {self.method!r}.")
        if self.method != "dense" and not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"`sparsity` must be in (0, 1) for method {self.method!r}; got {self.sparsity!r}.")
        if self.cka_weight < 0:
            raise ValueError(f"`cka_weight` must be >= 0; got {self.cka_weight!r}.")
        if self.epochs < 1 or (self.method == "oneshot" and self.epochs < 2):
            raise ValueError(f"`epochs` must be >= 1 (>= 2 for oneshot); got {self.epochs!r}.")


def run(config, data):
    """Trains as `config` says on `data` (a `datasets.Dataset`); returns a result dict."""
    keras.utils.set_random_seed(config.seed)
    start = time.time()
    base = zoo.build(config.model, data.input_shape, data.num_classes, config.resnet_width)
    groups = zoo.tap_groups(base)
    steps_per_epoch = math.ceil(len(data.x_train) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    probe = data.x_val[: config.probe_size]
    monitor = CKAMonitor(probe, groups)
    history = {}

    def train(model, epochs, initial_epoch=0):
        trained = _with_cka(model, groups, config)
        trained.compile(
            keras.optimizers.Adam(config.learning_rate),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        callbacks = [monitor]
        if pruning.collect_prunable_layers(model):
            callbacks.insert(0, pruning.UpdatePruningStep())
        result = trained.fit(
            data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
            batch_size=config.batch_size, epochs=initial_epoch + epochs,
            initial_epoch=initial_epoch, callbacks=callbacks, verbose=config.verbose,
        )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)

    if config.method == "dense":
        model = base
        train(model, config.epochs)
    elif config.method == "gmp":
        schedule = pruning.PolynomialDecay(
            0.0, config.sparsity, begin_step=0, end_step=int(0.75 * total_steps),
            frequency=max(1, steps_per_epoch // 4),
        )
        model = pruning.prune_low_magnitude(base, schedule)
        train(model, config.epochs)
    elif config.method == "rst":
        model = pruning.prune_low_magnitude(base, sparse_training.StaticMask(config.sparsity))
        sparse_training.set_random_masks(model, config.sparsity, seed=config.seed)
        train(model, config.epochs)
    else:  # oneshot: dense half, prune once at the first fine-tuning step, fine-tune
        dense_epochs = config.epochs // 2
        train(base, dense_epochs)
        schedule = pruning.ConstantSparsity(config.sparsity, begin_step=1, end_step=1, frequency=1)
        model = pruning.prune_low_magnitude(base, schedule)
        train(model, config.epochs - dense_epochs, initial_epoch=dense_epochs)

    final = pruning.strip_pruning(model) if pruning.collect_prunable_layers(model) else model
    final.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    _, test_accuracy = final.evaluate(data.x_test, data.y_test, verbose=0, batch_size=256)
    stats = sparse_training.kernel_stats(final)
    matrix = monitor.matrix(final)
    return {
        "config": dataclasses.asdict(config),
        "test_accuracy": float(test_accuracy),
        "val_accuracy": history.get("val_accuracy", [math.nan])[-1],
        "sparsity": stats["sparsity"],
        "small_weight_share": stats["small_weight_share"],
        "cka_mean": monitor.mean_within_groups(matrix),
        "cka_matrix": matrix.tolist(),
        "cka_layers": monitor.names,
        "magnitude_histogram": _log_histogram(stats["magnitudes"]),
        "history": history,
        "seconds": time.time() - start,
        "model": final,
    }


def _with_cka(model, groups, config):
    if config.cka_weight == 0:
        return model
    loss = CKASimilarityLoss(
        weight=config.cka_weight, num_samples=config.cka_samples, every_n_steps=config.cka_every
    )
    return attach_cka_loss(model, groups, loss)


def _log_histogram(magnitudes, low=-8, high=1, bins=45):
    """Counts of |w| over log10-spaced bins; exact zeros are counted apart."""
    nonzero = magnitudes[magnitudes > 0]
    counts, edges = np.histogram(np.log10(nonzero), bins=bins, range=(low, high))
    return {"log10_edges": edges.tolist(), "counts": counts.tolist(), "zeros": int(np.sum(magnitudes == 0))}
