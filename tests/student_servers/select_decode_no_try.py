"""
Corpus: one process serving every client with select(), as course notes on
I/O multiplexing show it, with no try and a strict decode of each recv():
a character split across two reads, bytes that are not UTF-8 or a client's
reset raise in the one loop and end the whole server.
"""

import select
import sys
from socket import AF_INET, SOCK_STREAM, socket

listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", int(sys.argv[1])))
listener.listen(5)
connections: list[socket] = []
while True:
    readable, _, _ = select.select([listener, *connections], [], [])
    for ready in readable:
        if ready is listener:
            connections.append(listener.accept()[0])
            continue
        data = ready.recv(1024)
        if data:
            ready.sendall(data.decode().upper().encode())
        else:
            connections.remove(ready)
            ready.close()
