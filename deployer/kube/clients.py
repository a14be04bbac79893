"""Making a kubernetes client from credentials, in memory, with an exec credential plugin's failure as the error.

The only module that imports the kubernetes client's config loader. Key material lives in memory files (see
credentials.memory_backed_kubeconfig and memory_backed_files) that the returned release closes. A plugin's
stderr is not deployer's and may hold a secret: what of it reaches a message is one line, token-shaped text
blanked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import kubernetes.client
import kubernetes.config

from deployer.credentials import (
    KubeCredentials,
    client_files_directory,
    memory_backed_files,
    memory_backed_kubeconfig,
)
from deployer.errors import KubernetesError


def client_for(credentials: KubeCredentials) -> tuple[kubernetes.client.ApiClient, Callable[[], None]]:
    """A client for the credentials, and what to call once it is closed (its key material lives in memory
    files: see credentials.memory_backed_kubeconfig).

    An ``exec`` credential plugin runs while the client loads; the client only logs its failure (the
    plugin's whole stderr, on the root logger) and goes on without credentials, which the API then refuses
    as a bare 401. That log record is caught here instead, and the plugin's failure is the error."""
    config, release_config = memory_backed_kubeconfig(credentials.kubeconfig)
    # A plugin may hand out a client certificate and key instead of a token: the client writes them to files
    # (kept until the process exits, so a SIGKILL would leave the key behind); they go to a directory of
    # deployer's own and from there into memory before the client's first connection reads them.
    written = client_files_directory()
    configuration = kubernetes.client.Configuration()
    plugin_failures = _ExecPluginFailures()
    root = logging.getLogger()
    root.addFilter(plugin_failures)
    try:
        kubernetes.config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
            config,
            context=credentials.context,
            client_configuration=configuration,
            persist_config=False,
            temp_file_path=str(written),
        )
    except Exception as e:  # the loader raises ConfigException, ValueError, KeyError...
        memory_backed_files(written)[1]()
        release_config()
        raise KubernetesError(f"cannot use the kubeconfig from {credentials.description}: {e}") from e
    finally:
        root.removeFilter(plugin_failures)
    moved, release_moved = memory_backed_files(written)

    def release() -> None:
        release_moved()
        release_config()

    if plugin_failures.messages:
        release()
        raise KubernetesError(
            f"the exec credential plugin {_exec_command(credentials)} of {credentials.description} failed: "
            f"{_plugin_failure_text(plugin_failures.messages[0])}"
        )
    for attribute in ("cert_file", "key_file"):
        path = getattr(configuration, attribute)
        if path in moved:
            setattr(configuration, attribute, moved[path])
    return kubernetes.client.ApiClient(configuration), release


class _ExecPluginFailures(logging.Filter):
    """Keeps (and keeps off the console) what the Kubernetes client logs when an exec plugin fails."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("exec:"):
            self.messages.append(message)
            return False
        return True


# How much of a failed plugin's stderr is shown, and what in it looks like a credential.
PLUGIN_STDERR_LIMIT = 160
_CREDENTIAL_LIKE = re.compile(r"[A-Za-z0-9+/=_.~-]{20,}")


def _exec_command(credentials: KubeCredentials) -> str:
    """The plugin's command, without its arguments (which may carry a secret)."""
    config = credentials.kubeconfig
    contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or ()}
    user_name = contexts.get(credentials.context, {}).get("user")
    for entry in config.get("users") or ():
        if entry.get("name") == user_name:
            command = ((entry.get("user") or {}).get("exec") or {}).get("command")
            if command:
                return repr(str(command))
    return "(unknown command)"


def _plugin_failure_text(message: str) -> str:
    """The client's "exec: process returned N. STDERR" as "exited with code N: first stderr line", with
    anything shaped like a token blanked, control characters dropped and the length bounded: the plugin's
    output is not deployer's and may hold a secret."""
    match = re.match(r"exec: process returned (-?\d+)(?:\. (.*))?\Z", message, re.DOTALL)
    if match is None:
        text, prefix = message.removeprefix("exec:").strip(), ""
    else:
        text, prefix = (match.group(2) or "").strip(), f"exited with code {match.group(1)}"
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    printable = "".join(ch for ch in first_line if ch.isprintable()).strip()
    redacted = _CREDENTIAL_LIKE.sub("[redacted]", printable)
    if len(redacted) > PLUGIN_STDERR_LIMIT:
        redacted = redacted[: PLUGIN_STDERR_LIMIT - 1] + "…"
    if prefix and redacted:
        return f"{prefix}: {redacted}"
    return prefix or redacted or "no output"
