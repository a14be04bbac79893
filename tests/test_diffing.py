"""kube/diffing.py on the simulator, whose request counter says what a diff costs: one dry-run apply per object
and one read per kind and namespace, whatever the number of objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from deployer import diffs
from deployer.credentials import KubeCredentials
from deployer.kube.cluster import Cluster
from tests.kubesim import KubeSim


@pytest.fixture(scope="module")
def sim() -> Iterator[KubeSim]:
    simulator = KubeSim.start(kubelet="scripted")
    try:
        yield simulator
    finally:
        simulator.stop()


def _objects(namespace: str, value: str) -> list[dict[str, Any]]:
    config_maps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"c{i}", "namespace": namespace},
            "data": {"k": value},
        }
        for i in range(60)
    ]
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"s{i}", "namespace": namespace},
            "data": {"k": "dg=="},
        }
        for i in range(39)
    ]
    alone = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "runner", "namespace": namespace}}
    return [*config_maps, *secrets, alone]


def test_a_diff_of_100_objects_sends_one_dry_run_per_object_and_one_read_per_kind(sim: KubeSim) -> None:
    credentials = KubeCredentials(sim.kubeconfig_dict(), "kubesim", "the simulator", None)
    with Cluster.connect(credentials) as cluster:
        cluster.ensure_namespace("counted")
        cluster.apply(_objects("counted", "old")[:50])  # half of the ConfigMaps are live
        sim.reset_request_counts()

        answers = cluster.dry_run_answers(_objects("counted", "new"))

        counts = sim.request_counts
    found = [diffs.diff_object(answer.live, answer.after or {}) for answer in answers]
    assert [d.change for d in found] == ["update"] * 50 + ["create"] * 50
    assert sum(counts.values()) == 100 + 3, counts
    assert sum(n for (verb, _), n in counts.items() if verb not in ("patch",)) == 3, counts
