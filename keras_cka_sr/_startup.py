"""The quiet start-up of the main job: Keras and its backend imported with their start-up
log silenced (TensorFlow's and absl's lines, written to the process's stderr by C++ before any
Python logging exists, so only a file-descriptor redirect catches them), and TensorFlow's
retracing false alarm dropped.

Used by the `keras-cka-sr` console script (`keras_cka_sr_cli`) before the package loads, and
by the package itself when it is run as `python -m keras_cka_sr` (`quiet_if_run_as_module`).
Standard library only: this module is imported before Keras.
"""

import contextlib
import importlib.util
import logging
import os
import sys
import tempfile

# TensorFlow's C++ log level. A user who sets it to 0 (everything) sees the start-up log; any
# other value is kept for later and the start-up log is silenced as without it.
_USER_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


@contextlib.contextmanager
def _stderr_to_file():
    """Sends file descriptor 2 to a temporary file; on an exception, replays what was
    written there to stderr before the exception propagates."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _NotRetracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning. TensorFlow counts
    traces by the traced function's code, not by function object, so the main job, which
    builds new models for every run, makes Keras' train and test functions (and our probe
    gradients) trace once per model from the same code, and TensorFlow reports that as
    retracing from the fifth run on. No function retraces for one model (tested)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def quiet_retracing_warnings() -> None:
    """Installs `_NotRetracing` on the `tensorflow` logger (once)."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _NotRetracing) for f in logger.filters):
        logger.addFilter(_NotRetracing())


def import_backend_quietly() -> bool:
    """Imports Keras, its backend and the backend's devices with their start-up log
    silenced; returns whether it silenced anything (False when Keras was already imported
    or the user set `TF_CPP_MIN_LOG_LEVEL=0`). TensorFlow's later C++ log is kept at
    warnings and errors only (level 2 hides its info lines) unless the user set a level.
    Also drops TensorFlow's retracing warning, a false alarm in a multi-run job."""
    quiet_retracing_warnings()
    if "keras" in sys.modules or os.environ.get(_USER_LEVEL) == "0":
        return False
    os.environ.setdefault(_USER_LEVEL, "2")
    with _stderr_to_file():
        import keras

        # On every backend: Keras' data adapters and the data sets import TensorFlow
        # when it is installed, so its start-up log would come later otherwise.
        if importlib.util.find_spec("tensorflow") is not None:
            import tensorflow as tf

            tf.config.list_physical_devices()
        if keras.backend.backend() == "jax":
            import jax

            jax.devices()
    return True


def quiet_if_run_as_module() -> None:
    """The quiet start-up when the package is being run as `python -m keras_cka_sr`: Python
    sets `sys.argv[0]` to "-m" while it imports the package of the module it will run (the
    `-m` option's documented behaviour), and the package imports Keras."""
    if sys.argv[:1] == ["-m"] and "keras" not in sys.modules:
        import_backend_quietly()
