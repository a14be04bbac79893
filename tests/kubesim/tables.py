"""Server-side printing: the meta.k8s.io/v1 Table that ``kubectl get`` asks for, with the columns the
real API server prints for the kinds deployer's users look at.

Pure functions over stored objects and the current simulated time; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .clock import parse_timestamp
from .resources import ResourceType

Obj = dict[str, Any]
Column = tuple[str, str, Callable[[Obj, float], Any]]  # (name, type, cell)


def human_duration(seconds: float) -> str:
    """kubectl's short age format: 45s, 5m3s, 12m, 3h5m, 20h, 3d4h, 30d."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _age(obj: Obj, now: float) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    return human_duration(now - parse_timestamp(created)) if created else "<unknown>"


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _pod_status(pod: Obj) -> str:
    status = _status(pod)
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    reason = status.get("reason") or status.get("phase") or "Pending"
    for state in status.get("initContainerStatuses") or []:
        waiting = (state.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "PodInitializing"):
            return f"Init:{waiting['reason']}"
    for state in status.get("containerStatuses") or []:
        current = state.get("state") or {}
        if current.get("waiting", {}).get("reason"):
            reason = current["waiting"]["reason"]
        elif current.get("terminated", {}).get("reason"):
            reason = current["terminated"]["reason"]
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" and reason == "Pending":
            return "Pending"
    return str(reason)


def _pod_ready(pod: Obj) -> str:
    states = _status(pod).get("containerStatuses") or []
    total = len(_spec(pod).get("containers") or [])
    return f"{sum(1 for s in states if s.get('ready'))}/{total}"


def _restarts(pod: Obj) -> int:
    return sum(int(s.get("restartCount", 0)) for s in _status(pod).get("containerStatuses") or [])


def _service_ports(svc: Obj) -> str:
    parts = []
    for port in _spec(svc).get("ports") or []:
        text = str(port.get("port"))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        parts.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


_COLUMNS: dict[str, list[Column]] = {
    "Deployment": [
        ("Ready", "string", lambda o, _: f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 0)}"),
        ("Up-to-date", "integer", lambda o, _: _status(o).get("updatedReplicas", 0)),
        ("Available", "integer", lambda o, _: _status(o).get("availableReplicas", 0)),
    ],
    "ReplicaSet": [
        ("Desired", "integer", lambda o, _: _spec(o).get("replicas", 0)),
        ("Current", "integer", lambda o, _: _status(o).get("replicas", 0)),
        ("Ready", "integer", lambda o, _: _status(o).get("readyReplicas", 0)),
    ],
    "StatefulSet": [
        ("Ready", "string", lambda o, _: f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 0)}"),
    ],
    "DaemonSet": [
        ("Desired", "integer", lambda o, _: _status(o).get("desiredNumberScheduled", 0)),
        ("Current", "integer", lambda o, _: _status(o).get("currentNumberScheduled", 0)),
        ("Ready", "integer", lambda o, _: _status(o).get("numberReady", 0)),
        ("Up-to-date", "integer", lambda o, _: _status(o).get("updatedNumberScheduled", 0)),
        ("Available", "integer", lambda o, _: _status(o).get("numberAvailable", 0)),
    ],
    "Pod": [
        ("Ready", "string", lambda o, _: _pod_ready(o)),
        ("Status", "string", lambda o, _: _pod_status(o)),
        ("Restarts", "string", lambda o, _: str(_restarts(o))),
    ],
    "Service": [
        ("Type", "string", lambda o, _: _spec(o).get("type", "ClusterIP")),
        ("Cluster-IP", "string", lambda o, _: _spec(o).get("clusterIP", "<none>")),
        ("External-IP", "string", lambda o, _: "<none>"),
        ("Port(s)", "string", lambda o, _: _service_ports(o)),
    ],
    "Job": [
        ("Completions", "string", lambda o, _: f"{_status(o).get('succeeded', 0)}/{_spec(o).get('completions', 1)}"),
    ],
    "ConfigMap": [("Data", "integer", lambda o, _: len(o.get("data") or {}) + len(o.get("binaryData") or {}))],
    "Secret": [
        ("Type", "string", lambda o, _: o.get("type", "Opaque")),
        ("Data", "integer", lambda o, _: len(o.get("data") or {})),
    ],
    "Namespace": [("Status", "string", lambda o, _: _status(o).get("phase", "Active"))],
    "Node": [
        ("Status", "string", lambda o, _: "Ready"),
        ("Roles", "string", lambda o, _: "<none>"),
    ],
    "ControllerRevision": [("Revision", "integer", lambda o, _: o.get("revision", 0))],
}


def _event_row(obj: Obj, now: float) -> list[Any]:
    last = obj.get("lastTimestamp") or obj.get("firstTimestamp")
    seen = human_duration(now - parse_timestamp(last)) if last else "<unknown>"
    involved = obj.get("involvedObject") or {}
    return [
        seen,
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        obj.get("message", ""),
    ]


def table_for(
    items: list[Obj], resource_version: str, include_object: str, now: float, rtype: ResourceType | None = None
) -> Obj:
    """A Table of ``items``; the cells follow the kind of ``rtype`` (or of the first item)."""
    kind = rtype.kind if rtype is not None else (items[0].get("kind", "") if items else "")
    if kind == "Event":
        definitions = [
            ("Last Seen", "string"),
            ("Type", "string"),
            ("Reason", "string"),
            ("Object", "string"),
            ("Message", "string"),
        ]
        rows_cells = [_event_row(i, now) for i in items]
    else:
        columns = _COLUMNS.get(kind, [])
        definitions = [("Name", "string"), *[(c[0], c[1]) for c in columns], ("Age", "string")]
        rows_cells = [[i["metadata"]["name"], *[c[2](i, now) for c in columns], _age(i, now)] for i in items]
    rows = []
    for item, cells in zip(items, rows_cells, strict=True):
        if include_object == "Object":
            embedded = item
        elif include_object == "None":
            embedded = None
        else:
            embedded = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": item.get("metadata") or {},
            }
        row: Obj = {"cells": cells}
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": name, "type": typ, "format": "name" if name == "Name" else "", "description": name, "priority": 0}
            for name, typ in definitions
        ],
        "rows": rows,
    }
