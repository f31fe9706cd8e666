"""Package-wide guards: the public API, the only door to private Keras, the layering."""

import pathlib
import re

import keras_cka_sr

PACKAGE = pathlib.Path(keras_cka_sr.__file__).parent


def test_public_api():
    from keras_cka_sr import callbacks, layers, losses, models

    assert keras_cka_sr.CKASimilarityLoss is losses.CKASimilarityLoss
    assert keras_cka_sr.CKARegularization is layers.CKARegularization
    assert keras_cka_sr.attach_cka_loss is models.attach_cka_loss
    assert keras_cka_sr.feature_model is models.feature_model
    assert keras_cka_sr.CKAMonitor is callbacks.CKAMonitor
    assert keras_cka_sr.CKAGradientMonitor is callbacks.CKAGradientMonitor
    assert keras_cka_sr.CKASRModel is models.CKASRModel
    assert set(keras_cka_sr.__all__) <= set(dir(keras_cka_sr))
    assert isinstance(keras_cka_sr.__version__, str) and keras_cka_sr.__version__[0].isdigit()


def test_no_private_keras_outside_the_compat_module():
    package = PACKAGE
    private = re.compile(
        r"keras\.src|\._flatten_layers|\._inputs_struct|\._run_through_graph"
        r"|\._standardize_inputs|\._train_writer|\._(query|key|value|output)_dense"
    )
    offenders = [
        f"{path.relative_to(package)}:{number}"
        for path in package.rglob("*.py")
        if path.name != "_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert offenders == []


def test_the_library_never_imports_the_application():
    """`keras_cka_sr.app` (the main job) builds on the library, never the other way."""
    uses_app = re.compile(r"keras_cka_sr\.app\b|from keras_cka_sr import .*\bapp\b")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if "app" not in path.relative_to(PACKAGE).parts and path.name != "__main__.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if uses_app.search(line)
    ]
    assert offenders == []
