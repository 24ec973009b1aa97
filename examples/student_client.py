"""
A student's TCP client, as the course teaches it: connect, send, receive,
print. It takes the server's name and port from the command line, so an
autograder can point it at a test server.
"""

import sys
from socket import AF_INET, SOCK_STREAM, socket

server_name = sys.argv[1] if len(sys.argv) > 1 else "localhost"
server_port = int(sys.argv[2]) if len(sys.argv) > 2 else 1200
client_socket = socket(AF_INET, SOCK_STREAM)
client_socket.connect((server_name, server_port))
client_socket.send(b"hello world")
modified_sentence = client_socket.recv(1024)
print("From Server:", modified_sentence.decode())
client_socket.close()
