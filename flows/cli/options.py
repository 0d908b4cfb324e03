"""What the commands share: the global --store, --json, printing a result, and `cli_model`, the
stages' Params models as flags.

cyclopts flattens a pydantic model into one `--field-name` flag per field, with the field's
description and default as help (`Annotated[Model, Parameter(name="*")]`), and hands the strings
to pydantic to validate. What it reads only from a field's own annotation (an alias, a name, a
parser, no --no-x for a switch) `cli_model` adds on a subclass built here, so the Params modules
stay free of cyclopts; `params` turns a parsed subclass back into the model itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

from cyclopts import Group, Parameter
from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo

JsonFlag = Annotated[bool, Parameter(name="--json", negative=(), show_default=False,
                                     help="Machine-readable output.")]
Switch = Annotated[bool, Parameter(negative=(), show_default=False)]
"""A flag that defaults to off: `--x`, without `--no-x`."""
StoreRoot = Annotated[str | None, Parameter(parse=False)]
"""The global --store: the launcher (`flows.cli.commands`) passes it to every command that takes a
`store` parameter of this type."""
VerboseFlag = Annotated[bool, Parameter(parse=False)]
"""The global -v/--verbose, passed on like --store; a command takes it to say more than
TensorFlow's log lines (a build: its failed items one by one)."""

_Model = TypeVar("_Model", bound=BaseModel)


def emit(as_json: bool, payload: Any, human: Callable[[Any], str]) -> None:
    """Print `payload` as indented JSON, or as `human` formats it."""
    print(json.dumps(payload, indent=2, sort_keys=True, default=str) if as_json else human(payload))


def cli_model(model: type[_Model], flags: Mapping[str, Sequence[object]] | None = None,
              **defaults: Any) -> type[_Model]:
    """`model` as the command line sees it: a subclass whose fields carry `flags` (per field,
    cyclopts Parameters and pydantic validators added to its annotation) and `defaults` (new
    field defaults, e.g. fine-tuning's preset). A bool field that defaults to False is a plain
    switch (`--x`, no `--no-x`)."""
    unknown = set(defaults) - set(model.model_fields)
    if unknown:
        raise TypeError(f"{model.__name__} has no fields {sorted(unknown)}")
    fields: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        extra = list((flags or {}).get(name, ()))
        if field.annotation is bool and field.default is False:
            extra.insert(0, Parameter(negative=(), show_default=False))
        if extra or name in defaults:
            info = FieldInfo.merge_field_infos(field, default=defaults[name]) if name in defaults else field
            fields[name] = (Annotated[(field.annotation, *extra)] if extra else field.annotation, info)
    return create_model(model.__name__, __base__=model, __doc__=model.__doc__, **fields)


def panel(title: str, order: int) -> Parameter:
    """Annotation of a `cli_model` parameter: the model's fields as flags (`--field-name`, not
    `--parameter.field-name`), under a help panel of their own (`order`: the panels' order, after
    the command's own parameters)."""
    return Parameter(name="*", group=Group(title, sort_key=order))


def params(parsed: _Model, **updates: Any) -> _Model:
    """The Params model itself (the base of `parsed`'s `cli_model` class) from what a command
    parsed, with `updates` (e.g. the global --store)."""
    [model] = type(parsed).__bases__
    return model.model_validate({**parsed.model_dump(), **updates})


def lr_phases(value: Any) -> Any:
    """pydantic before-validator of --lr-phases: "EPOCHS@LR[,EPOCHS@LR...]", the flag repeatable,
    into [(epochs, lr), ...]; anything else goes on to the field's own validation."""
    if not value or not isinstance(value, list) or not all(isinstance(text, str) for text in value):
        return value
    phases = []
    for phase in ",".join(value).split(","):
        epochs, _, lr = phase.partition("@")
        try:
            phases.append((int(epochs), float(lr)))
        except ValueError:
            raise ValueError(f"{phase!r} is not EPOCHS@LR (e.g. 15@4e-5,135@1e-5)") from None
    return phases
