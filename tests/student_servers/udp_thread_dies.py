"""
A thread per TCP client, and a UDP thread that decodes each datagram
strictly with its socket in its own frame, as students write a UDP loop
in a function: one datagram that is not UTF-8 ends the thread, its socket
closes with it, and the process serves TCP on.
"""

import sys
import threading
from socket import AF_INET, SOCK_DGRAM, SOCK_STREAM, socket


def serve_client(connection: socket) -> None:
    with connection:
        try:
            while sentence := connection.recv(1024):
                connection.sendall(sentence.upper())
        except OSError:
            pass


def serve_datagrams(port: int) -> None:
    datagrams = socket(AF_INET, SOCK_DGRAM)
    datagrams.bind(("", port))
    while True:
        message, client_address = datagrams.recvfrom(65535)
        datagrams.sendto(message.decode().upper().encode(), client_address)


port = int(sys.argv[1])
threading.Thread(target=serve_datagrams, args=(port,), daemon=True).start()
listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", port))
listener.listen(5)
while True:
    threading.Thread(target=serve_client, args=(listener.accept()[0],), daemon=True).start()
