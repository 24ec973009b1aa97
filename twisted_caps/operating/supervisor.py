# -*- test-case-name: tests.test_supervisor -*-
"""
C{--workers N}: N processes serving the same TCP and UDP sockets, supervised.

The parent (the twistd process) opens every listener once, in
C{privilegedStartService} so C{--uid} still works, stops reading from them,
and passes the sockets to each worker (L{twisted_caps.operating.worker_process}) as inherited
descriptors, which the worker adopts (L{twisted_caps._twisted.shared_accept}, which
wakes one waiting worker per connection, and C{adoptDatagramPort}). Why one
shared socket rather than C{SO_REUSEPORT}:

  - graceful shutdown: with C{SO_REUSEPORT} each worker has its own accept
    queue, and the connections queued on a worker that closes its socket
    are reset; a shared socket keeps one queue that stays open while any
    worker (or the parent) holds it, so nothing accepted by the kernel is lost;
  - a restarted worker needs no bind, so ports below 1024 keep working after
    C{--uid} drops privileges, and C{--port 0} means one port for all;
  - no other process of the same user can bind into the group and take a
    share of the traffic.

Per-peer limits are per worker in either design (the kernel, not the peer,
picks the worker); see docs/limits.md.

A worker that exits is started again: at once if it ran for a while, else
after a delay that doubles up to a minute (the back-off of Twisted's
C{ProcessMonitor}, which cannot pass descriptors). Each worker line is
relayed into the parent's log as C{caps worker PID: LINE}. On stop the
parent closes its copies of the sockets, sends SIGTERM to every worker,
each of which closes its connections gracefully, and waits for all of them
(SIGKILL after C{--shutdown-timeout} plus a grace period).

A reload (L{WorkersService.reload}, on SIGHUP) replaces the workers one at
a time, each by a worker started afresh, so running the code installed now:
the new worker is started, and once it says it serves (L{READY}), the old
one is retired (L{RETIRE}: it stops accepting, finishes its connections,
exits). The listening sockets never close, so no connection is refused; a
new worker that exits or is not serving within L{READY_TIMEOUT} seconds
ends the reload, and the old workers keep serving.
"""

import contextlib
import json
import os
import signal
import sys
from dataclasses import replace
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, TimeoutError
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from twisted_caps.operating.parent_pipe import READY
from twisted_caps.operating.worker_process import COUNTERS_PREFIX, RETIRE, encode_spec
from twisted_caps.serving.config import CapsConfig
from twisted_caps.serving.logs import emit_text
from twisted_caps.serving.metrics import Snapshot, metrics_site
from twisted_caps.serving.service import CapsService, InheritedSocket

#: The first descriptor number of the inherited sockets in a worker.
FIRST_INHERITED_FD = 3
#: Restart delays for a worker that died within MIN_UPTIME seconds of its start.
MIN_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
MIN_UPTIME = 1.0
#: Seconds beyond --shutdown-timeout a worker gets to exit before SIGKILL.
KILL_GRACE = 5.0
#: Seconds a worker started by a reload may take to serve before the reload gives up.
READY_TIMEOUT = 30.0


