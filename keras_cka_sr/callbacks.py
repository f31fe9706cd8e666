"""Callbacks that watch CKA-SR: `CKAMonitor` (the CKA matrix of chosen layers on a probe
batch) and `CKAGradientMonitor` (how the penalty's gradient compares with the task's)."""

import math
import warnings

import keras
import numpy as np
from keras import ops
from numpy.typing import ArrayLike

from keras_cka_sr import cka
from keras_cka_sr._autodiff import compiled, gradients
from keras_cka_sr._tapping import PAIRS, LayerNames, compared_pairs, parse_layer_names
from keras_cka_sr._validation import check_bool, check_float
from keras_cka_sr.losses import CKASimilarityLoss
from keras_cka_sr.models import feature_model
from keras_cka_sr.pruning import registry


def _probe_batch(probe, name: str, minimum: int):
    """`probe` as NumPy arrays in the model's input structure (an array, or a dict, list or
    tuple of arrays for a multi-input model), refused here when its leaves disagree on the
    number of samples or hold fewer than `minimum`."""
    batch = keras.tree.map_structure(np.asarray, probe)
    sizes = {int(leaf.shape[0]) if leaf.ndim else 0 for leaf in keras.tree.flatten(batch)}
    if len(sizes) != 1:
        raise ValueError(
            f"`{name}` must hold the same number of samples in every input; got {sorted(sizes)}."
        )
    (size,) = sizes
    if size < minimum:
        raise ValueError(
            f"`{name}` has {size} samples; the estimator needs at least {minimum} "
            f"(unbiased HSIC: n >= 4). Give a larger probe batch (e.g. 256 validation samples)."
        )
    return batch


def _tensors(batch):
    return keras.tree.map_structure(ops.convert_to_tensor, batch)


class CKAMonitor(keras.callbacks.Callback):
    """Logs the mean inter-layer CKA (`logs[log_key]`) and keeps every epoch's matrix.

    Args:
        probe: a fixed batch of inputs (e.g. 256 validation images): an array, or the
            model's input structure (a dict or list of arrays) for a multi-input model.
        layer_names: names of the layers to compare, or a list of lists (groups: only
            pairs within a group enter the mean, as in CKA-SR's penalty).
        unbiased: the HSIC estimator (the CKA-SR loss's default is unbiased).
        pairs: "all" pairs within a group or "adjacent" ones, as `CKASimilarityLoss`,
            so the logged mean is over the pairs the penalty sums.
        log_key: the key added to the epoch logs.

    After training, `matrices` holds one `(L, L)` NumPy matrix per epoch, in the order
    of `names` (the unique layer names, in order of first appearance).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> monitor = keras_cka_sr.CKAMonitor(x[:16], ["a", "b"])
        >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> history = model.fit(x, y, epochs=2, verbose=0, callbacks=[monitor])
        >>> len(monitor.matrices), monitor.matrices[-1].shape, "cka_mean" in history.history
        (2, (2, 2), True)
    """

    def __init__(
        self,
        probe: ArrayLike,
        layer_names: LayerNames,
        unbiased: bool = True,
        pairs: str = "all",
        log_key: str = "cka_mean",
    ) -> None:
        super().__init__()
        self.names, groups = parse_layer_names(layer_names)
        if pairs not in PAIRS:
            raise ValueError(f"`pairs` must be one of {PAIRS}; got {pairs!r}.")
        self.groups = groups
        self.pairs = pairs
        self.compared = compared_pairs(groups, len(self.names), pairs)
        self.unbiased = check_bool("unbiased", unbiased)
        self.probe = _probe_batch(probe, "probe", cka.min_samples(self.unbiased))
        self.log_key = log_key
        self.matrices = []
        self._features = None

    def matrix(self, model=None):
        """The CKA matrix of the monitored layers on the probe batch, now."""
        model = model or self.model
        if self._features is None or self._features_of is not model:
            self._features = feature_model(model, self.names)
            self._features_of = model
        # A direct call, not `predict`: no compiled function per monitored model.
        features = self._features(_tensors(self.probe), training=False)
        return ops.convert_to_numpy(cka.cka_matrix(list(features), unbiased=self.unbiased))

    def mean_within_groups(self, matrix):
        """The mean of `matrix` over the compared pairs (those the penalty sums)."""
        return float(np.mean([matrix[i, j] for i, j in self.compared]))

    def on_epoch_end(self, epoch, logs=None):
        matrix = self.matrix()
        self.matrices.append(matrix)
        if logs is not None:
            logs[self.log_key] = self.mean_within_groups(matrix)

    def get_config(self):
        """The arguments except the probe batch (data, not configuration)."""
        layer_names = (
            self.names
            if self.groups is None
            else [[self.names[i] for i in group] for group in self.groups]
        )
        return {
            "layer_names": layer_names,
            "unbiased": self.unbiased,
            "pairs": self.pairs,
            "log_key": self.log_key,
        }


