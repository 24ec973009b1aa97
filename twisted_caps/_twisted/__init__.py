# -*- test-case-name: tests.unit.test_fence -*-
"""
The fence around Twisted's internals: every piece of twisted-caps that reads
a name Twisted does not publish (an underscore attribute or module) lives
in this subpackage, and nowhere else (C{tests/unit/test_fence.py} fails when a
module outside it reads one). Each piece is small, tested, and meant to go
upstream so that it can be deleted.

The inventory, one entry a module: what it reads, what happens on a
Twisted without it, and the upstream ticket that would retire it.

  - L{twisted_caps._twisted.immediate}: sends at once when nothing is
    queued. Reads C{tcp.Server}'s C{socket}, C{dataBuffer}, C{offset},
    C{_tempDataLen} and C{_writeDisconnecting}. Fallback: a transport
    without them keeps Twisted's buffered C{write}. Retired by
    twisted#5303 (write buffering: C{FileDescriptor.write} sending when
    its buffer is empty).
  - L{twisted_caps._twisted.dispatch}: reads TCP connections without the
    per-event log context. Reads the epoll reactor's C{_poller},
    C{_selectables}, C{_doReadOrWrite} and C{_disconnectSelectable}.
    Fallback: a reactor without them is left alone. Retired by
    twisted#12338, #6789 and #2534 (C{callWithLogger} on every event).
  - L{twisted_caps._twisted.shared_accept}: a port shared by worker
    processes accepts one connection per wake-up. Reads
    C{tcp.Port._fromListeningDescriptor} (and C{unix.Port}'s). Fallback:
    the reactor's public C{adoptStreamPort}, which accepts up to 100 per
    wake-up, so a burst may go to one worker. No upstream ticket yet: the
    text to file is in C{docs/twisted.md}.
  - L{twisted_caps.proxy_protocol}: C{haproxy:} listeners that
    start the protocol once the PROXY header has arrived and pass
    half-closes on. Imports C{twisted.protocols.haproxy._wrapper},
    C{_v1parser}, C{_v2parser} and C{_exceptions}. Fallback: on a Twisted
    without them, C{haproxy:} listeners use Twisted's own wrapper, with its
    two gaps. Retired by twisted#12501 and #8287.
  - L{twisted_caps._twisted.tls}: C{ssl:} listeners on which close_notify
    ends the client's input like a half-close. Overrides
    C{BufferingTLSTransport._shutdownTLS} and reads C{_tlsConnection},
    C{_aborted} and C{_aggregator}. Fallback: none at run time; if Twisted
    renames C{_shutdownTLS} the override is never called and Twisted's
    own close applies (C{tests/test_tls.py} fails, which is the alarm).
    Retired by twisted#5341 (TLS half-close).

Two former readers of private names now use public interfaces and need no
fence: the service hands its listening sockets to workers through
C{IReadDescriptor.fileno} and C{IReactorFDSet.removeReader} (it read
C{port.socket} and called C{stopReading}), and the test kit's in-memory
transport implements C{ITCPTransport} itself (it subclassed
C{twisted.test.iosim.FakeTransport}, which Twisted does not publish and
which changed between releases). The systemd endpoint that needs
C{LISTEN_FDNAMES} is a documented limit, not a private read; its ticket
text is in C{docs/twisted.md} too.
"""
