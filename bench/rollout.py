"""Benchmark: `deployer run` against the origin pipeline's way (`kubectl apply -f` then `kubectl rollout status`),
on the same Kubernetes simulator (scripted kubelet), with the same manifests.

(a) Bad image: seconds from the first failing pod status (ErrImagePull / ImagePullBackOff, seen in the simulator's
    store as it is written) to each side's exit. The Deployment has progressDeadlineSeconds 600: kubectl waits it
    out; deployer fails fast, rolls back and waits for the previous revision to be ready again before exiting.
    The simulator's clock runs --bad-clock-speed simulated seconds per real second: figures are given in both.
(b) Healthy deploy: wall time of a deploy whose pods become ready after --ready-after simulated seconds, the clock
    at real time (speed 1), replicas 2 (one pod at a time: maxSurge 1, maxUnavailable 0); deployer over kubectl,
    median of --runs runs, the sides alternating. Goal: ratio at most 1.1.
(c) API requests of one update deploy (tag v1 -> v2) of 1 and 20 Deployments, from the simulator's request counter,
    and of 1 Deployment whose pods take ten times longer: deployer must not grow with the wait (no polling).
    kubectl is counted with a warm discovery cache (same HOME as its first deploy) and a cold one (a fresh HOME,
    as on a new CI runner).

Prints figures and ratios; asserts nothing about time.

    .venv/bin/python bench/rollout.py [--runs 5] [--ready-after 5] [--bad-clock-speed 60] [--only a,b,c]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.deploy_scenarios import (  # noqa: E402
    Deployer,
    Kubectl,
    clean_environment,
    deployment,
    render_with_image,
    write_manifests,
)
from tests.kubesim import KubeSim  # noqa: E402

REPO = "registry.example/acme/web"
FAILING_REASONS = {"ErrImagePull", "ImagePullBackOff"}


@dataclass
class Side:
    """One way of deploying (deployer or kubectl) into a namespace of its own on one simulator."""

    sim: KubeSim
    scratch: Path
    kubectl_binary: str
    namespace: str

    def __post_init__(self) -> None:
        self.home = self.scratch / f"home-{self.namespace}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.workdir = self.scratch / f"checkout-{self.namespace}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubectl = Kubectl(self.kubectl_binary, self.sim.kubeconfig_path, self.home)
        self.deployer = Deployer(self.sim.kubeconfig_path, self.workdir, clean_environment(self.home))

    def manifests(self, documents: list[dict[str, Any]]) -> Path:
        return write_manifests(self.workdir / "k8s", *documents)

    def deploy_with_deployer(self, tag: str, documents: list[dict[str, Any]], *extra: str) -> tuple[int, float]:
        done = self.deployer.run(tag, self.manifests(documents), self.namespace, *extra, timeout=900)
        return done.code, done.seconds

    def deploy_with_kubectl(
        self, tag: str, documents: list[dict[str, Any]], *, home: Path | None = None
    ) -> tuple[int, float]:
        """The origin pipeline: the image put into the manifests, `kubectl apply -f`, then `kubectl rollout
        status` for each Deployment in turn. Returns the first failing exit code (or 0) and the wall seconds."""
        kubectl = Kubectl(self.kubectl_binary, self.sim.kubeconfig_path, home or self.home)
        rendered = self.workdir / "rendered"
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
        write_manifests(rendered, namespace, *render_with_image(documents, f"{REPO}:{tag}"))
        started = time.monotonic()
        done = kubectl.run("-n", self.namespace, "apply", "-f", str(rendered), check=False, timeout=900)
        code = done.returncode
        for document in documents:
            if code:
                break
            name = document["metadata"]["name"]
            status = kubectl.run(
                "-n", self.namespace, "rollout", "status", f"deployment/{name}", check=False, timeout=900
            )
            code = status.returncode
        return code, time.monotonic() - started


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if not found:
        sys.exit("kubectl is not on PATH")
    return found


# --- (a) bad image ---------------------------------------------------------------------------------------------


class FirstFailingPodStatus:
    """Notes when a pod of a namespace first gets a container waiting with an image pull failure, from the
    simulator's store as the status is written (real and simulated time)."""

    def __init__(self, sim: KubeSim) -> None:
        self._sim = sim
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, float]] = {}
        sim.store.add_listener(self._changed)

    def _changed(self, event_type: str, rtype: Any, old: Any, new: Any, subresource: str) -> None:
        if rtype.kind != "Pod" or not new:
            return
        namespace = new.get("metadata", {}).get("namespace", "")
        statuses = (new.get("status") or {}).get("containerStatuses") or ()
        if any((s.get("state") or {}).get("waiting", {}).get("reason") in FAILING_REASONS for s in statuses):
            with self._lock:
                self._seen.setdefault(namespace, (time.monotonic(), self._sim.clock.now()))

    def at(self, namespace: str) -> tuple[float, float] | None:
        with self._lock:
            return self._seen.get(namespace)


