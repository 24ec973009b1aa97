# -*- test-case-name: tests.test_workers -*-
"""
C{--workers N}: N processes serving the same TCP and UDP sockets, supervised.

The parent (the twistd process) opens every listener once, in
C{privilegedStartService} so C{--uid} still works, stops reading from them,
and passes the sockets to each worker (L{twisted_caps.worker}) as inherited
descriptors, which the worker adopts (L{twisted_caps.shared_accept}, which
accepts one connection per wake-up so that a burst is shared out, and
C{adoptDatagramPort}). Why one shared socket rather than C{SO_REUSEPORT}:

  - graceful shutdown: with C{SO_REUSEPORT} each worker has its own accept
    queue, and the connections queued on a worker that closes its socket
    are reset; a shared socket keeps one queue that stays open while any
    worker (or the parent) holds it, so nothing accepted by the kernel is lost;
  - a restarted worker needs no bind, so ports below 1024 keep working after
    C{--uid} drops privileges, and C{--port 0} means one port for all;
  - no other process of the same user can bind into the group and take a
    share of the traffic.

Per-peer limits are per worker in either design (the kernel, not the peer,
picks the worker); see the README.

A worker that exits is started again: at once if it ran for a while, else
after a delay that doubles up to a minute (the back-off of Twisted's
C{ProcessMonitor}, which cannot pass descriptors). Each worker line is
relayed into the parent's log as C{caps worker PID: LINE}. On stop the
parent closes its copies of the sockets, sends SIGTERM to every worker,
each of which closes its connections gracefully, and waits for all of them
(SIGKILL after C{--shutdown-timeout} plus a grace period).
"""

import contextlib
import json
import os
import sys
from dataclasses import replace
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from twisted_caps.config import CapsConfig
from twisted_caps.logs import emit_text
from twisted_caps.metrics import Snapshot, metrics_site
from twisted_caps.service import CapsService, InheritedSocket
from twisted_caps.worker import COUNTERS_PREFIX, encode_spec

#: The first descriptor number of the inherited sockets in a worker.
FIRST_INHERITED_FD = 3
#: Restart delays for a worker that died within MIN_UPTIME seconds of its start.
MIN_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
MIN_UPTIME = 1.0
#: Seconds beyond --shutdown-timeout a worker gets to exit before SIGKILL.
KILL_GRACE = 5.0


class WorkerProtocol(ProcessProtocol):
    """Relay one worker's output lines into the log and report its exit."""

    log = Logger()

    def __init__(self, supervisor: "WorkersService", index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.pid = 0
        self.ended: Deferred[None] = Deferred()
        self.counters: Snapshot | None = None
        self._buffers = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.pid = self.transport.pid or 0

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._buffers.get(childFD, b"") + data).split(b"\n")
        self._buffers[childFD] = lines.pop()
        for line in lines:
            self._relay(line)

    def _relay(self, line: bytes) -> None:
        if line.startswith(COUNTERS_PREFIX):
            self.counters = json.loads(line[len(COUNTERS_PREFIX) :])
            return
        text = line.decode("utf-8", "replace")
        relayed = f"caps worker {self.pid}: {text}"
        emit_text(
            self.log, LogLevel.info, "caps worker {pid}: {line}", relayed, pid=self.pid, line=text
        )

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._buffers.items():
            if rest:
                self._relay(rest)
            self._buffers[fd] = b""
        self.supervisor.worker_ended(self, reason)
        self.ended.callback(None)


