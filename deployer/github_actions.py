"""GitHub Actions workflow files and the deploy report, as the runner reads them.

Owns the files the runner hands to a step (``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY``), the run's log URL,
and the deploy report they carry: the step outputs, the Markdown step summary and the ``--format json``
result document. Formatting functions are pure and return strings; the only I/O here is appending to those
two files. The ``::command::`` lines are deployer/workflow_commands.py's.

Must not: talk to the GitHub API (that is deployer/github.py), decide what is secret (callers mask what they
hold), or print anything (deployer/console.py prints).
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deployer.errors import ExitCode, OptionError, WorkloadOutcome
from deployer.settings import format_duration

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


# --- the deploy report: step summary and step outputs ------------------------------------------------

DeployStatus = Literal["success", "planned", "failed", "rolled-back", "rollback-failed"]

# Where the namespace of objects that name none came from, as the result document says it (the key) and
# as the log and the step summary say it.
NAMESPACE_SOURCES = {
    "option": "from --namespace",
    "kubeconfig-context": "from the kubeconfig context, as no --namespace was given",
    "default": "Kubernetes' default: neither --namespace nor the kubeconfig context names one",
}


@dataclass
class WorkloadResult:
    """One workload's result, for the summary table and the ``revisions`` output."""

    kind: str
    name: str
    namespace: str | None = None
    result: str = ""  # e.g. "ready", "unchanged", "failed", "rolled back", "planned"
    seconds: float | None = None
    revision: str | None = None
    previous_revision: str | None = None
    detail: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


@dataclass
class DeployReport:
    """What one ``deployer run`` did, as plain data; the CLI fills it, this module renders it."""

    status: DeployStatus
    image: str
    tag: str = ""
    digest: str | None = None
    environment: str | None = None
    environment_url: str | None = None
    cluster: str | None = None
    namespace: str | None = None
    workloads: list[WorkloadResult] = field(default_factory=list)
    error: str | None = None
    diagnosis: str = ""
    rollback: list[WorkloadOutcome] = field(default_factory=list)
    plan: str | None = None
    run_url: str | None = None
    seconds: float | None = None
    exit_code: int = ExitCode.FAILURE
    namespace_source: str | None = None  # a key of NAMESPACE_SOURCES

    @property
    def rolled_back(self) -> bool:
        return self.status == "rolled-back"


def status_for_exit_code(exit_code: int, *, dry_run: bool = False) -> DeployStatus:
    """The report status that goes with a process exit code (see deployer.errors.ExitCode)."""
    if exit_code == ExitCode.OK:
        return "planned" if dry_run else "success"
    if exit_code == ExitCode.ROLLED_BACK:
        return "rolled-back"
    if exit_code == ExitCode.ROLLBACK_FAILED:
        return "rollback-failed"
    return "failed"


def revisions_json(workloads: list[WorkloadResult]) -> str:
    """The ``revisions`` output: ``{"deployment/web": {"namespace", "revision", "previous_revision", "result"}}``."""
    return json.dumps(
        {
            w.key: {
                "namespace": w.namespace,
                "revision": w.revision,
                "previous_revision": w.previous_revision,
                "result": w.result,
            }
            for w in workloads
        },
        sort_keys=True,
    )


def report_outputs(report: DeployReport) -> dict[str, str]:
    """The action's step outputs for a report (image, digest, tag, status, rolled-back, revisions, error)."""
    return {
        "image": report.image,
        "digest": report.digest or "",
        "tag": report.tag,
        "status": report.status,
        "rolled-back": "true" if report.rolled_back else "false",
        "revisions": revisions_json(report.workloads),
        "error": report.error or "",
    }


# The version of the document below; raised only when a field changes meaning or goes away.
RESULT_SCHEMA_VERSION = 1


def result_document(report: DeployReport) -> dict[str, Any]:
    """The result of ``deployer run --format json``: one document, the same fields for every outcome.

    Fields that do not apply (no digest without a push, no rollback after a success) are null or empty,
    never left out, so a script can read any of them without checking first. README documents each field.
    """
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "status": report.status,
        "exit_code": report.exit_code,
        "error": report.error,
        "image": report.image or None,
        "tag": report.tag or None,
        "digest": report.digest,
        "cluster": report.cluster,
        "namespace": report.namespace,
        "namespace_source": report.namespace_source,
        "environment": report.environment,
        "environment_url": report.environment_url,
        "run_url": report.run_url,
        "seconds": _rounded(report.seconds),
        "workloads": [
            {
                "kind": w.kind,
                "name": w.name,
                "namespace": w.namespace,
                "result": w.result,
                "revision": w.revision,
                "previous_revision": w.previous_revision,
                "seconds": _rounded(w.seconds),
                "detail": w.detail or None,
            }
            for w in report.workloads
        ],
        "diagnosis": report.diagnosis or None,
        "rolled_back": report.rolled_back,
        "rollback": [
            {"kind": o.kind, "name": o.name, "state": o.state, "detail": o.detail or None} for o in report.rollback
        ],
    }


