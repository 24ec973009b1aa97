"""A hostile server: it answers every client and datagram with an endless flood."""

import sys
import threading
from socket import AF_INET, SOCK_DGRAM, socket


def flood(connection: socket) -> None:
    with connection:
        try:
            connection.recv(1024)
            while True:
                connection.sendall(b"X" * 65536)
        except OSError:
            pass


def flood_datagrams(server: socket) -> None:
    while True:
        _, client_address = server.recvfrom(65535)
        for _ in range(1000):
            server.sendto(b"Y" * 60000, client_address)


port = int(sys.argv[1])
datagrams = socket(AF_INET, SOCK_DGRAM)
datagrams.bind(("", port))
threading.Thread(target=flood_datagrams, args=(datagrams,), daemon=True).start()
listener = socket()
listener.bind(("", port))
listener.listen(5)
while True:
    threading.Thread(target=flood, args=(listener.accept()[0],), daemon=True).start()
