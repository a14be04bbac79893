"""GitHub Actions workflow commands, as the runner reads them.

Pure: strings in, command lines out. Owns the ``::command::`` lines deployer writes (``::group::``,
``::error file=...::``, ``::warning::``, ``::add-mask::``, ``::stop-commands::``) with the runner's escaping
rules, and the fence that keeps the runner from obeying commands in text deployer did not write.

Must not: print (deployer/console.py writes these lines, in order, under its lock), write the runner's
files (deployer/github_actions.py), or decide what is secret (callers mask what they hold).

The runner reads a step's stdout and stderr line by line (.NET ``ReadLine``: a line ends at ``\n``, ``\r``
or ``\r\n``) and looks for a command in any line holding ``::`` or ``##[``: ``::name k=v,k=v::data`` once
leading white space is trimmed, or the legacy ``##[name k=v;k=v]data`` anywhere in the line; command names
are compared without case. ``::stop-commands::TOKEN`` makes it ignore every command until a line
``::TOKEN::``, and the state is shared by both streams.

Escaping follows the runner (actions/runner, ``ActionCommand``): in a message ``%``, ``\\r`` and ``\\n``
become ``%25``, ``%0D`` and ``%0A``; a property value additionally escapes ``:`` and ``,`` as ``%3A`` and
``%2C``, since those delimit properties.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Literal

AnnotationLevel = Literal["error", "warning", "notice"]


def is_github_actions(env: Mapping[str, str]) -> bool:
    """True when running as a step of a GitHub Actions job (the runner sets GITHUB_ACTIONS=true)."""
    return env.get("GITHUB_ACTIONS", "").lower() == "true"


# --- escaping ----------------------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """Escape a command's message so the runner reads it back unchanged, newlines included."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a command property value (``file=``, ``title=``...): also ``:`` and ``,`` that delimit them."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", properties: Mapping[str, str | int | None] | None = None) -> str:
    """One workflow command line: ``::name key=value,key=value::message``; None properties are left out."""
    given = [(key, value) for key, value in (properties or {}).items() if value is not None and value != ""]
    rendered = ",".join(f"{key}={escape_property(str(value))}" for key, value in given)
    head = f"{name} {rendered}" if rendered else name
    return f"::{head}::{escape_data(message)}"


# --- commands ----------------------------------------------------------------------------------------


def mask(value: str) -> list[str]:
    """``::add-mask::`` lines that hide ``value`` in the job log.

    The runner masks text line by line, so a multi-line secret (a private key, a kubeconfig token block)
    is registered line by line as well as whole; blank lines are skipped because masking "" is meaningless.
    Callers mask the secret parts they hold, not a whole kubeconfig, whose ordinary lines would then be
    starred out everywhere.
    """
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    pieces = [value] if len(lines) <= 1 else [value, *lines]
    return [command("add-mask", piece) for piece in dict.fromkeys(pieces) if piece.strip()]


def annotation(
    level: AnnotationLevel,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    col: int | None = None,
    end_line: int | None = None,
    end_column: int | None = None,
    title: str | None = None,
) -> str:
    """An ``::error``/``::warning``/``::notice`` line, attached to a file position when given."""
    properties: dict[str, str | int | None] = {
        "file": file,
        "line": line,
        "endLine": end_line,
        "col": col,
        "endColumn": end_column,
        "title": title,
    }
    return command(level, message, properties)


# GitHub shows an annotation's first lines and truncates long ones; longer messages are cut to this many
# characters, and the whole message goes to the log.
ANNOTATION_MESSAGE_LIMIT = 500


def annotation_message(message: str, limit: int = ANNOTATION_MESSAGE_LIMIT) -> str:
    """``message`` as an annotation shows it: unchanged when short, else cut, saying the log has the rest."""
    if len(message) <= limit:
        return message
    note = " … (cut: the whole message is in the job log)"
    return message[: limit - len(note)].rstrip() + note


def error_annotation(message: str, file: str | None = None, line: int | None = None, col: int | None = None) -> str:
    return annotation("error", message, file=file, line=line, col=col)


def warning_annotation(message: str, file: str | None = None, line: int | None = None, col: int | None = None) -> str:
    return annotation("warning", message, file=file, line=line, col=col)


# --- text deployer did not write ---------------------------------------------------------------------

# The runner only looks for a command in a line that holds one of these (OutputManager, ActionCommand).
_COMMAND_MARKERS = ("::", "##[")


def runner_lines(text: str) -> list[str]:
    """``text`` cut into the lines the runner will read, so each can be judged (and prefixed) on its own.

    Cut at every line break Python knows: a superset of the runner's ``\n``, ``\r`` and ``\r\n``, so no
    runner line is ever the tail of one of ours.
    """
    return text.splitlines() or [""]


def could_be_command(line: str) -> bool:
    """Whether the runner would try to read ``line`` (one runner line) as a workflow command."""
    return any(marker in line for marker in _COMMAND_MARKERS)


def new_stop_token() -> str:
    """A fresh resume token for ``::stop-commands::``: random, so no text can guess it and resume early."""
    return f"deployer-{secrets.token_hex(16)}"


def fenced(lines: Sequence[str], token: str | None = None) -> list[str]:
    """``lines`` between ``::stop-commands::TOKEN`` and ``::TOKEN::``: the runner obeys no command in them.

    Callers put nothing of their own inside: an ``::add-mask::`` there would be ignored too.
    """
    token = token or new_stop_token()
    while any(token in line for line in lines):  # cannot happen by chance; a text that holds it ends nothing
        token = new_stop_token()
    return [command("stop-commands", token), *lines, f"::{token}::"]


def inert_lines(text: str) -> list[str]:
    """Lines that print ``text`` (which deployer did not write, or which quotes such text) without the runner
    obeying anything in it: fenced when a line could be read as a command, else as they are."""
    lines = runner_lines(text)
    return fenced(lines) if any(could_be_command(line) for line in lines) else lines


def inert_json(document: Any) -> str:
    """``document`` as indented JSON in which nothing can be read as a workflow command: indentation and quotes
    keep every line from starting with ``::``, and ``#`` (only ever inside a string here), written as its JSON
    escape, which every JSON reader decodes back, rules out the legacy ``##[command]`` form anywhere in a line."""
    return json.dumps(document, indent=2).replace("#", "\\u0023")
