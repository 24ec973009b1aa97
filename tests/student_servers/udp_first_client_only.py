"""A UDP server that answers every datagram to the first client it ever heard from."""

import sys
from socket import AF_INET, SOCK_DGRAM, socket

server = socket(AF_INET, SOCK_DGRAM)
server.bind(("", int(sys.argv[1])))
first_client = None
while True:
    message, client_address = server.recvfrom(65535)
    first_client = first_client or client_address
    server.sendto(message.upper(), first_client)
