"""ResNet-20 on CIFAR-10 with random static sparsity (ERK) and CKA-SR, as in the paper.

Needs CIFAR-10 prepared for tensorflow-datasets in --data-dir (no download at run time):

    python examples/cifar10_resnet20.py --data-dir ~/tensorflow_datasets --sparsity 0.95

The paper reports 84.16 -> 85.03 at sparsity 0.95 with beta 8e-4 (160 epochs, SGD).
"""

import argparse

from keras_cka_sr.app import datasets, experiment, run_config


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--beta", type=float, default=8e-4)
    parser.add_argument("--epochs", type=int, default=160)
    args = parser.parse_args(argv)
    data = datasets.load("cifar10", data_dir=args.data_dir)
    for beta in (0.0, args.beta):
        config = run_config.RunConfig(
            model="resnet20",
            method="rst",
            sparsity=args.sparsity,
            cka_weight=beta,
            cka_samples=8,
            cka_every=5,
            epochs=args.epochs,
            batch_size=128,
            verbose=2,
        )
        result = experiment.run(config, data)
        print(
            f"beta={beta:g}: test accuracy {result.test_accuracy:.4f}, "
            f"sparsity {result.sparsity:.4f}, mean CKA {result.cka_mean:.3f}"
        )


if __name__ == "__main__":
    main()
