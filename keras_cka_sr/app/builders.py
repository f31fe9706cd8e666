"""Name -> builder registries: the main job's data sets, models and sparse training methods.

Adding one is one function and one decorator::

    from keras_cka_sr.app import zoo

    @zoo.MODELS.register("tiny_cnn")
    def tiny_cnn(input_shape, num_classes, width):
        ...  # a functional keras.Model whose tapped layers are named tap_*
"""

from collections.abc import Callable


class Registry:
    """Builders by name, in registration order."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[Callable], Callable]:
        """A decorator that registers the function under `name` (a new name)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"A {self.kind} name must be a non-empty string; got {name!r}.")
        if name in self._builders:
            raise ValueError(f"A {self.kind} named {name!r} is already registered.")

        def decorate(builder):
            self._builders[name] = builder
            return builder

        return decorate

    def get(self, name: str, argument: str | None = None) -> Callable:
        """The builder registered as `name`; a ValueError, naming `argument` (default: the
        kind), lists the names there are."""
        if name not in self._builders:
            raise ValueError(
                f"`{argument or self.kind}` must be one of {self.names()}; got {name!r}."
            )
        return self._builders[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._builders)

    def __contains__(self, name) -> bool:
        return name in self._builders
