"""The lecture's iterative TCP server, no try, with a UDP loop in a thread of the same process."""

import sys
import threading
from socket import AF_INET, SOCK_DGRAM, SOCK_STREAM, socket


def serve_datagrams(server: socket) -> None:
    while True:
        message, client_address = server.recvfrom(2048)
        server.sendto(message.upper(), client_address)


port = int(sys.argv[1])
datagrams = socket(AF_INET, SOCK_DGRAM)
datagrams.bind(("", port))
threading.Thread(target=serve_datagrams, args=(datagrams,), daemon=True).start()
server_socket = socket(AF_INET, SOCK_STREAM)
server_socket.bind(("", port))
server_socket.listen(1)
while True:
    connection_socket, addr = server_socket.accept()
    sentence = connection_socket.recv(1024)
    connection_socket.send(sentence.upper())
    connection_socket.close()
