# -*- test-case-name: tests.test_testing -*-
"""
Test your own code against caps: a caps server in memory, on loopback in
trial's reactor, or in a child process (what the pytest plugin's
C{caps_server} fixture gives), each configured with the daemon's options.
"""

from twisted_caps.testing.address import CapsAddress
from twisted_caps.testing.loopback import LoopbackCapsServer, start_caps_server
from twisted_caps.testing.memory import (
    MemoryCapsServer,
    MemoryConnection,
    MemoryNetwork,
    NetworkConditions,
)
from twisted_caps.testing.options import caps_argv, caps_config
from twisted_caps.testing.process import (
    CapsServerProcess,
    ConnectionRecord,
    ConnectionsLeftOpenWarning,
    ServerReport,
    start_caps_process,
)

__all__ = [
    "CapsAddress",
    "CapsServerProcess",
    "ConnectionRecord",
    "ConnectionsLeftOpenWarning",
    "LoopbackCapsServer",
    "MemoryCapsServer",
    "MemoryConnection",
    "MemoryNetwork",
    "NetworkConditions",
    "ServerReport",
    "caps_argv",
    "caps_config",
    "start_caps_process",
    "start_caps_server",
]
