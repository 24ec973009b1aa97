"""A threaded server that ends every reply with a newline, as print() would."""

import sys
import threading
from socket import AF_INET, SOCK_STREAM, socket


def serve(connection: socket) -> None:
    with connection:
        while sentence := connection.recv(1024):
            connection.sendall(sentence.upper() + b"\n")


listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", int(sys.argv[1])))
listener.listen(1)
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
