"""Defaulting and validation of the built-in kinds, as the API server does them before storing.

Pure functions over plain dicts: ``apply_defaults`` fills the fields a real server defaults (only as
far as controllers, kubectl and deployer look at them); ``validation_causes`` returns the reasons a
write is refused with 422 Invalid. No I/O, no clock, no store access: allocations the store must make
(Service cluster IPs) arrive as arguments.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from .selectors import SelectorError, selector_matches_labels

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAMED_KINDS = {"Namespace", "Service"}
_WORKLOADS = {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"}


@dataclass(frozen=True)
class Cause:
    """One entry of Status.details.causes."""

    field: str
    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueForbidden
    message: str

    def text(self) -> str:
        return f"{self.field}: {self.message}"


def go_value(value: Any) -> str:
    """Render a value roughly as Go's %#v does in validation messages."""
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(value.items())) + "}"
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"))


# ---------------------------------------------------------------- defaulting


def _image_pull_policy(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return "IfNotPresent"
    tag = name.split(":", 1)[1] if ":" in name else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _default_container(container: dict[str, Any]) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    if isinstance(container.get("image"), str):
        container.setdefault("imagePullPolicy", _image_pull_policy(container["image"]))
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for key in ("readinessProbe", "livenessProbe", "startupProbe"):
        _default_probe(container.get(key))
    for env in container.get("env") or []:
        field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")


def default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _default_container(container)


def _default_template(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        template.setdefault("metadata", {})
        if isinstance(template.get("spec"), dict):
            default_pod_spec(template["spec"])


def apply_defaults(obj: dict[str, Any], cluster_ip: str = "10.96.0.10") -> None:
    """Default ``obj`` in place as the API server would on create and update."""
    kind = obj.get("kind")
    spec = obj.get("spec")
    metadata = obj.setdefault("metadata", {})
    if kind == "Namespace":
        metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = metadata.get("name", "")
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        return
    if kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        return
    if not isinstance(spec, dict):
        return
    if kind == "Deployment":
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _default_template(spec)
    elif kind == "ReplicaSet":
        spec.setdefault("replicas", 1)
        _default_template(spec)
    elif kind == "StatefulSet":
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        strategy = spec.setdefault("updateStrategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
        _default_template(spec)
    elif kind == "DaemonSet":
        strategy = spec.setdefault("updateStrategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", 1)
            rolling.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        _default_template(spec)
    elif kind == "Job":
        if "completions" not in spec and "parallelism" not in spec:
            spec["completions"] = 1
        spec.setdefault("parallelism", 1)
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        uid = metadata.get("uid")
        if uid and not spec.get("manualSelector") and "selector" not in spec:
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
            labels.update(
                {
                    "batch.kubernetes.io/controller-uid": uid,
                    "controller-uid": uid,
                    "batch.kubernetes.io/job-name": metadata.get("name", ""),
                    "job-name": metadata.get("name", ""),
                }
            )
        _default_template(spec)
    elif kind == "Pod":
        default_pod_spec(spec)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", "BestEffort")
    elif kind == "Service":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        if spec["type"] != "ExternalName":
            spec.setdefault("clusterIP", cluster_ip)
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        obj.setdefault("status", {}).setdefault("loadBalancer", {})


# ---------------------------------------------------------------- validation


def _validate_name(obj: dict[str, Any], creating: bool) -> list[Cause]:
    metadata = obj.get("metadata") or {}
    name = metadata.get("name")
    if not name:
        if creating and metadata.get("generateName"):
            return []
        return [Cause("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")]
    pattern = _LABEL if obj.get("kind") in _LABEL_NAMED_KINDS else _SUBDOMAIN
    limit = 63 if obj.get("kind") in _LABEL_NAMED_KINDS else 253
    if not isinstance(name, str) or not pattern.fullmatch(name) or len(name) > limit:
        rule = "RFC 1123 label" if pattern is _LABEL else "RFC 1123 subdomain"
        return [
            Cause(
                "metadata.name",
                "FieldValueInvalid",
                f"Invalid value: {go_value(name)}: a lowercase {rule} must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            )
        ]
    return []


def _validate_containers(spec: Any, prefix: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [Cause(prefix, "FieldValueRequired", "Required value")]
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [Cause(f"{prefix}.containers", "FieldValueRequired", "Required value")]
    causes: list[Cause] = []
    seen: set[str] = set()
    for index, container in enumerate(containers):
        where = f"{prefix}.containers[{index}]"
        if not isinstance(container, dict):
            causes.append(Cause(where, "FieldValueInvalid", "Invalid value: must be an object"))
            continue
        name = container.get("name")
        if not name:
            causes.append(Cause(f"{where}.name", "FieldValueRequired", "Required value"))
        elif name in seen:
            causes.append(Cause(f"{where}.name", "FieldValueDuplicate", f"Duplicate value: {go_value(name)}"))
        else:
            seen.add(name)
        if not container.get("image"):
            causes.append(Cause(f"{where}.image", "FieldValueRequired", "Required value"))
    return causes


def _validate_workload(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [Cause("spec", "FieldValueRequired", "Required value")]
    causes: list[Cause] = []
    selector = spec.get("selector")
    raw_template = spec.get("template")
    template: dict[str, Any] = raw_template if isinstance(raw_template, dict) else {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(Cause("spec.selector", "FieldValueRequired", "Required value"))
    else:
        try:
            matched = selector_matches_labels(selector, labels)
        except SelectorError as e:
            causes.append(Cause("spec.selector", "FieldValueInvalid", f"Invalid value: {e}"))
        else:
            if not matched:
                causes.append(
                    Cause(
                        "spec.template.metadata.labels",
                        "FieldValueInvalid",
                        f"Invalid value: {go_value(labels)}: `selector` does not match template `labels`",
                    )
                )
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        causes.append(
            Cause(
                "spec.replicas",
                "FieldValueInvalid",
                f"Invalid value: {go_value(replicas)}: must be greater than or equal to 0",
            )
        )
    causes += _validate_containers(template.get("spec"), "spec.template.spec")
    if obj.get("kind") == "Deployment":
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("rollingUpdate") or {}
        if (
            strategy.get("type") == "RollingUpdate"
            and str(rolling.get("maxSurge")) in ("0", "0%")
            and str(rolling.get("maxUnavailable")) in ("0", "0%")
        ):
            causes.append(
                Cause(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "FieldValueInvalid",
                    "Invalid value: 0: may not be 0 when `maxSurge` is 0",
                )
            )
    return causes


def validation_causes(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    """Why a write of ``obj`` (replacing ``old``, None on create) is Invalid; empty when it is fine."""
    causes = _validate_name(obj, creating=old is None)
    kind = obj.get("kind")
    spec = obj.get("spec")
    if kind in _WORKLOADS:
        causes += _validate_workload(obj)
        if old is not None and (old.get("spec") or {}).get("selector") != (spec or {}).get("selector"):
            causes.append(
                Cause(
                    "spec.selector",
                    "FieldValueInvalid",
                    f"Invalid value: {go_value((spec or {}).get('selector'))}: field is immutable",
                )
            )
    elif kind == "Job":
        template = (spec or {}).get("template") or {}
        causes += _validate_containers(template.get("spec"), "spec.template.spec")
        policy = (template.get("spec") or {}).get("restartPolicy")
        if policy not in ("OnFailure", "Never"):
            causes.append(
                Cause(
                    "spec.template.spec.restartPolicy",
                    "FieldValueNotSupported",
                    f'Unsupported value: {go_value(policy)}: supported values: "OnFailure", "Never"',
                )
            )
        if old is not None and (old.get("spec") or {}).get("template") != template:
            causes.append(Cause("spec.template", "FieldValueInvalid", "Invalid value: field is immutable"))
    elif kind == "Pod":
        causes += _validate_containers(spec, "spec")
    elif kind == "Service":
        for index, port in enumerate((spec or {}).get("ports") or []):
            if not isinstance(port, dict) or not isinstance(port.get("port"), int):
                causes.append(Cause(f"spec.ports[{index}].port", "FieldValueRequired", "Required value"))
    return causes
