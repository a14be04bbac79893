"""``python -m tests.kubesim serve --kubeconfig FILE ...``: run a simulated cluster by hand until Ctrl-C.

It owns argument parsing and the foreground lifetime of one ``KubeSim``; nothing else.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from . import KubeSim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kubesim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve a simulated cluster until interrupted")
    serve.add_argument("--kubeconfig", required=True, type=Path, help="where to write the admin kubeconfig")
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    serve.add_argument("--registry", help="registry the docker kubelet pulls from, e.g. 127.0.0.1:5000")
    serve.add_argument("--registry-username", default="")
    serve.add_argument("--registry-password", default="")
    serve.add_argument("--kubelet", choices=["docker", "scripted"], default="docker")
    serve.add_argument("--clock-speed", type=float, default=1.0)
    serve.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args(argv)

    registry = None
    if args.registry:
        host = urlsplit(args.registry).netloc if "://" in args.registry else args.registry
        registry = (host, args.registry_username, args.registry_password)
    sim = KubeSim.start(
        kubelet=args.kubelet, clock_speed=args.clock_speed, registry=registry, nodes=args.nodes, port=args.port
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        sim.write_kubeconfig(args.kubeconfig)
        print(f"kubesim serving {sim.server_url}; kubeconfig written to {args.kubeconfig}", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
