"""The Kubernetes adapter: the only package that talks to the API (and imports the kubernetes client).

The rest of deployer uses ``Cluster`` (one connection) and the results it returns. Inside, one module per
thing done, each over the transport in ``api``:

- ``api``: requests, retries while the API is unavailable, credentials renewal; ``answers`` maps a status to
  an error class; ``clients`` makes the client from credentials, in memory
- ``resources`` / ``discovery``: where each kind lives, and an object's address
- ``recording``: what is live before apply; ``applying``: server-side apply, the client-side apply upgrade,
  conflicts
- ``locking``: the per-namespace deploy lock (a Lease)
- ``watching`` / ``views``: list + watch, and what a waiting loop sees of the cluster
- ``waiting``: the rollout wait (rollout_wait.py decides each tick)
- ``diagnosing``: events and logs that explain a failure
- ``restoring``: carrying a rollback out and waiting for it (rollback_wait.py decides each tick)
- ``pruning``: an ApplySet's parent Secret, its members listed by label, pruned ones deleted (applysets.py
  decides which)

It decides nothing the pure modules (rollouts, rollout_wait, rollbacks, rollback_wait, diagnoses) can; it must
not print (progress goes to ``on_progress``, notices to ``warn``/``inform``), call sys.exit, or let a token or
kubeconfig reach a message: errors are deployer.errors, chained.
"""

from __future__ import annotations

from deployer.kube.answers import without_value_dumps
from deployer.kube.applying import ApplyResult
from deployer.kube.cluster import Cluster
from deployer.kube.locking import Lock
from deployer.kube.restoring import RollbackResult
from deployer.kube.waiting import WaitResult
from deployer.rollout_wait import WaitOutcome

__all__ = ["ApplyResult", "Cluster", "Lock", "RollbackResult", "WaitOutcome", "WaitResult", "without_value_dumps"]
