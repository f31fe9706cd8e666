"""One source for the main job's run configuration: each `RunConfig` field is declared once
with `option(...)` (default, check, choices, help), and the command line, its `--help`, the
validation and the construction of every run are generated from those declarations.

Adding an option is one line in `run_config.RunConfig`. Checks that involve several fields
(a method's sparsity range, the batch size CKA-SR needs) stay in `RunConfig.__post_init__`.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from keras_cka_sr._validation import check_bool, check_float, check_int

_UNSET = object()


def option(
    default: Any,
    help: str,
    *,
    check: Callable[[str, Any], Any] | None = None,
    parse: Callable[[str, Any], Any] | None = None,
    choices: Sequence | Callable[[], Sequence] | None = None,
    flag: str | None = None,
    grid: bool = False,
    cli_default: Any = _UNSET,
    recipe: bool = False,
    cli: bool = True,
) -> Any:
    """A `RunConfig` field and its command-line flag.

    Args:
        default: the field's default.
        help: the flag's help text (its default is appended once).
        check: `check(name, value) -> value` (e.g. `ints(minimum=1)`); raises a
            `TypeError`/`ValueError` naming the field.
        parse: the flag's check where it differs from the field's (or the field has none:
            its check involves other fields).
        choices: the allowed values, or a function returning them (registries filled
            at import time).
        flag: the flag's name (default `--field-name`).
        grid: the flag takes several values, one run per value (`--seeds 0 1 2`).
        cli_default: the flag's default where it differs from the field's.
        recipe: the flag's default comes from `--recipe` when not given.
        cli: False for a field with no flag.
    """
    metadata = dict(
        help=help,
        check=check,
        parse=parse,
        choices=choices,
        flag=flag,
        grid=grid,
        cli_default=cli_default,
        recipe=recipe,
        cli=cli,
    )
    return dataclasses.field(default=default, metadata=metadata)


def ints(minimum: int | None = None, maximum: int | None = None):
    """A check: an int in [minimum, maximum]."""
    return lambda name, value: check_int(name, value, minimum, maximum)


def floats(minimum=None, maximum=None, min_inclusive=True, max_inclusive=True, optional=False):
    """A check: a finite number in the range (None allowed when `optional`)."""

    def check(name, value):
        if optional and value is None:
            return None
        return check_float(name, value, minimum, maximum, min_inclusive, max_inclusive)

    check.parses_float = True
    return check


def booleans():
    """A check: a bool."""
    return check_bool


def choices_of(field: dataclasses.Field) -> tuple | None:
    choices = field.metadata.get("choices")
    if callable(choices):
        choices = choices()
    return None if choices is None else tuple(choices)


def validate(config) -> None:
    """Applies every field's check and choices, in declaration order."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        allowed = choices_of(field)
        if allowed is not None and value not in allowed:
            raise ValueError(f"`{field.name}` must be one of {allowed}; got {value!r}.")
        check = field.metadata.get("check")
        if check is not None:
            setattr(config, field.name, check(field.name, value))


def flag_name(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def cli_default(field: dataclasses.Field):
    """The flag's default: None for recipe fields (resolved later), else the field's."""
    if field.metadata.get("recipe"):
        return None
    value = field.metadata.get("cli_default", _UNSET)
    return field.default if value is _UNSET else value


def shown_default(field: dataclasses.Field, recipe_defaults: dict) -> str:
    value = field.default if field.metadata.get("recipe") else cli_default(field)
    if field.metadata.get("recipe") and field.name in recipe_defaults:
        return f"{value}; --recipe paper: {recipe_defaults[field.name]}"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def resolve(field: dataclasses.Field, given, recipe_defaults: dict):
    """A flag's value for the run: as given, else the recipe's, else the field's default."""
    if given is not None or not field.metadata.get("recipe"):
        return given
    return recipe_defaults.get(field.name, field.default)
