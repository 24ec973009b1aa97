"""
Corpus: a multiprocessing.Process per client, as tutorials on process-based
servers show it, whose loop never tests for the end of file: after the
client closes, recv() returns b'' at once, for ever, and the child spins,
sending nothing, until it is killed.
"""

import sys
from multiprocessing import Process
from socket import AF_INET, SOCK_STREAM, socket


def serve(connection: socket) -> None:
    while True:
        data = connection.recv(1024)
        connection.sendall(data.upper())


if __name__ == "__main__":
    listener = socket(AF_INET, SOCK_STREAM)
    listener.bind(("", int(sys.argv[1])))
    listener.listen(5)
    while True:
        connection, _ = listener.accept()
        Process(target=serve, args=(connection,), daemon=True).start()
        connection.close()
