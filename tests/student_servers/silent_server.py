"""A server that accepts every client and reads every datagram, and never answers."""

import sys
import threading
from socket import AF_INET, SOCK_DGRAM, socket


def swallow(connection: socket) -> None:
    with connection:
        while connection.recv(65536):
            pass


port = int(sys.argv[1])
datagrams = socket(AF_INET, SOCK_DGRAM)
datagrams.bind(("", port))
threading.Thread(target=lambda: [datagrams.recv(65535) for _ in iter(int, 1)], daemon=True).start()
listener = socket()
listener.bind(("", port))
listener.listen(5)
while True:
    threading.Thread(target=swallow, args=(listener.accept()[0],), daemon=True).start()
