"""How a run learns that it must stop: SIGTERM (a cancelled workflow), SIGINT (Ctrl-C), SIGHUP (a closed
terminal), or the deploy lock lost to another run.

Owns the signal handlers for the length of a run and the ``Cancellation`` the waits watch. Must not write
from a signal handler (see cancelled_on_signals); what happened is said from a thread of its own.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from deployer.console import Console
from deployer.errors import RunCancelledError

CANCELLING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Cancellation:
    """How a run learns that it must stop: a signal, or the deploy lock lost to another run.

    Until ``protect_changes``, a signal raises RunCancelledError wherever the run is, as Ctrl-C would: a build's
    child process is killed and its temporary directory removed on the way out, and the exit code is the
    shell's for that signal. From then on (the cluster is about to change) a signal only sets ``event``, which
    the lock wait and the rollout wait watch, so that whatever was applied is rolled back to its end.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal: signal.Signals | None = None
        self.interrupting = True

    def protect_changes(self) -> None:
        self.interrupting = False

    def error(self, when: str) -> RunCancelledError:
        name = self.signal.name if self.signal is not None else "a signal"
        number = int(self.signal) if self.signal is not None else int(signal.SIGTERM)
        return RunCancelledError(name, number, f"cancelled by {name} {when}; nothing was applied to the cluster")


@contextmanager
def cancelled_on_signals(console: Console) -> Iterator[Cancellation]:
    """Handle SIGTERM, SIGINT and SIGHUP for the whole run (see Cancellation); the first signal counts, a
    second one does not interrupt the clean-up or the rollback the first one started."""
    cancellation = Cancellation()
    if threading.current_thread() is not threading.main_thread():
        yield cancellation
        return
    leaving = False

    # The handler runs on the main thread between two bytecodes, possibly while that thread holds the
    # console's lock: it must not write. It only records and sets the event (whose lock the main thread
    # never takes: it only reads is_set), or raises; this thread says what happened.
    def handle(signum: int, frame: FrameType | None) -> None:
        if cancellation.signal is not None:
            return
        cancellation.signal = signal.Signals(signum)
        if cancellation.interrupting:
            raise cancellation.error("before anything was applied")
        cancellation.event.set()

    def announce() -> None:
        cancellation.event.wait()
        if not leaving and cancellation.signal is not None:
            console.warn(f"received {cancellation.signal.name}: stopping the wait and rolling back")

    herald = threading.Thread(target=announce, name="deployer-signals", daemon=True)
    herald.start()
    previous = {sig: signal.signal(sig, handle) for sig in CANCELLING_SIGNALS}
    try:
        yield cancellation
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        leaving = not cancellation.event.is_set()
        cancellation.event.set()
        herald.join()
