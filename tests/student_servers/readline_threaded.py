"""
socketserver's threaded TCP server reading lines (self.rfile.readline()),
as the Python documentation's example does, with a UDP server beside it
whose datagrams socketserver reads into max_packet_size (8192) bytes: a
thread per client that survives resets, but waits for a newline the
protocol never sends, and cuts large datagrams short.
"""

import socketserver
import sys
import threading


class LineHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while line := self.rfile.readline():
            self.wfile.write(line.upper())


class DatagramHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(data.upper(), self.client_address)


port = int(sys.argv[1])
udp = socketserver.ThreadingUDPServer(("", port), DatagramHandler)
threading.Thread(target=udp.serve_forever, daemon=True).start()
tcp = socketserver.ThreadingTCPServer(("", port), LineHandler)
tcp.daemon_threads = True
tcp.serve_forever()
