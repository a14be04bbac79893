"""The click parameter types of deployer's flags: a duration read as kubectl reads one, and a repeatable option
whose DEPLOYER_* variable holds one value per line; and the option decorator that gives every flag its
DEPLOYER_* variable.

Part of the command line (deployer/cli.py), kept apart so that the CLI module stays about its commands. Imports
nothing heavy: ``deployer --help`` must stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from deployer.errors import OptionError
from deployer.settings import MAX_DURATION_SECONDS, format_duration, parse_duration

F = TypeVar("F", bound=Callable[..., Any])


# click 8.5 made ParamType generic; subscripting it would break older clicks at run time.
class Duration(click.ParamType):  # type: ignore[type-arg]
    """A duration flag, at most ``maximum`` and at least ``minimum`` seconds (0 aside, whose meaning each
    flag states)."""

    name = "duration"

    def __init__(self, maximum: float = MAX_DURATION_SECONDS, minimum: float = 0.0) -> None:
        self.maximum = maximum
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            seconds = parse_duration(str(value), param.opts[0] if param else "duration", self.maximum)
        except OptionError as e:
            self.fail(e.problem, param, ctx)
        if seconds < self.minimum:
            shortest = format_duration(self.minimum)
            self.fail(f"{str(value).strip()!r} is shorter than the minimum of {shortest}", param, ctx)
        return seconds


class ListFromEnv(click.ParamType):  # type: ignore[type-arg]
    """A string option given many times; from its variable, one value per line (or per word if one line)."""

    name = "text"

    def __init__(self, metavar: str) -> None:
        self.metavar = metavar

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.metavar

    def split_envvar_value(self, rv: str) -> Sequence[str]:
        lines = [line.strip() for line in rv.splitlines() if line.strip()]
        return lines if len(lines) > 1 else rv.split()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return str(value)


def option(*names: str, env: str | list[str] | None = None, **kwargs: Any) -> Callable[[F], F]:
    """A click option whose DEPLOYER_* variable is derived from its long name unless given."""
    long_name = next(name for name in names if name.startswith("--")).split("/")[0]
    variable = env if env is not None else "DEPLOYER_" + long_name[2:].upper().replace("-", "_")
    return click.option(*names, envvar=variable, show_envvar=True, **kwargs)


def compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several option decorators as one: a group of flags that commands share."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply
