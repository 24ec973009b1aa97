"""
The floor of what Twisted costs: C{transport.write(data.upper())} over TCP
and UDP on 127.0.0.1, with no flow control, no Unicode and no counters.
"""

from typing import cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IReactorTCP, IReactorUDP
from twisted.internet.protocol import DatagramProtocol, Protocol, ServerFactory


class UpperStream(Protocol):
    """Answer every TCP chunk with C{bytes.upper} of it."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data.upper())  # type: ignore[union-attr]


class UpperDatagram(DatagramProtocol):
    """Answer every datagram with C{bytes.upper} of it."""

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.transport.write(datagram.upper(), addr)  # type: ignore[union-attr]


def main() -> None:
    """Listen on free ports, log them as C{twistd caps} does, and serve."""
    factory = ServerFactory()
    factory.protocol = UpperStream
    factory.noisy = False
    ports = {
        "TCP": IReactorTCP(reactor).listenTCP(0, factory, interface="127.0.0.1"),
        "UDP": IReactorUDP(reactor).listenUDP(0, UpperDatagram(), "127.0.0.1", 8192),
    }
    for kind, port in ports.items():
        address = cast(IPv4Address, port.getHost())
        print(f"bare-twisted: serving {kind} on 127.0.0.1:{address.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
