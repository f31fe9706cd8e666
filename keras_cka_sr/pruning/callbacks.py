"""Callbacks that drive pruning during `fit`, as tfmot's."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_cka_sr import _compat
from keras_cka_sr._numpy import to_numpy
from keras_cka_sr._validation import check_not_torch_compiled
from keras_cka_sr.pruning import registry
from keras_cka_sr.pruning.wrapper import collect_prunable_layers, set_global_group

_SPARSITY_TOLERANCE = 1e-3  # frequency grids end a little short of end_step: tiny shortfalls


class UpdatePruningStep(keras.callbacks.Callback):
    """Use it when training a pruned model, as tfmot requires (without it: a warning).

    At train begin, a fresh model's step counters go from -1 to 0, so the first train
    step is pruning step 1 (as tfmot; the wrappers would start there on their own). At
    each epoch end, the stored weights are set to `weight * mask`. At train end, it warns
    when a layer's schedule was not reached (`warn_unfinished_schedules`). In a custom
    training loop, call `on_train_end()` after the last step for the same check.

    The pruning step counts train steps (batches), as tfmot's: with an optimizer's
    `gradient_accumulation_steps=k`, the weights change every k batches, and the
    schedule's steps are still batches (`end_step = steps_per_epoch * epochs`).
    The CKA-SR penalty's `every_n_steps` counts batches too.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0, frequency=1))
        >>> pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> _ = pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,
        ...                 callbacks=[pruning.UpdatePruningStep()])
        >>> [int(w.pruning_step) for w in pruning.collect_prunable_layers(pruned)]  # 4 batches
        [4, 4, 4]
    """

    def on_train_begin(self, logs=None):
        layers = collect_prunable_layers(self.model)
        if layers:
            check_not_torch_compiled(self.model, "Pruning (PruneLowMagnitude)")
            set_global_group(self.model)
        for layer in layers:
            registry.check_maskable(layer.layer)  # before fit takes the model's state
            layer.callback_active = True
            if layer.built and int(to_numpy(layer.pruning_step)) == -1:
                layer.pruning_step.assign(0)

    def on_train_end(self, logs=None):
        warn_unfinished_schedules(self.model)

    def on_epoch_end(self, epoch=-1, logs=None, batch=None):
        # `batch`: tfmot's name for the first argument; its custom-loop recipe calls
        # `on_epoch_end(batch=-1)`.
        for layer in collect_prunable_layers(self.model):
            if layer.built:
                layer.apply_masks()
        warn_emptied_layers(self.model)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class PruningSummaries(keras.callbacks.TensorBoard):
    """TensorBoard logs plus, per pruned weight, its sparsity and threshold.

    Written at each epoch begin under `<weight path>/sparsity` and
    `<weight path>/threshold` in the train writer of `log_dir` (needs TensorFlow
    and TensorBoard installed, as Keras' TensorBoard callback).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> import tempfile
        >>> pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0, frequency=1))
        >>> pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> logs = tempfile.mkdtemp()
        >>> _ = pruned.fit(x, y, batch_size=8, epochs=1, verbose=0,
        ...     callbacks=[pruning.UpdatePruningStep(), pruning.PruningSummaries(logs)])
        >>> import os; "train" in os.listdir(logs)
        True
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        if not isinstance(log_dir, str) or not log_dir:
            raise ValueError(f"`log_dir` must be a non-empty path; got {log_dir!r}.")
        super().__init__(log_dir=log_dir, update_freq=update_freq, **kwargs)
        self._config = dict(log_dir=log_dir, update_freq=update_freq, **kwargs)

    def get_config(self):
        return dict(self._config)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        writer = _compat.tensorboard_train_writer(self)
        with writer.as_default():
            for layer in collect_prunable_layers(self.model):
                if not layer.built:
                    continue
                for weight, mask, threshold in zip(
                    layer.pruned_weights, layer.masks, layer.thresholds
                ):
                    sparsity = 1.0 - float(to_numpy(ops.mean(mask)))
                    self.summary.scalar(f"{weight.path}/sparsity", sparsity, step=epoch)
                    self.summary.scalar(
                        f"{weight.path}/threshold",
                        float(to_numpy(threshold)),
                        step=epoch,
                    )
        writer.flush()


