# -*- test-case-name: tests.test_tap -*-
"""
The C{caps} command of C{twistd} and C{twist}: options in, service out.
"""

import os
import re
import sys
from collections.abc import Sequence

from twisted.internet import endpoints
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.python import usage

import twisted_caps
from twisted_caps._twisted.startup_errors import report_start_up_errors_whole
from twisted_caps.core.help_text import HelpfulOptions
from twisted_caps.core.option_values import (
    MAX_SECONDS,
    one_line,
    port_number,
    quoted,
    seconds,
    whole_number,
)
from twisted_caps.operating.daemon import CapsDaemon, HostSettings
from twisted_caps.operating.supervisor import WorkersService
from twisted_caps.serving import endpoint_strings
from twisted_caps.serving.config import CapsConfig, TcpListener, UdpListener
from twisted_caps.serving.listeners import stream_endpoint
from twisted_caps.serving.service import CapsService

DEFAULT_PORT = 1200
#: Pending connections the kernel may queue, on every listener that names
#: no backlog of its own: Twisted's default of 50 drops SYNs when hundreds
#: of clients connect at once (they retry after a second).
BACKLOG = 1024
#: The most a count option takes: more than a process can hold descriptors
#: (Linux caps fs.nr_open at 2**30), so no real limit is out of reach.
MAX_COUNT = 1_000_000_000
#: The most --workers takes: one per hardware thread of a large two-socket
#: server. Each worker is a Python process of about 50 MB (51 MB resident,
#: measured), so the bound also keeps a typo (--workers 100000) from forking
#: the host out of memory.
MAX_WORKERS = 256