def bench_bad_image(scratch: Path, kubectl: str, clock_speed: float) -> None:
    print(f"(a) bad image, progressDeadlineSeconds 600, simulator clock speed {clock_speed:g} (sim s per real s)")
    documents = [deployment("web", progress_deadline_seconds=600)]
    sim = KubeSim.start(kubelet="scripted", clock_speed=clock_speed)
    try:
        failing = FirstFailingPodStatus(sim)
        rows = []
        for name in ("deployer", "kubectl"):
            side = Side(sim, scratch / "a", kubectl, f"bad-{name}")
            if name == "deployer":
                code, _ = side.deploy_with_deployer("v1", documents)
                assert code == 0, "the first deploy failed"
                running = side.deployer.start("pull-error", side.manifests(documents), side.namespace)
                done = running.finish(timeout=900)
                ended = running.started + done.seconds
                detected = next(
                    (t for t, line in zip(running.arrived, running.lines, strict=True) if "rollout failed" in line),
                    None,
                )
                code = done.code
            else:
                code, _ = side.deploy_with_kubectl("v1", documents)
                assert code == 0, "the first kubectl deploy failed"
                start = time.monotonic()
                code, seconds = side.deploy_with_kubectl("pull-error", documents)
                ended, detected = start + seconds, None
            sim_ended = sim.clock.now() - (time.monotonic() - ended) * clock_speed
            first = failing.at(side.namespace)
            if first is None:
                print(f"  {name}: no failing pod status was seen (exit {code})")
                continue
            wall, simulated = ended - first[0], sim_ended - first[1]
            rows.append((name, wall))
            extra = f"; failure reported {detected - first[0]:.2f} s after it" if detected else ""
            print(
                f"  {name:8}: exit {code} {wall:6.2f} s wall ({simulated:7.1f} s simulated) after the first failing "
                f"pod status{extra}"
            )
        if len(rows) == 2:
            print(f"  kubectl / deployer: {rows[1][1] / rows[0][1]:.1f}x; goal: deployer < 2 s wall after the status")
        print("  (deployer's figure includes its diagnosis and the rollback with the previous revision ready again;")
        print("   kubectl's is `rollout status` failing on the deadline, with nothing rolled back. deployer's time is")
        print("   its own work, not the cluster's: its simulated figure is only its wall time times the clock speed)")
    finally:
        sim.stop()


# --- (b) healthy deploy ------------------------------------------------------------------------------------------


