"""
The textbook's serverPort = 12000, hard-coded: the port on the command line
is ignored. (The tests cannot take a fixed port, so this one asks the
kernel for any free port instead: the same mistake, on another number.)
"""

from socket import AF_INET, SOCK_STREAM, socket

server_port = 0  # stands for 12000
server_socket = socket(AF_INET, SOCK_STREAM)
server_socket.bind(("", server_port))
server_socket.listen(1)
print("The server is ready to receive")
while True:
    connection_socket, addr = server_socket.accept()
    sentence = connection_socket.recv(1024).decode()
    connection_socket.send(sentence.upper().encode())
    connection_socket.close()
