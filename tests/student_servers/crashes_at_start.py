"""A server with a typo: it dies before it listens."""

import sys

server_port = int(sys.argv[1])
raise NameError("name 'serverSocket' is not defined")
