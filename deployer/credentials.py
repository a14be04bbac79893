"""Cluster credentials: a short-lived kubeconfig from DigitalOcean, or the user's own kubeconfig.

This module decides where the credentials come from (``--cluster`` with a DigitalOcean token,
``--kubeconfig``/``KUBECONFIG``, ``--kubeconfig-data``, or ``~/.kube/config``), reads the files or asks
DigitalOcean, and hands back a ``KubeCredentials`` holding the kubeconfig as a plain dict for
deployer/kube/clients.py to load in memory; parsing, merging and picking the context are the pure
deployer/kubeconfigs.py's. It also owns the only way a kubeconfig reaches disk (the 0600 file
``deployer kubeconfig --output`` asks for), the memory files that keep key material off disk, and hands
every secret it learns to the caller's ``mask`` as soon as it is known.

It must not import the kubernetes client (deployer/kube/ does) or requests (deployer/digitalocean.py
does), and no token, password or key may reach a message, a repr or a file left behind.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from deployer import kubeconfigs
from deployer.digitalocean import (
    DEFAULT_API_URL,
    TOKEN_VARIABLE,
    DigitalOceanAPI,
    cluster_state_warning,
)
from deployer.errors import DigitalOceanError, OptionError
from deployer.kubeconfigs import KUBECONFIG_DATA_FLAG

CLUSTER_FLAG = "--cluster"
KUBECONFIG_FLAG = "--kubeconfig"
EXPIRY_FLAG = "--kubeconfig-expiry"
KUBECONFIG_VARIABLE = "KUBECONFIG"

# Applying, taking the deploy lock and diagnosing a failure also need the cluster; the margin covers them.
EXPIRY_MARGIN_SECONDS = 180
MINIMUM_EXPIRY_SECONDS = 300


@dataclass(frozen=True)
class KubeCredentials:
    """Everything deployer/kube/ needs to talk to the cluster.

    ``kubeconfig`` is a self-contained kubeconfig dict whose ``current-context`` is ``context``;
    ``expires_at`` is when a DigitalOcean-issued token stops working (a lower bound), None for the user's
    own kubeconfig;
    ``secrets`` are the values to keep out of every output;
    ``renew`` fetches new credentials from the same source when it can mint them (DigitalOcean), else None.
    """

    kubeconfig: dict[str, Any] = field(repr=False, compare=False)
    context: str
    description: str
    expires_at: datetime | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False, compare=False)
    renew: Callable[[], KubeCredentials] | None = field(default=None, repr=False, compare=False)

    def has_expired(self, now: datetime | None = None) -> bool:
        """True once a DigitalOcean-issued token is past its expiry: a 401 then means "expired"."""
        if self.expires_at is None:
            return False
        return (now or datetime.now(UTC)) >= self.expires_at


def needed_expiry_seconds(rollout_timeout: float, rollback_timeout: float) -> int:
    """How long a DigitalOcean token must live for this run: the rollout wait, then a whole rollback, plus a
    margin for applying and diagnosing; never under 300 s. Fetch the kubeconfig after the build."""
    if rollout_timeout < 0 or rollback_timeout < 0:
        raise ValueError("timeouts must not be negative")
    return max(MINIMUM_EXPIRY_SECONDS, math.ceil(rollout_timeout + rollback_timeout + EXPIRY_MARGIN_SECONDS))


def expiry_for_run(
    given: int | None, rollout_timeout: float, rollback_timeout: float, *, canary_seconds: float = 0.0
) -> int:
    """The token lifetime to ask DigitalOcean for: ``given`` (--kubeconfig-expiry; None or 0: not given) when
    it covers what the run needs (needed_expiry_seconds, plus ``canary_seconds`` for --strategy canary's
    canary phase before the rollout), else an OptionError: a token that dies mid-wait leaves the wait blind
    and the rollback without credentials."""
    needed = needed_expiry_seconds(rollout_timeout + canary_seconds, rollback_timeout)
    if not given:
        return needed
    if given < needed:
        canary = f"the canary's {canary_seconds:g}s + " if canary_seconds else ""
        raise OptionError(
            EXPIRY_FLAG,
            f"{given}s is shorter than this run needs: {needed}s ({canary}--timeout {rollout_timeout:g}s + "
            f"--rollback-timeout {rollback_timeout:g}s + {EXPIRY_MARGIN_SECONDS}s, at least "
            f"{MINIMUM_EXPIRY_SECONDS}s); raise it or leave it out",
        )
    return given


def resolve_credentials(
    *,
    cluster: str | None,
    kubeconfig_path: str | None,
    kubeconfig_data: str | None,
    context: str | None,
    digitalocean_token: str | None,
    api_url: str = DEFAULT_API_URL,
    expiry_seconds: int,
    env: Mapping[str, str],
    warn: Callable[[str], None],
    mask: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
) -> KubeCredentials:
    """Credentials from exactly one source, chosen like this: ``cluster`` (DigitalOcean, token from
    ``digitalocean_token`` or DIGITALOCEAN_ACCESS_TOKEN in ``env``); else ``kubeconfig_path``; else
    ``kubeconfig_data``; else KUBECONFIG in ``env``; else ~/.kube/config. ``mask`` is called with each secret
    as soon as it is known (e.g. ``Console.add_secret``); ``warn`` gets one-line warnings.
    ``sleep`` and ``now`` (epoch seconds, the clock ``expires_at`` is read from) are for tests."""
    check_source(
        cluster=cluster,
        kubeconfig_path=kubeconfig_path,
        kubeconfig_data=kubeconfig_data,
        digitalocean_token=digitalocean_token,
        env=env,
    )
    if cluster:
        token = digitalocean_token or env.get(TOKEN_VARIABLE, "")
        mask(token.strip())
        return fetch_digitalocean_credentials(
            cluster,
            token=token,
            api_url=api_url,
            expiry_seconds=expiry_seconds,
            context=context,
            warn=warn,
            mask=mask,
            sleep=sleep,
            now=now,
        )
    config, description = _user_kubeconfig(kubeconfig_path, kubeconfig_data, env, mask)
    secrets = kubeconfigs.kubeconfig_secrets(config)
    for secret in secrets:
        mask(secret)
    chosen = kubeconfigs.select_context(config, context, source=description)
    return KubeCredentials(
        kubeconfig=config,
        context=chosen,
        description=f"{description}, context {chosen}",
        expires_at=None,
        secrets=secrets,
    )


def _user_kubeconfig(
    kubeconfig_path: str | None, kubeconfig_data: str | None, env: Mapping[str, str], mask: Callable[[str], None]
) -> tuple[dict[str, Any], str]:
    """The user's own kubeconfig and its description: ``kubeconfig_path``, else ``kubeconfig_data``, else the
    files in KUBECONFIG, else ~/.kube/config."""
    if kubeconfig_path:
        paths = [Path(kubeconfig_path)]
        config, description = load_kubeconfig_files(paths, flag=KUBECONFIG_FLAG, merge=False)
    elif kubeconfig_data:
        config, description, blob_secrets = kubeconfigs.parse_kubeconfig_data(kubeconfig_data)
        for secret in blob_secrets:
            mask(secret)
    elif env.get(KUBECONFIG_VARIABLE, "").strip():
        paths = [Path(p) for p in env[KUBECONFIG_VARIABLE].split(os.pathsep) if p.strip()]
        config, description = load_kubeconfig_files(paths, flag=KUBECONFIG_VARIABLE, merge=True)
    else:
        home = env.get("HOME") or str(Path.home())
        default = Path(home) / ".kube" / "config"
        if not default.is_file():
            raise OptionError(
                CLUSTER_FLAG,
                f"no cluster credentials: pass {CLUSTER_FLAG} NAME with {TOKEN_VARIABLE}, "
                f"{KUBECONFIG_FLAG} PATH or {KUBECONFIG_DATA_FLAG}, or set {KUBECONFIG_VARIABLE} "
                f"({default} does not exist)",
            )
        config, description = load_kubeconfig_files([default], flag=KUBECONFIG_FLAG, merge=False)
    return config, description


def check_source(
    *,
    cluster: str | None,
    kubeconfig_path: str | None,
    kubeconfig_data: str | None,
    digitalocean_token: str | None,
    env: Mapping[str, str],
) -> None:
    """Raise OptionError unless the flags name one source of credentials, and --cluster has its token.

    Makes no request: a run checks this before it builds, while DigitalOcean is asked only after the push."""
    given = [
        flag
        for flag, value in (
            (CLUSTER_FLAG, cluster),
            (KUBECONFIG_FLAG, kubeconfig_path),
            (KUBECONFIG_DATA_FLAG, kubeconfig_data),
        )
        if value
    ]
    if len(given) > 1:
        raise OptionError(given[1], f"cannot be combined with {given[0]}: pass one source of credentials")
    if cluster and not (digitalocean_token or env.get(TOKEN_VARIABLE, "")).strip():
        raise OptionError(CLUSTER_FLAG, f"needs a DigitalOcean API token: set {TOKEN_VARIABLE}")


def fetch_digitalocean_credentials(
    cluster: str,
    *,
    token: str,
    api_url: str,
    expiry_seconds: int,
    context: str | None,
    warn: Callable[[str], None],
    mask: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
) -> KubeCredentials:
    """Resolve ``cluster`` (name or UUID), check its state, and have DigitalOcean issue a kubeconfig whose
    token lives ``expiry_seconds``."""
    if expiry_seconds < 1:
        raise OptionError(EXPIRY_FLAG, f"must be a positive number of seconds, not {expiry_seconds}")
    with DigitalOceanAPI(token, api_url, sleep=sleep, now=now) as api:
        found = api.find_cluster(cluster)
        warning = cluster_state_warning(found)
        if warning:
            warn(warning)
        issued = api.kubeconfig(found.id, expiry_seconds)
    source = f"the kubeconfig DigitalOcean issued for cluster {found.label}"
    try:
        config = kubeconfigs.parse_kubeconfig(issued.text, source=source, flag=CLUSTER_FLAG)
    except OptionError as e:
        # Not the user's input: DigitalOcean answered something that is not a kubeconfig.
        raise DigitalOceanError(e.problem) from None
    minted = kubeconfigs.kubeconfig_secrets(config)
    for secret in minted:
        mask(secret)
    chosen = kubeconfigs.select_context(config, context, source=source)
    region = f" in {found.region}" if found.region else ""

    def renew() -> KubeCredentials:
        # By id: the name could have been given to another cluster meanwhile.
        return fetch_digitalocean_credentials(
            found.id,
            token=token,
            api_url=api_url,
            expiry_seconds=expiry_seconds,
            context=context,
            warn=warn,
            mask=mask,
            sleep=sleep,
            now=now,
        )

    return KubeCredentials(
        kubeconfig=config,
        context=chosen,
        description=(
            f"DigitalOcean cluster {found.label}{region}, token valid until "
            f"{issued.expires_at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        ),
        expires_at=issued.expires_at,
        secrets=(token.strip(), *minted),
        renew=renew,
    )


# --- reading kubeconfigs --------------------------------------------------------------------------------


def load_kubeconfig_files(paths: Sequence[Path], *, flag: str, merge: bool) -> tuple[dict[str, Any], str]:
    """Read one kubeconfig, or merge a KUBECONFIG list as kubectl does: missing files are skipped, and for
    each cluster, user and context name (and current-context) the first file that sets it wins. Relative
    file paths inside are resolved against the directory of the file that names them."""
    loaded: list[tuple[Path, dict[str, Any]]] = []
    for path in paths:
        if not path.is_file():
            if merge:
                continue
            raise OptionError(flag, f"{path} does not exist or is not a file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise OptionError(flag, f"cannot read {path}: {type(e).__name__}") from e
        config = kubeconfigs.parse_kubeconfig(text, source=str(path), flag=flag)
        kubeconfigs.resolve_local_paths(config, path.parent.absolute())
        loaded.append((path, config))
    if not loaded:
        listed = os.pathsep.join(str(p) for p in paths)
        raise OptionError(flag, f"none of the kubeconfig files exist: {listed}")
    if len(loaded) == 1:
        return kubeconfigs.normalized(loaded[0][1]), f"kubeconfig {loaded[0][0]}"
    merged = kubeconfigs.merge_kubeconfigs([config for _, config in loaded])
    return merged, "kubeconfigs " + os.pathsep.join(str(p) for p, _ in loaded)


# --- writing kubeconfigs --------------------------------------------------------------------------------


def kubeconfig_yaml(credentials: KubeCredentials) -> str:
    """The kubeconfig as YAML text, for ``deployer kubeconfig`` (it holds the token: handle as a secret)."""
    stream = io.StringIO()
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.dump(credentials.kubeconfig, stream)
    return stream.getvalue()


def write_kubeconfig(credentials: KubeCredentials, path: Path) -> None:
    """Write the kubeconfig to ``path`` readable by its owner only (0600), replacing any file there
    atomically so no reader ever sees half of it or a wider mode."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(kubeconfig_yaml(credentials))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- key material in memory ----------------------------------------------------------------------------

