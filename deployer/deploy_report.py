"""The deploy report: what one ``deployer run`` did, as plain data, and the forms it is read in.

Owns ``DeployReport`` and ``WorkloadResult``, the report status that goes with an exit code, and the pure
renderings of the report: the step outputs (``revisions`` and the rest), the Markdown step summary and the
``--format json`` result document. Every function returns data or text; writing it to the runner's files is
deployer/github_actions.py's, printing it deployer/console.py's.

Must not: read or write files, print, or talk to any API.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from deployer import workflow_commands
from deployer.diffs import ObjectDiff
from deployer.errors import ExitCode, WorkloadOutcome
from deployer.settings import format_duration

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
class CanaryPhase:
    """The canary phase of a ``--strategy canary`` run: its ``result`` ("passed", "failed", "cancelled", or
    "none" when no Deployment changed its pod template), the canaries as ``(canary, stable)`` names, how
    long they took to be ready and how long they were held."""

    result: str
    replicas: int
    hold_seconds: float
    canaries: list[tuple[str, str]] = field(default_factory=list)
    ready_seconds: float | None = None
    held_seconds: float | None = None
    detail: str = ""


@dataclass
class PruneResult:
    """One object --prune found the manifests no longer hold: ``result`` is "pruned", "gone already",
    "kept" (a kind that holds data), "left" (its deletion failed) or, in a dry run, "would prune"."""

    kind: str
    name: str
    namespace: str | None
    result: str
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
    canary: CanaryPhase | None = None  # --strategy canary only
    prune: list[PruneResult] = field(default_factory=list)
    changes: list[ObjectDiff] = field(default_factory=list)  # a dry run's diff against the cluster

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
        "canary": _canary_document(report.canary),
        "diagnosis": report.diagnosis or None,
        "rolled_back": report.rolled_back,
        "rollback": [
            {"kind": o.kind, "name": o.name, "state": o.state, "detail": o.detail or None} for o in report.rollback
        ],
        "prune": [
            {"kind": p.kind, "name": p.name, "namespace": p.namespace, "result": p.result, "detail": p.detail or None}
            for p in report.prune
        ],
    }


def _canary_document(canary: CanaryPhase | None) -> dict[str, Any] | None:
    if canary is None:
        return None
    return {
        "result": canary.result,
        "replicas": canary.replicas,
        "hold_seconds": _rounded(canary.hold_seconds),
        "canaries": [{"name": name, "deployment": stable} for name, stable in canary.canaries],
        "ready_seconds": _rounded(canary.ready_seconds),
        "held_seconds": _rounded(canary.held_seconds),
        "detail": canary.detail or None,
    }


def result_json(report: DeployReport) -> str:
    """The result document as printed: indented JSON in which nothing can be read as a workflow command
    (diagnoses quote container logs)."""
    return workflow_commands.inert_json(result_document(report))


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

    if report.canary is not None:
        lines += _canary_lines(report.canary)

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

    if report.prune:
        lines += _prune_lines(report.prune)
    lines += changes_markdown(report.changes)

    if report.plan:
        opened = " open" if report.status == "planned" else ""
        lines += [f"<details{opened}><summary>Plan</summary>", "", _block(report.plan), "", "</details>", ""]
    return "\n".join(lines)


def _prune_lines(prune: list[PruneResult]) -> list[str]:
    lines = ["### Prune", "", "| Object | Namespace | Result |", "|---|---|---|"]
    for p in prune:
        result = _cell(p.result) + (f": {_cell(p.detail)}" if p.detail else "")
        lines.append(f"| {_cell(p.key)} | {_cell(p.namespace or '–')} | {result} |")
    return [*lines, ""]


def _canary_lines(canary: CanaryPhase) -> list[str]:
    """The step summary's canary section: one row per canary, with the phase's result and timings."""
    lines = ["### Canary", ""]
    if not canary.canaries:
        return [*lines, f"{_cell(canary.detail or 'no Deployment changed its pod template: no canary')}", ""]
    held = f"{_duration(canary.held_seconds)} of {_duration(canary.hold_seconds)}"
    lines += ["| Canary | Of | Replicas | Result | Ready in | Held |", "|---|---|---|---|---|---|"]
    for name, stable in canary.canaries:
        lines.append(
            f"| {_cell('deployment/' + name)} | {_cell('deployment/' + stable)} | {canary.replicas} "
            f"| {_cell(canary.result)} | {_duration(canary.ready_seconds)} | {held} |"
        )
    if canary.detail:
        lines += ["", f"> {_cell(canary.detail)}"]
    return [*lines, ""]


def changes_markdown(changes: list[ObjectDiff], limit: int | None = None) -> list[str]:
    """The lines of a "Changes" section: one collapsible section per object applying would change (its diff
    fenced: it quotes the cluster), and how many are unchanged. With ``limit`` (characters), the diffs that
    do not fit are left out, saying how many."""
    changed = [diff for diff in changes if diff.change != "unchanged"]
    if not changes:
        return []
    lines = [f"### Changes ({len(changed)} of {len(changes)} objects)", ""]
    if not changed:
        return [*lines, "Applying would change nothing.", ""]
    used = sum(len(line) + 1 for line in lines)
    for index, diff in enumerate(changed):
        where = f" in namespace <code>{html.escape(diff.namespace)}</code>" if diff.namespace else ""
        title = f"{diff.change} <code>{html.escape(diff.key)}</code>{where}"
        if diff.lines:
            section = [
                f"<details><summary>{title}</summary>",
                "",
                _block("\n".join(diff.lines), "diff"),
                "",
                "</details>",
            ]
        else:
            section = [f"<p>{title}</p>"]
        size = sum(len(line) + 1 for line in section)
        if limit is not None and used + size > limit:
            rest = len(changed) - index
            lines.append(
                f"<p>… and {rest} more changed object{'s' if rest > 1 else ''}: the job summary has every diff.</p>"
            )
            break
        lines += section
        used += size
    return [*lines, ""]


# GitHub refuses a comment body longer than this many characters.
COMMENT_LIMIT = 65536


def comment_marker(namespace: str | None) -> str:
    """The hidden first line by which a dry run finds its pull request comment again: one per namespace, so
    that two deploy jobs of one pull request keep a comment each."""
    safe = re.sub(r"[^a-z0-9.-]", "", (namespace or "").lower())
    return f"<!-- deployer diff namespace={safe} -->"


def pull_request_comment(report: DeployReport) -> str:
    """The pull request comment of a dry run: its marker, what it planned, and the diff of every object applying
    would change (as many as GitHub's limit lets in)."""
    marker = comment_marker(report.namespace)
    headline = f"### {_HEADLINES[report.status]} {_code(report.image)}"
    facts = [f"Cluster: {_cell(report.cluster)}" if report.cluster else ""]
    if report.namespace:
        facts.append(f"Namespace: {_code(report.namespace)}")
    if report.run_url:
        facts.append(f"[Run log]({_link_target(report.run_url)})")
    head = [marker, headline, "", " · ".join(fact for fact in facts if fact), ""]
    room = COMMENT_LIMIT - sum(len(line) + 1 for line in head) - 200
    body = changes_markdown(report.changes, limit=room) or ["No cluster was asked: nothing to compare.", ""]
    return "\n".join(head + [line.replace("### ", "#### ", 1) if line.startswith("### ") else line for line in body])
