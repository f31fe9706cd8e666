"""Shared helpers of the benchmark scripts: backend selection, timing, JSON output."""

import argparse
import json
import os
import platform
import statistics
import sys
import time


def parser(description, steps=10, warmup=3):
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--backend",
        default=os.environ.get("KERAS_BACKEND", "jax"),
        choices=["tensorflow", "jax", "torch"],
    )
    p.add_argument("--steps", type=int, default=steps, help="timed repetitions")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed repetitions (compilation)")
    p.add_argument("--json", default=None, help="write the results here")
    return p


def select_backend(name):
    """Must run before keras is imported."""
    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != name:
        raise RuntimeError("select_backend must be called before importing keras")
    os.environ["KERAS_BACKEND"] = name
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def block(value):
    """Waits for every tensor in `value` (JAX dispatches asynchronously)."""
    import keras

    for leaf in keras.tree.flatten(value):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
        elif hasattr(leaf, "detach"):
            leaf.detach().cpu()
        elif hasattr(leaf, "numpy"):
            leaf.numpy()
    return value


def time_call(fn, steps, warmup):
    """Median seconds of `fn()` over `steps` runs after `warmup` runs."""
    for _ in range(warmup):
        block(fn())
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_step_times(models, xs, ys, steps, rounds):
    """Per model, the median over `rounds` of its mean `train_on_batch` time over `steps`
    batches. Rounds interleave the models, so drift in the machine's speed hits all alike,
    in reverse order every other round, so that no model always runs first; the mean (not
    median) over steps counts the one step in N that pays a penalty."""
    times = [[] for _ in models]
    for round_ in range(rounds):
        order = range(len(models)) if round_ % 2 == 0 else reversed(range(len(models)))
        for i in order:
            model = models[i]
            total = 0.0
            for step in range(steps):
                start = time.perf_counter()
                model.train_on_batch(xs[step], ys[step])
                total += time.perf_counter() - start
            times[i].append(total / steps)
    return [statistics.median(t) for t in times], times


def machine():
    import keras

    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    try:
        import jax

        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception:  # jax is optional
        pass
    return info


def median_of_means(runners, invokes, warmup, rounds):
    """Seconds per call of each `runners[name]()`: after `warmup` calls each, `rounds` rounds
    that run every runner `invokes` times in turn (interleaved, so drift hits all alike);
    the median over rounds of each round's mean."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    samples = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            for _ in range(invokes):
                run()
            samples[name].append((time.perf_counter() - start) / invokes)
    return {name: statistics.median(values) for name, values in samples.items()}


def write_json(path, payload):
    if path:
        with open(path, "w") as handle:
            json.dump(payload, handle, indent=1)
        print(f"wrote {path}")