# The kubeconfig's inline data fields and the file field the client reads instead (kubectl's names).
_IN_MEMORY_FIELDS = {
    "users": (("client-certificate-data", "client-certificate"), ("client-key-data", "client-key")),
    "clusters": (("certificate-authority-data", "certificate-authority"),),
}


def memory_backed_kubeconfig(config: Mapping[str, Any]) -> tuple[dict[str, Any], Callable[[], None]]:
    """A copy of ``config`` whose inline certificates and keys live in anonymous memory files (memfd,
    ``/proc/self/fd/N``) instead of the temporary files the Kubernetes client would write them to, which a
    SIGKILL leaves behind with the key in them; and the function that closes those files (call it when the
    client is done: it reads them again for every new connection). Where the system has no memfd (not
    Linux), the copy is ``config`` as it is."""
    if not hasattr(os, "memfd_create"):
        return dict(config), _close_nothing
    copied: dict[str, Any] = dict(config)
    opened: list[int] = []
    for section, fields in _IN_MEMORY_FIELDS.items():
        entries = []
        for entry in kubeconfigs.named_entries(config, section):
            key = "user" if section == "users" else "cluster"
            inner = entry.get(key)
            if isinstance(inner, dict):
                inner = dict(inner)
                for data_field, file_field in fields:
                    data = inner.get(data_field)
                    if isinstance(data, str) and data and not inner.get(file_field):
                        inner[file_field] = _memory_file(_decoded(data), opened)
                        del inner[data_field]
                entry = {**entry, key: inner}
            entries.append(entry)
        if section in config:
            copied[section] = entries

    def close() -> None:
        while opened:
            os.close(opened.pop())

    return copied, close


