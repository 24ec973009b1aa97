"""A hostile server: it answers right, one byte every 0.3 seconds, forever if need be."""

import sys
import threading
import time
from socket import socket


def trickle(connection: socket) -> None:
    with connection:
        try:
            while data := connection.recv(65536):
                for byte in data.upper():
                    time.sleep(0.3)
                    connection.sendall(bytes([byte]))
        except OSError:
            pass


listener = socket()
listener.bind(("", int(sys.argv[1])))
listener.listen(5)
while True:
    threading.Thread(target=trickle, args=(listener.accept()[0],), daemon=True).start()
