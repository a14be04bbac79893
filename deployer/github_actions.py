"""GitHub Actions workflow files, as the runner reads them.

Owns the files the runner hands to a step (``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY``): writing outputs
and appending to the step summary within the runner's size limit, and the run's log URL. What goes in them
(the deploy report's outputs and summary) is deployer/deploy_report.py's; the ``::command::`` lines are
deployer/workflow_commands.py's.

Must not: talk to the GitHub API (that is deployer/github.py), decide what is secret (callers mask what they
hold), or print anything (deployer/console.py prints).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from deployer.errors import OptionError

# The runner refuses a step summary above 1 MiB for one step; we cut ours shorter rather than lose it.
STEP_SUMMARY_LIMIT = 1024 * 1024

_OUTPUT_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def workspace_relative(path: str, env: Mapping[str, str]) -> str:
    """A path as annotations want it: relative to GITHUB_WORKSPACE when it lies inside, else unchanged."""
    workspace = env.get("GITHUB_WORKSPACE")
    if not workspace:
        return path
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(workspace)).as_posix()
    except ValueError:
        return path


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


__all__ = [
    "append_step_summary",
    "output_lines",
    "run_url",
    "truncate_summary",
    "workspace_relative",
    "write_outputs",
]
