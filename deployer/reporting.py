"""A run's report and its readers: the step outputs (GITHUB_OUTPUT), the step summary, the ``--format json``
result document on stdout, the GitHub Deployment's final status, a dry run's pull request comment, and where an
error's annotation points.

Owns ``reported_run``, the one place a run's report is finished and handed out, on every way out of the run
(success, failure, cancel, an unexpected error). Reporting never changes a run's result: a reader that
cannot be written to is a warning. What the report says is rendered by deployer.actions; GitHub is reached
through deployer.github (imported lazily: PyGithub is slow to import).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deployer import commits, deploy_report, github_actions, manifests, workspace
from deployer.console import Console
from deployer.errors import DeployerError, ExitCode, ManifestError
from deployer.manifest_yaml import ManifestSource
from deployer.settings import ImageTarget, RunSettings

if TYPE_CHECKING:
    from deployer.github import DeploymentReporter


@dataclass
class ReportedRun:
    """The report of a run in progress, and the GitHub Deployment once one is started."""

    report: deploy_report.DeployReport
    deployment: DeploymentReporter | None = None

    def resolved(self, target: ImageTarget) -> None:
        self.report.image, self.report.tag = str(target.reference), target.reference.tag or ""


@contextmanager
def reported_run(
    settings: RunSettings, console: Console, env: Mapping[str, str], *, dry_run: bool = False
) -> Iterator[ReportedRun]:
    """The report of the run inside, finished and published however the run ends: its status from the exit
    code (a body that returns is a success), the GitHub Deployment finished, then publish_report."""
    started = time.monotonic()
    report = deploy_report.DeployReport(
        status="planned" if dry_run else "failed",
        image="",
        environment=None if dry_run else settings.github.environment,
        environment_url=None if dry_run else settings.github.environment_url,
        namespace=settings.namespace or None,
        namespace_source="option" if settings.namespace else None,
        run_url=github_actions.run_url(env),
    )
    run = ReportedRun(report)
    try:
        yield run
        report.exit_code = ExitCode.OK
    except DeployerError as e:
        report.exit_code = e.exit_code
        report.error = console.redact(str(e))
        raise
    finally:
        report.status = deploy_report.status_for_exit_code(report.exit_code, dry_run=dry_run)
        if not dry_run:
            report.seconds = time.monotonic() - started
        # The GitHub Deployment first: whatever happens to the files below, it must not stay in progress.
        if run.deployment is not None:
            run.deployment.finish(
                state="success" if report.exit_code == ExitCode.OK else "failure",
                log_url=report.run_url,
                environment_url=settings.github.environment_url,
                description=f"{report.image}: {report.status}",
            )
        # A dry run that planned has printed its plan as its result; one that failed prints the result document.
        result_format = settings.output_format if not dry_run or report.error else "text"
        publish_report(report, console, env, result_format=result_format)


def publish_report(
    report: deploy_report.DeployReport, console: Console, env: Mapping[str, str], result_format: str
) -> None:
    """Hand a finished run's report to its readers: the step outputs and the step summary (in Actions) and,
    with ``result_format`` json, the result document on stdout (deploy_report.result_document).

    Reporting comes after the deploy's own result and never changes it: a reader that cannot be written
    to (an unwritable GITHUB_OUTPUT, a closed stdout) is a warning, and the others are still written.
    """
    summary = console.redact(deploy_report.summary_markdown(report))
    writers: tuple[tuple[str, Callable[[], bool]], ...] = (
        ("GITHUB_OUTPUT", lambda: github_actions.write_outputs(env, deploy_report.report_outputs(report))),
        ("GITHUB_STEP_SUMMARY", lambda: github_actions.append_step_summary(env, summary)),
    )
    for variable, write in writers:
        try:
            write()
        except OSError as e:
            reason = e.strerror or str(e)
            console.warn(f"could not write to {variable} {env.get(variable)}: {reason}; the run's result stands")
    if result_format == "json":
        try:
            console.result(deploy_report.result_json(report) + "\n")
        except OSError as e:
            console.warn(f"could not print the result to stdout: {e.strerror or e}")


def annotation_position(error: DeployerError, env: Mapping[str, str]) -> tuple[str | None, int | None, int | None]:
    """Where GitHub should mark an error (file relative to the workspace, line, column): a manifest error's
    place in a file, or nowhere. A field error knows its document, not its line; the line is looked up only
    now, on the error path."""
    if not isinstance(error, ManifestError) or not error.path or not workspace.is_file_source(error.path):
        return None, None, None
    line = error.line
    if line is None and error.document is not None:
        try:
            source = ManifestSource(error.path, Path(error.path).read_text(encoding="utf-8"))
            line = manifests.locate_document(source, error.document)
        except OSError:
            line = None
    return github_actions.workspace_relative(error.path, env), line, error.column


def publish_refused_run(message: str, exit_code: int, result_format: str, env: Mapping[str, str]) -> None:
    """The report of a ``deployer run`` refused before it started (a flag click or the settings refused)."""
    report = deploy_report.DeployReport(status="failed", image="", error=message, exit_code=exit_code)
    publish_report(report, Console(), env, result_format=result_format)


def start_github_deployment(
    settings: RunSettings,
    target: ImageTarget,
    reference: str,
    digest: str | None,
    console: Console,
    env: Mapping[str, str],
) -> DeploymentReporter | None:
    """A GitHub Deployment for --environment, or None; GitHub failures only warn (deployer.github)."""
    if not settings.github.environment:
        return None
    if not settings.github.token or not env.get("GITHUB_REPOSITORY"):
        console.warn("--environment given without --github-token and GITHUB_REPOSITORY: no GitHub Deployment recorded")
        return None
    from deployer import github

    reporter = github.DeploymentReporter(
        token=settings.github.token,
        repository=env["GITHUB_REPOSITORY"],
        api_url=settings.github.api_url,
        warn=console.warn,
    )
    reporter.start(
        environment=settings.github.environment,
        ref=target.commit.sha if target.commit else (target.reference.tag or ""),
        payload={"image": reference, "digest": digest},
        description=f"deploying {reference}",
        log_url=github_actions.run_url(env),
    )
    return reporter


def comment_on_pull_request(
    settings: RunSettings, report: deploy_report.DeployReport, console: Console, env: Mapping[str, str]
) -> None:
    """With --comment-on-pr on a pull_request event, keep the dry run's diff in the pull request's comment
    (deploy_report.pull_request_comment); anything missing or refused is said, never fatal."""
    if not settings.github.comment_on_pr:
        return
    number = commits.pull_request_number(env, workspace.read_event_payload(env))
    if number is None:
        console.info("--comment-on-pr: not a pull_request event, no comment written")
        return
    if not settings.github.token or not env.get("GITHUB_REPOSITORY"):
        console.warn("--comment-on-pr needs --github-token and GITHUB_REPOSITORY: no pull request comment written")
        return
    from deployer import github

    commenter = github.PullRequestComment(
        token=settings.github.token,
        repository=env["GITHUB_REPOSITORY"],
        api_url=settings.github.api_url,
        warn=console.warn,
    )
    body = console.redact(deploy_report.pull_request_comment(report))
    url = commenter.publish(number, deploy_report.comment_marker(report.namespace), body)
    if url:
        console.info(f"the diff is on pull request #{number}: {url}")
