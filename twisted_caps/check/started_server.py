# -*- test-case-name: tests.test_check_started_server -*-
"""
A server caps-check starts itself (C{caps-check --run}, and
L{twisted_caps.check.grade_server} through it): run in a session of its
own on a free port, its output kept in a file, watched between checks,
started again after it stops, and always stopped, its children with it.
Every wait is bounded.
"""

import os
import signal
import socket
import subprocess
from collections.abc import Collection, Sequence
from contextlib import suppress
from typing import Any

from twisted_caps.check.feedback import error_words, seconds
from twisted_caps.check.listening import listening_ports, session_processes
from twisted_caps.check.probes import pause

#: Where the server's port goes in its command line.
PORT_PLACEHOLDER = "{port}"
#: Seconds a server may take to listen, unless told otherwise.
DEFAULT_STARTUP_TIMEOUT = 10.0
#: Seconds a stopped server may take to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 5.0
#: Seconds between two looks at a starting server.
POLL_INTERVAL = 0.05
#: Seconds a server that no longer listens gets to end, looked at every
#: L{EXIT_POLL_INTERVAL} seconds: its sockets close before it can be reaped.
EXIT_GRACE = 2.0
EXIT_POLL_INTERVAL = 0.01
#: The end of the server's output that reports carry: at most this many
#: lines and characters, read from at most this many bytes at the file's end.
TAIL_LINES = 12
TAIL_CHARACTERS = 2000
TAIL_BYTES = 16384
#: Characters of the server's last line quoted in a one-line detail.
LAST_LINE_CHARACTERS = 200


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


def accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to C{host}:C{port} is accepted (it is closed at once)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def bound(port: int) -> bool:
    """Whether UDP C{port} is bound by someone on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return True
    return False


def exit_words(returncode: int) -> str:
    """How a process ended, in words: C{exited with status 1}, C{was killed by SIGSEGV}."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed by {name}"


