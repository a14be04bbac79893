"""GitHub Actions workflow commands and workflow files, as the runner reads them.

Owns the text protocol between deployer and the Actions runner: the ``::command::`` lines on stdout
(``::group::``, ``::error file=...::``, ``::warning::``, ``::add-mask::``, ``::stop-commands::``) with the
runner's escaping rules, and the files the runner hands to a step (``$GITHUB_OUTPUT``,
``$GITHUB_STEP_SUMMARY``). Formatting functions are pure and return strings; the only I/O here is
appending to those two files and, in ``group``/``commands_stopped``, calling the ``emit`` callback the caller
passes (stdout by default).

Must not: talk to the GitHub API (that is deployer/github.py), decide what is secret (callers mask what they
hold), or print anything except through ``emit``.

Escaping follows the runner (actions/runner, ``ActionCommand``): in a message ``%``, ``\\r`` and ``\\n``
become ``%25``, ``%0D`` and ``%0A``; a property value additionally escapes ``:`` and ``,`` as ``%3A`` and
``%2C``, since those delimit properties.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from deployer.errors import ManifestError, OptionError

AnnotationLevel = Literal["error", "warning", "notice"]

# The runner refuses a step summary above 1 MiB for one step; we cut ours shorter rather than lose it.
STEP_SUMMARY_LIMIT = 1024 * 1024

_OUTPUT_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _print_line(line: str) -> None:
    print(line, flush=True)


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


def error_annotation(
    message: str, file: str | None = None, line: int | None = None, col: int | None = None
) -> str:
    return annotation("error", message, file=file, line=line, col=col)


def warning_annotation(
    message: str, file: str | None = None, line: int | None = None, col: int | None = None
) -> str:
    return annotation("warning", message, file=file, line=line, col=col)


def workspace_relative(path: str, env: Mapping[str, str]) -> str:
    """A path as annotations want it: relative to GITHUB_WORKSPACE when it lies inside, else unchanged."""
    workspace = env.get("GITHUB_WORKSPACE")
    if not workspace:
        return path
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(workspace)).as_posix()
    except ValueError:
        return path


def manifest_error_annotation(error: ManifestError, env: Mapping[str, str]) -> str:
    """The ``::error file=...,line=...,col=...::`` line for a manifest error: GitHub marks the YAML line."""
    file = workspace_relative(error.path, env) if error.path else None
    subject = f"{error.field_path}: " if error.field_path else ""
    where = f"document {error.document}: " if error.document is not None and error.line is None else ""
    return annotation(
        "error",
        f"{where}{subject}{error.problem}",
        file=file,
        line=error.line,
        col=error.column,
        title="deployer: invalid manifest",
    )


@contextmanager
def group(title: str, emit: Callable[[str], None] = _print_line) -> Iterator[None]:
    """Fold what is printed inside into one collapsible ``::group::`` of the job log.

    The runner does not nest groups: a group opened inside another closes the outer one, so callers open
    one per phase (build, push, apply, wait, rollback), not one inside another.
    """
    emit(command("group", title))
    try:
        yield
    finally:
        emit(command("endgroup"))


@contextmanager
def commands_stopped(emit: Callable[[str], None] = _print_line) -> Iterator[None]:
    """Print text we do not control (build logs, pod events) without the runner obeying ``::`` lines in it.

    The resume token is random per use, so the text cannot guess it and switch commands back on.
    """
    token = f"deployer-{secrets.token_hex(16)}"
    emit(command("stop-commands", token))
    try:
        yield
    finally:
        emit(f"::{token}::")


# --- workflow files ----------------------------------------------------------------------------------


def _new_delimiter(value: str) -> str:
    # A value containing the delimiter line would end the heredoc early and let the rest of the value
    # set other outputs; a fresh random delimiter per value makes that impossible.
    while True:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        if delimiter not in value:
            return delimiter


def output_lines(outputs: Mapping[str, str]) -> str:
    """The text to append to $GITHUB_OUTPUT for ``outputs``: each as ``name<<DELIM``, value, ``DELIM``.

    The heredoc form is used for every value, single-line or not, so no value can be misread.
    """
    chunks = []
    for name, value in outputs.items():
        if not name or not set(name) <= _OUTPUT_NAME_CHARACTERS:
            raise OptionError("GITHUB_OUTPUT", f"invalid output name {name!r}: use letters, digits, _ and -")
        delimiter = _new_delimiter(value)
        chunks.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    return "".join(chunks)


def _workflow_file(env: Mapping[str, str], variable: str) -> Path | None:
    location = env.get(variable, "")
    return Path(location) if location else None


def write_outputs(env: Mapping[str, str], outputs: Mapping[str, str]) -> bool:
    """Append step outputs to the file named by $GITHUB_OUTPUT; False (nothing written) outside Actions."""
    target = _workflow_file(env, "GITHUB_OUTPUT")
    if target is None:
        return False
    text = output_lines(outputs)
    with target.open("a", encoding="utf-8") as handle:
        handle.write(text)
    return True


def truncate_summary(markdown: str, limit: int = STEP_SUMMARY_LIMIT) -> str:
    """Cut a step summary to what the runner accepts, saying so at the end."""
    encoded = markdown.encode("utf-8")
    if len(encoded) <= limit:
        return markdown
    note = "\n\n_… summary cut here: it exceeded GitHub's 1 MiB limit; the job log has everything._\n"
    room = limit - len(note.encode("utf-8"))
    return encoded[:room].decode("utf-8", errors="ignore") + note


def append_step_summary(env: Mapping[str, str], markdown: str) -> bool:
    """Append Markdown to $GITHUB_STEP_SUMMARY; False (and nothing written) outside Actions."""
    target = _workflow_file(env, "GITHUB_STEP_SUMMARY")
    if target is None:
        return False
    existing = target.stat().st_size if target.exists() else 0
    room = max(STEP_SUMMARY_LIMIT - existing, 0)
    text = truncate_summary(markdown if markdown.endswith("\n") else markdown + "\n", room)
    with target.open("a", encoding="utf-8") as handle:
        handle.write(text)
    return True


def run_url(env: Mapping[str, str]) -> str | None:
    """The URL of this workflow run's log, from the runner's GITHUB_SERVER_URL/REPOSITORY/RUN_ID."""
    server = env.get("GITHUB_SERVER_URL", "").rstrip("/")
    repository = env.get("GITHUB_REPOSITORY", "")
    run_id = env.get("GITHUB_RUN_ID", "")
    if not (server and repository and run_id):
        return None
    url = f"{server}/{repository}/actions/runs/{run_id}"
    attempt = env.get("GITHUB_RUN_ATTEMPT", "")
    return f"{url}/attempts/{attempt}" if attempt and attempt != "1" else url


def emit_lines(lines: list[str], emit: Callable[[str], None] = _print_line) -> None:
    """Print command lines (e.g. the result of ``mask``) in order."""
    for line in lines:
        emit(line)


__all__ = [
    "AnnotationLevel",
    "annotation",
    "append_step_summary",
    "command",
    "commands_stopped",
    "emit_lines",
    "error_annotation",
    "escape_data",
    "escape_property",
    "group",
    "is_github_actions",
    "manifest_error_annotation",
    "mask",
    "output_lines",
    "run_url",
    "truncate_summary",
    "warning_annotation",
    "workspace_relative",
    "write_outputs",
]
