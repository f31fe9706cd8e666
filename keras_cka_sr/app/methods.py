"""The main job's sparse training methods: a registry, name -> method, like
`datasets.DATASETS` and `zoo.MODELS`.

A method is `method(config, data, base_model, train) -> the trained model` (or `(model,
details)`, details a JSON-ready dict the run's result keeps as `structure`), where
`train(model, epochs, initial_epoch=0, callbacks=())` compiles a fresh optimizer and fits
(with CKA-SR when `config.cka_weight > 0`; see `experiment.run`). Adding one is one function
and one decorator::

    from keras_cka_sr.app import methods

    @methods.TRAINING_METHODS.register("mine")
    def mine(config, data, base, train):
        train(base, config.epochs)
        return base

Keras and the library's pruning modules are imported when a method runs, not here, so
the command line lists the names without starting a backend.
"""

from keras_cka_sr.app.builders import Registry
from keras_cka_sr.app.run_config import steps_per_epoch

TRAINING_METHODS = Registry("method")


def _allocation(config, default):
    return default if config.allocation == "default" else config.allocation


def _static_mask(base, config):
    from keras_cka_sr import pruning

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
    from keras_cka_sr import pruning

    steps = steps_per_epoch(config, data)
    schedule = pruning.PolynomialDecay(
        0.0,
        config.sparsity,
        begin_step=0,
        # Training steps count from 1: at least step 1, or a 1-step run would never prune.
        end_step=max(1, int(0.75 * steps * config.epochs)),
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
    from keras_cka_sr import pruning

    dense_epochs = config.epochs // 2
    train(base, dense_epochs)
    schedule = pruning.ConstantSparsity(config.sparsity, begin_step=1, end_step=1, frequency=1)
    model = pruning.prune_low_magnitude(
        base, schedule, global_ranking=config.allocation == "global"
    )
    train(model, config.epochs - dense_epochs, initial_epoch=dense_epochs)
    return model


@TRAINING_METHODS.register("channels")
def _channels(config, data, base, train):
    """Channel pruning to a smaller dense model: dense training for half the epochs, then
    `prune_steps` steps, each removing channels (L1 norm; every layer alike, or one global
    ranking with allocation "global"; kept counts multiples of `channel_round_to`) until
    `sparsity` x i / prune_steps of the original FLOPs are gone, and fine-tuning the rest of
    the epochs shared out."""
    from keras_cka_sr import structured

    dense_epochs = config.epochs // 2
    train(base, dense_epochs)
    scope = "global" if config.allocation == "global" else "layer"
    original = structured.count_macs(base)
    model, epoch = base, dense_epochs
    share, extra = divmod(config.epochs - dense_epochs, config.prune_steps)
    for step in range(1, config.prune_steps + 1):
        goal = (1.0 - config.sparsity * step / config.prune_steps) * original
        fraction = 1.0 - goal / structured.count_macs(model)
        if fraction > 0:
            model, _ = structured.prune_channels(
                model, fraction, scope=scope, round_to=config.channel_round_to
            )
        epochs = share + (1 if step <= extra else 0)
        train(model, epochs, initial_epoch=epoch)
        epoch += epochs
    return model


@TRAINING_METHODS.register("blocks")
def _blocks(config, data, base, train):
    """Residual-block removal: dense training for half the epochs, then `prune_steps` steps,
    each removing the most identity-like identity-shortcut blocks (by `block_criterion`,
    scored on the validation probe) until `sparsity` x i / prune_steps of the original FLOPs
    are gone, and fine-tuning the rest of the epochs shared out. Each step's scores, removed
    blocks and validation accuracy right after the removal (before fine-tuning) are kept."""
    import numpy as np

    from keras_cka_sr import structured

    dense_epochs = config.epochs // 2
    train(base, dense_epochs)
    original = structured.count_macs(base)
    probe = data.x_val[: min(config.probe_size, len(data.x_val))]
    rng = np.random.default_rng(config.seed)
    model, epoch, steps = base, dense_epochs, []
    share, extra = divmod(config.epochs - dense_epochs, config.prune_steps)
    for step in range(1, config.prune_steps + 1):
        goal = (1.0 - config.sparsity * step / config.prune_steps) * original
        order, scores = _block_order(model, probe, config.block_criterion, rng)
        removed = []
        while order and structured.count_macs(model) > goal:
            removed.append(order.pop(0))
            model = structured.remove_blocks(model, [removed[-1]])
        predicted = np.argmax(model.predict(data.x_val, batch_size=256, verbose=0), axis=-1)
        before = float(np.mean(predicted == data.y_val))
        steps.append({"scores": scores, "removed": removed, "val_accuracy_removed": before})
        epochs = share + (1 if step <= extra else 0)
        train(model, epochs, initial_epoch=epoch)
        epoch += epochs
    return model, {"block_steps": steps}


def _block_order(model, probe, criterion, rng):
    """The model's removable blocks, the first to go first, and their scores."""
    from keras_cka_sr import structured

    if criterion == "random":
        names = [b.add for b in structured.residual_blocks(model)]
        return [names[k] for k in rng.permutation(len(names))], {}
    scores = structured.block_scores(model, probe, criterion)
    most_identity_first = criterion == "cka"
    order = sorted(scores, key=lambda name: -scores[name] if most_identity_first else scores[name])
    return order, scores


def _at_initialization(method):
    def build(config, data, base, train):
        from keras_cka_sr import sparse

        model = _static_mask(base, config)
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
        from keras_cka_sr import sparse

        model = _static_mask(base, config)
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
    import keras

    from keras_cka_sr import sparse

    model = _static_mask(base, config)

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
