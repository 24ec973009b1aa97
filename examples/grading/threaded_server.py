"""
The lecture's server made concurrent, as a student would: a thread per TCP
client that answers every chunk until the client closes, and a thread
answering UDP datagrams on the same port. It upper-cases with
bytes.upper(), so it passes the lecture profile but not Unicode.
Run with: python threaded_server.py [PORT]
"""

import sys
import threading
from socket import AF_INET, SOCK_DGRAM, SOCK_STREAM, socket


def serve_client(connection_socket: socket) -> None:
    with connection_socket:
        try:
            while sentence := connection_socket.recv(1024):
                connection_socket.sendall(sentence.upper())
        except OSError:  # the client reset the connection: forget it
            pass


def serve_datagrams(udp_socket: socket) -> None:
    while True:
        message, client_address = udp_socket.recvfrom(65535)
        udp_socket.sendto(message.upper(), client_address)


server_port = int(sys.argv[1]) if len(sys.argv) > 1 else 1200
udp_socket = socket(AF_INET, SOCK_DGRAM)
udp_socket.bind(("", server_port))
threading.Thread(target=serve_datagrams, args=(udp_socket,), daemon=True).start()
server_socket = socket(AF_INET, SOCK_STREAM)
server_socket.bind(("", server_port))
server_socket.listen(1)
print("The server is ready to receive", flush=True)
while True:
    connection_socket, addr = server_socket.accept()
    threading.Thread(target=serve_client, args=(connection_socket,), daemon=True).start()
