"""Every public class and function of `keras_cka_sr`, `keras_cka_sr.cka`,
`keras_cka_sr.pruning`, `keras_cka_sr.sparse` and `keras_cka_sr.structured` has an `Examples:` section, and each runs
(doctest, on the backend of this session) with the output it shows.

The examples assume `import keras, numpy as np, keras_cka_sr` and
`from keras_cka_sr import cka, pruning, sparse, structured`, as the API page says."""

import doctest
import inspect
import types

import keras
import numpy as np
import pytest

import keras_cka_sr
from keras_cka_sr import cka, pruning, sparse, structured

MODULES = (keras_cka_sr, cka, pruning, sparse, structured)


def _public(module):
    names = getattr(module, "__all__", None)
    if names is None:  # cka: its own public functions
        names = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and inspect.isfunction(v) and v.__module__ == module.__name__
        ]
    for name in names:
        value = getattr(module, name)
        if isinstance(value, types.ModuleType) or not callable(value):
            continue  # submodules (listed on their own) and constants
        yield f"{module.__name__}.{name}", value


PUBLIC = dict(item for module in MODULES for item in _public(module))


def test_every_public_name_has_an_example():
    missing = [name for name, value in PUBLIC.items() if ">>>" not in (value.__doc__ or "")]
    assert missing == []


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_example_runs(name):
    globs = dict(keras=keras, np=np, keras_cka_sr=keras_cka_sr, cka=cka, pruning=pruning,
                 sparse=sparse, structured=structured)  # fmt: skip
    keras.utils.set_random_seed(0)
    finder = doctest.DocTestFinder(recurse=False)
    [test] = finder.find(PUBLIC[name], name, globs=globs)
    output = []
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    result = runner.run(test, out=output.append)
    assert result.failed == 0, "".join(output)
