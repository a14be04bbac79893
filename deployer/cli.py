"""The command line: parses flags and DEPLOYER_* variables into settings, runs, maps errors to exit codes.

Thin on purpose: the work is in deployer.deploying (run), publishing (build) and connecting (kubeconfig).
This module imports nothing heavy at start-up (no docker, kubernetes or github): ``deployer --help`` must
stay fast (bench/startup.py). It is the only place that turns a DeployerError into a one-line message and an
exit code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from deployer import __version__
from deployer.canaries import STRATEGIES, check_urls
from deployer.errors import DeployerError, ExitCode
from deployer.flag_types import Duration, ListFromEnv
from deployer.flag_types import compose as _compose
from deployer.flag_types import option as _option
from deployer.settings import (
    MAX_KUBECONFIG_EXPIRY_SECONDS,
    MIN_LOCK_LEASE_SECONDS,
    ClusterSettings,
    GitHubSettings,
    ImageSettings,
    PruneSettings,
    RolloutSettings,
    RunSettings,
    parse_key_values,
)

if TYPE_CHECKING:
    from deployer.console import Console

STRATEGY_HELP = "rolling: apply and wait; canary: first prove the new pod template on --canary-replicas pods."
CANARY_CHECK_HELP = "URL that must answer 2xx to GET throughout the canary's hold; repeatable."

EXIT_CODES_HELP = """\b
Exit codes:
  0  success (or a dry run that found nothing wrong)
  1  failure: a build, push, API or cluster error
  2  bad input or configuration: a flag, a manifest, a missing owner or SHA
  3  the rollout failed and every change was rolled back
  4  the rollout failed and the rollback failed too
  129, 130, 143  cancelled by SIGHUP, SIGINT or SIGTERM before anything was applied
