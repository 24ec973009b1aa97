"""
The lecture's TCP server, as typed on the slide, made runnable on Python 3:
listen(1), then one client at a time: accept, recv(1024), upper, send,
close. Run with: python lecture_server.py [PORT]
"""

import sys
from socket import AF_INET, SOCK_STREAM, socket

server_port = int(sys.argv[1]) if len(sys.argv) > 1 else 1200
server_socket = socket(AF_INET, SOCK_STREAM)
server_socket.bind(("", server_port))
server_socket.listen(1)
print("The server is ready to receive", flush=True)
while True:
    connection_socket, addr = server_socket.accept()
    sentence = connection_socket.recv(1024)
    capitalized_sentence = sentence.upper()
    connection_socket.send(capitalized_sentence)
    connection_socket.close()
