"""Loads a script of the repository (examples/, benchmarks/) as a module, to call its main."""

import importlib.util
import os

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def load_script(folder, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, folder, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