def result_json(report: DeployReport) -> str:
    """The result document as printed: indented JSON in which nothing can be read as a workflow command.

    Indentation and quotes keep every line from starting with ``::``; the runner's legacy ``##[command]`` form
    is found anywhere in a line, so ``#`` (only ever inside a string here: diagnoses quote container logs) is
    written as its JSON escape, which every JSON reader decodes back.
    """
    return json.dumps(result_document(report), indent=2).replace("#", "\\u0023")


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


_HEADLINES: dict[str, str] = {
    "success": "✅ Deployed",
    "planned": "📝 Dry run of",
    "failed": "❌ Deploy failed:",
    "rolled-back": "↩️ Rolled back:",
    "rollback-failed": "🚨 Rollback failed:",
}


def _cell(text: str) -> str:
    """Text for a table cell: no HTML, no pipe that ends the cell early, line breaks kept."""
    escaped = html.escape(text, quote=False).replace("|", "\\|")
    return "<br>".join(line for line in escaped.splitlines()) if "\n" in escaped else escaped


def _code(text: str) -> str:
    """Inline code that survives backticks inside the text."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded}{fence}"


def _block(text: str, language: str = "text") -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def _link_target(url: str) -> str:
    # A space or parenthesis would end a Markdown link target early.
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _duration(seconds: float | None) -> str:
    return "–" if seconds is None else format_duration(seconds)


def _revision(workload: WorkloadResult) -> str:
    if workload.revision is None:
        return "–"
    if workload.previous_revision and workload.previous_revision != workload.revision:
        return f"{_cell(workload.revision)} (was {_cell(workload.previous_revision)})"
    return _cell(workload.revision)


def summary_markdown(report: DeployReport) -> str:
    """The job summary for a deploy: what was deployed where, per-workload results, and on failure why."""
    # An image is unknown only when the input was refused before it could be computed.
    headline = f"{_HEADLINES[report.status]} {_code(report.image)}" if report.image else _HEADLINES[report.status]
    lines = [f"## {headline}", ""]
    facts: list[tuple[str, str]] = [("Image", _code(report.image))] if report.image else []
    if report.digest:
        facts.append(("Digest", _code(report.digest)))
    if report.environment:
        name = _cell(report.environment)
        url = report.environment_url
        facts.append(("Environment", f"[{name}]({_link_target(url)})" if url else name))
    if report.cluster:
        facts.append(("Cluster", _cell(report.cluster)))
    if report.namespace:
        # A namespace not asked for with -n is worth a word: it may not be the one meant.
        source = report.namespace_source
        chosen = f" ({NAMESPACE_SOURCES[source]})" if source and source != "option" else ""
        facts.append(("Namespace", _cell(report.namespace) + chosen))
    if report.seconds is not None:
        facts.append(("Duration", _duration(report.seconds)))
    if report.run_url:
        facts.append(("Run", f"[log]({_link_target(report.run_url)})"))
    lines += ["| | |", "|---|---|", *(f"| **{label}** | {value} |" for label, value in facts), ""]

    if report.workloads:
        lines += ["### Workloads", "", "| Workload | Namespace | Result | Time | Revision |", "|---|---|---|---|---|"]
        for w in report.workloads:
            result = _cell(w.result) + (f": {_cell(w.detail)}" if w.detail else "")
            lines.append(
                f"| {_cell(w.key)} | {_cell(w.namespace or '–')} | {result} | {_duration(w.seconds)} | {_revision(w)} |"
            )
        lines.append("")

    if report.error or report.diagnosis:
        lines += ["### What went wrong", ""]
        if report.error:
            lines += [f"> {_cell(report.error)}", ""]
        if report.diagnosis:
            lines += [_block(report.diagnosis), ""]

    if report.rollback:
        lines += ["### Rollback", "", "| Workload | State | Detail |", "|---|---|---|"]
        for outcome in report.rollback:
            workload = f"{outcome.kind.lower()}/{outcome.name}"
            lines.append(f"| {_cell(workload)} | {_cell(outcome.state)} | {_cell(outcome.detail or '–')} |")
        lines.append("")

    if report.plan:
        opened = " open" if report.status == "planned" else ""
        lines += [f"<details{opened}><summary>Plan</summary>", "", _block(report.plan), "", "</details>", ""]
    return "\n".join(lines)


__all__ = [
    "DeployReport",
    "NAMESPACE_SOURCES",
    "DeployStatus",
    "WorkloadResult",
    "RESULT_SCHEMA_VERSION",
    "report_outputs",
    "result_document",
    "result_json",
    "revisions_json",
    "status_for_exit_code",
    "summary_markdown",
    "append_step_summary",
    "output_lines",
    "run_url",
    "truncate_summary",
    "workspace_relative",
    "write_outputs",
]