"""


manifest_options = _compose(
    _option(
        "-f",
        "--manifests",
        multiple=True,
        type=ListFromEnv("PATH"),
        help="Manifest file or directory (*.yaml, *.yml, searched recursively), or - for stdin. Repeatable.",
    ),
    _option(
        "-k",
        "--kustomize",
        metavar="DIRECTORY",
        help="Render the kustomization in DIRECTORY with `kubectl kustomize` (instead of -f).",
    ),
    _option("-n", "--namespace", help="Namespace for namespaced objects that name none; a different one is an error."),
    _option(
        "--placeholder",
        default="<IMAGE>",
        show_default=True,
        help="Text replaced by the image reference; <IMAGE:name> forms take --image-ref images.",
    ),
    _option(
        "--image-ref",
        "image_refs",
        multiple=True,
        type=ListFromEnv("NAME=REFERENCE"),
        help="Fill <IMAGE:NAME> with REFERENCE (an image built elsewhere). Repeatable.",
    ),
)

image_options = _compose(
    _option("--registry", default="ghcr.io", show_default=True, help="Registry the image is pushed to."),
    _option("--image", "repository", help="Image repository, overriding <registry>/<owner>/<name>."),
    _option("--image-name", help="Name part of the repository (default: the GitHub repository's name)."),
    _option("--tag", help="Image tag (default: the first --sha-length characters of the commit)."),
    _option(
        "--sha-length",
        type=click.IntRange(4, 40),
        default=7,
        show_default=True,
        help="Characters of the commit SHA in the tag.",
    ),
    _option("--extra-tag", "extra_tags", multiple=True, type=ListFromEnv("TAG"), help="Also push as TAG. Repeatable."),
    _option("--build-context", default=".", show_default=True, help="Docker build context."),
    _option("--dockerfile", help="Dockerfile (default: <build-context>/Dockerfile)."),
    _option(
        "--build-arg", "build_args", multiple=True, type=ListFromEnv("KEY=VALUE"), help="Build argument. Repeatable."
    ),
    _option("--target", help="Build stage to stop at."),
    _option("--no-build", is_flag=True, help="Do not build or push; deploy the computed reference as it is."),
    _option("--reuse-existing", is_flag=True, help="Skip build and push when the tag is already in the registry."),
    _option("--pin-digest", is_flag=True, help="Put repository@sha256:... into the manifests instead of the tag."),
    _option("--registry-username", help="Registry user (in Actions: github.actor)."),
    _option(
        "--registry-password",
        help="Registry password or token; prefer the variable to the flag, which other users can see in ps.",
    ),
    _option("--docker-cli", help="docker CLI used for BuildKit builds (default: the first on PATH that can)."),
)

cluster_options = _compose(
    _option("--cluster", help="DigitalOcean Kubernetes cluster name or id (needs DIGITALOCEAN_ACCESS_TOKEN)."),
    _option(
        "--digitalocean-token",
        env=["DEPLOYER_DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN"],
        help="DigitalOcean API token; prefer the variable to the flag.",
    ),
    _option(
        "--digitalocean-api-url",
        default="https://api.digitalocean.com",
        show_default=True,
        help="DigitalOcean API base URL (for proxies and tests).",
    ),
    _option("--kubeconfig", help="Kubeconfig file for any other cluster (default: KUBECONFIG when set)."),
    _option("--kubeconfig-data", help="Kubeconfig content, plain or base64 (e.g. from a secret)."),
    _option("--kube-context", help="Context of the kubeconfig to use (default: its current context)."),
    _option(
        "--kubeconfig-expiry",
        type=Duration(MAX_KUBECONFIG_EXPIRY_SECONDS),
        help="Lifetime of the DigitalOcean credentials, at most 168h (default or 0: what this run needs, at least 5m).",
    ),
)

rollout_options = _compose(
    _option(
        "--timeout",
        type=Duration(),
        default="10m",
        show_default=True,
        help="How long the rollout may take, at most 24h; 0 waits as long as it takes.",
    ),
    _option(
        "--rollback-timeout",
        type=Duration(),
        default="5m",
        show_default=True,
        help="How long the rollback may take, at most 24h; 0 waits as long as it takes.",
    ),
    _option("--no-rollback", is_flag=True, help="On failure, leave the failed rollout in place."),
    _option(
        "--tolerate-failures-for",
        type=Duration(),
        default="0",
        show_default=True,
        help="Let pods crash or fail to pull this long before the rollout counts as failed.",
    ),
    _option(
        "--create-namespace/--no-create-namespace",
        default=True,
        show_default=True,
        help="Create the target namespace when missing.",
    ),
    _option(
        "--force-conflicts/--no-force-conflicts",
        default=True,
        show_default=True,
        help="Take over fields another manager (e.g. kubectl apply) owns.",
    ),
    _option(
        "--delete-created-on-failure",
        is_flag=True,
        help="On failure, delete objects this run created (otherwise they are listed).",
    ),
    _option("--prune", is_flag=True, help="After a verified rollout, delete what the manifests no longer hold."),
    _option("--prune-allow", metavar="KIND,...", help="Let --prune delete these: PersistentVolumeClaim, Namespace."),
    _option("--applyset", metavar="NAME", help="Secret tracking what --prune owns (default: deployer.<owner>.<repo>)."),
    _option(
        "--lock-timeout",
        type=Duration(),
        default="5m",
        show_default=True,
        help="How long to wait for another deploy to the same namespace, at most 24h; 0 waits as long as it takes.",
    ),
    # For tests: how long the lock outlives a run that stopped renewing it (a paused or dead run).
    _option(
        "--lock-lease",
        type=Duration(minimum=MIN_LOCK_LEASE_SECONDS),
        default="60s",
        hidden=True,
    ),
    # --strategy canary (deployer/canaries.py)
    _option("--strategy", type=click.Choice(STRATEGIES), default="rolling", show_default=True, help=STRATEGY_HELP),
    _option("--canary-replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Pods per canary."),
    _option("--canary-hold", type=Duration(), default="60s", show_default=True, help="How long canaries must hold."),
    _option("--canary-check", "canary_checks", multiple=True, type=ListFromEnv("URL"), help=CANARY_CHECK_HELP),
)

github_options = _compose(
    _option("--github-token", help="Token for GitHub Deployments (in Actions: github.token)."),
    _option("--environment", help="GitHub environment to record a Deployment for (needs --github-token)."),
    _option("--environment-url", help="URL shown on the GitHub Deployment."),
    _option(
        "--github-api-url",
        env=["DEPLOYER_GITHUB_API_URL", "GITHUB_API_URL"],
        default="https://api.github.com",
        show_default=True,
        help="GitHub API base URL.",
    ),
    _option(
        "--comment-on-pr",
        is_flag=True,
        help="On a pull_request event, keep a dry run's diff in one pull request comment (needs --github-token).",
    ),
)

output_options = _compose(
    _option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        # Read before every other option, so that a bad value elsewhere is still reported in this format.
        is_eager=True,
        help="Output of the plan and result.",
    ),
    _option("-q", "--quiet", is_flag=True, help="Only warnings, errors and the result."),
)


def _image_settings(kw: dict[str, Any]) -> ImageSettings:
    return ImageSettings(
        registry=kw["registry"],
        repository=kw["repository"],
        name=kw["image_name"],
        tag=kw["tag"],
        sha_length=kw["sha_length"],
        build_context=kw["build_context"],
        dockerfile=kw["dockerfile"],
        build_args=parse_key_values(kw["build_args"], "--build-arg"),
        target=kw["target"],
        extra_tags=tuple(kw["extra_tags"]),
        build=not kw["no_build"],
        reuse_existing=kw["reuse_existing"],
        pin_digest=kw["pin_digest"],
        digest=kw.get("digest") or None,
        registry_username=kw["registry_username"],
        registry_password=kw["registry_password"],
        docker_cli=kw["docker_cli"],
    )


def _cluster_settings(kw: dict[str, Any]) -> ClusterSettings:
    expiry = kw["kubeconfig_expiry"]
    return ClusterSettings(
        cluster=kw["cluster"],
        digitalocean_token=kw["digitalocean_token"],
        digitalocean_api_url=kw["digitalocean_api_url"],
        kubeconfig=kw["kubeconfig"],
        kubeconfig_data=kw["kubeconfig_data"],
        kube_context=kw["kube_context"],
        kubeconfig_expiry=int(expiry) if expiry is not None else None,
    )


def _run_protected(quiet: bool, work: Callable[[Console], int], failure_code: int = ExitCode.FAILURE) -> NoReturn:
    """Run ``work(console)``; a DeployerError becomes one line and its exit code, never a traceback.
    ``failure_code`` replaces exit 1 (``deployer diff``, whose 1 means differences)."""
    from deployer.console import Console

    console = Console(quiet=quiet)
    try:
        with console.capturing_logs():
            code = work(console)
    except DeployerError as e:
        from deployer.reporting import annotation_position

        file, line, column = annotation_position(e, os.environ)
        console.error(str(e), file=file, line=line, col=column)
        code = failure_code if e.exit_code == ExitCode.FAILURE else e.exit_code
    except KeyboardInterrupt:
        console.error("interrupted")
        code = 130
    sys.exit(code)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, "--version", prog_name="deployer")
def cli() -> None:
    """Take a commit to a verified rollout on Kubernetes, and roll back when it fails.

    \b
    deployer run        build, push, render, apply, wait; roll back on failure
    deployer run --dry-run   render and show the plan (and, with a cluster, the diff), change nothing remote
    deployer diff       what applying would change in the cluster, object by object
    deployer build      build and push the image only
    deployer kubeconfig save a short-lived DigitalOcean kubeconfig

    Every flag can also be set by the DEPLOYER_* variable shown in each command's --help.
    """


@cli.command(epilog=EXIT_CODES_HELP)
@manifest_options
@image_options
@cluster_options
@_option(
    "--digest",
    metavar="SHA256",
    help="With --no-build: deploy repository@DIGEST, an image an earlier run pushed (checked in the registry).",
)
@rollout_options
@github_options
@_option("--dry-run", is_flag=True, help="Change nothing remote: build locally (unless --no-build), plan, render.")
@_option("--render-only", is_flag=True, help="Print the rendered manifests to stdout and stop.")
@_option("-o", "--output", "output_dir", type=click.Path(file_okay=False), help="Write rendered manifests here.")
@output_options
def run(**kw: Any) -> None:
    """Build and push the image, apply the manifests, wait for the rollout, roll back on failure.

    \b
    Examples:
      deployer run -f k8s/ -n web --cluster my-doks-cluster
      deployer run --dry-run --no-build -f k8s/ --image ghcr.io/acme/web --tag test
      deployer run --render-only -f k8s/ --image ghcr.io/acme/web --tag abc1234 > rendered.yaml
    """
    try:
        settings = _run_settings(kw)
    except DeployerError as e:
        _report_refused_run(click.get_current_context(), str(e), e.exit_code)
        raise

    def work(console: Console) -> int:
        from deployer import deploying

        return deploying.run(settings, console, dict(os.environ))

    _run_protected(kw["quiet"] or kw["render_only"], work)


def _run_settings(kw: dict[str, Any]) -> RunSettings:
    return RunSettings(
        manifests=tuple(kw["manifests"]),
        kustomize=kw["kustomize"],
        namespace=kw["namespace"],
        placeholder=kw["placeholder"],
        image_refs=parse_key_values(kw["image_refs"], "--image-ref"),
        image=_image_settings(kw),
        cluster=_cluster_settings(kw),
        rollout=RolloutSettings(
            timeout=kw["timeout"],
            rollback_timeout=kw["rollback_timeout"],
            rollback=not kw["no_rollback"],
            tolerate_failures_for=kw["tolerate_failures_for"],
            create_namespace=kw["create_namespace"],
            force_conflicts=kw["force_conflicts"],
            delete_created_on_failure=kw["delete_created_on_failure"],
            lock_timeout=kw["lock_timeout"],
            lock_lease=kw["lock_lease"],
            strategy=kw["strategy"],
            canary_replicas=kw["canary_replicas"],
            canary_hold=kw["canary_hold"],
            canary_checks=check_urls(kw["canary_checks"], kw["strategy"]),
        ),
        prune=PruneSettings(
            enabled=kw["prune"],
            allow=frozenset(word.strip() for word in (kw["prune_allow"] or "").split(",") if word.strip()),
            applyset=kw["applyset"] or None,
        ),
        github=GitHubSettings(
            token=kw["github_token"],
            environment=kw["environment"],
            environment_url=kw["environment_url"],
            api_url=kw["github_api_url"],
            comment_on_pr=kw["comment_on_pr"],
        ),
        dry_run=kw["dry_run"],
        render_only=kw["render_only"],
        output_dir=kw["output_dir"],
        output_format=kw["output_format"],
    )


DIFF_EXIT_CODES_HELP = """\b
Exit codes (as kubectl diff's):
  0  applying would change nothing
  1  applying would change something (created or updated objects)
  2  any error: bad input, or an API or cluster failure
  129, 130, 143  cancelled by SIGHUP, SIGINT or SIGTERM
"""


@cli.command(epilog=DIFF_EXIT_CODES_HELP)
@manifest_options
@image_options
@cluster_options
@rollout_options
@github_options
@output_options
def diff(**kw: Any) -> None:
    """Show what `deployer run` would change in the cluster: per object created, unchanged, or a diff.

    Takes the same options as `deployer run`; it never builds, pushes or changes anything (server-side dry
    run). Server-owned fields are left out and Secret values masked, as kubectl diff does.

    \b
    Examples:
      deployer diff -f k8s/ -n web --kubeconfig ~/.kube/config --image ghcr.io/acme/web --tag abc1234
    """
    settings = _run_settings({**kw, "no_build": True, "dry_run": True, "render_only": False, "output_dir": None})

    def work(console: Console) -> int:
        from deployer import planning

        return planning.diff(settings, console, dict(os.environ))

    _run_protected(kw["quiet"], work, failure_code=ExitCode.BAD_INPUT)


def _report_refused_run(ctx: click.Context | None, message: str, exit_code: int) -> None:
    """A ``deployer run`` refused before it started (a flag click or the settings refused) still reports:
    the step outputs (status, error) in Actions, and the result document with --format json."""
    if ctx is None or ctx.command.name != "run":
        return
    from deployer import reporting

    reporting.publish_refused_run(message, exit_code, ctx.params.get("output_format") or "text", os.environ)


@cli.command(epilog=EXIT_CODES_HELP)
@image_options
@output_options
def build(**kw: Any) -> None:
    """Build the image and push it (with --extra-tag tags); print the reference and digest."""
    image = _image_settings(kw)

    def work(console: Console) -> int:
        from deployer import publishing

        return publishing.build(image, kw["output_format"], console, dict(os.environ))

    _run_protected(kw["quiet"], work)


@cli.command(epilog=EXIT_CODES_HELP)
@cluster_options
@_option(
    "-o",
    "--output",
    "output_file",
    type=click.Path(dir_okay=False),
    help="Write the kubeconfig to this file (mode 0600) instead of stdout.",
)
def kubeconfig(**kw: Any) -> None:
    """Fetch a short-lived kubeconfig for a DigitalOcean cluster, like doctl kubernetes cluster kubeconfig save."""
    cluster = _cluster_settings(kw)

    def work(console: Console) -> int:
        from deployer import connecting

        return connecting.save_kubeconfig(cluster, kw["output_file"], console, dict(os.environ))

    _run_protected(False, work)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: click's own usage errors also become one line and exit code 2."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="deployer", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(130)
    except DeployerError as e:
        # Raised while flags become settings (e.g. --build-arg NOEQUALS), before _run_protected starts.
        from deployer.console import Console

        Console().error(str(e))
        sys.exit(e.exit_code)
    except click.ClickException as e:
        hint = ""
        if isinstance(e, click.UsageError) and e.ctx is not None:
            hint = f" (see '{e.ctx.command_path} --help')"
            _report_refused_run(e.ctx, e.format_message(), ExitCode.BAD_INPUT)
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        sys.exit(ExitCode.BAD_INPUT if isinstance(e, click.UsageError) else ExitCode.FAILURE)
    sys.exit(ExitCode.OK)
