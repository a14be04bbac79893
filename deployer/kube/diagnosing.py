"""Fetching what explains a failed or unfinished rollout: the namespace's events and the crashed containers'
logs; diagnoses.py (pure) writes the explanation. Problems fetching are noted in it, never raised."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from deployer import diagnoses
from deployer.errors import KubernetesError
from deployer.kinds import KubeDict
from deployer.kube.api import KubeAPI
from deployer.kube.resources import EVENTS, PODS
from deployer.kube.waiting import WaitResult
from deployer.rollbacks import ObjectRef
from deployer.rollout_wait import WaitOutcome

log = logging.getLogger(__name__)

# What kubectl logs sends: the log is text/plain, but a real API server answers a bare "text/plain" with 406.
LOG_ACCEPT = "application/json, */*"


def diagnose(
    api: KubeAPI, default_namespace: str, result: WaitResult, chosen: Sequence[ObjectRef]
) -> list[diagnoses.Diagnosis]:
    """One LIST of events per namespace and one log request per container worth reading (see Cluster.diagnose)."""
    events_by_namespace: dict[str, list[KubeDict]] = {}
    found: list[diagnoses.Diagnosis] = []
    for ref in chosen:
        workload = result.workloads.get(ref) or {"kind": ref.kind, "metadata": {"name": ref.name}}
        failures = result.failures.get(ref, [])
        pods = result.pods.get(ref, [])
        namespace = ref.namespace or default_namespace
        if namespace not in events_by_namespace:
            events_by_namespace[namespace] = _events(api, namespace)
        logs: dict[diagnoses.LogRequest, list[str]] = {}
        for request in diagnoses.logs_to_collect(failures, pods):
            logs[request] = container_log(api, namespace, request)
        reason = None
        if not failures:
            reason = _unfinished_reason(result, ref)
        found.append(diagnoses.diagnose(workload, failures, pods, events_by_namespace[namespace], logs, reason=reason))
    return found


def _unfinished_reason(result: WaitResult, ref: ObjectRef) -> str:
    """Why a workload without failures of its own is in the diagnosis, with kubectl's last word on it: the wait
    timed out or was cancelled, or another workload failed while this one was still rolling out."""
    verdict = result.verdicts.get(ref)
    if verdict is None:
        return result.reason
    if result.outcome is WaitOutcome.FAILED:
        return f"not finished when another workload failed: {verdict.message}"
    return f"{result.outcome}: {verdict.message}"


def _events(api: KubeAPI, namespace: str) -> list[KubeDict]:
    try:
        return list(api.list(EVENTS, namespace).get("items") or [])
    except KubernetesError as e:
        log.warning("could not list events in %s: %s", namespace, e)
        return []


def container_log(api: KubeAPI, namespace: str, request: diagnoses.LogRequest, tail_lines: int = 20) -> list[str]:
    """The last lines of one container's log (the previous instance's when asked); a note if unavailable."""
    query: dict[str, str | int | bool] = {
        "container": request.container,
        "tailLines": tail_lines,
        "previous": request.previous,
    }
    try:
        response = api.send("GET", PODS.path(namespace, request.pod, "log"), query=query, accept=LOG_ACCEPT)
        try:
            data, status = response.data, int(response.status)
        finally:
            response.release_conn()
    except KubernetesError as e:
        return [f"(logs unavailable: {e})"]
    text: str = data.decode("utf-8", "replace")
    if status >= 300:
        try:
            text = str(json.loads(text).get("message") or text)
        except (ValueError, AttributeError):
            pass
        return [f"(logs unavailable: {text.strip()})"]
    return text.splitlines()
