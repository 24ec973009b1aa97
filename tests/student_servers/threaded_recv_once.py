"""Concurrent, but each thread reads once, replies and closes: the lecture's loop, threaded."""

import sys
import threading
from socket import AF_INET, SOCK_STREAM, socket


def serve(connection: socket) -> None:
    with connection:
        sentence = connection.recv(1024)
        connection.send(sentence.upper())


listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", int(sys.argv[1])))
listener.listen(1)
while True:
    threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()
