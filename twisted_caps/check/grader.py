# -*- test-case-name: tests.test_check_grader -*-
"""
An autograder in a few lines: run C{caps-check --run} on a student's
server, which starts it, restarts it after a crash, always stops it, and
return the report, whose results a test asserts on by id.

Blocking, so it serves a pytest test or a script alike: the checks run in
a child C{python -m twisted_caps.check}, which has a reactor of its own.
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from twisted_caps.check.checks import select_checks
from twisted_caps.check.report import CheckReport
from twisted_caps.check.runner import WAITS_PER_CHECK
from twisted_caps.check.started_server import (
    PORT_PLACEHOLDER,
    STOP_TIMEOUT,
    accepts,
)
from twisted_caps.check.target import Profile, Transport

HOST = "127.0.0.1"


def grade_server(
    command: Sequence[str],
    profile: Profile = "lecture",
    transports: tuple[Transport, ...] = ("tcp", "udp"),
    timeout: float = 2.0,
    startup_timeout: float = 10.0,
    port: int | None = None,
) -> CheckReport:
    """
    Run the server C{command} (every C{{port}} in it replaced by the port),
    wait up to C{startup_timeout} seconds until it listens, run the checks
    of C{profile} over C{transports} against it with C{timeout}, stop it,
    and return the report. C{port=None} picks a free port (a fresh one
    each time the server is started again after a crash).

    The server runs in a session of its own, and stopping it (SIGTERM, then
    SIGKILL after L{STOP_TIMEOUT} seconds) stops every process it started.
    The end of its output is in the report's C{server_output}. A server
    that does not start leaves every check not graded, and the report's
    C{start_failure} says why.

    @raise ValueError: if C{command} has no C{{port}} and no C{port} is
        given, or C{transports} is empty.
    @raise RuntimeError: if C{port} is served already, before the server
        starts, or if the checker itself could not run (its error).
    """
    if not transports:
        raise ValueError("no transports to check")
    if port is None and not any(PORT_PLACEHOLDER in word for word in command):
        raise ValueError(f"the command has no {PORT_PLACEHOLDER} and no port= was given")
    if port is not None and accepts(HOST, port):
        raise RuntimeError(f"port {port} is served already: the grade would be another server's")
    only = {"tcp": ["--udp-only"], "udp": ["--tcp-only"]}.get(
        "".join({"tcp", "udp"} - set(transports)), []
    )
    count = len(select_checks(profile, transports))
    # Each check may run its waits, then stop the server and start it again.
    limit = count * (WAITS_PER_CHECK * timeout + 1 + 2 * STOP_TIMEOUT + startup_timeout) + 60
    with tempfile.TemporaryDirectory(prefix="caps-check-") as scratch:
        report_path = os.path.join(scratch, "report.json")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "twisted_caps.check",
                *("--run", shlex.join(command), "--host", HOST),
                *(["--port", str(port)] if port is not None else []),
                *("--profile", profile, "--timeout", f"{timeout:g}"),
                *("--startup-timeout", f"{startup_timeout:g}", "--json", report_path),
                *only,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=limit,
            check=False,
            text=True,
        )
        try:
            with open(report_path, encoding="utf-8") as document:
                return CheckReport.from_json(json.load(document))
        except FileNotFoundError:
            raise RuntimeError(f"caps-check wrote no report: {done.stderr.strip()}") from None
