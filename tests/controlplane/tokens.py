"""Bearer tokens for one test control plane, issued and revoked through the real API server.

It owns a ServiceAccount ``kube-system/deployer-test-admin`` bound to ``cluster-admin`` (created on first use),
the tokens issued for it through the TokenRequest API, and their revocation. Each token is bound
(``boundObjectRef``) to a Secret of its own, so revoking one token is deleting its Secret: the API server then
refuses it with 401, the way a user's cluster refuses a token its issuer withdrew. The refusal is not instant:
the API server caches a successful token review for 10 s (kube-apiserver's token success cache), so a test
waits for it (``TokenIssuer.refused``) rather than assuming it.

Test support, not product: nothing in deployer/ imports it.
"""

from __future__ import annotations

import base64
import threading
import uuid
from pathlib import Path
from typing import Any

import requests

from .api import ApiClient, ApiError

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "deployer-test-admin"
# The TokenRequest API refuses an expiry under 10 minutes ("may not specify a duration less than 10 minutes").
MINIMUM_EXPIRY_SECONDS = 600


class TokenIssuer:
    """Issues cluster-admin bearer tokens on one API server and revokes them one by one."""

    def __init__(self, api: ApiClient, ca_cert: Path) -> None:
        self._api = api
        self._ca_cert = ca_cert
        self._lock = threading.Lock()
        self._account_ready = False
        self._secrets: dict[str, str] = {}  # token -> the name of the Secret it is bound to

    def _ensure_account(self) -> None:
        with self._lock:
            if self._account_ready:
                return
            self._create(
                f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}},
            )
            self._create(
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": SERVICE_ACCOUNT},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}],
                },
            )
            self._account_ready = True

    def _create(self, path: str, body: dict[str, Any]) -> None:
        try:
            self._api.request("POST", path, body)
        except ApiError as e:
            if e.status != 409:  # already there (a second issuer on the same plane): fine
                raise

    def issue(self, expiry_seconds: int = 3600) -> str:
        """A new token, valid for ``expiry_seconds`` but never less than the API server's 10-minute minimum
        (a shorter one is raised to it: to make a token stop working during a test, ``revoke`` it)."""
        self._ensure_account()
        secret = self._api.request(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"deployer-test-token-{uuid.uuid4().hex[:12]}"},
                "type": "Opaque",
            },
        )
        assert secret is not None
        name, uid = secret["metadata"]["name"], secret["metadata"]["uid"]
        review = self._api.request(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {
                    "expirationSeconds": max(int(expiry_seconds), MINIMUM_EXPIRY_SECONDS),
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Secret", "name": name, "uid": uid},
                },
            },
        )
        assert review is not None
        token: str = review["status"]["token"]
        with self._lock:
            self._secrets[token] = name
        return token

    def revoke(self, token: str) -> None:
        """Delete the Secret ``token`` is bound to; the API server refuses the token within about 10 s."""
        with self._lock:
            name = self._secrets.pop(token)
        self._api.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}")

    def refused(self, token: str) -> bool:
        """The API server answers 401 to a request carrying ``token``."""
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(
                f"{self._api.server}/api/v1/namespaces",
                headers={"Authorization": f"Bearer {token}"},
                verify=str(self._ca_cert),
                timeout=10,
            )
        return response.status_code == 401

    def kubeconfig(self, token: str) -> dict[str, Any]:
        """A kubeconfig for the API server (its CA inline) that authenticates with ``token``."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "controlplane",
                    "cluster": {
                        "server": self._api.server,
                        "certificate-authority-data": base64.b64encode(self._ca_cert.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
            "contexts": [{"name": "controlplane", "context": {"cluster": "controlplane", "user": SERVICE_ACCOUNT}}],
            "current-context": "controlplane",
            "preferences": {},
        }
