# -*- test-case-name: tests.test_check -*-
"""
The C{caps-check} command (also C{python -m twisted_caps.check}): check a
capitalization server from outside, print one line per check, exit 0 when
every check passed, 1 when any failed, 2 for a usage error.
"""

import os
import shlex
import sys
import tempfile
import textwrap
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import react
from twisted.python import usage

from twisted_caps import __version__
from twisted_caps.check.checks import CHECK_IDS, CHECKS, select_checks
from twisted_caps.check.probes import pause
from twisted_caps.check.report import CheckReport, CheckResult, write_json
from twisted_caps.check.runner import DEFAULT_TIMEOUT, run_checks, run_with_server
from twisted_caps.check.started_server import (
    DEFAULT_STARTUP_TIMEOUT,
    PORT_PLACEHOLDER,
    StartedServer,
    accepts,
)
from twisted_caps.check.target import PROFILES, Transport, chosen_transports
from twisted_caps.core.option_values import points, port_number, quoted, seconds

USAGE_ERROR = 2
#: The port checked when none is given (the course's).
DEFAULT_PORT = 1200


def _check_list() -> str:
    return "\n".join(
        textwrap.fill(
            f"{check.id} ({check.profile}): {check.proves}",
            78,
            initial_indent="  ",
            subsequent_indent="      ",
        )
        for check in CHECKS
    )


DESCRIPTION = """
Check a capitalization server from outside, as the course's assignment
and twisted-caps' protocol define it, and say what to fix.

Prints one line per check (id, PASS or FAIL and, for a failure, what was
sent, what came back, what was expected and what to fix; SKIP for a check
that could not judge the server, because it had stopped), then "N passed,
M failed". Exit status: 0 when every check passed, 1 when any did not, 2
for a usage error or a report file that cannot be written. Checks run one
after another and close their connections, so an iterative server gets a
fair trial of each.

--run 'python3 server.py {{port}}' starts the server itself, on a free
port, starts it again after a check it crashed during (that check's line
says how it ended and quotes its last output), and always stops it and
every process it started. A server that does not listen within
--startup-timeout seconds gets one line saying why.

Profile "lecture" is what the lecture's assignment asks; "full" adds the
rest of twisted-caps' protocol. The checks, in the order they run:
{checks}

--gradescope writes Gradescope's results.json: one test per check, worth
1 point unless --weight ID=POINTS says otherwise.
"""


