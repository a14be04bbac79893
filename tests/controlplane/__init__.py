"""A real Kubernetes control plane for deployer's tests: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler built from pinned Go modules (see building.py), plus a Python node agent that runs the pods on
the Docker engine (see node_agent.py).

It owns the lifetime of one such cluster on 127.0.0.1: a throwaway PKI, free ports, the four processes with
their logs in a temporary directory, the agent, the readiness checks (nodes Ready without the not-ready taint,
the ``default`` ServiceAccount in ``default``), and stopping all of it. Test support, not product: nothing in
deployer/ imports it.

    plane = ControlPlane.start(registry=("127.0.0.1:5000", "user", "password"))
    plane.kubeconfig_path    # for kubectl or deployer (admin client certificate)
    token = plane.issue_token(3600)              # a cluster-admin bearer token (tokens.py)
    plane.write_token_kubeconfig(path, token)
    plane.revoke_token(token)                    # refused (401) within about 10 s
    plane.stop()
"""

from __future__ import annotations

import ctypes
import http.client
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.kubesim.kubelet import DockerKubelet, ScriptedKubelet

from .api import ApiClient, ApiError
from .building import Binaries, ensure_built
from .certificates import Pki, write_kubeconfig
from .node_agent import NodeAgent
from .tokens import TokenIssuer

__all__ = ["ControlPlane", "StartError"]

Registry = tuple[str, str, str]  # (host:port, username, password)
CONTAINER_PREFIX = "deployer-test-controlplane"
SERVICE_RANGE = "10.0.0.0/24"
STOP_SECONDS = 10.0


class StartError(RuntimeError):
    """A component did not come up; the message quotes the end of its log."""


class PortTakenError(StartError):
    """A component could not bind its port: another process took it between ``free_port`` and the bind (test
    sessions running side by side, or the Docker engine publishing a container's port). Starting again on
    new ports is the remedy."""


