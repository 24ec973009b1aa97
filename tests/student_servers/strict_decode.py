"""
Corpus: a thread per client decoding each chunk as strict UTF-8 (the
textbook's decode() made concurrent): right for text, wrong for bytes that
are not UTF-8 or a character split across two reads; a bad chunk ends its
thread only.
"""

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
