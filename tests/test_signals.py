"""A cancelled workflow's SIGTERM must reach the rollback whatever deployer is doing when it arrives.

CI once saw a run freeze: the signal came while the main thread was writing a progress line, and the
handler tried to write its warning under the same console lock. The child process below gets the signal
from inside a write, the worst moment; a freeze shows as a timeout instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import io, os, signal, sys, threading
    from deployer.console import Console
    from deployer.pipeline import _cancelled_on_signals

    class SignalledMidWrite(io.StringIO):
        # The first write of a progress line delivers SIGTERM to this process while the console holds its lock.
        def write(self, text):
            if text.startswith("web:") and not getattr(self, "signalled", False):
                self.signalled = True
                os.kill(os.getpid(), signal.SIGTERM)
            return super().write(text)

    out = SignalledMidWrite()
    console = Console(out=out, env={}, interactive=False)
    cancel = threading.Event()
    with _cancelled_on_signals(cancel, console):
        console.info("web: 1/2 updated")
        if not cancel.wait(10):
            sys.exit("the signal did not set the cancel event")
    sys.stdout.write(out.getvalue())
    """
)


def test_a_sigterm_arriving_while_a_line_is_written_cancels_and_is_announced_once() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "web: 1/2 updated",
        "warning: received SIGTERM: stopping the wait and rolling back",
    ]


def test_leaving_without_a_signal_says_nothing_and_restores_the_default_handler() -> None:
    child = textwrap.dedent(
        """
        import io, signal, threading
        from deployer.console import Console
        from deployer.pipeline import _cancelled_on_signals

        out = io.StringIO()
        with _cancelled_on_signals(threading.Event(), Console(out=out, env={}, interactive=False)):
            pass
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGTERM)
        assert threading.active_count() == 1, threading.enumerate()
        print(repr(out.getvalue()))
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=30)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "''"
