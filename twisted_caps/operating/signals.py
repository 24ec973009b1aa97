# -*- test-case-name: tests.test_signals -*-
"""
The signals an operator sends, and what each does, the same under
C{twistd -n}, daemonized C{twistd} and C{twist}:

  - SIGHUP reloads: reopen the log file, re-read TLS certificates and,
    with C{--workers}, replace every worker by a freshly started one;
  - SIGUSR1 reopens the log file only (what logrotate's C{postrotate} needs);
  - SIGUSR2 logs one status line;
  - SIGTERM and SIGINT stop gracefully, once: a repeated stop signal during
    the drain logs one line and changes nothing (C{--shutdown-timeout}
    already bounds the drain; SIGKILL is the operator's hurry).

Handlers are installed as soon as the service is built, so that a signal
arriving during start-up is queued rather than fatal (the default action of
SIGHUP, SIGUSR1 and SIGUSR2 is to end the process), and again once the
reactor runs, over the reactor's own SIGTERM and SIGINT handlers: the first
stop signal still goes to the reactor's public C{sigTerm} or C{sigInt}, so
twistd ends with the signal's status as before, and a second never reaches
the reactor's C{stop}, which would raise C{ReactorNotRunning}.

Every action runs in the reactor thread (C{callFromThread}), never inside
the signal handler.
"""

import signal
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from twisted.logger import Logger

#: The signals an operator may send, by what they do.
RELOAD = signal.SIGHUP
REOPEN_LOGS = signal.SIGUSR1
STATUS = signal.SIGUSR2
STOP = (signal.SIGTERM, signal.SIGINT)


class OperatorSignals:
    """
    Turn the operator's signals into calls of their actions in the reactor
    thread, and make stop signals stop the reactor only once.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        actions: Mapping[int, Callable[[], object]],
        stop_signals: tuple[int, ...] = STOP,
    ) -> None:
        """
        @param actions: what each signal other than a stop signal does, for
            example C{{RELOAD: service.reload}}.
        @param stop_signals: the signals that stop the reactor, once.
        """
        self._reactor = reactor
        self._actions = dict(actions)
        self._stop_signals = stop_signals
        self.stopping = False

    def install(self) -> None:
        """
        Handle the signals from now on, again once the reactor runs (over
        its own handlers), and count a shutdown begun otherwise as stopping.
        """
        self._install()
        self._reactor.callWhenRunning(self._install)
        self._reactor.addSystemEventTrigger("before", "shutdown", self._shutting_down)

    def _install(self) -> None:
        for signum in (*self._actions, *self._stop_signals):
            signal.signal(signum, self._received)

    def _shutting_down(self) -> None:
        self.stopping = True

    def _received(self, signum: int, frame: FrameType | None) -> None:
        if signum in self._stop_signals:
            if self.stopping:
                self._reactor.callFromThread(self._already_stopping, signum)
                return
            self.stopping = True
            self._stop(signum, frame)
            return
        self._reactor.callFromThread(self._act, signum)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        """Stop as the reactor's own handler would: it records the signal for twistd's exit."""
        name = "sigTerm" if signum == signal.SIGTERM else "sigInt"
        handler = getattr(self._reactor, name, None)
        if handler is not None:
            handler(signum, frame)
        else:
            self.log.info("caps: received {signal}, shutting down", signal=_name(signum))
            self._reactor.callFromThread(self._reactor.stop)

    def _already_stopping(self, signum: int) -> None:
        self.log.info(
            "caps: received {signal}: already stopping (the drain ends within --shutdown-timeout)",
            signal=_name(signum),
        )

    def _act(self, signum: int) -> None:
        if self.stopping:
            self.log.info("caps: received {signal} while stopping: ignored", signal=_name(signum))
            return
        self._actions[signum]()


def _name(signum: int) -> str:
    return signal.Signals(signum).name