class WorkersService(Service):
    """Open the listeners once and keep C{config.workers} workers serving them."""

    log = Logger()

    def __init__(self, config: CapsConfig, reactor: Any) -> None:
        self.config = config
        # The parent serves /metrics itself, from the workers' reports.
        self.listeners = CapsService(replace(config, metrics=None), reactor)
        self.metrics_port: IListeningPort | None = None
        self.workers: dict[int, WorkerProtocol] = {}
        self._sockets: tuple[InheritedSocket, ...] = ()
        self._started_at: dict[int, float] = {}
        self._delays: dict[int, float] = {}
        self._restarts: dict[int, IDelayedCall] = {}
        self._reactor = reactor

    def privilegedStartService(self) -> None:
        self.listeners.privilegedStartService()
        super().privilegedStartService()

    def startService(self) -> None:
        if not self.listeners.ports:
            self.listeners.startService()
        super().startService()
        self._sockets = self.listeners.listening_sockets()
        # Opened after the sockets are handed out: the workers do not serve it.
        self._listen_for_metrics()
        for index in range(self.config.workers):
            self._delays[index] = MIN_RESTART_DELAY
            self.start_worker(index)

    def _listen_for_metrics(self) -> None:
        if self.config.metrics is None:
            return
        site = metrics_site(self.worker_counters)
        self.metrics_port = self.listeners.listen_for_metrics(self.config.metrics, site)

    def worker_counters(self) -> list[tuple[str | None, Snapshot]]:
        """The latest counters each running worker reported, labelled by worker index."""
        return [
            (str(index), protocol.counters)
            for index, protocol in sorted(self.workers.items())
            if protocol.counters is not None
        ]

    def start_worker(self, index: int) -> None:
        """Spawn worker C{index}, handing it the listening sockets."""
        self._restarts.pop(index, None)
        spec_sockets = tuple(
            InheritedSocket(s.kind, FIRST_INHERITED_FD + i, s.family)
            for i, s in enumerate(self._sockets)
        )
        child_fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
        for i, inherited in enumerate(self._sockets):
            child_fds[FIRST_INHERITED_FD + i] = inherited.fd
        argv = [sys.executable, "-m", "twisted_caps.worker"]
        argv.append(encode_spec(self.config, spec_sockets, os.getpid()))
        protocol = WorkerProtocol(self, index)
        self._started_at[index] = self._reactor.seconds()
        self._reactor.spawnProcess(
            protocol, sys.executable, argv, env=dict(os.environ), childFDs=child_fds
        )
        self.workers[index] = protocol
        self.log.info("caps: worker {index} started, pid {pid}", index=index, pid=protocol.pid)

    def worker_ended(self, protocol: WorkerProtocol, reason: Failure) -> None:
        """Forget an exited worker and, while running, start it again with back-off."""
        index = protocol.index
        if self.workers.get(index) is protocol:
            del self.workers[index]
        if not self.running:
            return
        if self._reactor.seconds() - self._started_at[index] < MIN_UPTIME:
            delay = self._delays[index]
            self._delays[index] = min(delay * 2, MAX_RESTART_DELAY)
        else:
            delay = 0.0
            self._delays[index] = MIN_RESTART_DELAY
        self.log.warn(
            "caps: worker {index} (pid {pid}) exited: {reason}; restarting in {delay}s",
            index=index,
            pid=protocol.pid,
            reason=reason.getErrorMessage(),
            delay=delay,
        )
        self._restarts[index] = self._reactor.callLater(delay, self.start_worker, index)

    def stopService(self) -> Deferred[Any]:
        """Close the parent's sockets, SIGTERM every worker and wait for all to exit."""
        super().stopService()
        for restart in self._restarts.values():
            restart.cancel()
        self._restarts.clear()
        stopped = self.listeners.stopService()
        ended = [protocol.ended for protocol in self.workers.values()]
        for protocol in self.workers.values():
            self._signal(protocol.transport, "TERM")
            kill = self._reactor.callLater(
                self.config.shutdown_timeout + KILL_GRACE, self._signal, protocol.transport, "KILL"
            )
            protocol.ended.addCallback(_cancel, kill)
        return DeferredList([stopped, *ended], consumeErrors=True)

    @staticmethod
    def _signal(process: IProcessTransport | None, name: str) -> None:
        if process is None:
            return
        with contextlib.suppress(ProcessExitedAlready):
            process.signalProcess(name)


def _cancel(result: None, call: IDelayedCall) -> None:
    """Cancel C{call} unless it already ran."""
    if call.active():
        call.cancel()