START_ATTEMPTS = 3


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _end_with_parent() -> None:
    """Runs in the child before exec: the kernel sends it SIGKILL when the thread that started it ends (the
    main thread of the test process, of `serve` or of the bench).

    The components run in sessions of their own (a Ctrl-C in the terminal must not reach them before
    ``stop`` does), so nothing else would end them if the test process were killed outright (SIGKILL, an
    out-of-memory kill): they would keep their ports and temporary directories for good.
    """
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthz(port: int) -> bool:
    """The component's /healthz answers ok (its serving certificate is self-signed: not checked)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    finally:
        connection.close()


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


class ControlPlane:
    """One running cluster; build it with ``ControlPlane.start`` and always ``stop`` it."""

    def __init__(self, binaries: Binaries, workdir: Path, pki: Pki) -> None:
        self.binaries = binaries
        self.workdir = workdir
        self.pki = pki
        self.apiserver_port = free_port()
        self.server_url = f"https://127.0.0.1:{self.apiserver_port}"
        self.kubeconfig_path = workdir / "admin.kubeconfig"
        self.api = ApiClient(self.server_url, pki.ca_cert, pki.admin_cert, pki.admin_key)
        self.tokens = TokenIssuer(self.api, pki.ca_cert)
        self.agent: NodeAgent | None = None
        self._processes: list[_Process] = []
        self._owned_docker: Any | None = None
        self._stopped = False

    @classmethod
    def start(
        cls,
        registry: Registry | None = None,
        nodes: int = 1,
        kubelet: str = "docker",
        docker_client: Any | None = None,
        timeout: float = 180,
    ) -> ControlPlane:
        """Build if needed, start everything, and return once the cluster is usable (``timeout`` seconds)."""
        binaries = ensure_built(log=True)
        deadline = time.monotonic() + timeout
        for _ in range(START_ATTEMPTS - 1):
            try:
                return cls._start_once(binaries, registry, nodes, kubelet, docker_client, deadline)
            except PortTakenError:
                continue
        return cls._start_once(binaries, registry, nodes, kubelet, docker_client, deadline)

    @classmethod
    def _start_once(
        cls,
        binaries: Binaries,
        registry: Registry | None,
        nodes: int,
        kubelet: str,
        docker_client: Any | None,
        deadline: float,
    ) -> ControlPlane:
        workdir = Path(tempfile.mkdtemp(prefix="deployer-controlplane-"))
        plane = cls(binaries, workdir, Pki.create(workdir / "pki"))
        try:
            plane._start_all(registry, nodes, kubelet, docker_client, deadline)
        except BaseException:
            plane.stop()
            raise
        return plane

    # -- starting ----------------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> _Process:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=_end_with_parent,
            )
        process = _Process(name, popen, log)
        self._processes.append(process)
        return process

    def _wait(self, process: _Process, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while True:
            if process.popen.poll() is not None:
                tail = process.tail()
                error = PortTakenError if "address already in use" in tail else StartError
                raise error(f"{process.name} exited with {process.popen.returncode}:\n{tail}")
            try:
                if ready():
                    return
            except (OSError, ApiError):
                pass
            if time.monotonic() > deadline:
                raise StartError(f"timed out waiting for {what}; the end of {process.name}'s log:\n{process.tail()}")
            time.sleep(0.2)

    def _component_kubeconfig(self) -> Path:
        return write_kubeconfig(self.workdir / "component.kubeconfig", self.pki.kubeconfig(self.server_url))

    def _start_all(
        self, registry: Registry | None, nodes: int, kubelet: str, docker_client: Any | None, deadline: float
    ) -> None:
        import requests

        pki, kube = self.pki, str(self.binaries.kube)
        client_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client_port}"
        etcd = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=controlplane",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=controlplane=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait(
            etcd,
            lambda: requests.get(f"{etcd_url}/health", timeout=2).json().get("health") == "true",
            deadline,
            "etcd to be healthy",
        )

        apiserver = self._spawn(
            "kube-apiserver",
            [
                kube,
                "kube-apiserver",
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_public_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--authorization-mode=Node,RBAC",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                f"--kubelet-client-certificate={pki.kubelet_client_cert}",
                f"--kubelet-client-key={pki.kubelet_client_key}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
            ],
        )
        self._wait(apiserver, lambda: self.api.healthy("/readyz"), deadline, "the API server's /readyz")
        write_kubeconfig(self.kubeconfig_path, pki.kubeconfig(self.server_url))

        component_config = str(self._component_kubeconfig())
        common = [
            f"--kubeconfig={component_config}",
            f"--authentication-kubeconfig={component_config}",
            f"--authorization-kubeconfig={component_config}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ]
        controller_port, scheduler_port = free_port(), free_port()
        controllers = self._spawn(
            "kube-controller-manager",
            [
                kube,
                "kube-controller-manager",
                *common,
                f"--secure-port={controller_port}",
                f"--cert-dir={self.workdir / 'controller-manager'}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--controllers=*",
            ],
        )
        scheduler = self._spawn(
            "kube-scheduler",
            [
                kube,
                "kube-scheduler",
                *common,
                f"--secure-port={scheduler_port}",
                f"--cert-dir={self.workdir / 'scheduler'}",
            ],
        )
        for process, port in ((controllers, controller_port), (scheduler, scheduler_port)):
            self._wait(
                process,
                lambda port=port: _healthz(port),
                deadline,  # type: ignore[misc]
                f"{process.name}'s /healthz",
            )

        self._wait(
            apiserver,
            lambda: self.api.get("/api/v1/namespaces/kube-node-lease") is not None,
            deadline,
            "the kube-node-lease namespace",
        )
        names = [f"controlplane-node-{index}" for index in range(1, nodes + 1)]
        agent = self.agent = NodeAgent(self.api, names, self.binaries.kubernetes_version, pki.agent_cert, pki.agent_key)
        agent.start(self._kubelet(kubelet, registry, docker_client, agent))
        self._wait(
            controllers,
            lambda: self._usable(names),
            deadline,
            "Ready nodes without the not-ready taint and the default ServiceAccount",
        )

    def _kubelet(
        self, kind: str, registry: Registry | None, docker_client: Any | None, agent: NodeAgent
    ) -> DockerKubelet | ScriptedKubelet:
        if kind == "scripted":
            return ScriptedKubelet(on_pod_stopped=agent.pod_stopped)
        if kind != "docker":
            raise ValueError(f"unknown kubelet {kind!r}: choose 'scripted' or 'docker'")
        if docker_client is None:
            import docker

            docker_client = self._owned_docker = docker.from_env(timeout=120)
        return DockerKubelet(
            docker_client, registry=registry, name_prefix=CONTAINER_PREFIX, on_pod_stopped=agent.pod_stopped
        )

    def _usable(self, names: list[str]) -> bool:
        for name in names:
            node = self.api.get(f"/api/v1/nodes/{name}") or {}
            ready = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}.get("Ready")
            if ready != "True" or node.get("spec", {}).get("taints"):
                return False
        return self.api.get("/api/v1/namespaces/default/serviceaccounts/default") is not None

    # -- using ------------------------------------------------------------------------------------------

    def write_kubeconfig(self, path: Path) -> Path:
        """Write the admin kubeconfig (readable by its owner only) to ``path``."""
        return write_kubeconfig(path, self.pki.kubeconfig(self.server_url))

    @property
    def ca_pem(self) -> bytes:
        """The cluster CA that signed the API server's serving certificate."""
        return self.pki.ca_cert.read_bytes()

    def issue_token(self, expiry_seconds: int = 3600) -> str:
        """A cluster-admin bearer token from the real TokenRequest API (at least 10 minutes long)."""
        return self.tokens.issue(expiry_seconds)

    def revoke_token(self, token: str) -> None:
        """Withdraw ``token``: the API server refuses it (401) within about 10 s; see ``token_refused``."""
        self.tokens.revoke(token)

    def token_refused(self, token: str) -> bool:
        """The API server answers 401 to ``token``."""
        return self.tokens.refused(token)

    def write_token_kubeconfig(self, path: Path, token: str) -> Path:
        """Write a kubeconfig (readable by its owner only) that authenticates with ``token``."""
        return write_kubeconfig(path, self.tokens.kubeconfig(token))

    def component_log(self, name: str) -> str:
        """The end of a component's log (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)."""
        return next((p.tail(60) for p in self._processes if p.name == name), "")

    # -- stopping ---------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the agent (its containers go with it), then the components in reverse order; remove the files."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.agent is not None:
                self.agent.stop()
        finally:
            for process in reversed(self._processes):
                process.stop()
            if self._owned_docker is not None:
                self._owned_docker.close()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
