"""
Corpus: socketserver's ThreadingTCPServer with a StreamRequestHandler that
reads one line (the pattern of the socketserver documentation's example,
common in course repositories): a thread per client, but nothing is
answered until a newline comes, and the protocol has no newline.
"""

import socketserver
import sys


class UpperLine(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline()
        self.wfile.write(line.upper())


server = socketserver.ThreadingTCPServer(("", int(sys.argv[1])), UpperLine)
server.daemon_threads = True
server.serve_forever()
