"""`sparsity_summary`: what is pruned, where and how much, per prunable weight."""

import dataclasses
import math

import keras
import numpy as np

from keras_cka_sr._numpy import to_numpy
from keras_cka_sr.pruning import masks as mask_math
from keras_cka_sr.pruning import registry
from keras_cka_sr.pruning.wrapper import collect_prunable_layers


@dataclasses.dataclass(frozen=True)
class WeightSparsity:
    """One prunable weight: the path of the layer holding it (names from the model down,
    `backbone/transformer_layer_0/self_attention/query`), its name, shape, parameter
    count, nonzeros (of the weight as the forward pass uses it: `weight * mask` when
    wrapped), sparsity and
    pattern ("dense", "unstructured", "block HxW", "M:N", or "unstructured
    (2:4-compatible)": a weight not pruned m:n whose values happen to hold 2 zeros in every 4
    input channels), and whether a mask holds it.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> row = pruning.sparsity_summary(model).rows[0]
        >>> row.layer, row.weight, row.shape, row.params, row.pattern, row.masked
        ('a', 'kernel', (8, 16), 128, 'dense', False)
    """

    layer: str
    weight: str
    shape: tuple
    params: int
    nonzeros: int
    sparsity: float
    pattern: str
    masked: bool


@dataclasses.dataclass(frozen=True)
class SparsitySummary:
    """Rows per prunable weight and their totals; `str()` is the table (`print(summary)`).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> summary = pruning.sparsity_summary(model)
        >>> print(str(summary).splitlines()[0])
        layer  weight  shape  params  nonzeros  sparsity  pattern
        >>> summary.to_dict()["params"]
        432
    """

    rows: tuple

    @property
    def params(self) -> int:
        return sum(row.params for row in self.rows)

    @property
    def nonzeros(self) -> int:
        return sum(row.nonzeros for row in self.rows)

    @property
    def sparsity(self) -> float:
        """Zeros over all prunable weights (NaN for a model without any)."""
        return 1.0 - self.nonzeros / self.params if self.params else math.nan

    def to_dict(self) -> dict:
        """Plain Python types (for strict JSON): the rows and the totals (`sparsity` None for
        a model with nothing prunable)."""
        return {
            "rows": [dict(dataclasses.asdict(row), shape=list(row.shape)) for row in self.rows],
            "params": self.params,
            "nonzeros": self.nonzeros,
            "sparsity": None if math.isnan(self.sparsity) else self.sparsity,  # strict JSON
        }

    def __str__(self) -> str:
        header = ("layer", "weight", "shape", "params", "nonzeros", "sparsity", "pattern")
        cells = [
            (
                row.layer,
                row.weight,
                "x".join(map(str, row.shape)),
                f"{row.params:,}",
                f"{row.nonzeros:,}",
                f"{100 * row.sparsity:.2f}%",
                row.pattern,
            )
            for row in self.rows
        ]
        total = ("total", "", "", f"{self.params:,}", f"{self.nonzeros:,}", "", "")
        if self.rows:
            total = total[:5] + (f"{100 * self.sparsity:.2f}%", "")
        widths = [max(len(r[i]) for r in [header, *cells, total]) for i in range(len(header))]
        right = {3, 4, 5}

        def line(cells):
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        rule = "-" * len(line(header))
        return "\n".join([line(header), rule, *map(line, cells), rule, line(total)])


def sparsity_summary(model: keras.Model) -> SparsitySummary:
    """Per prunable weight of `model` (wrapped by `prune_low_magnitude`, stripped, or a plain
    Keras model: the weights the pruning registry would prune), how sparse it is.

    Wrapped weights are read as the forward pass uses them (`weight * mask`) and their
    pattern comes from the wrapper (block size, m:n); plain weights are read from their
    values (a 2:4-compatible pattern is recognized there, blocks are not). Like tfmot's
    `strip_pruning` and `check_sparsity_m_by_n`, a host-side read: call it outside a
    train step. `print(sparsity_summary(model))` prints the table.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> summary = pruning.sparsity_summary(model)
        >>> summary.params, summary.sparsity, [row.layer for row in summary.rows]
        (432, 0.0, ['a', 'b', 'head'])
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model; got {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built: call it on data or build it first, then "
            "summarize its sparsity."
        )
    wrappers = {id(w.layer): w for w in collect_prunable_layers(model)}
    rows = []
    for kernel in registry.prunable_kernels(model):
        if kernel.mask is not None:
            values = to_numpy(kernel.variable) * to_numpy(kernel.mask)
            pattern = _wrapper_pattern(wrappers[id(kernel.layer)], values)
            rows.append(_row(kernel.path, kernel.variable, values, pattern))
        else:
            values = to_numpy(kernel.variable)
            pattern = _value_pattern(values)
            rows.append(_row(kernel.path, kernel.variable, values, pattern, masked=False))
    return SparsitySummary(tuple(rows))


def _row(layer_name, variable, values, pattern, masked=True):
    params = int(values.size)
    nonzeros = int(np.count_nonzero(values))
    sparsity = 1.0 - nonzeros / params if params else 0.0
    if sparsity == 0.0 and pattern == "unstructured":
        pattern = "dense"
    return WeightSparsity(
        layer=layer_name,
        weight=variable.name,
        shape=tuple(int(d) for d in values.shape),
        params=params,
        nonzeros=nonzeros,
        sparsity=sparsity,
        pattern=pattern,
        masked=masked,
    )


def _wrapper_pattern(wrapper, values):
    if wrapper.sparsity_m_by_n is not None:
        return "{}:{}".format(*wrapper.sparsity_m_by_n)
    if wrapper.block_size != (1, 1):
        return "block {}x{}".format(*wrapper.block_size)
    return _value_pattern(values)


def _value_pattern(values):
    if values.ndim in (2, 4) and np.count_nonzero(values) < values.size:
        if mask_math.is_pruned_m_by_n(values, (2, 4)):
            return "unstructured (2:4-compatible)"
    return "unstructured"
