"""A threaded server that ignores SIGTERM, as a careless signal handler would."""

import signal
import sys
import threading
from socket import AF_INET, SOCK_STREAM, socket


def serve(connection: socket) -> None:
    with connection:
        while data := connection.recv(1024):
            connection.sendall(data.upper())


signal.signal(signal.SIGTERM, signal.SIG_IGN)
listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", int(sys.argv[1])))
listener.listen(5)
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
