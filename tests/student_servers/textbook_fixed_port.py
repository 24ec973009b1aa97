"""
Corpus: the textbook's Python 3 TCP server as most students hand it in,
with the port typed into the program (the book's 12000) instead of read
from the command line: it never listens on the port the grader gives it.
The suite takes no fixed port, so this one binds port 0, any free port,
in place of 12000: the same mistake, on another number.
"""

from socket import AF_INET, SOCK_STREAM, socket

SERVER_PORT = 0  # in place of the textbook's 12000
server_socket = socket(AF_INET, SOCK_STREAM)
server_socket.bind(("", SERVER_PORT))
server_socket.listen(1)
print("The server is ready to receive", flush=True)
while True:
    connection_socket, address = server_socket.accept()
    sentence = connection_socket.recv(1024).decode()
    connection_socket.send(sentence.upper().encode())
    connection_socket.close()
