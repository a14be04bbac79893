"""How the GitHub Actions runner finds workflow commands in a step's output: a model for the tests to judge
deployer's output by.

Written from the runner's source (actions/runner: ``Runner.Sdk/ProcessInvoker``, ``Worker/Handlers/
OutputManager``, ``Worker/ActionCommandManager``, ``Runner.Common/ActionCommand``), whose rules are:

- Output is read as lines by .NET's ``StreamReader.ReadLine``: a line ends at ``\\n``, ``\\r`` or ``\\r\\n``.
- A line is offered as a command only when it holds ``##[`` or ``::``. It is first parsed in the current form
  (``TryParseV2``): after trimming leading white space it must start with ``::``; the command runs up to the
  next ``::``, a name then an optional space and ``k=v`` properties split on ``,``; the rest is the data.
  Failing that, in the legacy form (``TryParse``): ``##[`` anywhere in the line, the command up to the next
  ``]``, properties split on ``;``, the rest is the data.
- The name must be a registered command, compared without case; otherwise the line is plain output.
- ``stop-commands`` with data TOKEN stops all processing and registers TOKEN as a command; while stopped,
  only a command named TOKEN (``::TOKEN::`` or ``##[TOKEN]``) does anything: it resumes. An empty TOKEN can
  never resume. The state belongs to the job's command manager, shared by stdout and stderr.

The runner compares with .NET's culture-sensitive ``StartsWith``/``IndexOf``, which skip characters such as
the soft hyphen; this model compares exactly. The difference cannot hide a command from it: the runner cuts
the name at a fixed offset after the marker, so a marker matched across a skipped character leaves a name
starting with ``:``, ``#``, ``[`` or that character, which no registered command has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

#: The commands the runner registers (ActionCommandManager's extensions and stop-commands).
REGISTERED = frozenset(
    {
        "set-env",
        "set-output",
        "save-state",
        "add-mask",
        "add-path",
        "add-matcher",
        "remove-matcher",
        "debug",
        "warning",
        "error",
        "notice",
        "group",
        "endgroup",
        "echo",
        "stop-commands",
    }
)

# Char.IsWhiteSpace, which String.TrimStart uses: Unicode's White_Space property.
_DOTNET_WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + ("\u2028\u2029\u202f\u205f\u3000")
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Command:
    """A command as the runner parsed it, with the line it came from."""

    name: str
    properties: dict[str, str]
    data: str
    line: str
    form: str  # "::" or "##["


def runner_lines(output: str) -> list[str]:
    """The lines ReadLine returns for ``output`` (a last line without a line break included)."""
    lines = _LINE_BREAK.split(output)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _unescape(text: str, mappings: Iterable[tuple[str, str]]) -> str:
    for token, escaped in mappings:
        text = text.replace(escaped, token)
    return text


_DATA = (("\r", "%0D"), ("\n", "%0A"), ("%", "%25"))
_PROPERTY = (("\r", "%0D"), ("\n", "%0A"), (":", "%3A"), (",", "%2C"), ("%", "%25"))
_LEGACY = ((";", "%3B"), ("\r", "%0D"), ("\n", "%0A"), ("]", "%5D"), ("%", "%25"))


def _properties(text: str, separator: str, mappings: Iterable[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in filter(None, text.split(separator)):
        parts = [part for part in pair.split("=", 1) if part]
        if len(parts) == 2:
            found[parts[0]] = _unescape(parts[1], mappings)
    return found


def parse_v2(line: str, registered: Iterable[str]) -> Command | None:
    """``::name k=v,k=v::data`` at the start of the line once white space is trimmed, else None."""
    text = line.lstrip(_DOTNET_WHITE_SPACE)
    if not text.startswith("::"):
        return None
    end = text.find("::", 2)
    if end < 0:
        return None
    info = text[2:end]
    name, space, rest = info.partition(" ")
    if not _known(name, registered):
        return None
    properties = _properties(rest.strip(_DOTNET_WHITE_SPACE), ",", _PROPERTY) if space and name else {}
    return Command(name, properties, _unescape(text[end + 2 :], _DATA), line, "::")


def parse_legacy(line: str, registered: Iterable[str]) -> Command | None:
    """``##[name k=v;k=v]data`` anywhere in the line, else None."""
    start = line.find("##[")
    if start < 0:
        return None
    end = line.find("]", start)
    if end < 0:
        return None
    info = line[start + 3 : end]
    name, space, rest = info.partition(" ")
    if not _known(name, registered):
        return None
    properties = _properties(rest, ";", _LEGACY) if space else {}
    return Command(name, properties, _unescape(line[end + 1 :], _LEGACY), line, "##[")


def _known(name: str, registered: Iterable[str]) -> bool:
    return bool(name) and name.lower() in {r.lower() for r in registered}


@dataclass
class Runner:
    """The command manager of one job: feed it lines in the order the runner processes them."""

    stopped: bool = False
    token: str | None = None
    executed: list[Command] = field(default_factory=list)
    #: every stop and resume, in order (what the runner echoes for them)
    fences: list[Command] = field(default_factory=list)

    def feed(self, line: str) -> None:
        if not line or ("##[" not in line and "::" not in line):
            return
        registered = set(REGISTERED) | ({self.token} if self.token is not None else set())
        command = parse_v2(line, registered) or parse_legacy(line, registered)
        if command is None:
            return
        if self.stopped:
            if self.token and command.name.lower() == self.token.lower():
                self.fences.append(command)
                self.stopped, self.token = False, None
            return
        if command.name.lower() == "stop-commands":
            self.fences.append(command)
            self.stopped, self.token = True, command.data
            return
        self.executed.append(command)

    def feed_output(self, output: str) -> Runner:
        for line in runner_lines(output):
            self.feed(line)
        return self


def executed_commands(output: str) -> list[Command]:
    """The commands (other than stop and resume) the runner would carry out for ``output``."""
    return Runner().feed_output(output).executed