class CKAGradientMonitor(keras.callbacks.Callback):
    """Logs how strongly CKA-SR's gradient competes with the task's, per weight tensor.

    At each epoch end (and at train begin: the initialization, where sparse nets
    without normalization are most at risk), on a fixed probe batch and in training
    mode, without changing any variable: for every prunable kernel `W` (biases and
    normalization weights are left out: their gradients would hide the kernels'),
    `ratio(W) = ||d penalty / d W|| / ||d task loss / d W||`. `logs[log_key]` is the
    largest ratio; `ratios` keeps every measurement, by weight path. The first time a
    ratio exceeds `warn_above`, it warns: the penalty then steers those kernels more than
    the task does (with Adam, whatever beta is), which is how CKA-SR drove sparse
    LeNet-5 to chance (docs: "Safety"). The ratios are measured before any
    `penalty_grad_cap` of the model; with a cap, the warning is about the capped ratio,
    `min(ratio, cap)`, which is what the train step applies.

    Args:
        x: the probe batch (e.g. 64 training samples), an array or the model's input
            structure (a dict or list of arrays).
        y: its targets.
        layer_names: the tapped layers, as given to `attach_cka_loss`.
        loss: the `CKASimilarityLoss` (its `every_n_steps`/`start_step` are ignored:
            the diagnostic measures the penalty's gradient when it is computed).
        warn_above: the ratio that triggers the one-time warning.
        log_key: the key added to the epoch logs.

    The model must be compiled with a single loss (`model.loss`). Cost: two backward
    passes on the probe batch per epoch (`benchmarks/gradient_monitor_cost.py`).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> loss = keras_cka_sr.CKASimilarityLoss(weight=1e-3)
        >>> trained = keras_cka_sr.attach_cka_loss(model, ["a", "b"], loss)
        >>> trained.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> monitor = keras_cka_sr.CKAGradientMonitor(x[:16], y[:16], ["a", "b"], loss)
        >>> history = trained.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
        >>> sorted(monitor.ratios[-1])  # the penalty/task gradient norm ratio per kernel
        ['a/kernel', 'b/kernel', 'head/kernel']
    """

    def __init__(
        self,
        x: ArrayLike,
        y: ArrayLike,
        layer_names: LayerNames,
        loss: CKASimilarityLoss,
        warn_above: float = 1.0,
        log_key: str = "cka_grad_ratio",
    ) -> None:
        super().__init__()
        self.names, groups = parse_layer_names(layer_names)
        if not isinstance(loss, CKASimilarityLoss):
            raise TypeError(f"`loss` must be a CKASimilarityLoss; got {type(loss).__name__}.")
        config = dict(loss.get_config(), every_n_steps=1, start_step=0)
        if groups is not None:
            config["groups"] = groups
        self.loss = CKASimilarityLoss.from_config(config)
        self.x = _probe_batch(x, "x", cka.min_samples(self.loss.unbiased))
        self.y = np.asarray(y)
        self.warn_above = check_float("warn_above", warn_above, 0.0)
        self.log_key = log_key
        self.ratios = []
        self.warned = False
        self._probe = None
        self._before_first_batch = False

    def on_train_begin(self, logs=None):
        if not callable(keras.losses.get(self.model.loss)):
            raise ValueError(
                "CKAGradientMonitor needs a model compiled with one loss; got "
                f"loss={self.model.loss!r}."
            )
        # Measured before the first batch, not here: every callback's on_train_begin has
        # run by then, so an UpdatePruningStep listed after this monitor has started.
        self._before_first_batch = True

    def on_train_batch_begin(self, batch, logs=None):
        if self._before_first_batch:
            self._before_first_batch = False
            self.measure()

    def on_epoch_end(self, epoch, logs=None):
        ratios = self.measure()
        if logs is not None:
            logs[self.log_key] = max(ratios.values())

    def measure(self):
        """The ratio for every prunable kernel now, by weight path (also kept in `ratios`)."""
        if self._probe is None or self._probe_of is not self.model:
            self._probe = feature_model(self.model, self.names, with_outputs=True)
            self._probe_of = self.model
            self._norms = compiled(self._gradient_norms)
            self._kernels = _kernel_indices(self._probe)
        probe = self._probe
        task_norms, penalty_norms = self._norms(
            [ops.convert_to_tensor(v) for v in probe.trainable_variables],
            [ops.convert_to_tensor(v) for v in probe.non_trainable_variables],
            _tensors(self.x),
            ops.convert_to_tensor(self.y),
        )
        task_norms = ops.convert_to_numpy(task_norms)
        penalty_norms = ops.convert_to_numpy(penalty_norms)
        ratios = {
            path: float(p / t) if t > 0 else math.inf
            for path, t, p in zip([path for _, path in self._kernels], task_norms, penalty_norms)
        }
        self.ratios.append(ratios)
        worst = max(ratios, key=ratios.get)
        cap = getattr(self.model, "penalty_grad_cap", None)
        applied = ratios[worst] if cap is None else min(ratios[worst], cap)
        if not self.warned and applied > self.warn_above:
            self.warned = True
            warnings.warn(
                f"CKA-SR's gradient is {ratios[worst]:.3g}x the task loss's on {worst} "
                f"(warn_above={self.warn_above:g}): the penalty, not the task, steers that "
                "kernel. Consider rescaling sparse initial weights (sparse.set_random_masks("
                "rescale=True)), a warm-up (CKASimilarityLoss(start_step=...)), a cap "
                "(attach_cka_loss(..., penalty_grad_cap=0.1)) or a smaller weight.",
                stacklevel=2,
            )
        return ratios

    def _gradient_norms(self, trainable, non_trainable, x, y):
        """Per prunable kernel: ||d task / d W|| and ||d penalty / d W|| (two vectors)."""
        probe = self._probe
        task_loss = keras.losses.get(self.model.loss)
        outputs_count = len(keras.tree.flatten(self.model.outputs))

        def forward(values):
            outputs, _ = probe.stateless_call(values, non_trainable, x, training=True)
            return outputs[:outputs_count], outputs[outputs_count:]

        def task(values):
            return task_loss(y, forward(values)[0][0])

        def penalty(values):
            return self.loss(list(forward(values)[1]), skip_small_batch=True)

        def norms(grads):
            return ops.stack(
                [ops.sqrt(ops.sum(ops.square(grads[index]))) for index, _ in self._kernels]
            )

        return norms(gradients(task, trainable)), norms(gradients(penalty, trainable))

    def get_config(self):
        """The arguments except the probe batch and the loss object."""
        return {"layer_names": self.names, "warn_above": self.warn_above, "log_key": self.log_key}


def _kernel_indices(model):
    """(index into `model.trainable_variables`, path) of every prunable kernel."""
    kernels = {id(k.variable): k.variable.path for k in registry.prunable_kernels(model)}
    return [
        (index, kernels[id(v)])
        for index, v in enumerate(model.trainable_variables)
        if id(v) in kernels
    ]
