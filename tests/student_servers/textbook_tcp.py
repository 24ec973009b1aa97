"""
Corpus: the textbook's Python 3 TCP server (Kurose & Ross, "TCPServer.py",
copied into course repositories by the hundred): iterative, listen(1), one
recv(1024) per connection, decoded as strict UTF-8, upper-cased, sent back,
closed. No try: a reset or bytes that are not UTF-8 end the process.
"""

import sys
from socket import AF_INET, SOCK_STREAM, socket

server_socket = socket(AF_INET, SOCK_STREAM)
server_socket.bind(("", int(sys.argv[1])))
server_socket.listen(1)
print("The server is ready to receive", flush=True)
while True:
    connection_socket, address = server_socket.accept()
    sentence = connection_socket.recv(1024).decode()
    connection_socket.send(sentence.upper().encode())
    connection_socket.close()
