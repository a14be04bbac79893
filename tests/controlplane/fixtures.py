"""pytest fixture for the real control plane: ``control_plane``, started once per session (it takes seconds to
start and a build the first time), its pods on the Docker engine pulling from the test registry.

Loaded through ``pytest_plugins`` in tests/conftest.py. A missing Go toolchain or Docker engine skips the tests
that need it on a laptop and fails them in CI (CI=true); a failed build or start always fails them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_real_part

from . import ControlPlane, StartError
from .building import BuildError


@pytest.fixture(scope="session")
def control_plane(docker_client: Any, registry: Any) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the node agent, on 127.0.0.1."""
    require_real_part(shutil.which("go") is not None, "the Go toolchain is not installed (no `go` on PATH)")
    try:
        plane = ControlPlane.start(registry=(registry.host, registry.username, registry.password),
                                   docker_client=docker_client)
    except (BuildError, StartError) as e:
        pytest.fail(f"the control plane did not start: {e}")
    try:
        yield plane
    finally:
        plane.stop()
