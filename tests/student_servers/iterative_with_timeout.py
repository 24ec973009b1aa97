"""Iterative, but it drops a client silent for half a second: still one client at a time."""

import sys
from socket import AF_INET, SOCK_STREAM, socket

listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", int(sys.argv[1])))
listener.listen(1)
while True:
    connection, _ = listener.accept()
    connection.settimeout(0.5)
    try:
        while sentence := connection.recv(1024):
            connection.sendall(sentence.upper())
    except OSError:
        pass
    connection.close()
