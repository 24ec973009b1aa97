"""A threaded server that decodes each chunk as strict UTF-8: right for text, wrong for bytes."""

import sys
import threading
from socket import AF_INET, SOCK_STREAM, socket


def serve(connection: socket) -> None:
    with connection:
        while sentence := connection.recv(1024):
            connection.sendall(sentence.decode().upper().encode())


listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", int(sys.argv[1])))
listener.listen(1)
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