class Options(HelpfulOptions):
    """
    Serve capitalization over TCP and UDP: send "hello world", get back
    "HELLO WORLD". Text is UTF-8 with Unicode's full upper-case mapping;
    other bytes come back unchanged.

    TCP answers every byte as it arrives, with no framing, until the client
    closes; after a half-close (nc -N) the server finishes and closes.
    UDP answers each datagram with one datagram, whole, if the reply fits
    in 65,507 bytes. Loop protection: no reply goes to a source port below
    1024 or equal to the port that received the datagram, nor to a source
    that sends the same upper-case text more than 10 times in a row, each
    within 0.5s (another service answering back), until it sends something
    else.

    --port 0 picks one free port for TCP and UDP alike: every listener asked
    for port 0 (--port, --tcp tcp:0, --udp 0) gets the same number, which
    the "serving" lines of the log name, unless it would clash with another
    of the service's own (two TCP listeners on one address): that one gets a
    free port of its own.

    Limits protect a public deployment; the defaults admit a class behind
    one NAT address and a load test of hundreds of clients from one host.
    Each refusal is counted and logged at most once a second.

    On SIGTERM or SIGINT the service stops accepting, lets each connection
    write what is queued for up to --shutdown-timeout seconds, then closes;
    a second one changes nothing. SIGHUP reloads: the log file is reopened,
    TLS certificates are read again, and --workers are replaced one at a
    time by new processes. SIGUSR1 reopens the log file; SIGUSR2 logs a
    status line. See docs/operating.md.

    With --workers N (N > 1) this process opens the listeners and N worker
    processes serve them; their log lines appear as "caps worker PID: ...".
    A worker that exits, or cannot be started, is started again; on SIGTERM
    every worker closes gracefully and this process exits after them;
    workers exit by themselves if this process dies. Limits apply per
    worker, except --max-connections, which is shared out among the
    workers (rounded down, so it holds in all; it must be at least
    --workers). Listeners must be tcp:, tcp6:, unix: or UDP; --metrics serves
    every worker's counts, labelled by worker.

    Examples::
      twistd -n caps                        TCP and UDP on port 1200
      twistd -n caps --port 0               one free port (see the log)
      twistd -n caps -i :: -p 1200          IPv6 and IPv4 (dual stack)
      twistd -n caps --tcp unix:/run/caps.sock --no-udp
      twistd -n caps --tcp tcp:1200 --tcp tcp6:1200:interface=\\:\\:1
      twistd -n caps --tcp haproxy:tcp:1200 --udp 127.0.0.1:1200
      twistd -n caps --tcp systemd:domain=INET:index=0
      twistd -n caps --metrics tcp:9100:interface=127.0.0.1
      twistd -n caps --workers 4            four processes on port 1200

    Numbers are ASCII digits (seconds may have a decimal point) within the
    range each option names. A bad option, endpoint string or certificate
    prints one line on stderr, "caps: ... (see --help)", and exits with
    status 1; so does a listener that cannot open ("caps: TCP ADDR:PORT:
    reason"). A daemon (twistd without -n) prints that same line, whole, on
    the terminal it was started from, logs it, and removes its pidfile.
    """

    description = __doc__
    version = f"twisted-caps {twisted_caps.__version__}"
    synopsis = "[options]"

    optParameters = [
        ["port", "p", str(DEFAULT_PORT), "TCP and UDP port (0-65535; 0 picks one free port)."],
        ["interface", "i", None, "IP address (default: every IPv4 address; :: for IPv6)."],
        [
            "max-connections",
            None,
            "20000",
            f"Open TCP connections in all (0: no limit; at most {MAX_COUNT:,}).",
        ],
        ["max-per-peer", None, "1000", "Open TCP connections per client address (0: no limit)."],
        [
            "idle-timeout",
            None,
            "300",
            "Close a TCP connection with no progress (no input, no reply taken) for"
            " this many seconds (0: never).",
        ],
        ["udp-rate", None, "5000", "UDP replies a second per source address (0: no limit)."],
        [
            "shutdown-timeout",
            None,
            "5",
            f"Seconds to write queued replies on shutdown (at most {MAX_SECONDS:,}: a year).",
        ],
        ["metrics", None, None, "Serve Prometheus metrics at /metrics on this endpoint (off)."],
        [
            "workers",
            None,
            "1",
            f"Processes serving the listeners (1: this process itself; at most {MAX_WORKERS},"
            " a bound that keeps a typo from forking the host out of memory).",
        ],
    ]
    optFlags = [
        ["no-tcp", None, "Serve no TCP."],
        ["no-udp", None, "Serve no UDP."],
        ["once", None, "TCP: answer the first chunk received, then close (the course's server)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["tcp"] = []
        self["udp"] = []

    def opt_tcp(self, description: str) -> None:
        """
        Listen on a Twisted server endpoint instead of the default TCP port
        (repeatable): tcp:PORT, tcp6:PORT:interface=\\:\\:1, unix:PATH,
        ssl:PORT:privateKey=KEY:certKey=CERT, systemd:domain=INET:index=0,
        haproxy:tcp:PORT.
        """
        self["tcp"].append(description)

    def opt_udp(self, address: str) -> None:
        """
        Listen for UDP on [ADDR:]PORT instead of the default (repeatable;
        an IPv6 ADDR goes in brackets: [::1]:1200).
        """
        self["udp"].append(address)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """Parse, turning any usage error into one line and exit status 1."""
        try:
            super().parseOptions(options)
        except usage.UsageError as error:
            message = self._runner_option_hint(str(error)) or f"{error} (see --help)"
            raise SystemExit(one_line(f"caps: {message}")) from None

    def _runner_option_hint(self, message: str) -> str | None:
        """
        For an option caps does not know but the command running it does
        (C{twistd caps -n}), say where it goes: before C{caps}.
        """
        unknown = UNKNOWN_OPTION.fullmatch(message)
        runner = getattr(self, "parent", None)
        if unknown is None or runner is None:
            return None
        option = unknown.group(1)
        if option.lstrip("-") not in getattr(runner, "synonyms", {}):
            return None
        name = os.path.basename(sys.argv[0]) if sys.argv else "twistd"
        name = name if name in ("twistd", "twist") else "twistd"
        return (
            f"{option} is an option of {name}, not of caps: {name}'s own options go"
            f" before caps ({name} {option} caps ...)"
        )

    def postOptions(self) -> None:
        self.host = HostSettings.from_command(getattr(self, "parent", None))
        port = parse_port(self["port"], "--port")
        interface = self["interface"] or ""
        if interface and not (isIPAddress(interface) or isIPv6Address(interface)):
            raise usage.UsageError(f"--interface: {quoted(interface)} is not an IP address")
        tcp: tuple[TcpListener, ...] = ()
        udp: tuple[UdpListener, ...] = ()
        workers = parse_workers(self["workers"], self["tcp"])
        if not self["no-tcp"]:
            descriptions = self["tcp"] or [default_tcp_description(interface, port)]
            tcp = tuple(parse_tcp_listener(d, "--tcp", BACKLOG) for d in descriptions)
        if not self["no-udp"]:
            udp = tuple(parse_udp_listener(a) for a in self["udp"]) or (
                UdpListener(interface, port),
            )
        if not (tcp or udp):
            raise usage.UsageError("--no-tcp and --no-udp leave nothing to serve")
        max_connections = parse_count(self["max-connections"], "--max-connections")
        max_per_peer = parse_count(self["max-per-peer"], "--max-per-peer")
        idle_timeout = parse_seconds(self["idle-timeout"], "--idle-timeout")
        udp_rate = parse_count(self["udp-rate"], "--udp-rate")
        shutdown_timeout = parse_seconds(self["shutdown-timeout"], "--shutdown-timeout")
        metrics = parse_tcp_listener(self["metrics"], "--metrics") if self["metrics"] else None
        try:
            self.config = CapsConfig(
                tcp=tcp,
                udp=udp,
                once=self["once"],
                max_connections=max_connections,
                max_per_peer=max_per_peer,
                idle_timeout=idle_timeout,
                udp_rate=udp_rate,
                shutdown_timeout=shutdown_timeout,
                metrics=metrics,
                workers=workers,
            )
        except ValueError as refusal:
            raise usage.UsageError(str(refusal)) from None


def parse_port(text: str, option: str) -> int:
    """Return C{text} as a port number, or raise a one-line usage error."""
    return port_number(text, option)


def parse_count(text: str, option: str) -> int:
    """Return C{text} as a whole number from 0 to L{MAX_COUNT}, or raise a usage error."""
    meaning = f"a whole number (0-{MAX_COUNT}; 0 for no limit)"
    return whole_number(text, option, 0, MAX_COUNT, meaning)


def parse_seconds(text: str, option: str) -> float:
    """Return C{text} as seconds from 0 to L{MAX_SECONDS}, or raise a usage error."""
    return seconds(text, option, f"a number of seconds (0-{MAX_SECONDS})")


#: How usage.Options words an option it does not know (getopt's message).
UNKNOWN_OPTION = re.compile(r"option (-\S+) not recognized")


#: The endpoint types whose listening sockets workers can inherit and adopt.
WORKER_ENDPOINTS = ("tcp:", "tcp6:", "unix:")


def parse_workers(text: str, descriptions: Sequence[str]) -> int:
    """Return C{--workers} as a count >= 1, or raise a one-line usage error."""
    meaning = f"a number of processes (1-{MAX_WORKERS})"
    workers = whole_number(text, "--workers", 1, MAX_WORKERS, meaning)
    if workers > 1:
        for description in descriptions:
            if not description.startswith(WORKER_ENDPOINTS):
                raise usage.UsageError(
                    f"--workers {workers}: --tcp {description} is not supported"
                    " (only tcp:, tcp6: and unix: listeners can be shared by workers)"
                )
    return workers


def default_tcp_description(interface: str, port: int) -> str:
    """The endpoint string of the default TCP listener."""
    if isIPv6Address(interface):
        quoted = endpoints.quoteStringArgument(interface)
        return f"tcp6:{port}:interface={quoted}:backlog={BACKLOG}"
    return f"tcp:{port}:interface={interface or '0.0.0.0'}:backlog={BACKLOG}"


def parse_tcp_listener(description: str, option: str, backlog: int | None = None) -> TcpListener:
    """
    Check a server endpoint string; any problem is one usage error line.
    With C{backlog}, a listener that names no backlog of its own gets it.
    """
    from twisted.internet import reactor

    if description.isascii() and description.isdigit():
        raise usage.UsageError(
            f"{option} {description}: a port alone is not an endpoint string;"
            f" write tcp:{description} (tcp:{description}:interface=127.0.0.1 for this host only)"
        )
    try:
        endpoint_strings.check(description)
        queued = description
        if backlog is not None:
            queued = endpoint_strings.with_default_backlog(description, backlog)
        listener = TcpListener(queued)
        stream_endpoint(listener, reactor)
    except ValueError as error:
        raise usage.UsageError(f"{option} {description}: {error}") from None
    return listener


def parse_udp_listener(address: str) -> UdpListener:
    """Parse C{[ADDR:]PORT} (C{[V6ADDR]:PORT} for IPv6) into a listener."""
    interface, _, port = address.rpartition(":")
    if interface.startswith("[") and interface.endswith("]"):
        interface = interface[1:-1]
        valid = isIPv6Address(interface)
    else:
        valid = interface == "" or isIPAddress(interface)
    if not valid:
        raise usage.UsageError(
            f"--udp {address}: expected [ADDR:]PORT with an IP address ([::1]:1200 for IPv6)"
        )
    return UdpListener(interface, parse_port(port, f"--udp {address}"))


def makeService(options: Options) -> CapsDaemon:
    """
    Build the capitalization service from parsed options. Run by twistd or
    twist (options with a C{parent}), it handles the operator's signals
    from now on, so that one arriving during start-up is not fatal, and a
    daemonizing twistd prints an error at start-up as the one line the log
    has.
    """
    from twisted.internet import reactor

    serving: CapsService | WorkersService
    if options.config.workers > 1:
        serving = WorkersService(options.config, reactor)
    else:
        serving = CapsService(options.config, reactor, fast_dispatch=True)
    daemon = CapsDaemon(serving, reactor, options.host)
    if options.parent is not None:
        daemon.signals.install()
        report_start_up_errors_whole()
    return daemon
