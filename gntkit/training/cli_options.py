"""`gntkit train`'s options, made from TrainConfig's fields (imports typer, a core dependency).

`with_train_options(command)` adds one typer option per TrainConfig field to a
command function that takes `**options`: the option's type, help, choices and
default text all come from the field, so nothing is listed twice. Every added
option defaults to None ("not given"), so a resumed run keeps its stored value.
"""

from __future__ import annotations

import inspect
from typing import Annotated

import typer

from gntkit.training.config import option_fields, option_help, option_type

__all__ = ["with_train_options"]


def _parameter(field) -> inspect.Parameter:
    flag = field.metadata.get("flag")
    names = [flag] if flag else []
    info = typer.Option(*names, help=option_help(field), show_default=False)
    annotation = Annotated[option_type(field) | None, info]
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def with_train_options(command):
    """Give `command(..., **options)` one CLI option per TrainConfig field; options it gets are the given ones.

    Returns:
        A function with the combined signature for typer; it calls `command` with
        the options that were given (not None) in `**options`.
    """
    own = inspect.signature(command, eval_str=True)  # cli/main.py annotations are strings
    kept = [p for p in own.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    added = [_parameter(f) for f in option_fields() if f.name not in own.parameters]
    names = {p.name for p in added}

    def wrapper(**kwargs):
        """The command, called with the TrainConfig options that were given."""
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in names and kwargs[k] is not None}
        return command(**kwargs, **options)

    wrapper.__signature__ = own.replace(parameters=kept + added)
    wrapper.__annotations__ = {p.name: p.annotation for p in kept + added}
    wrapper.__name__ = command.__name__
    wrapper.__doc__ = command.__doc__
    return wrapper
