"""kubesim: a Kubernetes API simulator for deployer's tests, held to the real kubectl.

It owns the wiring of one simulated cluster: a throwaway CA and HTTPS server on 127.0.0.1, bearer
tokens, the object store, the control loop (controllers and scheduler) and a kubelet (scripted or on
Docker), all on one simulated clock. It is test support, not product: nothing in deployer/ imports it.

    sim = KubeSim.start(kubelet="scripted", clock_speed=50.0)
    sim.kubeconfig_path      # for kubectl or deployer
    sim.stop()
"""

from __future__ import annotations

import base64
import collections
import json
import os
import shutil
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import trustme

from .clock import SimClock
from .control_loop import ControlLoop
from .kubelet import Behaviour, DockerKubelet, ScriptedKubelet
from .server import CannedAnswer, KubeApiServer, RequestCounter, TokenRegistry
from .store import ObjectStore

__all__ = ["Behaviour", "KubeSim"]

Registry = tuple[str, str, str]  # (host:port, username, password)


def node_object(name: str) -> dict[str, Any]:
    """A Ready node as a kubelet registers it."""
    capacity = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
            },
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                }
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "kubeletVersion": "v1.32.2",
                "kubeProxyVersion": "v1.32.2",
                "containerRuntimeVersion": "docker://20.10",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "kubesim",
                "kernelVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def _make_kubelet(kind: str, registry: Registry | None, docker_client: Any | None) -> tuple[Any, Any | None]:
    """The kubelet, and the Docker client the simulator opened for it (None when it was given one)."""
    if kind == "scripted":
        return ScriptedKubelet(), None
    if kind == "docker":
        owned = None
        if docker_client is None:
            import docker

            docker_client = owned = docker.from_env(timeout=120)
        return DockerKubelet(docker_client, registry=registry, name_prefix="deployer-test-kubesim"), owned
    raise ValueError(f"unknown kubelet {kind!r}: choose 'scripted' or 'docker'")


class KubeSim:
    """One running simulated cluster; build it with ``KubeSim.start`` and always ``stop`` it."""

    def __init__(
        self,
        clock: SimClock,
        store: ObjectStore,
        kubelet: Any,
        loop: ControlLoop,
        server: KubeApiServer,
        ca: trustme.CA,
        tokens: TokenRegistry,
        counter: RequestCounter,
        workdir: Path,
    ) -> None:
        self.clock = clock
        self.store = store
        self.kubelet = kubelet
        self.loop = loop
        self._server = server
        self._ca = ca
        self._tokens = tokens
        self._counter = counter
        self._workdir = workdir
        self._stopped = False
        self._owned_docker: Any | None = None
        self.admin_token = tokens.issue()
        self.kubeconfig_path = workdir / "kubeconfig"
        self.write_kubeconfig(self.kubeconfig_path)

    @classmethod
    def start(
        cls,
        kubelet: str = "scripted",
        clock_speed: float = 1.0,
        registry: Registry | None = None,
        nodes: int = 1,
        port: int = 0,
        docker_client: Any | None = None,
    ) -> KubeSim:
        """Start a cluster: ``kubelet`` "scripted" (no processes) or "docker" (real containers, pulled from
        ``registry`` = (host:port, username, password)); ``clock_speed`` simulated seconds per real second."""
        clock = SimClock(clock_speed)
        store = ObjectStore(clock)
        for index in range(1, nodes + 1):
            store.create(node_object(f"kubesim-node-{index}"), keep_status=True)
        kubelet_instance, owned_docker = _make_kubelet(kubelet, registry, docker_client)
        loop = ControlLoop(store, clock, kubelet_instance)
        clock.on_advance(loop.poke)
        ca = trustme.CA(organization_name="kubesim throwaway CA")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.set_alpn_protocols(["http/1.1"])
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        tokens = TokenRegistry(clock)
        counter = RequestCounter(collections.Counter(), threading.Lock())
        server = KubeApiServer(port, context, store, tokens, counter, kubelet_instance.logs)
        workdir = Path(tempfile.mkdtemp(prefix="kubesim-"))
        sim = cls(clock, store, kubelet_instance, loop, server, ca, tokens, counter, workdir)
        sim._owned_docker = owned_docker
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="kubesim-server", daemon=True
        ).start()
        kubelet_instance.start(store, clock)
        loop.start()
        return sim

    # ------------------------------------------------------------ addresses and credentials

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def issue_token(self, expiry_seconds: float | None = None) -> str:
        """A new bearer token; with ``expiry_seconds`` it is refused (401) that long later on the sim clock."""
        return self._tokens.issue(expiry_seconds)

    def kubeconfig_dict(self, token: str | None = None) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kubesim",
                    "cluster": {
                        "server": self.server_url,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": "kubesim-admin", "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": "kubesim", "context": {"cluster": "kubesim", "user": "kubesim-admin"}}],
            "current-context": "kubesim",
            "preferences": {},
        }

    def write_kubeconfig(self, path: Path, token: str | None = None) -> Path:
        """Write a kubeconfig readable by its owner only."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.kubeconfig_dict(token), f, indent=2)
        return path

    def answer_once(self, method: str, path: str, status: int, body: Any, *, served: bool = False) -> None:
        """Answer the next ``method`` request on ``path`` (not a watch) with ``body`` instead of serving it;
        with ``served``, carry the request out first and lose its answer."""
        with self._server.canned_lock:
            self._server.canned.append(CannedAnswer(method, path, status, body, served))

    # ------------------------------------------------------------ observation

    @property
    def request_counts(self) -> collections.Counter[tuple[str, str]]:
        return self._counter.snapshot()

    def reset_request_counts(self) -> None:
        self._counter.reset()

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.loop.stop()
        self._server.stopping.set()
        self.store.close()
        self._server.shutdown()
        self._server.server_close()
        try:
            self.kubelet.stop()
        finally:
            if self._owned_docker is not None:
                self._owned_docker.close()
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> KubeSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