def unfinished_schedules(model) -> list[dict]:
    """The pruned layers of `model` whose schedule has not reached its target.

    A layer is unfinished when its pruning step is before the schedule's last pruning
    step, when the schedule itself never reaches its target (e.g. a `frequency` larger
    than `end_step - begin_step`: tfmot prunes at `begin_step` only), or when its masks are
    less sparse than the target whatever the step counter says (training steps count from
    1, as tfmot's: a schedule whose only pruning step is 0, such as `begin_step=0,
    end_step=0`, never prunes). Each entry has the layer's name, the step reached, the
    schedule's last pruning step, the masks' sparsity now and the schedule's target.
    Layers with `sparsity_m_by_n` or a schedule whose `end_state()` is None are not checked.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0))
        >>> pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> _ = pruned.fit(x, y, batch_size=8, epochs=1, verbose=0)  # 4 steps; frequency=100
        >>> [(u["layer"], u["sparsity"], u["target"]) for u in pruning.unfinished_schedules(pruned)][:1]
        [('prune_low_magnitude_a', 0.0, 0.5)]
    """
    found = []
    layers = collect_prunable_layers(model)
    # Global ranking prunes layers unevenly: its layers reach the target together.
    ranked = [x for x in layers if x.built and x.global_ranking]
    ranked_pruned = sum(float(to_numpy(ops.sum(1.0 - m))) for x in ranked for m in x.masks)
    ranked_total = sum(int(np.prod(m.shape)) for x in ranked for m in x.masks)
    for layer in layers:
        if not layer.built or not layer.pruned_weights or layer.sparsity_m_by_n is not None:
            continue
        end = layer.pruning_schedule.end_state()
        if end is None:
            continue
        last_step, sparsity_then, target = end
        step = int(to_numpy(layer.pruning_step))
        pruned = sum(float(to_numpy(ops.sum(1.0 - m))) for m in layer.masks)
        total = sum(int(np.prod(m.shape)) for m in layer.masks)
        # One block (or weight) per mask short of the target is rounding, not a shortfall.
        measured = ranked_pruned / ranked_total if layer.global_ranking else pruned / total
        rounding = len(layer.masks) * int(np.prod(layer.block_size)) / total
        reached = measured >= target - max(_SPARSITY_TOLERANCE, rounding)
        if step >= last_step and sparsity_then >= target - _SPARSITY_TOLERANCE and reached:
            continue
        found.append(
            {
                "layer": layer.name,
                "step": max(step, 0),
                "last_pruning_step": last_step,
                "sparsity": pruned / total,
                "target": target,
                "schedule": layer.pruning_schedule,
            }
        )
    return found


def warn_emptied_layers(model) -> None:
    """Warns (once per layer) of a layer whose masks are all zero: global ranking pruned it
    to 100%, so its output no longer depends on its input.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> import warnings
        >>> pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0))
        >>> first = pruning.collect_prunable_layers(pruned)[0]
        >>> _ = first.masks[0].assign(np.zeros(first.masks[0].shape, "float32"))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     pruning.warn_emptied_layers(pruned)
        >>> "pruned to 100%" in str(caught[0].message)
        True
    """
    for layer in collect_prunable_layers(model):
        if not layer.built or not layer.masks or getattr(layer, "_warned_empty", False):
            continue
        if all(float(to_numpy(ops.max(m))) == 0.0 for m in layer.masks):
            layer._warned_empty = True
            warnings.warn(
                f"Layer {layer.layer.name!r} is pruned to 100%: every weight it prunes is 0, "
                "so its output no longer depends on its input. Global ranking can empty a "
                "layer whose weights are small; keep a share of every layer with "
                "prune_low_magnitude(..., global_ranking=True, min_density=0.01), or rank "
                "each layer on its own.",
                stacklevel=2,
            )


def warn_unfinished_schedules(model) -> None:
    """Warns once (for all layers) when `unfinished_schedules(model)` is not empty.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> import warnings
        >>> pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     pruning.warn_unfinished_schedules(pruned)  # never trained: short of 50%
        >>> "did not reach its target" in str(caught[0].message)
        True
    """
    found = unfinished_schedules(model)
    if not found:
        return
    first = found[0]
    more = len(found) - 1
    others = f" (and {more} more layer{'s' if more > 1 else ''})" if more else ""
    if first["step"] >= first["last_pruning_step"] and first["schedule"].end_state()[1] >= (
        first["target"] - _SPARSITY_TOLERANCE
    ):
        cause = (
            f"its masks were never set to it although the step counter ({first['step']}) "
            f"passed the schedule's last pruning step ({first['last_pruning_step']}) of "
            f"{first['schedule']!r}: training steps count from 1, as tfmot's, so a pruning "
            "step at 0 never runs (begin_step=0 with end_step=0; tfmot's default frequency=100 "
            "over fewer than 100 steps prunes nothing)"
        )
    elif first["step"] >= first["last_pruning_step"]:
        cause = (
            f"its schedule {first['schedule']!r} never gets there: its last pruning step, "
            f"{first['last_pruning_step']}, sets a lower sparsity (is `frequency` larger "
            "than `end_step - begin_step`?)"
        )
    else:
        cause = (
            f"training stopped at pruning step {first['step']}, before the schedule's last "
            f"pruning step {first['last_pruning_step']} ({first['schedule']!r})"
        )
    warnings.warn(
        f"Pruning did not reach its target: layer {first['layer']!r}{others} is at sparsity "
        f"{first['sparsity']:.1%}, target {first['target']:.1%}: {cause}. Steps count "
        "batches: set end_step to at most steps_per_epoch * epochs and frequency to at "
        "most end_step - begin_step, or train longer (a later `fit` continues the schedule).",
        stacklevel=2,
    )
