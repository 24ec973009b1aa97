# -*- test-case-name: tests.unit.test_config -*-
"""
The service's configuration: built once from the command line, then handed
down unchanged.
"""

from dataclasses import dataclass, replace

from twisted_caps.core.addresses import host_port


@dataclass(frozen=True)
class TcpListener:
    """
    A stream listener, as a Twisted server endpoint string, checked
    (L{twisted_caps.serving.endpoint_strings}); the endpoint itself is
    built where listening happens (L{twisted_caps.serving.listeners}).
    """

    description: str


@dataclass(frozen=True)
class UdpListener:
    """A UDP port on one interface ("" for every IPv4 interface)."""

    interface: str
    port: int

    def __str__(self) -> str:
        return host_port(self.interface or "0.0.0.0", self.port)


@dataclass(frozen=True)
class CapsConfig:
    """Everything the service needs to start."""

    tcp: tuple[TcpListener, ...]
    udp: tuple[UdpListener, ...]
    once: bool = False
    max_connections: int = 0
    max_per_peer: int = 0
    idle_timeout: float = 0
    udp_rate: int = 0
    shutdown_timeout: float = 5.0
    metrics: TcpListener | None = None
    #: Processes serving the listeners; 1 serves in this process itself.
    workers: int = 1

    def __post_init__(self) -> None:
        """
        Refuse a C{max_connections} that cannot be shared out: it bounds the
        whole service, and each worker needs a share of at least one.

        @raise ValueError: with one line naming both options.
        """
        if 0 < self.max_connections < self.workers:
            raise ValueError(
                f"--max-connections {self.max_connections} is fewer than --workers"
                f" {self.workers} (each worker serves a share of at least one connection)"
            )

    def for_one_worker(self) -> "CapsConfig":
        """
        The settings of one of L{workers} processes: no listeners of its own
        (it inherits the parent's sockets), and its share of
        C{max_connections}, rounded down so the shares never add up to more.
        """
        return replace(
            self,
            tcp=(),
            udp=(),
            metrics=None,
            workers=1,
            max_connections=self.max_connections // self.workers,
        )
