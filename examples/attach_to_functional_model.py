"""Attach CKA-SR to your own functional model and train it on the MNIST-5k digits.

python examples/attach_to_functional_model.py --epochs 5
"""

import argparse

import keras

import keras_cka_sr
from keras_cka_sr.app import datasets


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--subset", type=int, default=None)
    args = parser.parse_args(argv)

    data = datasets.load("mnist5k")
    x, y = data.x_train[: args.subset], data.y_train[: args.subset]

    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(16, 3, activation="relu", name="block1")(inputs)
    h = keras.layers.Conv2D(16, 3, activation="relu", name="block2")(h)
    h = keras.layers.Conv2D(16, 3, activation="relu", name="block3")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(10)(h))

    # beta = 1e-3; penalty on the first 8 samples of every 5th batch (reference defaults).
    loss = keras_cka_sr.CKASimilarityLoss(weight=1e-3, num_samples=8, every_n_steps=5)
    trained = keras_cka_sr.attach_cka_loss(model, ["block1", "block2", "block3"], loss)
    trained.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    history = trained.fit(x, y, epochs=args.epochs, batch_size=64, verbose=2)
    print("cka_sr per epoch:", [round(v, 6) for v in history.history["cka_sr"]])
    # `model` shares the trained weights and has no penalty layer: evaluate or export it.
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    print("test accuracy:", model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    return history


if __name__ == "__main__":
    main()
