"""One training run of the main job: a model, a sparse training method, with or without CKA-SR."""

import contextlib
import dataclasses
import math
import time

import keras
import numpy as np

from keras_cka_sr import pruning, sparse
from keras_cka_sr.app import recipes, zoo
from keras_cka_sr.app.methods import TRAINING_METHODS
from keras_cka_sr.app.run_config import RunConfig, steps_per_epoch
from keras_cka_sr.callbacks import CKAGradientMonitor, CKAMonitor
from keras_cka_sr.losses import CKASimilarityLoss
from keras_cka_sr.models import attach_cka_loss

_DISTRIBUTE_BACKEND = {"mirrored": "tensorflow", "data-parallel": "jax"}


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


def plan(config: RunConfig, data) -> Plan:
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
    recipes.optimizer_for(config, steps, config.epochs)  # raises what compile would
    if config.method == "lth" and config.lth_rewind > steps * config.epochs:
        raise ValueError(
            f"lth_rewind={config.lth_rewind} is past the {steps * config.epochs} steps of a round."
        )
    if config.method == "blocks":
        from keras_cka_sr import structured

        if not structured.residual_blocks(base):
            raise ValueError(
                f"method 'blocks' removes identity-shortcut residual blocks, and model "
                f"{config.model!r} has none: use resnet20 or resnet32."
            )
    if config.keep_first_last_dense and config.method != "dense":
        shapes = [k.variable.shape for k in pruning.registry.prunable_kernels(base)]
        sparse.layer_densities(shapes, config.sparsity, "uniform", sorted({0, len(shapes) - 1}))
    # A multiple of 8 samples, so that every replica gets an equal share of the probe.
    size = min(config.probe_size, len(data.x_val))
    probe = data.x_val[: size - size % 8 if size >= 8 else size]
    return Plan(base, groups, _cka_loss(config), steps, probe)


def check(config: RunConfig, data) -> None:
    """Everything `run` would build before training, without training (`plan`)."""
    plan(config, data)


@dataclasses.dataclass
class RunResult:
    """What one run measured; `model` is the trained model (plain Keras, masks applied)."""

    config: dict
    test_accuracy: float
    val_accuracy: float
    sparsity: float
    small_weight_share: float
    cka_mean: float
    best_val_epoch: int  # 1-based, over the last training phase, among epochs at final sparsity
    best_val_accuracy: float
    best_val_sparsity: float  # the kernel sparsity of that checkpoint
    test_accuracy_best_val: float  # the checkpoint of best_val_epoch, as the official code
    cka_grad_ratio_max: float  # largest penalty/task gradient ratio over kernels and epochs; inf:
    # the task's gradient was 0 on a kernel (null in the JSON, as NaN is)
    cka_matrix: list
    cka_layers: list
    magnitude_histogram: dict
    sparsity_summary: dict  # pruning.sparsity_summary(final model).to_dict()
    # methods channels, blocks: MACs, params and batch-1 latency (ms) of the trained dense
    # model and of the final one, [dense, final], and the method's details (blocks: the
    # scores and removed blocks of each step); sparsity is then the fraction of FLOPs removed
    structure: dict | None
    history: dict
    finite: bool
    seconds: float
    model: keras.Model | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """Every field but the model (what the CLI writes as JSON)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"
        }


def run(config: RunConfig, data) -> RunResult:
    """Trains as `config` says on `data` (a `datasets.Dataset`).

    Training runs in the distribution's scope; the trained model is then copied into a
    plain single-device model (pruning wrappers stripped), which is evaluated, measured
    and returned in the result. The checkpoint of the best validation accuracy (of the last
    training phase: the fine-tuning of `oneshot`, the last round of `lth`; among its epochs
    at the final sparsity, not those of a schedule still ramping) is evaluated on
    the test set too (`test_accuracy_best_val`), as the official code reports it; every
    other figure is the final model's.
    """
    start = time.time()
    with _distribution_scope(config.distribute):
        model, monitor, history, best, dense, details = _train(config, data)
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
    kernels = sparse.kernel_stats(final)
    structure = None
    if config.method in ("channels", "blocks"):
        structure = {**_structure(dense, final, data), **details}
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
        sparsity=structure["flops_removed"] if structure else kernels["sparsity"],
        small_weight_share=kernels["small_weight_share"],
        cka_mean=monitor.mean_within_groups(matrix),
        best_val_epoch=best.epoch,
        best_val_accuracy=best.accuracy,
        best_val_sparsity=best.sparsity,
        test_accuracy_best_val=float(test_accuracy_best_val),
        cka_grad_ratio_max=_largest(history.get("cka_grad_ratio", [])),
        cka_matrix=matrix.tolist(),
        cka_layers=monitor.names,
        magnitude_histogram=_log_histogram(kernels["magnitudes"]),
        sparsity_summary=pruning.sparsity_summary(final).to_dict(),
        structure=structure,
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


def _structure(dense, final, data, calls=30) -> dict:
    """MACs, parameters and batch-1 inference latency of the dense and the final model
    (`predict_on_batch`, median of `calls` interleaved calls after warm-up)."""
    from keras_cka_sr import structured

    x = data.x_test[:1]
    seconds = {"dense": [], "final": []}
    models = {"dense": dense, "final": final}
    for model in models.values():
        for _ in range(3):
            model.predict_on_batch(x)
    for _ in range(calls):
        for name, model in models.items():
            start = time.perf_counter()
            model.predict_on_batch(x)
            seconds[name].append(time.perf_counter() - start)
    macs = [structured.count_macs(dense), structured.count_macs(final)]
    return {
        "macs": macs,
        "params": [dense.count_params(), final.count_params()],
        "latency_ms": [1e3 * float(np.median(seconds[name])) for name in models],
        "flops_removed": 1.0 - macs[1] / macs[0],
    }


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
    `val_accuracy` (the first such epoch on ties, as the official code's `>`) among the
    epochs at the run's final sparsity: an epoch sparser than every earlier one by more than
    `tolerance` starts the search afresh, so a checkpoint taken while a schedule still ramps
    (GMP's first 75% of training) is never compared as if it were as sparse as the end.
    `sparsity` is the kernel sparsity of that epoch's checkpoint."""

    def __init__(self, of, tolerance=1e-3):
        super().__init__()
        self.of = of
        self.tolerance = tolerance
        self.reset()

    def reset(self):
        self.weights, self.epoch, self.accuracy, self.sparsity = None, 0, -math.inf, math.nan
        self._sparsest = -math.inf

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy")
        if accuracy is None:
            return
        sparsity = sparse.kernel_stats(self.of)["sparsity"]
        if math.isnan(sparsity):
            sparsity = 0.0  # nothing prunable: every epoch is at the final sparsity
        if sparsity > self._sparsest + self.tolerance:
            self.weights, self.epoch, self.accuracy = None, 0, -math.inf
        self._sparsest = max(self._sparsest, sparsity)
        if float(accuracy) > self.accuracy:
            self.weights = self.of.get_weights()
            self.epoch, self.accuracy, self.sparsity = epoch + 1, float(accuracy), sparsity


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
            recipes.optimizer_for(config, built.steps_per_epoch, epochs),
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
    model, details = model if isinstance(model, tuple) else (model, {})
    return model, monitor, history, best, built.base, details


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