class WorkerProtocol(ProcessProtocol):
    """Relay one worker's output lines into the log and report its exit."""

    log = Logger()

    def __init__(self, supervisor: "WorkersService", index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.pid = 0
        self.ended: Deferred[None] = Deferred()
        self.counters: Snapshot | None = None
        #: Fires True once the worker serves, False if it exits before.
        self.serving: Deferred[bool] = Deferred()
        self._buffers = {1: b"", 2: b""}
        # One Logger: the class attribute makes a new one at every access,
        # a third of what relaying a line cost.
        self.log = self.log

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
        if line == READY.encode() and not self.serving.called:
            self.serving.callback(True)
        text = line.decode("utf-8", "replace")
        relayed = f"caps worker {self.pid}: {text}"
        fields: dict[str, object] = {"pid": self.pid, "line": text}
        emit_text(self.log, LogLevel.info, "caps worker {pid}: {line}", relayed, fields)

    def processEnded(self, reason: Failure) -> None:
        for fd, rest in self._buffers.items():
            if rest:
                self._relay(rest)
            self._buffers[fd] = b""
        if not self.serving.called:
            self.serving.callback(False)
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
        #: Workers a reload replaced, finishing their connections.
        self.retiring: set[WorkerProtocol] = set()
        self._reloading: Deferred[None] | None = None
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

    def status(self) -> str:
        """What the workers are doing, for the operator's status line (SIGUSR2)."""
        pids = " ".join(str(worker.pid) for _, worker in sorted(self.workers.items()))
        return f"{len(self.workers)} workers (pids {pids or 'none'}), {len(self.retiring)} retiring"

    def worker_counters(self) -> list[tuple[str | None, Snapshot]]:
        """The latest counters each running worker reported, labelled by worker index."""
        return [
            (str(index), protocol.counters)
            for index, protocol in sorted(self.workers.items())
            if protocol.counters is not None
        ]

    def start_worker(self, index: int) -> WorkerProtocol | None:
        """
        Spawn worker C{index}, handing it the listening sockets; None if the
        system refused the process (another try is scheduled).
        """
        self._restarts.pop(index, None)
        spec_sockets = tuple(
            InheritedSocket(s.kind, FIRST_INHERITED_FD + i, s.family)
            for i, s in enumerate(self._sockets)
        )
        child_fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
        for i, inherited in enumerate(self._sockets):
            child_fds[FIRST_INHERITED_FD + i] = inherited.fd
        argv = [sys.executable, "-m", "twisted_caps.operating.worker_process"]
        argv.append(encode_spec(self.config, spec_sockets, os.getpid()))
        protocol = WorkerProtocol(self, index)
        self._started_at[index] = self._reactor.seconds()
        try:
            self._reactor.spawnProcess(
                protocol, sys.executable, argv, env=dict(os.environ), childFDs=child_fds
            )
        except OSError as error:
            # fork or pipe refused (EAGAIN at the process limit, ENOMEM, EMFILE):
            # one line, and another try after the back-off of a worker that died young.
            delay = self._delays[index]
            self._delays[index] = min(delay * 2, MAX_RESTART_DELAY)
            self.log.warn(
                "caps: worker {index} could not start: {reason}; trying again in {delay}s",
                index=index,
                reason=error.strerror or error,
                delay=delay,
            )
            self._restarts[index] = self._reactor.callLater(delay, self.start_worker, index)
            return None
        self.workers[index] = protocol
        self.log.info("caps: worker {index} started, pid {pid}", index=index, pid=protocol.pid)
        return protocol

    def worker_ended(self, protocol: WorkerProtocol, reason: Failure) -> None:
        """Forget an exited worker and, while running, start it again with back-off."""
        index = protocol.index
        if self.workers.get(index) is not protocol:
            self.retiring.discard(protocol)
            if reason.check(ProcessDone):
                self.log.info(
                    "caps: worker {index} (pid {pid}) retired after reload",
                    index=index,
                    pid=protocol.pid,
                )
            else:
                self.log.info(
                    "caps: worker {index} (pid {pid}) retired after reload: {how}",
                    index=index,
                    pid=protocol.pid,
                    how=ended_in_words(reason),
                )
            return
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

    def reload(self) -> None:
        """Replace every worker, one at a time, by a freshly started one."""
        if self._reloading is not None:
            self.log.info("caps: a reload is already under way: ignored")
            return
        self._reloading = Deferred.fromCoroutine(self._replace_workers())
        self._reloading.addBoth(self._reloaded)

    def _reloaded(self, result: object) -> None:
        self._reloading = None
        if isinstance(result, Failure):
            self.log.failure("caps: reload failed", result)

    async def _replace_workers(self) -> None:
        for index in sorted(self.workers):
            old = self.workers.get(index)
            if old is None or not self.running:
                continue
            # From here the old worker is the reload's: stopService signals it too.
            self.retiring.add(old)
            new = self.start_worker(index)
            if new is None:
                self._keep_after_spawn_failure(old)
                return
            serving = new.serving.addTimeout(READY_TIMEOUT, self._reactor)
            try:
                failure = None if await serving else "exited before serving"
            except TimeoutError:
                failure = f"did not serve within {READY_TIMEOUT}s"
            if not self.running:
                return
            if failure is not None:
                self._keep(old, new, failure)
                return
            self._retire(old)
        self.log.info("caps: reload done: {count} workers replaced", count=len(self.workers))

    def _keep(self, old: WorkerProtocol, new: WorkerProtocol, failure: str) -> None:
        """A new worker did not serve: the old one stays, and the reload stops here."""
        self.retiring.discard(old)
        self._signal(new.transport, "KILL")
        self.log.warn(
            "caps: reload stopped: the new worker {index} (pid {pid}) {failure};"
            " the old workers keep serving",
            index=new.index,
            pid=new.pid,
            failure=failure,
        )
        if old.ended.called:
            return  # it exited meanwhile: the failed new one's restart stands in
        restart = self._restarts.pop(old.index, None)
        if restart is not None:
            restart.cancel()
        self.workers[old.index] = old

    def _keep_after_spawn_failure(self, old: WorkerProtocol) -> None:
        """No new worker could be spawned: the old one stays, and the reload stops here."""
        self.retiring.discard(old)
        restart = self._restarts.pop(old.index, None)
        if restart is not None:
            restart.cancel()
        self.log.warn(
            "caps: reload stopped: no new worker {index} could be started;"
            " the old workers keep serving",
            index=old.index,
        )

    def _retire(self, old: WorkerProtocol) -> None:
        """Ask a replaced worker to finish its connections and exit; SIGKILL it if it lingers."""
        if old.ended.called:
            self.retiring.discard(old)
            return
        if old.transport is not None:
            old.transport.write(RETIRE + b"\n")
        self._kill_if_lingering(old, 2 * self.config.shutdown_timeout + KILL_GRACE)

    def _kill_if_lingering(self, protocol: WorkerProtocol, delay: float) -> None:
        kill = self._reactor.callLater(delay, self._signal, protocol.transport, "KILL")
        protocol.ended.addCallback(_cancel, kill)

    def stopService(self) -> Deferred[Any]:
        """Close the parent's sockets, SIGTERM every worker and wait for all to exit."""
        super().stopService()
        for restart in self._restarts.values():
            restart.cancel()
        self._restarts.clear()
        stopped = self.listeners.stopService()
        everyone = [*self.workers.values(), *self.retiring]
        for protocol in everyone:
            self._signal(protocol.transport, "TERM")
            self._kill_if_lingering(protocol, self.config.shutdown_timeout + KILL_GRACE)
        return DeferredList([stopped, *(p.ended for p in everyone)], consumeErrors=True)

    @staticmethod
    def _signal(process: IProcessTransport | None, name: str) -> None:
        if process is None:
            return
        with contextlib.suppress(ProcessExitedAlready):
            process.signalProcess(name)


def ended_in_words(reason: Failure) -> str:
    """How a worker process ended, in words: exited with status N, ended by SIGNAME."""
    value = reason.value
    if isinstance(value, ProcessTerminated):
        if value.signal is not None:
            return f"ended by {_signal_name(value.signal)}"
        return f"exited with status {value.exitCode}"
    return "exited" if isinstance(value, ProcessDone) else reason.getErrorMessage()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _cancel(result: None, call: IDelayedCall) -> None:
    """Cancel C{call} unless it already ran."""
    if call.active():
        call.cancel()
