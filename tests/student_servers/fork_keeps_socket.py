"""
Corpus: a child process per client with os.fork(), as course examples of
concurrent servers write it, but the parent never closes its copy of the
connection: the child's close does not end it, so a client that waits for
the end of file waits for ever (and the parent's descriptors pile up).
"""

import os
import sys
from socket import AF_INET, SOCK_STREAM, socket

listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", int(sys.argv[1])))
listener.listen(5)
kept: list[socket] = []
while True:
    connection, _ = listener.accept()
    if os.fork() == 0:
        listener.close()
        while data := connection.recv(1024):
            connection.sendall(data.upper())
        connection.close()
        os._exit(0)
    kept.append(connection)  # the parent's copy, never closed
