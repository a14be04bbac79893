"""A fault-injecting TLS proxy on 127.0.0.1 in front of a Kubernetes API server (the simulator or a real one).

Clients connect to it with TLS (a throwaway CA of its own, ``ca_pem``; ALPN http/1.1 only, so kubectl does not
try HTTP/2) and it opens a TLS connection of its own to the upstream, checked against the upstream's CA, then
relays bytes both ways: requests, answers and long-lived watch streams pass unchanged, bearer tokens included.

On demand it breaks the API the way a control-plane restart or maintenance does, for a window of seconds
(``outage``) or until ``heal``:

- ``drop``: every open connection is cut, and new ones are accepted and reset at once;
- ``refuse``: every open connection is cut and the port stops listening (the client sees connection refused);
- ``status``: every open connection is cut, and each new connection gets one HTTP answer with the chosen
  status (503, 429, ...) and, when given, a ``Retry-After`` header, then is closed, as a load balancer in
  front of an API server that is down answers.

It records how many connections it took and which faults it answered, so tests can see that the client came
back after the window. It never reads or changes what passes through in the normal state.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import trustme

_BUFFER = 64 * 1024
_HEAD_LIMIT = 64 * 1024


class Fault(StrEnum):
    DROP = "drop"
    REFUSE = "refuse"
    STATUS = "status"


@dataclass(frozen=True)
class FaultWindow:
    """What the proxy does while the API is down."""

    fault: Fault
    status: int = 503
    retry_after: str | None = None


@dataclass(frozen=True)
class Answered:
    """One request the proxy answered itself during a STATUS window."""

    method: str
    path: str
    status: int


class ApiFaultProxy:
    """Start with ``start()`` (or ``running_fault_proxy``), point clients at ``url`` trusting ``ca_pem``."""

    def __init__(self, upstream_host: str, upstream_port: int, upstream_ca_pem: bytes) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._ca = trustme.CA(organization_name="api fault proxy throwaway CA")
        self._server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_context.set_alpn_protocols(["http/1.1"])
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._server_context)
        self._client_context = ssl.create_default_context(cadata=upstream_ca_pem.decode())
        self._client_context.set_alpn_protocols(["http/1.1"])
        self._lock = threading.Lock()
        self._window: FaultWindow | None = None
        self._heal_timer: threading.Timer | None = None
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._port = 0
        self._stopped = threading.Event()
        self._acceptor: threading.Thread | None = None
        self.connections = 0
        self.answered: list[Answered] = []
        self.windows_ended = 0

    # --- where clients go ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def kubeconfig_dict(self, token: str) -> dict[str, object]:
        """A kubeconfig that reaches the upstream through this proxy with ``token``."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "behind-proxy",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": "behind-proxy", "user": {"token": token}}],
            "contexts": [{"name": "behind-proxy", "context": {"cluster": "behind-proxy", "user": "behind-proxy"}}],
            "current-context": "behind-proxy",
        }

    def write_kubeconfig(self, path: Path, token: str) -> Path:
        path.write_text(json.dumps(self.kubeconfig_dict(token)))
        path.chmod(0o600)
        return path

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._listen()
        self._acceptor = threading.Thread(target=self._accept_forever, name="api-fault-proxy", daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            if self._heal_timer is not None:
                self._heal_timer.cancel()
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._cut_open_connections()
        if self._acceptor is not None:
            self._acceptor.join(timeout=10)

    # --- faults -------------------------------------------------------------------------------------

    def outage(self, fault: Fault, seconds: float | None, *, status: int = 503, retry_after: str | None = None) -> None:
        """Break the API now, for ``seconds`` (None: until ``heal``)."""
        window = FaultWindow(fault, status, retry_after)
        with self._lock:
            self._window = window
            if self._heal_timer is not None:
                self._heal_timer.cancel()
                self._heal_timer = None
            listener = self._listener if fault is Fault.REFUSE else None
            if listener is not None:
                self._listener = None
        if listener is not None:
            listener.close()
        self._cut_open_connections()
        if seconds is not None:
            timer = threading.Timer(seconds, self.heal)
            timer.daemon = True
            with self._lock:
                self._heal_timer = timer
            timer.start()

    def heal(self) -> None:
        """End the fault window: relay again (and listen again on the same port after ``refuse``)."""
        with self._lock:
            if self._window is None:
                return
            self._window = None
            self._heal_timer = None
            relisten = self._listener is None and not self._stopped.is_set()
            self.windows_ended += 1
        if relisten:
            self._listen()

    @property
    def broken(self) -> bool:
        with self._lock:
            return self._window is not None

    # --- internals ----------------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(64)
        listener.settimeout(0.2)
        with self._lock:
            self._port = listener.getsockname()[1]
            self._listener = listener

    def _accept_forever(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stopped.wait(0.05)
                continue
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                continue  # closed by outage(REFUSE) or stop()
            client.settimeout(None)
            with self._lock:
                self.connections += 1
                window = self._window
            if window is not None and window.fault is Fault.DROP:
                _reset(client)
                continue
            serving = threading.Thread(target=self._serve, args=(client, window), name="api-fault-proxy-conn")
            serving.daemon = True
            serving.start()

    def _track(self, sock: socket.socket) -> tuple[bool, FaultWindow | None]:
        """Track ``sock`` so that the next outage cuts it; returns whether the proxy still runs and the fault
        window at that moment. Both under one lock: a window that starts after this call cuts ``sock``, one
        that started before it is returned, so no connection accepted just before an outage slips through."""
        with self._lock:
            if self._stopped.is_set():
                return False, None
            self._open.add(sock)
            return True, self._window

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)

    def _cut_open_connections(self) -> None:
        with self._lock:
            victims, self._open = list(self._open), set()
        for sock in victims:
            _reset(sock)

    def _serve(self, raw: socket.socket, accepted_in: FaultWindow | None) -> None:
        running, window = self._track(raw)
        if not running:
            raw.close()
            return
        upstream: socket.socket | None = None
        client: socket.socket = raw
        try:
            if _drops_the_connection(window or accepted_in):
                _reset(raw)
                return
            try:
                # The handshake moves the descriptor into the TLS socket: track that one from now on.
                wrapped = self._server_context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                return
            self._untrack(raw)
            client = wrapped
            running, window = self._track(client)
            window = window or accepted_in
            if not running or _drops_the_connection(window):
                return
            if window is not None:
                self._answer_fault(wrapped, window)
                return
            try:
                plain = socket.create_connection(self._upstream, timeout=10)
                upstream = self._client_context.wrap_socket(plain, server_hostname=self._upstream[0])
                upstream.settimeout(None)
            except (OSError, ssl.SSLError):
                return
            if not self._track(upstream)[0]:
                return
            _relay(client, upstream)
        finally:
            self._untrack(client)
            client.close()
            if upstream is not None:
                self._untrack(upstream)
                upstream.close()

    def _answer_fault(self, client: ssl.SSLSocket, window: FaultWindow) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < _HEAD_LIMIT:
                chunk = client.recv(_BUFFER)
                if not chunk:
                    return
                head += chunk
        except (OSError, ssl.SSLError):
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        method, path = (request_line + ["", ""])[:2]
        with self._lock:
            self.answered.append(Answered(method, path, window.status))
        message = f"the API is unavailable (fault proxy, HTTP {window.status})"
        body = json.dumps(
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": window.status}
        ).encode()
        lines = [f"HTTP/1.1 {window.status} Fault", "Content-Type: application/json", f"Content-Length: {len(body)}"]
        if window.retry_after is not None:
            lines.append(f"Retry-After: {window.retry_after}")
        lines.append("Connection: close")
        try:
            client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        except (OSError, ssl.SSLError):
            pass


def _drops_the_connection(window: FaultWindow | None) -> bool:
    """A connection accepted just before a drop or refuse window began is cut like those the window cut."""
    return window is not None and window.fault in (Fault.DROP, Fault.REFUSE)


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side ends, from this one thread: an SSL socket must not be read in
    one thread while another writes to it."""
    peers = {client: upstream, upstream: client}
    try:
        while True:
            readable, _, broken = select.select(list(peers), [], list(peers), 1.0)
            if broken:
                return
            for source in readable:
                # Not blocking: what select saw may be a TLS 1.3 session ticket and no data at all, and a
                # blocking read would then wait for data that comes only once the other side is relayed.
                source.settimeout(0)
                try:
                    data = source.recv(_BUFFER)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                finally:
                    source.settimeout(None)
                if not data:
                    return
                # A TLS record may hold more than one read's worth of decrypted bytes: drain it now, since
                # select only sees what is still on the wire.
                while isinstance(source, ssl.SSLSocket) and source.pending():
                    data += source.recv(_BUFFER)
                peers[source].sendall(data)
    except (OSError, ssl.SSLError, ValueError):
        return  # ValueError: a socket closed by a fault or stop() under select
    finally:
        for sock in peers:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (linger 0), as a process that dies does, rather than a polite FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@contextmanager
def running_fault_proxy(upstream_url_host: str, upstream_port: int, upstream_ca_pem: bytes) -> Iterator[ApiFaultProxy]:
    proxy = ApiFaultProxy(upstream_url_host, upstream_port, upstream_ca_pem)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def wait_for_heal(proxy: ApiFaultProxy, timeout: float) -> None:
    """Block until the current fault window has ended (bounded)."""
    deadline = time.monotonic() + timeout
    while proxy.broken:
        if time.monotonic() >= deadline:
            raise AssertionError(f"the fault window did not end within {timeout:g}s")
        time.sleep(0.05)


__all__ = ["Answered", "ApiFaultProxy", "Fault", "FaultWindow", "running_fault_proxy", "wait_for_heal"]