def client_files_directory() -> Path:
    """A private directory for the files the Kubernetes client writes while it loads (the certificate and key
    an ``exec`` plugin hands out); ``memory_backed_files`` empties it."""
    return Path(tempfile.mkdtemp(prefix="deployer-client-"))


def memory_backed_files(directory: Path) -> tuple[dict[str, str], Callable[[], None]]:
    """Each file the Kubernetes client wrote into ``directory`` moved into an anonymous memory file (``{written
    path: /proc/self/fd/N}``) and ``directory`` removed at once, so a SIGKILL later leaves no key on disk; and
    the function that closes those files. Where the system has no memfd, the files stay until that function
    removes them."""
    if not hasattr(os, "memfd_create"):
        return {}, lambda: shutil.rmtree(directory, ignore_errors=True)
    opened: list[int] = []
    moved: dict[str, str] = {}
    try:
        for path in sorted(directory.iterdir()):
            moved[str(path)] = _memory_file(path.read_bytes(), opened)
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    def close() -> None:
        while opened:
            os.close(opened.pop())

    return moved, close


def _memory_file(content: bytes, opened: list[int]) -> str:
    fd = os.memfd_create("deployer-kubeconfig", os.MFD_CLOEXEC)
    opened.append(fd)
    remaining = memoryview(content)
    while remaining:
        remaining = remaining[os.write(fd, remaining) :]
    return f"/proc/self/fd/{fd}"


def _decoded(data: str) -> bytes:
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except binascii.Error:
        return data.encode()  # not base64: the client would fail on it as it is; let it say so


def _close_nothing() -> None:
    return None
