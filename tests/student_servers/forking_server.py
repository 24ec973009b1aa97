"""
Corpus: the concurrent server of the lecture's last slide (and of course
examples of os.fork()): a child process per client, the parent closing its
copy of the connection.
"""

import os
import signal
import sys
from socket import AF_INET, SOCK_STREAM, socket

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
listener = socket(AF_INET, SOCK_STREAM)
listener.bind(("", int(sys.argv[1])))
listener.listen(1)
while True:
    connection, _ = listener.accept()
    if os.fork() == 0:
        listener.close()
        try:
            while sentence := connection.recv(1024):
                connection.sendall(sentence.upper())
        except OSError:
            pass
        os._exit(0)
    connection.close()
