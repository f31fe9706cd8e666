"""CKA-SR in a subclassed model: call the penalty inside `call`.

`attach_cka_loss` needs a functional graph; in a subclassed model, route the tapped
features through a `CKARegularization` layer (it adds the loss with `self.add_loss` in
training and keeps the step counter for `every_n_steps`). `CKASRMixin` adds the
`cka_sr` metric to the logs.

    python examples/subclassed_model.py --epochs 3
"""

import argparse

import keras

import keras_cka_sr
from keras_cka_sr.app import datasets


class ConvNet(keras_cka_sr.CKASRMixin, keras.Model):
    def __init__(self, num_classes=10, beta=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [keras.layers.Conv2D(16, 3, activation="relu") for _ in range(3)]
        self.cka_sr = keras_cka_sr.CKARegularization(
            keras_cka_sr.CKASimilarityLoss(weight=beta, num_samples=8, every_n_steps=5)
        )
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(num_classes)

    def call(self, x, training=False):
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        x = self.cka_sr(features, passthrough=x, training=training)
        return self.head(self.pool(x))


class ConvNetPlainAddLoss(keras.Model):
    """The same without the helper layer: `self.add_loss` directly (every step)."""

    def __init__(self, beta=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [keras.layers.Conv2D(16, 3, activation="relu") for _ in range(3)]
        self.penalty = keras_cka_sr.CKASimilarityLoss(weight=beta, num_samples=8)
        self.head = keras.Sequential(
            [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
        )

    def call(self, x, training=False):
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        if training:
            self.add_loss(self.penalty(features))
        return self.head(x)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--subset", type=int, default=None)
    args = parser.parse_args(argv)
    data = datasets.load("mnist5k")
    x, y = data.x_train[: args.subset], data.y_train[: args.subset]
    results = {}
    for model in (ConvNet(), ConvNetPlainAddLoss()):
        model.compile(
            "adam",
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        history = model.fit(x, y, epochs=args.epochs, batch_size=64, verbose=2)
        results[type(model).__name__] = history.history
    return results


if __name__ == "__main__":
    main()
