# -*- test-case-name: tests.test_testing -*-
"""
Test your own code against caps: a caps server in memory, on loopback in
trial's reactor, or in a child process (what the pytest plugin's
C{caps_server} fixture gives), each configured with the daemon's options.
"""
