"""How strongly CKA-SR's gradient competes with the task's at initialization, by sparsity.

LeNet-5 on a batch of 64 MNIST-5k training images, random static masks (ERK) at each
sparsity, beta = 1e-4 with the reference's 8 samples; per prunable kernel, the ratio
||d penalty / d W|| / ||d cross-entropy / d W|| (`CKAGradientMonitor`), with and without
rescaling the kept weights by 1/sqrt(density). Prints the smallest and largest ratio over
the kernels the penalty reaches, for each setting. No training: this is the state the first steps start from.

    python benchmarks/cka_gradient_ratio.py --backend jax --seeds 0 1 2 --json benchmarks/results/cka_gradient_ratio.json
"""

import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common  # noqa: E402

SPARSITIES = [0.0, 0.9, 0.95, 0.98, 0.99]


def main(argv=None):
    p = _common.parser(__doc__)
    p.add_argument("--sparsity", nargs="+", type=float, default=SPARSITIES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--weight", type=float, default=1e-4)
    args = p.parse_args(argv)
    _common.select_backend(args.backend)
    import keras
    import numpy as np

    from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, pruning, sparse
    from keras_cka_sr.app import datasets, zoo
    from keras_cka_sr.callbacks import CKAGradientMonitor

    data = datasets.load("mnist5k")
    x, y = data.x_train[:64], data.y_train[:64]
    loss = CKASimilarityLoss(args.weight, num_samples=8)
    rows = []
    for sparsity in args.sparsity:
        for rescale in [False] if sparsity == 0 else [False, True]:
            ratios = []
            for seed in args.seeds:
                keras.utils.set_random_seed(seed)
                base = zoo.lenet5()
                groups = zoo.tap_groups(base)
                model = base
                if sparsity > 0:
                    model = pruning.prune_low_magnitude(base, pruning.StaticMask(sparsity))
                    sparse.set_random_masks(model, sparsity, seed=seed, rescale=rescale)
                attached = attach_cka_loss(model, groups, loss)
                attached.compile(
                    "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                )
                monitor = CKAGradientMonitor(x, y, groups, loss)
                monitor.set_model(attached)
                ratios.append(monitor.measure())
            values = np.array([list(r.values()) for r in ratios])
            row = {
                "sparsity": sparsity,
                "rescale": rescale,
                "seeds": args.seeds,
                # The head after the last tapped layer gets no penalty gradient (ratio 0).
                "min": float(values[values > 0].min()),
                "max": float(values.max()),
                "per_kernel_mean_over_seeds": dict(zip(ratios[0], values.mean(axis=0).tolist())),
            }
            rows.append(row)
            print(
                f"sparsity {sparsity:.2f}  rescale {'yes' if rescale else 'no ':3}  "
                f"ratio min {row['min']:.3g}  max {row['max']:.3g}",
                flush=True,
            )
    payload = {"machine": _common.machine(), "weight": args.weight, "rows": rows}
    _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
