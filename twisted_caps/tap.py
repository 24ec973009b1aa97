# -*- test-case-name: tests.test_tap -*-
"""
The C{caps} command of C{twistd} and C{twist}: options in, service out.
"""

from collections.abc import Sequence

from twisted.application.service import IService
from twisted.internet import endpoints
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.python import usage

from twisted_caps.config import CapsConfig, TcpListener, UdpListener
from twisted_caps.logs import use_as_twistd_default
from twisted_caps.service import CapsService

DEFAULT_PORT = 1200
#: Pending connections the kernel may queue: Twisted's default of 50 drops
#: SYNs when hundreds of clients connect at once (they retry after a second).
BACKLOG = 1024


class Options(usage.Options):
    """
    Serve capitalization over TCP and UDP: send "hello world", get back
    "HELLO WORLD". Text is UTF-8 with Unicode's full upper-case mapping;
    other bytes come back unchanged.

    TCP answers every byte as it arrives, with no framing, until the client
    closes; after a half-close (nc -N) the server finishes and closes.
    UDP answers each datagram with one datagram; no reply goes to a source
    port below 1024 or equal to the service's own port (loop protection).

    Limits protect a public deployment; the defaults admit a class behind
    one NAT address and a load test of hundreds of clients from one host.
    Each refusal is counted and logged at most once a second.

    On SIGTERM or SIGINT the service stops accepting, lets each connection
    write what is queued for up to --shutdown-timeout seconds, then closes.

    With --workers N (N > 1) this process opens the listeners and N worker
    processes serve them; their log lines appear as "caps worker PID: ...".
    A worker that exits is restarted; on SIGTERM every worker closes
    gracefully and this process exits after them; workers exit by themselves
    if this process dies. Limits apply per worker, except --max-connections,
    which is shared out among the workers. Listeners must be tcp:, tcp6:,
    unix: or UDP; --metrics serves every worker's counts, labelled by worker.

    Examples:
      twistd -n caps                        TCP and UDP on port 1200
      twistd -n caps --port 0               any free port (see the log)
      twistd -n caps -i :: -p 1200          IPv6 and IPv4 (dual stack)
      twistd -n caps --tcp unix:/run/caps.sock --no-udp
      twistd -n caps --tcp tcp:1200 --tcp tcp6:1200:interface=\\:\\:1
      twistd -n caps --tcp haproxy:tcp:1200 --udp 127.0.0.1:1200
      twistd -n caps --tcp systemd:domain=INET:index=0
      twistd -n caps --metrics tcp:9100:interface=127.0.0.1
      twistd -n caps --workers 4            four processes on port 1200
    Errors in options or listeners print one line and exit with status 1.
    """

    synopsis = "[options]"
    longdesc = __doc__

    optParameters = [
        ["port", "p", str(DEFAULT_PORT), "TCP and UDP port (0-65535; 0 picks a free one)."],
        ["interface", "i", "", "IP address (default: every IPv4 address; :: for IPv6)."],
        ["max-connections", None, "20000", "Open TCP connections in all (0: no limit)."],
        ["max-per-peer", None, "1000", "Open TCP connections per client address (0: no limit)."],
        ["idle-timeout", None, "300", "Close a TCP client silent this many seconds (0: never)."],
        ["udp-rate", None, "5000", "UDP replies a second per source address (0: no limit)."],
        ["shutdown-timeout", None, "5", "Seconds to write queued replies on shutdown."],
        ["metrics", None, None, "Serve Prometheus metrics at /metrics on this endpoint (off)."],
        ["workers", None, "1", "Processes serving the listeners (1: this process itself)."],
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
            raise SystemExit(f"caps: {error} (see --help)") from None

    def postOptions(self) -> None:
        use_as_twistd_default(getattr(self, "parent", None))
        port = parse_port(self["port"], "--port")
        interface = self["interface"]
        if interface and not (isIPAddress(interface) or isIPv6Address(interface)):
            raise usage.UsageError(f"--interface: {interface!r} is not an IP address")
        tcp: tuple[TcpListener, ...] = ()
        udp: tuple[UdpListener, ...] = ()
        workers = parse_workers(self["workers"], self["tcp"])
        if not self["no-tcp"]:
            descriptions = self["tcp"] or [default_tcp_description(interface, port)]
            tcp = tuple(parse_tcp_listener(d, "--tcp") for d in descriptions)
        if not self["no-udp"]:
            udp = tuple(parse_udp_listener(a) for a in self["udp"]) or (
                UdpListener(interface, port),
            )
        if not (tcp or udp):
            raise usage.UsageError("--no-tcp and --no-udp leave nothing to serve")
        self.config = CapsConfig(
            tcp=tcp,
            udp=udp,
            once=self["once"],
            max_connections=parse_count(self["max-connections"], "--max-connections"),
            max_per_peer=parse_count(self["max-per-peer"], "--max-per-peer"),
            idle_timeout=parse_seconds(self["idle-timeout"], "--idle-timeout"),
            udp_rate=parse_count(self["udp-rate"], "--udp-rate"),
            shutdown_timeout=parse_seconds(self["shutdown-timeout"], "--shutdown-timeout"),
            metrics=parse_tcp_listener(self["metrics"], "--metrics") if self["metrics"] else None,
            workers=workers,
        )


def parse_port(text: str, option: str) -> int:
    """Return C{text} as a port number, or raise a one-line usage error."""
    if not text.isdigit() or int(text) > 65535:
        raise usage.UsageError(f"{option}: {text!r} is not a port number (0-65535)")
    return int(text)


def parse_count(text: str, option: str) -> int:
    """Return C{text} as a whole number >= 0, or raise a one-line usage error."""
    if not text.isdigit():
        raise usage.UsageError(f"{option}: {text!r} is not a whole number (0 for no limit)")
    return int(text)


def parse_seconds(text: str, option: str) -> float:
    """Return C{text} as seconds >= 0, or raise a one-line usage error."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise usage.UsageError(f"{option}: {text!r} is not a number of seconds (0 or more)")
    return seconds


#: The endpoint types whose listening sockets workers can inherit and adopt.
WORKER_ENDPOINTS = ("tcp:", "tcp6:", "unix:")


def parse_workers(text: str, descriptions: Sequence[str]) -> int:
    """Return C{--workers} as a count >= 1, or raise a one-line usage error."""
    if not text.isdigit() or int(text) < 1:
        raise usage.UsageError(f"--workers: {text!r} is not a number of processes (1 or more)")
    workers = int(text)
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


def parse_tcp_listener(description: str, option: str) -> TcpListener:
    """Check a server endpoint string; any problem is one usage error line."""
    from twisted.internet import reactor

    listener = TcpListener(description)
    try:
        listener.endpoint(reactor)
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


def makeService(options: Options) -> IService:
    """Build the capitalization service from parsed options."""
    from twisted.internet import reactor

    if options.config.workers > 1:
        from twisted_caps.workers import WorkersService

        return WorkersService(options.config, reactor)
    return CapsService(options.config, reactor, fast_dispatch=True)
