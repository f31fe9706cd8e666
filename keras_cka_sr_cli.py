"""The `keras-cka-sr` console script: parses the command line before anything imports Keras
(`--help` and usage errors answer in well under a second), then imports Keras and its
backend quietly (`keras_cka_sr._startup`) and runs the main job (`keras_cka_sr.app.cli`).

A top-level module, not part of the package: the package's `__init__` imports Keras (it
registers the serializable classes). The command line's modules import no Keras, so they are
loaded below the package without running its `__init__` (`_below_package_init`); the package
is imported afterwards, and those modules are attached to it as if it had loaded them.
`python -m keras_cka_sr_cli` is the same command.
"""

import contextlib
import importlib.util
import sys
import types

_PACKAGE = "keras_cka_sr"


@contextlib.contextmanager
def _below_package_init():
    """Within: `keras_cka_sr.x` imports load the modules, but not the package's `__init__`
    (a stand-in package module with the real search path is in `sys.modules`). The
    submodules loaded stay; the stand-in goes."""
    if _PACKAGE in sys.modules:  # already imported (e.g. in a test): nothing to avoid
        yield
        return
    spec = importlib.util.find_spec(_PACKAGE)  # locates the package, runs nothing
    stand_in = types.ModuleType(_PACKAGE)
    stand_in.__path__ = list(spec.submodule_search_locations)
    stand_in.__spec__ = spec
    sys.modules[_PACKAGE] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(_PACKAGE) is stand_in:
            del sys.modules[_PACKAGE]


def _import_package():
    """Imports the package for real, and binds the submodules loaded below its `__init__`
    as attributes of their parents (as an ordinary import does)."""
    importlib.import_module(_PACKAGE)
    for name in sorted(n for n in sys.modules if n.startswith(_PACKAGE + ".")):
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and not hasattr(sys.modules[parent], child):
            setattr(sys.modules[parent], child, sys.modules[name])


def main(argv=None) -> int:
    """Entry point of `keras-cka-sr`: parse, the quiet start-up, then run."""
    with _below_package_init():
        from keras_cka_sr import _startup
        from keras_cka_sr.app import cli

        args = cli.parse(argv)
    _startup.import_backend_quietly()
    _import_package()
    return cli.execute(args)


if __name__ == "__main__":
    sys.exit(main())
