"""The node agent: kubesim's kubelet (tests/kubesim/kubelet.py) put behind a real API server.

The container-running part is kubesim's: ``DockerKubelet`` (real containers on the Docker engine, ports on
127.0.0.1, probes, back-off, statuses, logs) or ``ScriptedKubelet`` (behaviours by image pattern or tag, no
process). This module owns only what a kubelet does towards the API server:

- registers the Nodes (status on create: Ready, addresses 127.0.0.1, capacity, the log port) and renews their
  Leases in kube-node-lease every 10 s, so the node lifecycle controller keeps them Ready;
- lists and watches the pods bound to its nodes and hands them to the kubelet;
- writes what the kubelet decides: pod status through the status subresource as a strategic merge patch with
  the pod's UID (fields that disappear are sent as null, so that a state ``running`` does not outlive its
  ``terminated``), Events, and, once a pod marked for deletion has its containers stopped, the final delete
  with grace 0 and a UID precondition;
- serves ``/containerLogs/{namespace}/{pod}/{container}`` over HTTPS on 127.0.0.1 for ``kubectl logs``.

Pod IPs come from the kubelet's fake 10.244.0.0/16 range, which nothing routes: the API server refuses loopback
addresses in Endpoints, and the tests reach containers through their ports published on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import logging
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.kubesim.kubelet import DockerKubelet, LogsUnavailable, ScriptedKubelet

from .api import JSON, ApiClient, ApiError

LEASE_SECONDS = 40
RENEW_SECONDS = 10.0
_STATE_KEYS = ("waiting", "running", "terminated")
_CONDITION_OPTIONAL = ("reason", "message")
log = logging.getLogger(__name__)


class RealClock:
    """The kubelet's clock on a real cluster: wall time at normal speed."""

    speed = 1.0

    def now(self) -> float:
        return time.time()


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def status_patch(uid: str, status: JSON) -> JSON:
    """The strategic merge patch that makes the pod's status equal ``status`` (as far as the kubelet owns it).

    Lists with a merge key (conditions by type, container statuses by name) merge element by element, so keys
    the new element lacks would survive from the old one: they are sent as null.
    """
    patched = dict(status)
    for key in ("containerStatuses", "initContainerStatuses"):
        if key not in status:
            continue
        entries = []
        for entry in status[key]:
            entry = dict(entry)
            for state_key in ("state", "lastState"):
                state = entry.get(state_key) or {}
                entry[state_key] = {name: state.get(name) for name in _STATE_KEYS}
            entries.append(entry)
        patched[key] = entries
    patched["conditions"] = [
        {**{name: None for name in _CONDITION_OPTIONAL}, **condition} for condition in status.get("conditions", [])
    ]
    return {"metadata": {"uid": uid}, "status": patched}


def node_object(name: str, kubelet_port: int, kubelet_version: str) -> JSON:
    """A Node as a kubelet registers it, status included (the API server keeps the status given on create)."""
    now = _timestamp()
    capacity = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "50Gi"}

    def condition(type_: str, status: str, reason: str, message: str) -> JSON:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {
                "kubeletVersion": kubelet_version,
                "containerRuntimeVersion": "docker://deployer-test",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "deployer test node agent",
                "kernelVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        },
    }


Kubelet = DockerKubelet | ScriptedKubelet


