"""pytest fixtures for a simulated cluster: ``kubesim`` (scripted kubelet, fast clock) and ``kubesim_docker``
(real containers on the Docker engine, images from the test registry).

Loaded through ``pytest_plugins`` in tests/conftest.py. Each fixture starts one cluster per test and stops
it (threads, server, containers) afterwards; it also fails the test when a controller raised, so a bug in the
simulator cannot pass as a deployer behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from . import KubeSim

FAST_CLOCK = 50.0


def _stop_checked(sim: KubeSim) -> None:
    errors = list(sim.loop.errors)
    sim.stop()
    if errors:
        pytest.fail("the simulator's control loop failed:\n" + "\n".join(errors[:3]))


@pytest.fixture
def kubesim() -> Iterator[KubeSim]:
    """A cluster with the scripted kubelet and a clock 50 times faster than real time."""
    sim = KubeSim.start(kubelet="scripted", clock_speed=FAST_CLOCK)
    try:
        yield sim
    finally:
        _stop_checked(sim)


@pytest.fixture
def kubesim_docker(docker_client: Any, registry: Any) -> Iterator[KubeSim]:
    """A cluster whose pods run on the Docker engine and pull from the test registry; real-time clock."""
    sim = KubeSim.start(
        kubelet="docker",
        clock_speed=1.0,
        registry=(registry.host, registry.username, registry.password),
        docker_client=docker_client,
    )
    try:
        yield sim
    finally:
        _stop_checked(sim)
