"""
Corpus: the textbook's Python 2 UDP server ("UDPServer.py" of the older
editions), run with Python 2.7: recvfrom(2048), str.upper() on the bytes,
sendto the sender. Written to parse as Python 2 and 3 alike.
"""

import sys
from socket import AF_INET, SOCK_DGRAM, socket

server_socket = socket(AF_INET, SOCK_DGRAM)
server_socket.bind(("", int(sys.argv[1])))
sys.stdout.write("The server is ready to receive\n")
sys.stdout.flush()
while 1:
    message, client_address = server_socket.recvfrom(2048)
    modified = message.upper()
    server_socket.sendto(modified, client_address)
