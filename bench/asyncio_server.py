"""
The stdlib's (or uvloop's) floor: an asyncio Protocol answering
C{data.upper()} over TCP and UDP on 127.0.0.1, with no flow control and no
Unicode. C{--uvloop} runs the same code on uvloop's event loop.
"""

import asyncio
import signal
import sys


class UpperStream(asyncio.Protocol):
    """Answer every TCP chunk with C{bytes.upper} of it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.WriteTransport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())


class UpperDatagram(asyncio.DatagramProtocol):
    """Answer every datagram with C{bytes.upper} of it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        self.transport.sendto(data.upper(), addr)


async def serve(name: str) -> None:
    """Listen on free ports, log them as C{twistd caps} does, serve until SIGTERM."""
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stopped.set_result, None)
    server = await loop.create_server(UpperStream, "127.0.0.1", 0, backlog=4096)
    udp, _ = await loop.create_datagram_endpoint(UpperDatagram, local_addr=("127.0.0.1", 0))
    print(f"{name}: serving TCP on 127.0.0.1:{server.sockets[0].getsockname()[1]}")
    print(f"{name}: serving UDP on 127.0.0.1:{udp.get_extra_info('sockname')[1]}", flush=True)
    await stopped
    server.close()
    udp.close()


def main() -> None:
    """Run on asyncio's default loop, or on uvloop with C{--uvloop}."""
    if sys.argv[1:] == ["--uvloop"]:
        import uvloop

        uvloop.run(serve("uvloop"))
    else:
        asyncio.run(serve("asyncio"))


if __name__ == "__main__":
    main()
