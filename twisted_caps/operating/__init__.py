# -*- test-case-name: tests.test_layout -*-
"""
C{twistd caps} as an operator runs it: the options and plugin entry
(L{tap}), signals, the daemon's pidfile and log file, and C{--workers}
(the supervisor and its worker processes). Built on L{twisted_caps.serving}.
"""
