"""What a person sees: log lines, warnings, progress, and secrets kept out of all of them.

The only module that writes to the terminal (besides the CLI's final error line). In a CI log every
line is plain and printed once, progress included (a line per change, no spinner). On a terminal,
progress is a live block of one line per workload, redrawn in place.

Every secret the run holds is registered with ``add_secret``: in GitHub Actions it is masked with
``::add-mask::`` before anything could print it, and everywhere it is replaced by ``***`` in what this
console writes.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO

from deployer import actions


class Console:
    def __init__(
        self,
        *,
        out: TextIO | None = None,
        env: Mapping[str, str] | None = None,
        interactive: bool | None = None,
        quiet: bool = False,
    ) -> None:
        self.out = out if out is not None else sys.stderr
        self.env = env if env is not None else os.environ
        self.in_actions = actions.is_github_actions(self.env)
        if interactive is None:
            interactive = self.out.isatty() and self.env.get("CI", "").lower() != "true" and not self.in_actions
        self.interactive = interactive
        self.quiet = quiet
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        self._progress: dict[str, str] = {}
        self._live_lines = 0

    # --- secrets -----------------------------------------------------------------------------------

    def add_secret(self, value: str | None) -> None:
        """Hide ``value`` from every line from now on (and from the Actions log, via ::add-mask::)."""
        if not value or len(value) < 4 or value in self._secrets:
            return
        # Each line of a multi-line secret (a key, a certificate) is hidden on its own too, as the runner's
        # masks are: one line of it quoted in an error message must not leak. Longest first, so a line
        # replaced early cannot break up a longer secret that contains it.
        pieces = [value, *(line.strip() for line in value.splitlines())]
        self._secrets.extend(dict.fromkeys(p for p in pieces if len(p) >= 4 and p not in self._secrets))
        self._secrets.sort(key=len, reverse=True)
        if self.in_actions:
            # Mask commands go to stdout, which the runner reads for workflow commands.
            for line in actions.mask(value):
                print(line, file=sys.stdout, flush=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # --- lines -------------------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        with self._lock:
            self._clear_live()
            print(self.redact(text), file=self.out, flush=True)
            self._draw_live()

    def info(self, text: str) -> None:
        if not self.quiet:
            self._write(text)

    def detail(self, text: str) -> None:
        """Build and push output: useful in a log, noise when --quiet."""
        if not self.quiet:
            self._write(text)

    def warn(self, text: str) -> None:
        if self.in_actions:
            self._write(actions.warning_annotation(self.redact(text)))
        else:
            self._write(f"warning: {text}")

    def error(self, text: str, *, file: str | None = None, line: int | None = None, col: int | None = None) -> None:
        if self.in_actions:
            short = actions.annotation_message(text)
            if short != text:
                # GitHub cuts long annotations: the whole message goes to the log, as text that cannot be a command.
                with actions.commands_stopped(self._write):
                    self._write(f"error: {text}")
            self._write(actions.error_annotation(self.redact(short), file=file, line=line, col=col))
        else:
            self._write(f"error: {text}")

    @contextmanager
    def phase(self, title: str) -> Iterator[None]:
        """A phase of the run: a collapsible group in Actions, a heading elsewhere."""
        if self.in_actions:
            self._write(actions.command("group", title))
            try:
                yield
            finally:
                self.finish_progress()
                self._write(actions.command("endgroup"))
        else:
            self.info(f"==> {title}")
            try:
                yield
            finally:
                self.finish_progress()

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
                print(self.redact(text), file=self.out, flush=True)

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
            for text in self._progress.values():
                self.out.write(self.redact(text) + "\n")
            self._live_lines = len(self._progress)
            self.out.flush()
