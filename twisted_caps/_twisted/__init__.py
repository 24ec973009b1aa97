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
    queued, and measures the replies a connection has not sent yet (the
    idle timer's view of output progress).
    L{send_at_once<twisted_caps._twisted.immediate.send_at_once>} reads
    C{tcp.Server}'s C{socket}, C{dataBuffer}, C{offset}, C{_tempDataLen}
    and C{_writeDisconnecting};
    L{unsent_bytes<twisted_caps._twisted.immediate.unsent_bytes>} reads
    C{dataBuffer}, C{offset} and C{_tempDataLen} of the C{FileDescriptor} under any
    wrappers (TLS, PROXY protocol), then asks the kernel for its send queue
    (C{SIOCOUTQ}). Fallback: a transport without them keeps Twisted's
    buffered C{write}, and the idle timer sees input progress only.
    Retired by twisted#5303 (write buffering: C{FileDescriptor.write}
    sending when its buffer is empty); no ticket yet asks for the queued
    byte count: the text to file is in C{docs/twisted.md}.
  - L{twisted_caps._twisted.dispatch}: reads TCP connections without the
    per-event log context. Reads the epoll reactor's C{_poller},
    C{_selectables}, C{_doReadOrWrite} and C{_disconnectSelectable}.
    Fallback: a reactor without them is left alone. Retired by
    twisted#12338, #6789 and #2534 (C{callWithLogger} on every event).
  - L{twisted_caps._twisted.shared_accept}: a socket shared by worker
    processes wakes one waiting worker per connection (C{EPOLLEXCLUSIVE}).
    Reads the epoll reactor's C{_poller}, C{_reads} and C{_writes}.
    Fallback: any other reactor, or a kernel without the flag, keeps
    Twisted's registration, which wakes every waiting worker. A shared
    C{unix:} socket is adopted as a C{unix.Port} subclass (through
    C{_fromListeningDescriptor}, reading C{_bindPath}, setting
    C{_shouldShutdown}) that leaves the socket, its file and the file's
    mode to the parent that bound it. Fallback: none; a renamed
    C{_fromListeningDescriptor} fails C{unix:} workers, and
    C{tests/test_reload.py} and C{tests/test_supervisor.py} with them. No
    upstream ticket yet: the texts to file are in C{docs/twisted.md}.
  - L{twisted_caps._twisted.lean_server}: accepted TCP connections whose
    log prefix and C{repr} are made when read, not at every accept (165
    bytes an idle connection keeps; its constructor is C{tcp.Server}'s
    less those, and sets C{_addressType} for IPv6 as Twisted's does), and
    whose reads grow to 256 KiB while the client streams and the kernel
    has room for the replies. Sets a
    C{tcp.Port}'s C{transport} to a C{tcp.Server} subclass, overrides
    C{Connection.doRead} (its C{_dataReceived} inlined), reads its write
    buffer (C{dataBuffer}, C{offset}, C{_tempDataLen}), reads
    C{Port._realPortNumber} for the C{repr}, and closes with C{close(2)}
    alone: it takes the descriptor out of the epoll reactor's
    C{_selectables}, C{_reads} and C{_writes}, sets
    C{_SocketCloser._shouldShutdown} once the client has closed its side,
    and, ending a connection after a read, tells a lean connection of its
    client's end of input before the reactor stops reading it (the
    reactor's C{_disconnectSelectable} for every other end).
    Fallback: any other port builds Twisted's transport. No upstream
    ticket yet: the text to file is in C{docs/twisted.md}.
  - L{twisted_caps._twisted.eager_read}: listening sockets with
    C{TCP_DEFER_ACCEPT}, whose new connections are read once before they
    are registered with the reactor. Sets the option on C{tcp.Port}'s
    C{socket}, turns the port into a C{tcp.Port} subclass whose
    C{doRead} accepts as Twisted's does (through Python's
    C{socket._accept}, with C{Port._buildAddr}; Twisted's C{doRead} on
    any error) then makes the first reads, and builds a
    L{LeanServer<twisted_caps._twisted.lean_server.LeanServer>} subclass;
    calls the reactor's C{_disconnectSelectable} when a first read ends
    the connection. Fallback: a reactor without it, or a kernel that
    refuses the option, keeps the lean transport registered at accept.
    No upstream ticket yet: the text to file is in C{docs/twisted.md}.
  - L{twisted_caps._twisted.compact}: short IPv4 connections served as
    one small object the epoll reactor reads directly, with no Twisted
    transport or protocol, until they need one. Registers and forgets
    them in the reactor's C{_poller}, C{_reads} and C{_selectables} (as
    C{addReader} and the lean close do), and hands a connection over to a
    L{LeanServer<twisted_caps._twisted.lean_server.LeanServer>} by giving
    it that registration, numbered from the port's C{sessionno}; the
    eager port builds them. Fallback: a reactor that is not exactly
    Twisted's epoll reactor, an IPv6 port, and TLS and PROXY listeners
    get Twisted's transports. No upstream ticket yet: the text to file is
    in C{docs/twisted.md}.
  - L{twisted_caps._twisted.accept_errors}: counts the clients a listening
    port closes for lack of file descriptors as C{open-files} refusals and
    logs them in one summary line a second. Replaces C{tcp.Port._logger},
    the logger through which C{doRead} reports accept errors. Fallback: a
    port without C{_logger} (or a Twisted that words those events
    otherwise) keeps Twisted's own line per client. Upstream: twisted#5368
    added the reserved-descriptor recovery that logs those lines, and
    twisted#3958 (closed as a duplicate) asked for accept errors to reach
    the factory, which would retire this module.
  - L{twisted_caps._twisted.tls}: C{ssl:} listeners on which close_notify
    ends the client's input like a half-close, and whose own graceful
    close (idle timeout, shutdown) is replies, then close_notify.
    Overrides C{BufferingTLSTransport._shutdownTLS} and reads
    C{_tlsConnection}, C{_aborted}, C{_aggregator}, C{_lostTLSConnection},
    C{_handshakeDone}, C{_appSendBuffer} and C{_flushSendBIO}. Its
    L{ReloadableServerTLS<twisted_caps._twisted.tls.ReloadableServerTLS>},
    which re-reads certificate files on SIGHUP, uses public names only.
    Fallback: none at run time; if Twisted renames C{_shutdownTLS} the
    override is never called and Twisted's own close applies
    (C{tests/test_tls.py} and C{tests/adversarial/test_tls.py} fail, which
    is the alarm). Retired by twisted#5341 (TLS half-close).
  - L{twisted_caps._twisted.startup_errors}: a daemonizing C{twistd}
    prints an error at start-up as the service's one line, whole, instead
    of C{An error has occurred: b'module.Class: ...'} cut at 100 bytes.
    Imports C{twisted.scripts._twistd_unix} and replaces
    C{UnixApplicationRunner._formatChildException} (the daemon's report)
    and C{UnixApplicationRunner._waitForStart} (the terminal's reading of
    it). Fallback: a twistd without them keeps its own report. No upstream
    ticket yet: the text to file is in C{docs/twisted.md}.

Two former readers of private names now use public interfaces and need no
fence: the service hands its listening sockets to workers through
C{IReadDescriptor.fileno} and C{IReactorFDSet.removeReader} (it read
C{port.socket} and called C{stopReading}), and the test kit's in-memory
transport implements C{ITCPTransport} itself (it subclassed
C{twisted.test.iosim.FakeTransport}, which Twisted does not publish and
which changed between releases). L{twisted_caps.serving.proxy_protocol} needs no
fence either: it wraps the protocol with Twisted's public
C{ProtocolWrapper} and parses the header itself
(L{twisted_caps.core.proxy_header}), where it once imported the private parsers
of C{twisted.protocols.haproxy}. L{twisted_caps.serving.systemd_sockets}
replaces Twisted's C{systemd:} endpoint with public names only; its
ticket text is in C{docs/twisted.md} too.
"""
