"""
The textbook's recv(1024).decode() in one select() loop over TCP and UDP,
as students write it to serve many clients without threads: right for
text, but one byte that is not UTF-8 raises UnicodeDecodeError, and the
single process, every client and the UDP socket with it, is gone.
Run with: python select_server.py PORT
"""

import select
import sys
from socket import AF_INET, SOCK_DGRAM, SOCK_STREAM, socket

port = int(sys.argv[1])
listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", port))
listener.listen(5)
datagrams = socket(AF_INET, SOCK_DGRAM)
datagrams.bind(("", port))
clients: list[socket] = []
print("The server is ready to receive")
while True:
    readable, _, _ = select.select([listener, datagrams, *clients], [], [])
    for ready in readable:
        if ready is listener:
            clients.append(listener.accept()[0])
        elif ready is datagrams:
            message, client_address = datagrams.recvfrom(2048)
            datagrams.sendto(message.decode().upper().encode(), client_address)
        else:
            try:
                sentence = ready.recv(1024).decode()
                if sentence:
                    ready.sendall(sentence.upper().encode())
                    continue
            except ConnectionError:
                pass
            clients.remove(ready)
            ready.close()
