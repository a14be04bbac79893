"""What a person sees: log lines, warnings, progress, and secrets kept out of all of them.

The only module that writes to the terminal (besides the CLI's final error line): log lines to stderr, a
command's result (the plan, rendered manifests, the result document, a kubeconfig) to stdout. In a CI log every
line is plain and printed once, progress included (a line per change, no spinner). On a terminal,
progress is a live block of one line per workload, redrawn in place.

Every secret the run holds is registered with ``add_secret``: in GitHub Actions it is masked with
``::add-mask::`` before anything could print it, and everywhere it is replaced by ``***`` in what this
console writes.

In GitHub Actions the only workflow commands the runner obeys are the console's own (groups, warnings,
errors, masks). Any other line the runner would read as a command (build output, events, logs, API
messages, or a line of ours that quotes them) is written inside a ``::stop-commands::`` fence with a fresh
random token, opened and closed within one write under the console's lock: a mask, written under the same
lock, is never inside a fence. Python ``logging`` and ``warnings`` (the lock's renewals, the Kubernetes
client, urllib3) reach the person through ``warn`` while ``capturing_logs`` is active.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO

from deployer import redaction, workflow_commands


class Console:
    def __init__(
        self,
        *,
        out: TextIO | None = None,
        result_out: TextIO | None = None,
        env: Mapping[str, str] | None = None,
        interactive: bool | None = None,
        quiet: bool = False,
    ) -> None:
        self.out = out if out is not None else sys.stderr
        self._result_out = result_out
        self.env = env if env is not None else os.environ
        self.in_actions = workflow_commands.is_github_actions(self.env)
        if interactive is None:
            interactive = self.out.isatty() and self.env.get("CI", "").lower() != "true" and not self.in_actions
        self.interactive = interactive
        self.quiet = quiet
        self._secrets: list[str] = []
        self._pieces: list[str] = []  # what redact hides: redaction.secret_pieces(self._secrets)
        self._lock = threading.Lock()
        self._progress: dict[str, str] = {}
        self._live_lines = 0

    # --- secrets -----------------------------------------------------------------------------------

    def add_secret(self, value: str | None) -> None:
        """Hide ``value`` from every line from now on (and from the Actions log, via ::add-mask::)."""
        if not value or len(value) < redaction.MIN_SECRET_LENGTH or value in self._pieces:
            return
        self._secrets.append(value)
        self._pieces = redaction.secret_pieces(self._secrets)
        if self.in_actions:
            # The runner reads commands on both streams, with one stop-commands state for both, but not in
            # the order they were written across the two. On the console's stream the masks are ordered
            # with its fences (never inside one); on stdout, before anything printed there.
            masks = "".join(line + "\n" for line in workflow_commands.mask(value))
            with self._lock:
                for stream in dict.fromkeys([self.out, self._result_stream()]):
                    stream.write(masks)
                    stream.flush()

    def redact(self, text: str) -> str:
        return redaction.redact(text, self._pieces)

    # --- lines -------------------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        """Write text that is not a command of ours; in Actions nothing in it can act as one."""
        with self._lock:
            self._clear_live()
            self._print(self.redact(text))
            self._draw_live()

    def _write_command(self, line: str) -> None:
        """Write one workflow command the console made (its data escaped, so it is one line)."""
        with self._lock:
            self._clear_live()
            print(self.redact(line), file=self.out, flush=True)
            self._draw_live()

    def _print(self, text: str) -> None:
        # Called with the lock held: a fence opened here is closed before anyone else may write.
        if self.in_actions:
            self.out.write("".join(line + "\n" for line in workflow_commands.inert_lines(text)))
            self.out.flush()
        else:
            print(text, file=self.out, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self._write(text)

    def detail(self, text: str) -> None:
        """Build and push output: useful in a log, noise when --quiet."""
        if not self.quiet:
            self._write(text)

    def warn(self, text: str) -> None:
        if self.in_actions:
            self._write_command(workflow_commands.warning_annotation(self.redact(text)))
        else:
            self._write(f"warning: {text}")

    def error(self, text: str, *, file: str | None = None, line: int | None = None, col: int | None = None) -> None:
        if self.in_actions:
            short = workflow_commands.annotation_message(text)
            if short != text:
                # GitHub cuts long annotations: the whole message goes to the log first, where nothing in it
                # can act as a command (_write fences what could).
                self._write(f"error: {text}")
            self._write_command(workflow_commands.error_annotation(self.redact(short), file=file, line=line, col=col))
        else:
            self._write(f"error: {text}")

    @contextmanager
    def phase(self, title: str) -> Iterator[None]:
        """A phase of the run: a collapsible group in Actions, a heading elsewhere."""
        if self.in_actions:
            self._write_command(workflow_commands.command("group", title))
            try:
                yield
            finally:
                self.finish_progress()
                self._write_command(workflow_commands.command("endgroup"))
        else:
            self.info(f"==> {title}")
            try:
                yield
            finally:
                self.finish_progress()

    def result(self, text: str) -> None:
        """The command's result on stdout (``result_out``), exactly as given: the plan, the rendered manifests,
        the result document, a kubeconfig. Not redacted, as a kubeconfig is itself the secret asked for; what
        a result quotes is the command's to make inert. An OSError (a closed stdout) reaches the caller."""
        stream = self._result_stream()
        with self._lock:
            stream.write(text)
            stream.flush()

    def quoted_result(self, text: str) -> None:
        """A result that quotes text deployer did not write (a diff of what the cluster holds): as ``result``,
        but in Actions nothing in it can act as a workflow command (fenced, as the log's lines are)."""
        if self.in_actions:
            text = "".join(line + "\n" for line in workflow_commands.inert_lines(text))
        self.result(text)

    def colours_result(self) -> bool:
        """Whether a result may be coloured: stdout is a terminal, outside CI and Actions, and NO_COLOR unset."""
        stream = self._result_stream()
        plain = self.env.get("CI", "").lower() == "true" or self.in_actions or bool(self.env.get("NO_COLOR"))
        return not plain and stream.isatty()

    def _result_stream(self) -> TextIO:
        # Looked up at each write: sys.stdout may be replaced after the console was made (a test's capture).
        return self._result_out if self._result_out is not None else sys.stdout

    # --- progress ----------------------------------------------------------------------------------

    def progress(self, key: str, text: str) -> None:
        """The latest state of ``key`` (a workload): printed when it changes, or redrawn live on a terminal."""
        with self._lock:
            if self._progress.get(key) == text:
                return
            self._progress[key] = text
            if self.interactive:
                self._clear_live()
                self._draw_live()
            elif not self.quiet:
                self._print(self.redact(text))

    def finish_progress(self) -> None:
        """Leave the live block on screen as the final state and start afresh."""
        with self._lock:
            self._live_lines = 0
            self._progress.clear()

    def _clear_live(self) -> None:
        if self.interactive and self._live_lines:
            # Move up over the live block and clear it; the block is redrawn below the new line.
            self.out.write(f"\x1b[{self._live_lines}F\x1b[J")
            self._live_lines = 0

    def _draw_live(self) -> None:
        if self.interactive and self._progress:
            # Counted as the terminal shows them: a line break inside a state must not leave a line behind.
            lines = [
                line for text in self._progress.values() for line in workflow_commands.runner_lines(self.redact(text))
            ]
            self.out.write("".join(line + "\n" for line in lines))
            self._live_lines = len(lines)
            self.out.flush()

    # --- python logging and warnings ---------------------------------------------------------------

    @contextmanager
    def capturing_logs(self) -> Iterator[None]:
        """Route warnings logged by any module (deployer's lock, the Kubernetes client, urllib3) and those of
        the ``warnings`` module through ``warn``: redacted, and a ``::warning::`` in Actions. Without it they
        would reach stderr through logging's last-resort handler, raw."""
        handler = _ConsoleHandler(self)
        root = logging.getLogger()
        root.addHandler(handler)
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)
            root.removeHandler(handler)


class _ConsoleHandler(logging.Handler):
    """A logging handler that hands each WARNING (or worse) to the console as one warning, once per text:
    a library that warns on every request (urllib3 with an unverified certificate) says it once."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self._console = console
        self._said: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.name == "py.warnings":
                # formatwarning's text: "file:line: Category: message\n  source line"; the message is enough.
                text = text.strip().splitlines()[0].split(": ", 1)[-1]
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            if text not in self._said:
                self._said.add(text)
                self._console.warn(text)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)
