import getpass
import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# JAX's persistent compilation cache, shared by the xdist workers and the subprocesses the
# tests start: many tests compile the same small programs (a cold run of tests/core: 11%
# less time). It caches compiled code only: a hit runs the program a miss would compile.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"keras-cka-sr-tests-jax-cache-{getpass.getuser()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# XLA:CPU's back end at LLVM optimization level 0 (JAX, and TensorFlow under jit_compile):
# the tests' programs are tiny and most run a few times, so compiling them dominates (the
# GPU script's compile-bound training part: 52 -> 37 s). XLA's semantics are the same at
# every level. A user's own XLA_FLAGS are left alone.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
# pytest-xdist workers share the cores: one math thread per worker (and per subprocess it
# starts) beats several oversubscribed pools (torch, tests/core and the benchmark scripts
# with -n 3 on 2 cores: 122 -> 89 s). Settings the user made win.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_collection_modifyitems(items):
    """`slow` tests first: xdist hands tests out in collection order, and a long test
    collected last keeps one worker busy after the other has run out of work."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
