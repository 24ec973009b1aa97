"""
Tests for L{twisted_caps.operating.signals}: real signals raised in this process, with
a reactor that records what the handlers ask of it (the signals' effects on
real daemons are in tests/adversarial/test_signals.py).
"""

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.operating.signals import RELOAD, REOPEN_LOGS, STATUS, STOP, OperatorSignals


class RecordingReactor:
    """What OperatorSignals asks of a reactor, recorded; calls from threads run on demand."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[..., object], tuple[Any, ...]]] = []
        self.when_running: list[Callable[[], object]] = []
        self.before_shutdown: list[Callable[[], object]] = []
        self.stops: list[tuple[str, int]] = []

    def callFromThread(self, f: Callable[..., object], *args: Any) -> None:
        self.queued.append((f, args))

    def callWhenRunning(self, f: Callable[[], object]) -> None:
        self.when_running.append(f)

    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[[], object]) -> None:
        assert (phase, event) == ("before", "shutdown")
        self.before_shutdown.append(f)

    def sigTerm(self, number: int, frame: FrameType | None = None) -> None:
        self.stops.append(("sigTerm", number))

    def sigInt(self, number: int, frame: FrameType | None = None) -> None:
        self.stops.append(("sigInt", number))

    def run_queued(self) -> None:
        queued, self.queued = self.queued, []
        for f, args in queued:
            f(*args)


class OperatorSignalsTests(SynchronousTestCase):
    def setUp(self) -> None:
        for signum in (RELOAD, REOPEN_LOGS, STATUS, *STOP):
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
        self.reactor = RecordingReactor()
        self.done: list[str] = []
        actions: dict[int, Callable[[], object]] = {
            RELOAD: lambda: self.done.append("reload"),
            REOPEN_LOGS: lambda: self.done.append("reopen"),
            STATUS: lambda: self.done.append("status"),
        }
        self.signals = OperatorSignals(self.reactor, actions)
        self.signals.install()

    def test_actions_run_in_the_reactor_thread_not_in_the_handler(self) -> None:
        for signum in (RELOAD, REOPEN_LOGS, STATUS):
            signal.raise_signal(signum)
        self.assertEqual(self.done, [])
        self.reactor.run_queued()
        self.assertEqual(self.done, ["reload", "reopen", "status"])

    def test_first_stop_signal_goes_to_the_reactor_handler_once(self) -> None:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
        self.assertEqual(self.reactor.stops, [("sigTerm", signal.SIGTERM)])
        self.reactor.run_queued()
        self.assertEqual(self.done, [])

    def test_sigint_first_is_the_reactor_sigint(self) -> None:
        signal.raise_signal(signal.SIGINT)
        self.assertEqual(self.reactor.stops, [("sigInt", signal.SIGINT)])

    def test_actions_are_ignored_once_stopping(self) -> None:
        for trigger in self.reactor.before_shutdown:
            trigger()
        signal.raise_signal(RELOAD)
        self.reactor.run_queued()
        self.assertEqual(self.done, [])
        signal.raise_signal(signal.SIGTERM)
        self.assertEqual(self.reactor.stops, [])

    def test_installed_again_over_the_reactor_handlers_once_running(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for running in self.reactor.when_running:
            running()
        signal.raise_signal(signal.SIGTERM)
        self.assertEqual(self.reactor.stops, [("sigTerm", signal.SIGTERM)])

    def test_signals_with_no_action_and_fewer_stop_signals(self) -> None:
        """A worker's handlers: SIGTERM stops once; the others are not installed."""
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        worker = OperatorSignals(self.reactor, {}, stop_signals=(signal.SIGTERM,))
        worker.install()
        self.assertEqual(signal.getsignal(signal.SIGHUP), signal.SIG_IGN)
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
        self.assertEqual(self.reactor.stops, [("sigTerm", signal.SIGTERM)])