def stop(process: "subprocess.Popen[bytes]") -> None:
    """Stop the process's whole session: SIGTERM, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(STOP_TIMEOUT)
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # children left behind
            return
        except subprocess.TimeoutExpired:
            continue


def last_line(output: str) -> str:
    """The last line of C{output} that is not blank (a traceback's is its exception)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= LAST_LINE_CHARACTERS else line[: LAST_LINE_CHARACTERS - 3] + "..."


class StartedServer:
    """
    The server C{command} (each C{{port}} in it replaced by the port) run by
    caps-check. Each start takes a fresh free port, unless C{port} is
    given: a server that dies leaves its closed connections in TIME_WAIT
    on its port, which its next C{bind()} without C{SO_REUSEADDR} would
    be refused. Its output goes to C{log_path}, for every start.
    """

    def __init__(
        self,
        reactor: Any,
        command: Sequence[str],
        host: str,
        transports: Collection[str],
        startup_timeout: float,
        log_path: str,
        port: int | None = None,
    ) -> None:
        self.reactor = reactor
        self.command = list(command)
        self.host = host
        self.transports = transports
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self.fixed_port = port
        self.port = port or 0
        self.process: subprocess.Popen[bytes] | None = None
        self._run_starts_at = 0
        self._killed = False

    async def start(self) -> str:
        """
        Start the server and wait until it listens: C{""}, or why it did
        not, in one line (it is stopped then).
        """
        if self._killed:
            return "the server was not started again: caps-check is stopping"
        self.port = self.fixed_port or free_port()
        argv = [word.replace(PORT_PLACEHOLDER, str(self.port)) for word in self.command]
        with open(self.log_path, "ab") as log:
            self._run_starts_at = log.tell()
            try:
                self.process = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    # print() shows at once, not only when the server exits normally.
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            except OSError as failure:
                self.process = None
                return f"the server did not start: cannot run {argv[0]!r}: {error_words(failure)}"
        deadline = self.reactor.seconds() + self.startup_timeout
        while self.exit_status() is None and self.reactor.seconds() < deadline:
            if self.listening():
                return ""
            await pause(self.reactor, POLL_INTERVAL)
        reason = self._why_not_listening()
        self.stop()
        return reason

    def listening(self, transport: str | None = None) -> bool:
        """
        Whether the server listens on its port over C{transport} (C{tcp} or
        C{udp}; by default TCP when TCP is checked, else UDP). Read from
        /proc where there is one, so no connection reaches the server
        before the checks; else by connecting, or binding the UDP port.
        """
        transport = transport or ("tcp" if "tcp" in self.transports else "udp")
        if self.process is not None and os.path.exists("/proc/net/tcp"):
            ports = listening_ports(session_processes(self.process.pid))
            return (transport.upper(), self.port) in ports
        return accepts(self.host, self.port) if transport == "tcp" else bound(self.port)

    def _why_not_listening(self) -> str:
        status = self.exit_status()
        assert self.process is not None
        if status is None:
            what = f"did not listen on port {self.port} within {seconds(self.startup_timeout)}"
        else:
            what = f"{status} before it listened on port {self.port}"
        reasons = [f"the server did not start: it {what}"]
        if status is None:
            elsewhere = sorted(listening_ports(session_processes(self.process.pid)))
            if elsewhere:
                ports = ", ".join(f"{transport} port {port}" for transport, port in elsewhere)
                reasons.append(
                    f"it listens on {ports} instead: take the port from the command line, "
                    f"where caps-check gives it ({' '.join(self.command)})"
                )
        ending = last_line(self.output(this_run_only=True))
        reasons.append(f"its output ends with: {ending}" if ending else "it printed nothing")
        return "; ".join(reasons)

    def exit_status(self) -> str | None:
        """How the server ended, in words, or None while it runs."""
        if self.process is None:
            return "did not start"
        returncode = self.process.poll()
        return None if returncode is None else exit_words(returncode)

    async def ended_after(self, transports: Collection[str]) -> str | None:
        """
        How the server ended during a check, in words, or None if it still
        listens over each of C{transports} (those that reached it). A
        process that dies closes its sockets before it can be reaped, so
        one that no longer listens gets up to L{EXIT_GRACE} seconds to end;
        if it lives on (a thread of it died), it stopped listening.
        """
        status = self.exit_status()
        deaf = [transport for transport in transports if not self.listening(transport)]
        if status is None and deaf:
            deadline = self.reactor.seconds() + EXIT_GRACE
            while (status := self.exit_status()) is None and self.reactor.seconds() < deadline:
                await pause(self.reactor, EXIT_POLL_INTERVAL)
            status = status or f"stopped listening on {deaf[0].upper()} port {self.port}"
        return status

    def stop(self) -> None:
        """Stop the server and every process of its session (bounded: L{stop})."""
        if self.process is not None:
            stop(self.process)

    def kill_now(self) -> None:
        """
        Kill the server's session at once, without waiting, and start it no
        more: caps-check is being stopped (a signal), and what runs the
        checks may never resume.
        """
        self._killed = True
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def note(self, text: str) -> None:
        """Write a line of caps-check's own into the server's output, to mark a restart."""
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"[caps-check] {text}\n")

    def output(self, this_run_only: bool = False) -> str:
        """
        The end of the server's output (L{TAIL_LINES} lines, at most
        L{TAIL_CHARACTERS} characters), of every start or of the last only.
        """
        try:
            with open(self.log_path, "rb") as log:
                end = log.seek(0, os.SEEK_END)
                first = self._run_starts_at if this_run_only else 0
                start = max(end - TAIL_BYTES, first)
                log.seek(start)
                data = log.read(end - start)
        except OSError:
            return ""
        lines = data.decode(errors="replace").splitlines()
        if start > first and lines:
            lines = lines[1:]  # it may begin inside a line
        tail = "\n".join(lines[-TAIL_LINES:])
        return tail[-TAIL_CHARACTERS:]
