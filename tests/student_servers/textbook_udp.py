"""
Corpus: the textbook's Python 3 UDP server (Kurose & Ross, "UDPServer.py"):
recvfrom(2048), strict decode(), str.upper(), sendto the sender. Datagrams
longer than 2048 bytes are cut; one that is not UTF-8 ends the process.
"""

import sys
from socket import AF_INET, SOCK_DGRAM, socket

server_socket = socket(AF_INET, SOCK_DGRAM)
server_socket.bind(("", int(sys.argv[1])))
print("The server is ready to receive", flush=True)
while True:
    message, client_address = server_socket.recvfrom(2048)
    server_socket.sendto(message.decode().upper().encode(), client_address)
