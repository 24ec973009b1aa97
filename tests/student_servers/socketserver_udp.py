"""
Corpus: socketserver's ThreadingUDPServer, a thread per datagram, answering
with bytes.upper(): right for ASCII, and it reads at most max_packet_size
(8192) bytes of a datagram, so larger ones are cut.
"""

import socketserver
import sys


class UpperDatagram(socketserver.DatagramRequestHandler):
    def handle(self) -> None:
        self.wfile.write(self.rfile.read().upper())


server = socketserver.ThreadingUDPServer(("", int(sys.argv[1])), UpperDatagram)
server.daemon_threads = True
server.serve_forever()
