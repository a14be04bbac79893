"""The throwaway PKI of one test control plane, written as files the components read.

One CA signs everything: the API server's serving certificate (127.0.0.1, localhost and the in-cluster names),
the admin client certificate (group system:masters) that the controller-manager, the scheduler, the node agent
and the test's kubeconfig all use, the API server's client certificate towards the node agent, and the node
agent's serving certificate. A separate key signs ServiceAccount tokens. Nothing here outlives the directory
it is written to.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SERVING_NAMES = (
    "127.0.0.1",
    "localhost",
    "10.0.0.1",  # the first address of the service range: the `kubernetes` Service
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


def _write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    kubelet_client_cert: Path  # the API server's identity when it asks the node agent for logs
    kubelet_client_key: Path
    agent_cert: Path  # the node agent's serving certificate (127.0.0.1)
    agent_key: Path
    service_account_key: Path
    service_account_public_key: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="deployer test control plane")

        def leaf(name: str, cert: trustme.LeafCert) -> tuple[Path, Path]:
            chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
            (directory / f"{name}.crt").write_bytes(chain)
            return directory / f"{name}.crt", _write_private(directory / f"{name}.key", cert.private_key_pem.bytes())

        (directory / "ca.crt").write_bytes(ca.cert_pem.bytes())
        ca_key = _write_private(directory / "ca.key", ca.private_key_pem.bytes())
        serving = leaf("apiserver", ca.issue_cert(*SERVING_NAMES, common_name="kube-apiserver"))
        admin = leaf("admin", ca.issue_cert("admin", common_name="admin", organization_name="system:masters"))
        kubelet_client = leaf(
            "apiserver-kubelet-client",
            ca.issue_cert(
                "kube-apiserver-kubelet-client",
                common_name="kube-apiserver-kubelet-client",
                organization_name="system:masters",
            ),
        )
        agent = leaf("node-agent", ca.issue_cert("127.0.0.1", "localhost", common_name="node-agent"))
        signing = ec.generate_private_key(ec.SECP256R1())
        sa_key = _write_private(
            directory / "service-account.key",
            signing.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        sa_public = directory / "service-account.pub"
        sa_public.write_bytes(
            signing.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return cls(
            directory, directory / "ca.crt", ca_key, *serving, *admin, *kubelet_client, *agent, sa_key, sa_public
        )

    def kubeconfig(self, server: str) -> dict[str, Any]:
        """An admin kubeconfig with everything inline, so it stays valid wherever it is copied."""

        def inline(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "controlplane",
                    "cluster": {"server": server, "certificate-authority-data": inline(self.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": "controlplane-admin",
                    "user": {
                        "client-certificate-data": inline(self.admin_cert),
                        "client-key-data": inline(self.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": "controlplane", "context": {"cluster": "controlplane", "user": "controlplane-admin"}}
            ],
            "current-context": "controlplane",
            "preferences": {},
        }


def write_kubeconfig(path: Path, config: dict[str, Any]) -> Path:
    """Write a kubeconfig readable by its owner only (it holds a private key or a token)."""
    return _write_private(path, json.dumps(config, indent=2).encode())
