"""
Corpus: one process, many clients, with select() over the listener and every
connection (course notes on I/O multiplexing), bytes.upper(), a try around
recv() and sendall(); TCP only.
"""

import select
import sys
from socket import AF_INET, SOCK_STREAM, socket

listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", int(sys.argv[1])))
listener.listen(1)
clients: list[socket] = []
while True:
    readable, _, _ = select.select([listener, *clients], [], [])
    for ready in readable:
        if ready is listener:
            clients.append(listener.accept()[0])
            continue
        try:
            sentence = ready.recv(65536)
            if sentence:
                ready.sendall(sentence.upper())
                continue
        except OSError:
            pass
        clients.remove(ready)
        ready.close()
