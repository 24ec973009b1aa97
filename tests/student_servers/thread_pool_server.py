"""Four worker threads, each serving one client until it closes: four clients at a time."""

import sys
from concurrent.futures import ThreadPoolExecutor
from socket import AF_INET, SOCK_STREAM, socket


def serve(connection: socket) -> None:
    with connection:
        try:
            while sentence := connection.recv(1024):
                connection.sendall(sentence.upper())
        except OSError:
            pass


workers = ThreadPoolExecutor(max_workers=4)
listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", int(sys.argv[1])))
listener.listen(1)
while True:
    workers.submit(serve, listener.accept()[0])