class CheckOptions(usage.Options):
    """The options of C{caps-check}; C{--help} prints them and L{DESCRIPTION}."""

    synopsis = (
        "Usage: caps-check [--host H] [--port P] [--profile lecture|full]\n"
        "                  [--run 'COMMAND ... {port}'] [--startup-timeout S]\n"
        "                  [--tcp-only | --udp-only] [--check ID ...] [--timeout S]\n"
        "                  [--json FILE] [--gradescope FILE] [--weight ID=POINTS ...]"
    )
    # usage.Options reflows longdesc into one paragraph; getUsage keeps the lines.
    longdesc = ""
    optParameters = [
        ["host", None, None, "Server host name or IP address [localhost; 127.0.0.1 with --run]."],
        ["port", "p", None, "Server port, TCP and UDP [1200; a free port with --run]."],
        [
            "run",
            None,
            None,
            "Start the server COMMAND ({port} is its port) for the checks, again after "
            "a crash, and stop it at the end.",
        ],
        [
            "startup-timeout",
            None,
            f"{DEFAULT_STARTUP_TIMEOUT:g}",
            "Seconds the server of --run may take to listen.",
        ],
        ["profile", None, "lecture", "Checks to run: lecture or full."],
        ["timeout", "t", f"{DEFAULT_TIMEOUT:g}", "Seconds each wait of a check may last."],
        ["json", None, None, "Also write the results to FILE as JSON."],
        ["gradescope", None, None, "Also write Gradescope's results.json to FILE."],
    ]
    optFlags = [
        ["tcp-only", None, "Run the TCP checks only."],
        ["udp-only", None, "Run the UDP checks only."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["weights"] = {}
        self["checks"] = []
        #: Set when a signal stops caps-check while it runs a server of its own.
        self["interrupted"] = False

    def getUsage(self, width: int | None = None) -> str:
        """The options, then the description with its lines as written."""
        return str(super().getUsage(width)) + DESCRIPTION.format(checks=_check_list())

    def opt_version(self) -> None:
        """Print caps-check's version and exit."""
        print(f"caps-check (twisted-caps) {__version__}")
        raise SystemExit(0)

    def opt_weight(self, value: str) -> None:
        """Points of check ID in --gradescope (ID=POINTS; default 1; repeatable)."""
        check_id, worth = parse_weight(value)
        self["weights"][check_id] = worth

    def opt_check(self, check_id: str) -> None:
        """Run check ID only (repeatable; the checks still run in their order)."""
        if check_id not in CHECK_IDS:
            known = ", ".join(CHECK_IDS)
            raise usage.UsageError(f"--check: no check {quoted(check_id)} ({known})")
        self["checks"].append(check_id)

    def postOptions(self) -> None:
        run = self["run"]
        if self["host"] is None:
            self["host"] = "127.0.0.1" if run is not None else "localhost"
        host = self["host"]
        try:
            valid_host = bool(host) and bool(host.encode("idna"))
        except UnicodeError:
            valid_host = False
        if not valid_host:
            raise usage.UsageError(f"--host: {host!r} is not a host name or IP address")
        if self["port"] is not None:
            self["port"] = port_number(self["port"], "--port", lowest=1)
        elif run is None:
            self["port"] = DEFAULT_PORT
        self["timeout"] = seconds(
            self["timeout"], "--timeout", "a number of seconds > 0 (at most a year)", positive=True
        )
        self["startup-timeout"] = seconds(
            self["startup-timeout"],
            "--startup-timeout",
            "a number of seconds > 0 (at most a year)",
            positive=True,
        )
        if self["profile"] not in PROFILES:
            raise usage.UsageError(f"--profile: {self['profile']!r} is not lecture or full")
        if self["tcp-only"] and self["udp-only"]:
            raise usage.UsageError("--tcp-only and --udp-only exclude each other")
        if run is not None:
            self["command"] = _server_command(run, port_given=self["port"] is not None)
        self._check_chosen_checks()
        for name in ("json", "gradescope"):
            if self[name] is not None:
                _check_writable(name, self[name])

    def _check_chosen_checks(self) -> None:
        """Refuse --check and --weight for checks this run would not run."""
        runs = [check.id for check in select_checks(self["profile"], self.transports)]
        for option, chosen in (("--check", self["checks"]), ("--weight", self["weights"])):
            for check_id in chosen:
                if check_id not in runs:
                    raise usage.UsageError(
                        f"{option}: {check_id} is not among the checks this run makes "
                        f"(profile {self['profile']}{self._only_words()}: {', '.join(runs)})"
                    )

    def _only_words(self) -> str:
        if self["tcp-only"]:
            return ", --tcp-only"
        return ", --udp-only" if self["udp-only"] else ""

    def parseArgs(self, *extra: str) -> None:
        if extra:
            raise usage.UsageError(f"unexpected argument {extra[0]!r}")

    @property
    def transports(self) -> tuple[Transport, ...]:
        """The transports whose checks run."""
        return chosen_transports(self["tcp-only"], self["udp-only"])


def _server_command(run: str, port_given: bool) -> list[str]:
    """The words of --run's COMMAND, refused if it is empty or has no {port} to fill."""
    try:
        words = shlex.split(run)
    except ValueError as failure:
        raise usage.UsageError(
            f"--run: {quoted(run)} cannot be split into words: {failure}"
        ) from None
    if not words:
        raise usage.UsageError("--run: the command is empty")
    if not port_given and not any(PORT_PLACEHOLDER in word for word in words):
        raise usage.UsageError(
            f"--run: the command has no {PORT_PLACEHOLDER} (where its port goes) and no "
            "--port says which port it listens on"
        )
    return words


def _check_writable(option: str, path: str) -> None:
    """Refuse a report file that could not be written, before any check runs."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise usage.UsageError(f"--{option}: {path} is a directory")
    if not os.path.isdir(folder):
        raise usage.UsageError(f"--{option}: no directory {folder}")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise usage.UsageError(f"--{option}: {path} is not writable")


async def run(reactor: Any, options: CheckOptions) -> None:
    """Carry out one C{caps-check}; exit with its status."""

    def print_line(line: str) -> None:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # the reader went away (| head): finish quietly
            _silence_stdout()

    def show(result: CheckResult) -> None:
        if not options["interrupted"]:  # a check cut short by the signal proves nothing
            print_line(result.line())

    only = options["checks"] or None
    if options["run"] is None:
        report = await run_checks(
            reactor,
            options["host"],
            options["port"],
            options["profile"],
            options.transports,
            options["timeout"],
            on_result=show,
            only=only,
        )
    else:
        report = await _run_server(reactor, options, show, only)
        if options["interrupted"]:
            raise SystemExit(1)  # main() says why
        if report.start_failure:
            print_line(report.start_failure)
    print_line(report.summary())
    _write_reports(report, options)
    raise SystemExit(0 if report.all_passed else 1)


async def _run_server(
    reactor: Any, options: CheckOptions, show: Callable[[CheckResult], None], only: Any
) -> CheckReport:
    """Start the server of --run, check it, and stop it, whatever happens."""
    port = options["port"]
    if port is not None and accepts(options["host"], port):
        sys.stderr.write(
            f"caps-check: --port: port {port} is served already: "
            "the grade would be another server's\n"
        )
        raise SystemExit(USAGE_ERROR)
    # The reactor handles SIGTERM and SIGINT once it runs: start nothing before.
    await pause(reactor, 0)
    server = StartedServer(
        reactor,
        options["command"],
        options["host"],
        options.transports,
        options["startup-timeout"],
        os.path.join(options["scratch"], "server.log"),
        port,
    )

    # Stopped by a signal, caps-check still stops the server it started.
    def interrupted() -> None:
        options["interrupted"] = True
        server.kill_now()

    trigger = reactor.addSystemEventTrigger("before", "shutdown", interrupted)
    try:
        return await run_with_server(
            reactor,
            server,
            options["profile"],
            options.transports,
            options["timeout"],
            on_result=show,
            only=only,
        )
    finally:
        server.stop()
        if not options["interrupted"]:  # a trigger that ran is gone already
            reactor.removeSystemEventTrigger(trigger)


def _write_reports(report: CheckReport, options: CheckOptions) -> None:
    documents = {
        "json": report.to_json,
        "gradescope": lambda: report.to_gradescope(options["weights"]),
    }
    for name, document in documents.items():
        path = options[name]
        if path is None:
            continue
        try:
            write_json(path, document())
        except OSError as failure:
            sys.stderr.write(f"caps-check: --{name}: cannot write {path}: {failure.strerror}\n")
            raise SystemExit(USAGE_ERROR) from None


def _silence_stdout() -> None:
    """Send what is left to print to /dev/null, so exiting does not fail on a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> None:
    """Entry point of C{caps-check}."""
    options = CheckOptions()
    try:
        options.parseOptions(argv)
    except BrokenPipeError:  # --help | head
        _silence_stdout()
        raise SystemExit(0) from None
    except usage.UsageError as failure:
        sys.stderr.write(f"caps-check: {failure} (see --help)\n")
        raise SystemExit(USAGE_ERROR) from None
    # Made here, not in the reactor: a signal may stop the reactor while a
    # check waits, and what waits is then never resumed to clean up.
    with tempfile.TemporaryDirectory(prefix="caps-check-") as scratch:
        options["scratch"] = scratch
        try:
            react(lambda reactor: ensureDeferred(run(reactor, options)))
        except SystemExit:
            if options["interrupted"]:
                sys.stderr.write(
                    "caps-check: stopped by a signal before the checks ended; "
                    "the server it started was stopped\n"
                )
                raise SystemExit(1) from None
            raise


def parse_weight(value: str) -> tuple[str, float]:
    """
    A C{--weight ID=POINTS} of caps-check or caps-autograder, as the check's
    id and its points.

    @raise usage.UsageError: with one line, for a value that is not
        ID=POINTS, an unknown id, or points out of range.
    """
    check_id, equals, worth = value.partition("=")
    if not equals:
        raise usage.UsageError(f"--weight: {quoted(value)} is not ID=POINTS")
    if check_id not in CHECK_IDS:
        known = ", ".join(CHECK_IDS)
        raise usage.UsageError(f"--weight: no check {quoted(check_id)} ({known})")
    return check_id, points(worth, f"--weight {check_id}")
