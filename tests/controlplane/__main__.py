"""``python -m tests.controlplane build|serve|pin``: build the control plane, run it by hand until Ctrl-C, or
pin other Kubernetes and etcd releases.

It owns argument parsing and the foreground lifetime of one ``ControlPlane``; nothing else. ``serve`` takes the
same flags as ``python -m tests.kubesim serve``, so either can stand behind a test.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from . import ControlPlane, StartError
from .building import BuildError, ensure_built, pin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.controlplane", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the binaries into the cache (nothing when already there)")
    serve = commands.add_parser("serve", help="serve a cluster until interrupted")
    serve.add_argument("--kubeconfig", required=True, type=Path, help="where to write the admin kubeconfig")
    serve.add_argument("--registry", help="registry the node agent pulls from, e.g. 127.0.0.1:5000")
    serve.add_argument("--registry-username", default="")
    serve.add_argument("--registry-password", default="")
    serve.add_argument("--kubelet", choices=["docker", "scripted"], default="docker")
    serve.add_argument("--nodes", type=int, default=1)
    pinning = commands.add_parser("pin", help="rewrite kube/go.mod and etcd/go.mod for other releases")
    pinning.add_argument("--kubernetes", required=True, help="a k8s.io/kubernetes release, e.g. v1.35.4")
    pinning.add_argument("--etcd", required=True, help="a go.etcd.io/etcd/server/v3 release, e.g. v3.6.16")
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            binaries = ensure_built(log=True)
            print(
                f"kube-apiserver, kube-controller-manager, kube-scheduler {binaries.kubernetes_version}: "
                f"{binaries.kube}\netcd {binaries.etcd_version}: {binaries.etcd}"
            )
            return 0
        if args.command == "pin":
            pin(args.kubernetes, args.etcd)
            return 0
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    registry = None
    if args.registry:
        host = urlsplit(args.registry).netloc if "://" in args.registry else args.registry
        registry = (host, args.registry_username, args.registry_password)
    # While starting, a signal interrupts the start (which stops what it began); once serving, it ends the wait.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        plane = ControlPlane.start(registry=registry, nodes=args.nodes, kubelet=args.kubelet)
    except (BuildError, StartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        plane.write_kubeconfig(args.kubeconfig)
        print(
            f"control plane serving {plane.server_url}; kubeconfig written to {args.kubeconfig}",
            file=sys.stderr,
            flush=True,
        )
        stop.wait()
    finally:
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