def bench_healthy(scratch: Path, kubectl: str, runs: int, ready_after: float) -> None:
    print(f"(b) healthy deploy: 2 replicas ready {ready_after:g} s after start, clock at real time, {runs} runs each")
    documents = [deployment("web", replicas=2)]
    sim = KubeSim.start(kubelet="scripted", clock_speed=1.0)
    try:
        ours = Side(sim, scratch / "b", kubectl, "healthy-deployer")
        theirs = Side(sim, scratch / "b", kubectl, "healthy-kubectl")
        assert ours.deploy_with_deployer("v0", documents)[0] == 0
        assert theirs.deploy_with_kubectl("v0", documents)[0] == 0
        times: dict[str, list[float]] = {"deployer": [], "kubectl": []}
        for run in range(runs):
            tag = f"ready-after-{ready_after:g}s-run{run}"
            order = [("deployer", ours), ("kubectl", theirs)]
            for name, side in order if run % 2 == 0 else reversed(order):
                if name == "deployer":
                    code, seconds = side.deploy_with_deployer(tag, documents)
                else:
                    code, seconds = side.deploy_with_kubectl(tag, documents)
                assert code == 0, f"{name} failed run {run}"
                times[name].append(seconds)
        ratios = [d / k for d, k in zip(times["deployer"], times["kubectl"], strict=True)]
        for name, values in times.items():
            print(f"  {name:8}: median {statistics.median(values):6.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
        overhead = statistics.median(times["deployer"]) - statistics.median(times["kubectl"])
        print(
            f"  deployer / kubectl: median ratio {statistics.median(ratios):.3f} (goal <= 1.1); "
            f"median of medians {statistics.median(times['deployer']) / statistics.median(times['kubectl']):.3f}; "
            f"deployer's extra {overhead:+.2f} s"
        )
    finally:
        sim.stop()


# --- (c) API requests -------------------------------------------------------------------------------------------


def total(counts: Counter[tuple[str, str]]) -> int:
    return sum(counts.values())


def breakdown(counts: Counter[tuple[str, str]]) -> str:
    return ", ".join(f"{verb} {what} {n}" for (verb, what), n in counts.most_common())


def bench_requests(scratch: Path, kubectl: str) -> None:
    speed = 20.0
    print(f"(c) API requests of one update deploy (v1 -> v2), 1 replica each, clock speed {speed:g}")
    sim = KubeSim.start(kubelet="scripted", clock_speed=speed)
    try:
        for count, ready_after in ((1, 20), (20, 20), (1, 200)):
            documents = [deployment(f"app{i}", replicas=1) for i in range(count)]
            label = f"{count:2} workload(s), pods ready after {ready_after:3} sim s ({ready_after / speed:4.1f} s)"
            ours = Side(sim, scratch / "c", kubectl, f"req-deployer-{count}-{ready_after}")
            theirs = Side(sim, scratch / "c", kubectl, f"req-kubectl-{count}-{ready_after}")
            tag = f"ready-after-{ready_after}s"
            assert ours.deploy_with_deployer(f"v1-{tag}", documents)[0] == 0
            assert theirs.deploy_with_kubectl(f"v1-{tag}", documents)[0] == 0
            sim.reset_request_counts()
            assert ours.deploy_with_deployer(f"v2-{tag}", documents)[0] == 0
            deployer_counts = sim.request_counts
            sim.reset_request_counts()
            assert theirs.deploy_with_kubectl(f"v2-{tag}", documents)[0] == 0
            warm = sim.request_counts
            cold_home = Path(tempfile.mkdtemp(dir=scratch))
            sim.reset_request_counts()
            assert theirs.deploy_with_kubectl(f"v3-{tag}", documents, home=cold_home)[0] == 0
            cold = sim.request_counts
            print(
                f"  {label}: deployer {total(deployer_counts):4}  kubectl {total(warm):4} (warm cache), "
                f"{total(cold):4} (cold)"
            )
            print(f"      deployer: {breakdown(deployer_counts)}")
            print(f"      kubectl (warm): {breakdown(warm)}")
    finally:
        sim.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per side for (b)")
    parser.add_argument("--ready-after", type=float, default=5.0, help="seconds until a new pod is ready, for (b)")
    parser.add_argument("--bad-clock-speed", type=float, default=60.0, help="simulator clock speed for (a)")
    parser.add_argument("--only", default="a,b,c", help="which parts to run, e.g. a,c")
    args = parser.parse_args()
    kubectl = kubectl_binary()
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"kubectl: {version.strip()}; python {sys.version.split()[0]}")
    parts = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="deployer-bench-rollout-") as scratch:
        if "a" in parts:
            bench_bad_image(Path(scratch), kubectl, args.bad_clock_speed)
        if "b" in parts:
            bench_healthy(Path(scratch), kubectl, args.runs, args.ready_after)
        if "c" in parts:
            bench_requests(Path(scratch), kubectl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
