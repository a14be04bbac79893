"""deployer: build, push, apply and verify a Kubernetes rollout in one step, rolling back on failure."""

from __future__ import annotations

__version__ = "0.1.0"
