"""Which cluster a run talks to and with which credentials: resolved for a run (a kubeconfig before the build,
DigitalOcean's after the push, as their lifetime counts from then), for ``deployer kubeconfig``, and the
connection made from them.

The one place that names the Kubernetes adapter (``Cluster``): its import is lazy at run time (the
kubernetes client is slow to import) and typed through TYPE_CHECKING. Credentials are resolved by
deployer.credentials; this module decides when, with which lifetime, and says which cluster it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from deployer import workspace
from deployer.console import Console
from deployer.errors import ExitCode, ManifestFieldError, OptionError, UnknownKindError
from deployer.preparing import Rendered
from deployer.settings import MAX_DURATION_SECONDS, ClusterSettings, RolloutSettings, RunSettings

if TYPE_CHECKING:
    # The Kubernetes adapter's types are named here only; the rest of the orchestration imports them from here.
    from deployer.credentials import KubeCredentials as KubeCredentials
    from deployer.kube import ApplyResult as ApplyResult
    from deployer.kube import Cluster as Cluster
    from deployer.kube import Lock as Lock
    from deployer.kube import RollbackResult as RollbackResult
    from deployer.kube import WaitResult as WaitResult


def connect(credentials: KubeCredentials, console: Console) -> Cluster:
    """A connection to the credentials' cluster (a context manager); makes no request."""
    from deployer.kube import Cluster

    return Cluster.connect(credentials, warn=console.warn, inform=console.info)


def local_credentials(settings: RunSettings, console: Console, env: Mapping[str, str]) -> KubeCredentials | None:
    """Credentials read from a kubeconfig, resolved before the build so that a missing file or context fails
    first; None for DigitalOcean's, fetched after the push (their lifetime counts from then), whose flags are
    only checked now."""
    from deployer import credentials

    cluster = settings.cluster
    if cluster.cluster:
        credentials.check_source(
            cluster=cluster.cluster,
            kubeconfig_path=cluster.kubeconfig,
            kubeconfig_data=cluster.kubeconfig_data,
            digitalocean_token=cluster.digitalocean_token,
            env=env,
        )
        return None
    return resolve(cluster, settings.rollout, console, env)


def expiry_seconds(cluster: ClusterSettings, rollout: RolloutSettings | None) -> int:
    """The DigitalOcean token's lifetime: for a run, refused below what it needs (before anything remote);
    for ``deployer kubeconfig`` (``rollout`` None), as given, or what a run with the defaults needs."""
    from deployer import credentials

    if rollout is None:
        defaults = RolloutSettings()
        needed = credentials.needed_expiry_seconds(defaults.timeout, defaults.rollback_timeout)
        return cluster.kubeconfig_expiry or needed
    if not cluster.cluster:
        return 0  # not DigitalOcean: nothing is issued, the expiry means nothing
    # A wait without limit (0) may take as long as the longest timeout allowed.
    wait = rollout.timeout or MAX_DURATION_SECONDS
    # --strategy canary: the canaries' wait (bounded by --timeout) and their hold come before the rollout's.
    canary = wait + rollout.canary_hold if rollout.strategy == "canary" else 0.0
    return credentials.expiry_for_run(
        cluster.kubeconfig_expiry, wait, rollout.rollback_timeout or MAX_DURATION_SECONDS, canary_seconds=canary
    )


def resolve(
    cluster: ClusterSettings, rollout: RolloutSettings | None, console: Console, env: Mapping[str, str]
) -> KubeCredentials:
    """The credentials the settings name, every secret in them masked; says which cluster they reach."""
    from deployer import credentials

    expiry = expiry_seconds(cluster, rollout)
    resolved = credentials.resolve_credentials(
        cluster=cluster.cluster,
        kubeconfig_path=cluster.kubeconfig,
        kubeconfig_data=cluster.kubeconfig_data,
        context=cluster.kube_context,
        digitalocean_token=cluster.digitalocean_token,
        api_url=cluster.digitalocean_api_url,
        expiry_seconds=expiry,
        env=env,
        warn=console.warn,
        mask=console.add_secret,
    )
    console.info(f"cluster: {resolved.description}")
    return resolved


def chosen_namespace(asked: str | None, kube: Cluster, credentials: KubeCredentials) -> tuple[str, str]:
    """The namespace for objects that name none, and where it came from (a key of deploy_report.NAMESPACE_SOURCES).

    ``-n ""`` (the action's default) means no namespace was asked for, as kubectl reads it.
    """
    if asked:
        return asked, "option"
    contexts = {c.get("name"): c.get("context") or {} for c in credentials.kubeconfig.get("contexts") or ()}
    if contexts.get(credentials.context, {}).get("namespace"):
        return kube.default_namespace, "kubeconfig-context"
    return kube.default_namespace, "default"


def check_kinds_known(kube: Cluster, rendered: Rendered) -> None:
    """Every kind is served by the cluster (discovery), before the namespace or anything else is written."""
    for obj in rendered.objects:
        try:
            kube.resource_for(obj.api_version, obj.kind)
        except UnknownKindError as e:
            raise ManifestFieldError(str(e), path=obj.path, document=obj.document, field_path="kind") from e


def save_kubeconfig(cluster: ClusterSettings, output_file: str | None, console: Console, env: Mapping[str, str]) -> int:
    """``deployer kubeconfig``: a short-lived DigitalOcean kubeconfig, to a 0600 file or stdout."""
    from deployer import credentials

    if not cluster.cluster:
        raise OptionError("--cluster", "deployer kubeconfig needs --cluster NAME (a DigitalOcean cluster)")
    console.add_secret(cluster.digitalocean_token)
    if output_file:
        # Before DigitalOcean is asked: a kubeconfig minted for nothing would be a credential wasted.
        workspace.check_output_file(Path(output_file), "--output")
    resolved = resolve(cluster, None, console, env)
    if output_file:
        try:
            credentials.write_kubeconfig(resolved, Path(output_file))
        except OSError as e:
            raise OptionError("--output", f"cannot write the kubeconfig to {output_file}: {e.strerror or e}") from e
        console.info(f"wrote the kubeconfig to {output_file} (mode 0600)")
    else:
        console.result(credentials.kubeconfig_yaml(resolved))
    return ExitCode.OK
