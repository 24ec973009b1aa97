"""
Corpus: the textbook's Python 2 TCP server (the older editions' "TCPServer.py",
still common in course repositories), run with Python 2.7: one recv(1024)
per connection, str.upper() on the bytes (ASCII letters only), no try.
Written to parse as Python 2 and 3 alike; the test runs it on 2.7.
"""

import sys
from socket import AF_INET, SOCK_STREAM, socket

server_socket = socket(AF_INET, SOCK_STREAM)
server_socket.bind(("", int(sys.argv[1])))
server_socket.listen(1)
sys.stdout.write("The server is ready to receive\n")
sys.stdout.flush()
while 1:
    connection_socket, address = server_socket.accept()
    sentence = connection_socket.recv(1024)
    capitalized = sentence.upper()
    connection_socket.send(capitalized)
    connection_socket.close()