class NodeAgent:
    """One agent for ``node_names``; ``start`` registers them and runs pods, ``stop`` removes its containers."""

    def __init__(
        self, api: ApiClient, node_names: list[str], kubelet_version: str, serving_cert: Path, serving_key: Path
    ) -> None:
        self._api = api
        self.node_names = list(node_names)
        self._kubelet_version = kubelet_version
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-agent-events")
        self._deletes = ThreadPoolExecutor(max_workers=2, thread_name_prefix="node-agent-delete")
        self._known: dict[str, JSON] = {}  # uid -> last pod seen on one of our nodes
        # An event repeated (same object, reason, message) bumps the count of the first, as the kubelet's recorder
        # does: (uid, fieldPath, type, reason, message) -> (namespace, event name, count).
        self._repeats: dict[tuple[str, ...], tuple[str, str, int]] = {}
        self._repeats_lock = threading.Lock()
        self.kubelet: Kubelet | None = None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(serving_cert, serving_key)
        self._logs_server = _LogsServer(("127.0.0.1", 0), _LogsHandler, self)
        self._logs_server.socket = context.wrap_socket(self._logs_server.socket, server_side=True)

    @property
    def kubelet_port(self) -> int:
        port: int = self._logs_server.server_address[1]
        return port

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet
        self._spawn(self._logs_server.serve_forever, "node-agent-logs")
        for name in self.node_names:
            self._register(name)
        kubelet.start(self, RealClock())
        self._spawn(self._renew_leases, "node-agent-leases")
        self._spawn(self._watch_pods, "node-agent-pods")

    def stop(self) -> None:
        self._stopping.set()
        self._logs_server.shutdown()
        self._logs_server.server_close()
        if self.kubelet is not None:
            self.kubelet.stop()
        self._events.shutdown(wait=False, cancel_futures=True)
        self._deletes.shutdown(wait=False, cancel_futures=True)
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- nodes and leases ------------------------------------------------------------------------------

    def _register(self, name: str) -> None:
        node = node_object(name, self.kubelet_port, self._kubelet_version)
        try:
            created = self._api.request("POST", "/api/v1/nodes", node)
        except ApiError as e:
            if e.status != 409:
                raise
            self._api.request(
                "PATCH",
                f"/api/v1/nodes/{name}/status",
                {"status": node["status"]},
                "application/strategic-merge-patch+json",
            )
            created = self._api.get(f"/api/v1/nodes/{name}")
        assert created is not None
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": name, "uid": created["metadata"]["uid"]}
                ],
            },
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": _micro_time()},
        }
        try:
            self._api.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)
        except ApiError as e:
            if e.status != 409:
                raise
            self._renew(name)

    def _renew(self, name: str) -> None:
        self._api.request(
            "PATCH",
            f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}",
            {"spec": {"renewTime": _micro_time()}},
            "application/merge-patch+json",
        )

    def _renew_leases(self) -> None:
        while not self._stopping.wait(RENEW_SECONDS):
            for name in self.node_names:
                try:
                    self._renew(name)
                except (ApiError, OSError) as e:  # the next renewal tries again, well within the lease
                    log.warning("renewing the lease of node %s failed: %s", name, e)

    # -- pods ------------------------------------------------------------------------------------------

    def _ours(self, pod: JSON) -> bool:
        return pod.get("spec", {}).get("nodeName") in self.node_names

    def _watch_pods(self) -> None:
        resource_version = ""
        while not self._stopping.is_set():
            try:
                if not resource_version:
                    resource_version = self._relist()
                for event in self._api.watch("/api/v1/pods", resource_version):
                    if self._stopping.is_set():
                        return
                    kind, pod = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":  # 410 Gone and the like: start again from a fresh list
                        resource_version = ""
                        break
                    resource_version = pod.get("metadata", {}).get("resourceVersion") or resource_version
                    if kind in ("ADDED", "MODIFIED"):
                        self._seen(pod)
                    elif kind == "DELETED":
                        self._gone(pod)
            except Exception as e:  # a broken stream or a restarting server: list again after a pause
                if self._stopping.is_set():
                    return
                log.warning("watching pods failed, listing again: %s", e)
                resource_version = ""
                self._stopping.wait(1)

    def _relist(self) -> str:
        listed = self._api.get("/api/v1/pods") or {}
        present = {}
        for pod in listed.get("items", []):
            if self._ours(pod):
                present[pod["metadata"]["uid"]] = pod
        for uid, pod in list(self._known.items()):
            if uid not in present:
                self._gone(pod)
        for pod in present.values():
            self._seen(pod)
        return str(listed.get("metadata", {}).get("resourceVersion", ""))

    def _seen(self, pod: JSON) -> None:
        if not self._ours(pod) or self.kubelet is None:
            return
        self._known[pod["metadata"]["uid"]] = pod
        self.kubelet.pod_changed(pod)

    def _gone(self, pod: JSON) -> None:
        if self._known.pop(pod.get("metadata", {}).get("uid", ""), None) is not None and self.kubelet is not None:
            self.kubelet.pod_deleted(pod)

    # -- the kubelet's sink: what it writes to the API server ----------------------------------------------

    def update_pod_status(self, namespace: str, name: str, uid: str, status: JSON) -> None:
        try:
            self._api.request(
                "PATCH",
                f"/api/v1/namespaces/{namespace}/pods/{name}/status",
                status_patch(uid, status),
                "application/strategic-merge-patch+json",
            )
        except ApiError as e:
            if e.status not in (404, 409):  # gone or replaced by a pod of the same name: nothing to report
                log.warning("writing the status of pod %s/%s failed: %s", namespace, name, e)

    def record_event(self, involved_object: JSON, type: str, reason: str, message: str) -> None:
        namespace = str(involved_object.get("namespace", "default"))
        now = _timestamp()
        key = (str(involved_object.get("uid")), str(involved_object.get("fieldPath")), type, reason, message)
        with self._repeats_lock:
            seen = self._repeats.get(key)
            if seen is not None:
                self._repeats[key] = (seen[0], seen[1], seen[2] + 1)
                path = f"/api/v1/namespaces/{seen[0]}/events/{seen[1]}"
                patch = {"count": seen[2] + 1, "lastTimestamp": now}
                self._events.submit(self._write_event, "PATCH", path, patch, reason)
                return
        name = f"{involved_object.get('name')}.{uuid.uuid4().hex[:16]}"
        with self._repeats_lock:
            self._repeats[key] = (namespace, name, 1)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved_object,
            "reason": reason,
            "message": message,
            "type": type,
            "source": {"component": "kubelet", "host": self.node_names[0]},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_names[0],
        }
        self._events.submit(self._write_event, "POST", f"/api/v1/namespaces/{namespace}/events", event, reason)

    def _write_event(self, method: str, path: str, body: JSON, reason: str) -> None:
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        try:
            self._api.request(method, path, body, content_type)
        except (ApiError, OSError) as e:  # a namespace being deleted refuses events: they are best effort
            log.debug("recording event %s failed: %s", reason, e)

    def get_object(self, kind: str, namespace: str, name: str) -> JSON | None:
        plural = {"ConfigMap": "configmaps", "Secret": "secrets"}[kind]
        return self._api.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")

    def pod_stopped(self, pod: JSON) -> None:
        """Every container of a pod marked for deletion is stopped: delete it for good, as a kubelet does."""
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": meta["uid"]},
        }

        def delete() -> None:
            try:
                self._api.request("DELETE", path, options)
            except ApiError as e:
                if e.status != 409:  # 409: a new pod of the same name already; this one is gone
                    log.warning("deleting pod %s failed: %s", path, e)

        self._deletes.submit(delete)

    # -- logs ------------------------------------------------------------------------------------------

    def container_logs(self, namespace: str, pod: str, container: str, query: dict[str, str]) -> str:
        assert self.kubelet is not None
        text = self.kubelet.logs(namespace, pod, container, previous=query.get("previous") in ("true", "1"))
        if query.get("tailLines"):
            lines = text.splitlines(keepends=True)
            count = int(query["tailLines"])
            text = "".join(lines[-count:]) if count > 0 else ""
        if query.get("limitBytes"):
            text = text.encode()[: int(query["limitBytes"])].decode(errors="ignore")
        return text


class _LogsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler], agent: NodeAgent
    ) -> None:
        super().__init__(address, handler)
        self.agent = agent


class _LogsHandler(http.server.BaseHTTPRequestHandler):
    server: _LogsServer

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        url = urlsplit(self.path)
        parts = [unquote(part) for part in url.path.strip("/").split("/")]
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._answer(404, "only /containerLogs/{namespace}/{pod}/{container} is served here\n")
            return
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            text = self.server.agent.container_logs(parts[1], parts[2], parts[3], query)
        except LogsUnavailable as e:
            self._answer(400, f"{e}\n")
            return
        self._answer(200, text)

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the API server asks for logs often."""
