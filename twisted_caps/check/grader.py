# -*- test-case-name: tests.test_check_grader -*-
"""
An autograder in a few lines: start a student's server as a child process,
wait until it listens, run the checks, stop it (always), and return the
report, whose results a test asserts on by id.

Blocking, so it serves a pytest test or a script alike: the checks run in
a child C{python -m twisted_caps.check}, which has a reactor of its own.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from contextlib import suppress

from twisted_caps.check.checks import select_checks
from twisted_caps.check.report import CheckReport
from twisted_caps.check.runner import WAITS_PER_CHECK
from twisted_caps.check.target import Profile, Transport

HOST = "127.0.0.1"
#: Where the server's port goes in its command line.
PORT_PLACEHOLDER = "{port}"
#: Seconds a stopped server may take to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 5.0


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
    and return the report. C{port=None} picks a free port.

    The server runs in a session of its own, and stopping it (SIGTERM, then
    SIGKILL after L{STOP_TIMEOUT} seconds) stops every process it started.
    Its output is in the report's C{server_output}. A server that does not
    start fails every check (its output says why).

    @raise ValueError: if C{command} has no C{{port}} and no C{port} is
        given, or C{transports} is empty.
    @raise RuntimeError: if C{port} is served already, before the server
        starts, or if the checker itself could not run (its error).
    """
    if not transports:
        raise ValueError("no transports to check")
    if port is None:
        if not any(PORT_PLACEHOLDER in word for word in command):
            raise ValueError(f"the command has no {PORT_PLACEHOLDER} and no port= was given")
        port = free_port()
    elif _accepts(port):
        raise RuntimeError(f"port {port} is served already: the grade would be another server's")
    argv = [word.replace(PORT_PLACEHOLDER, str(port)) for word in command]
    with tempfile.TemporaryDirectory(prefix="caps-check-") as scratch:
        log_path = os.path.join(scratch, "server.log")
        report_path = os.path.join(scratch, "report.json")
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        try:
            wait_until_listening(server, port, transports, startup_timeout)
            checker_error = _run_checker(port, profile, transports, timeout, report_path)
        finally:
            stop(server)
        with open(log_path, "rb") as log:
            output = log.read().decode(errors="replace")
        try:
            with open(report_path, encoding="utf-8") as document:
                return CheckReport.from_json(json.load(document), output)
        except FileNotFoundError:
            raise RuntimeError(f"caps-check wrote no report: {checker_error}") from None


def _run_checker(
    port: int, profile: Profile, transports: tuple[Transport, ...], timeout: float, path: str
) -> str:
    """Run caps-check against loopback C{port}, its report to C{path}; return its stderr."""
    only = {"tcp": ["--udp-only"], "udp": ["--tcp-only"]}.get(
        "".join({"tcp", "udp"} - set(transports)), []
    )
    count = len(select_checks(profile, transports))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "twisted_caps.check",
            "--host",
            HOST,
            "--port",
            str(port),
            "--profile",
            profile,
            "--timeout",
            f"{timeout:g}",
            "--json",
            path,
            *only,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=count * (WAITS_PER_CHECK * timeout + 1) + 60,
        check=False,
        text=True,
    )
    return done.stderr.strip()


def free_port() -> int:
    """
    A port free just now for TCP and UDP on every address, as a student's
    server binds it (C{bind(('', port))}, no C{SO_REUSEADDR}): a port free
    on loopback only may still have connections of other addresses on it.
    """
    while True:
        with socket.socket() as probe:
            probe.bind(("", 0))
            port: int = probe.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagrams:
            try:
                datagrams.bind(("", port))
            except OSError:
                continue
        return port


def wait_until_listening(
    server: "subprocess.Popen[bytes]", port: int, transports: Collection[str], timeout: float
) -> bool:
    """
    Wait until the server accepts a TCP connection on C{port} (closed at
    once, without sending), or, for UDP only, until the port is bound;
    False if it exits first or C{timeout} seconds pass.
    """
    deadline = time.monotonic() + timeout
    while server.poll() is None and time.monotonic() < deadline:
        if ("tcp" in transports and _accepts(port)) or ("tcp" not in transports and _bound(port)):
            return True
        time.sleep(0.05)
    return False


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return True
    return False


def stop(server: "subprocess.Popen[bytes]") -> None:
    """Stop the server's whole session: SIGTERM, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        try:
            server.wait(STOP_TIMEOUT)
            with suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)  # children left behind
            return
        except subprocess.TimeoutExpired:
            continue
