"""Pruning keras_hub task models as users have them: the sparsity each kernel kind reaches, and
whether the stripped model is the same task class that reloads from `.keras` and predicts as
the pruned one.

Tiny configs built from scratch (random init: no weights can be downloaded): GPT2CausalLM and
BertTextClassifier with 2 layers, hidden 64, on random tokens; gradual magnitude pruning to each
target with CKA-SR (beta 1e-2) on `block_taps`; `UpdatePruningStep`. This measures that pruning
reaches the kernels and keeps the model whole, not accuracy (the data is noise).

    KERAS_BACKEND=jax python benchmarks/keras_hub_pruning.py --json \
        benchmarks/results/keras_hub_pruning_jax.json
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

VOCAB, SEQ, HIDDEN = 200, 16, 64


def build(kind):
    import keras_hub

    common = dict(num_layers=2, num_heads=2, hidden_dim=HIDDEN, intermediate_dim=2 * HIDDEN)
    common.update(vocabulary_size=VOCAB, max_sequence_length=SEQ)
    if kind == "gpt2":
        return keras_hub.models.GPT2CausalLM(
            backbone=keras_hub.models.GPT2Backbone(**common), preprocessor=None
        )
    return keras_hub.models.BertTextClassifier(
        backbone=keras_hub.models.BertBackbone(**common), num_classes=3, preprocessor=None
    )


def data(kind, n):
    import numpy as np

    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(1, VOCAB, (n, SEQ)).astype("int32"),
        "padding_mask": np.ones((n, SEQ), "int32"),
    }
    if kind == "bert":
        x["segment_ids"] = np.zeros((n, SEQ), "int32")
        return x, rng.integers(0, 3, n)
    return x, rng.integers(1, VOCAB, (n, SEQ)).astype("int32")


def measure(kind, target, steps, batch):
    import keras
    import numpy as np

    import keras_cka_sr
    from keras_cka_sr import pruning

    x, y = data(kind, steps * batch)
    schedule = pruning.PolynomialDecay(0.0, target, 0, max(steps // 2, 1), frequency=1)
    model = build(kind)
    pruned = pruning.prune_low_magnitude(model, schedule)
    loss = keras_cka_sr.CKASimilarityLoss(weight=1e-2, every_n_steps=1)
    trained = keras_cka_sr.attach_cka_loss(pruned, keras_cka_sr.block_taps(pruned), loss)
    trained.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = trained.fit(
        x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()]
    )
    kinds = {}
    for row in pruning.sparsity_summary(pruned).rows:
        name = row.layer.split("/")[-1]
        entry = kinds.setdefault(name, {"kernels": 0, "params": 0, "nonzeros": 0})
        entry["kernels"] += 1
        entry["params"] += row.params
        entry["nonzeros"] += row.nonzeros
    for entry in kinds.values():
        entry["sparsity"] = 1 - entry["nonzeros"] / entry["params"]
    expected = pruned.predict(x, verbose=0)
    stripped = pruning.strip_pruning(pruned)
    path = os.path.join(tempfile.mkdtemp(), "stripped.keras")
    stripped.save(path)
    back = keras.models.load_model(path)
    return {
        "model": type(model).__name__,
        "target": target,
        "cka_sr_last": float(history.history["cka_sr"][-1]),
        "kinds": kinds,
        "sparsity": pruning.sparsity_summary(pruned).sparsity,
        "stripped_class": type(stripped).__name__,
        "reloaded_class": type(back).__name__,
        "stripped_max_abs_diff": float(np.max(np.abs(stripped.predict(x, verbose=0) - expected))),
        "reloaded_max_abs_diff": float(np.max(np.abs(back.predict(x, verbose=0) - expected))),
    }


def main(argv=None):
    p = _common.parser(__doc__.splitlines()[0], steps=20)
    p.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.8])
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    _common.select_backend(args.backend)
    rows = [
        measure(kind, target, args.steps, args.batch_size)
        for kind in ("gpt2", "bert")
        for target in args.targets
    ]
    for row in rows:
        print(
            f"{row['model']:>18}  target {row['target']:.0%}  overall {row['sparsity']:.2%}  "
            f"stripped {row['stripped_class']} (max |diff| {row['stripped_max_abs_diff']:.1e}), "
            f"reloaded {row['reloaded_class']} (max |diff| {row['reloaded_max_abs_diff']:.1e})"
        )
        for name, entry in row["kinds"].items():
            print(
                f"{'':>20}{name:<32} {entry['kernels']:>2} kernel(s) {entry['params']:>7,} "
                f"params  {entry['sparsity']:.2%}"
            )
    _common.write_json(args.json, {"machine": _common.machine(), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
