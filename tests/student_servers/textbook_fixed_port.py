"""
Corpus: the textbook's Python 3 TCP server as most students hand it in,
with the port typed into the program (12000, the book's) instead of read
from the command line: it never listens on the port the grader gives it.
"""

from socket import AF_INET, SOCK_STREAM, socket

SERVER_PORT = 12000
server_socket = socket(AF_INET, SOCK_STREAM)
server_socket.bind(("", SERVER_PORT))
server_socket.listen(1)
print("The server is ready to receive", flush=True)
while True:
    connection_socket, address = server_socket.accept()
    sentence = connection_socket.recv(1024).decode()
    connection_socket.send(sentence.upper().encode())
    connection_socket.close()
